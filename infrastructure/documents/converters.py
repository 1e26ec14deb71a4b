"""Turns a stored document into Markdown, plain text or sanitized HTML with converters made for
each format (markitdown's PDF, DOCX, PPTX, XLSX, HTML, CSV and text converters; markdown-it-py
to render Markdown; nh3 to sanitize every HTML we produce). Runs inside a conversion job
process (see `conversion_jobs`), never in the server's own process.

A failure is a `ConversionFailure` with one of the reasons a client can act on."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nh3
from markdown_it import MarkdownIt
from markitdown import StreamInfo
from markitdown.converters import (
    CsvConverter,
    DocxConverter,
    HtmlConverter,
    PdfConverter,
    PlainTextConverter,
    PptxConverter,
    XlsxConverter,
)

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SOURCES = {
    "application/pdf": "pdf",
    DOCX: "docx",
    PPTX: "pptx",
    XLSX: "xlsx",
    "text/html": "html",
    "text/markdown": "markdown",
    "text/plain": "text",
    "text/csv": "csv",
    "application/json": "json",
}
_CONVERTERS = {
    "pdf": PdfConverter,
    "docx": DocxConverter,
    "pptx": PptxConverter,
    "xlsx": XlsxConverter,
    "html": HtmlConverter,
    "csv": CsvConverter,
}
_EXTENSIONS = {"pdf": ".pdf", "docx": ".docx", "pptx": ".pptx", "xlsx": ".xlsx", "html": ".html", "csv": ".csv"}
OUTPUT_MAX_RATIO = 50
OUTPUT_FLOOR_BYTES = 4 * 1024**2
OUTPUT_MAX_BYTES = 64 * 1024**2
"""An output may be 50 times its source, or 4 MiB whatever the source, and never more than
64 MiB: a CSV of one wide row and blank lines came out of markitdown 1,500 times its size (every
row padded to the widest), and outputs count against no quota."""
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


class ConversionFailure(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Converted:
    sha256: str
    size: int
    pages: int | None
    characters: int


def source_kind(media_type: str) -> str | None:
    kind = SOURCES.get(media_type)
    if kind is None and media_type.startswith("text/"):
        return "text"
    return kind


def convert(source: Path, media_type: str, target: str, output: Path, *, max_unpacked_bytes: int) -> Converted:
    kind = source_kind(media_type)
    if kind is None:
        raise ConversionFailure("unsupported_type", f"cannot convert {media_type}")
    pages = None
    if kind in ("docx", "pptx", "xlsx"):
        _check_package(source, max_unpacked_bytes)
    if kind == "pdf":
        pages = _pdf_pages(source)
    if kind == "html" and target == "html":
        text = sanitize_html(_decoded(source))
    else:
        markdown = to_markdown(kind, source)
        if kind == "pptx":
            pages = markdown.count("<!-- Slide number:")
        if kind == "pdf":
            markdown = plain_text_as_markdown(markdown)  # pdfminer gives text, not Markdown
        markdown = promote_empty_table_headers(markdown)
        if target != "markdown":
            markdown = keep_line_numbers(_COMMENT.sub("", markdown))
        text = markdown if target == "markdown" else markdown_to_text(markdown) if target == "text" else markdown_to_html(markdown)
    data = text.encode()
    limit = min(max(OUTPUT_MAX_RATIO * source.stat().st_size, OUTPUT_FLOOR_BYTES), OUTPUT_MAX_BYTES)
    if len(data) > limit:
        raise ConversionFailure(
            "too_large", f"the {target} output would be {len(data):,} bytes, more than the {limit:,} allowed for this file"
        )
    with open(output, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Converted(hashlib.sha256(data).hexdigest(), len(data), pages, len(text))


def to_markdown(kind: str, source: Path) -> str:
    if kind in ("text", "markdown"):
        return _decoded(source)
    if kind == "json":
        try:
            pretty = json.dumps(json.loads(_decoded(source)), indent=2, ensure_ascii=False)
        except ValueError as error:
            raise ConversionFailure("corrupt_file", f"not valid JSON: {error}") from None
        return f"```json\n{pretty}\n```\n"
    converter = _CONVERTERS[kind]()
    with open(source, "rb") as stream:
        try:
            result = converter.convert(
                stream, StreamInfo(extension=_EXTENSIONS[kind], charset="utf-8" if kind in ("html", "csv") else None)
            )
        except (MemoryError, FileNotFoundError):
            raise
        except Exception as error:  # noqa: BLE001 - a converter's failure is the file's fault
            raise ConversionFailure("corrupt_file", f"the {kind} file could not be read: {_describe(error)}") from None
    return result.markdown.replace("\f", "\n")


def _decoded(source: Path) -> str:
    data = source.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        with io.BytesIO(data) as stream:
            return PlainTextConverter().convert(stream, StreamInfo(mimetype="text/plain")).markdown


def _check_package(source: Path, max_unpacked_bytes: int) -> None:
    """Office files are zip packages: refuse ones that would unpack to more than the limit
    (a zip bomb) before any converter opens them, and ones that are encrypted or broken."""
    try:
        with zipfile.ZipFile(source) as package:
            entries = package.infolist()
    except zipfile.BadZipFile as error:
        raise ConversionFailure("corrupt_file", f"not a readable Office package: {error}") from None
    if any(entry.flag_bits & 0x1 for entry in entries):
        raise ConversionFailure("encrypted", "the package's parts are encrypted")
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > max_unpacked_bytes:
        raise ConversionFailure("too_large", f"the package unpacks to {unpacked:,} bytes, more than the {max_unpacked_bytes:,} allowed")


def _pdf_pages(source: Path) -> int:
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect
    from pdfminer.pdfpage import PDFPage

    try:
        with open(source, "rb") as f:
            return sum(1 for _ in PDFPage.get_pages(f))
    except (PDFPasswordIncorrect, PDFEncryptionError):
        raise ConversionFailure("encrypted", "the PDF is protected by a password") from None
    except (MemoryError, FileNotFoundError):
        raise
    except Exception as error:  # noqa: BLE001 - pdfminer's syntax errors have no common base
        raise ConversionFailure("corrupt_file", f"the PDF could not be read: {_describe(error)}") from None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300] if str(error) else type(error).__name__


_MARKDOWN_LINE_START = re.compile(r"(?m)^(\s{0,3})([#>*+-]|\d{1,9}[.)])(?=\s|$)")
_ORDERED_MARKER = re.compile(r"(?m)^(\s{0,3})(\d{1,9})([.)])(?=\s|$)")
_EMPTY_HEADER = re.compile(r"(?m)^(\|(?:\s*\|)+)\n(\|(?:\s*:?-{3,}:?\s*\|)+)\n(\|.*\|)$")


def plain_text_as_markdown(text: str) -> str:
    """Text extracted from a PDF is not Markdown: a line that starts like Markdown syntax
    ("2027.", "- ", "# ") is escaped so that it stays the words it was."""
    return keep_line_numbers(
        _MARKDOWN_LINE_START.sub(lambda m: m.group(0) if m.group(2)[0].isdigit() else m.group(1) + "\\" + m.group(2), text)
    )


def keep_line_numbers(markdown: str) -> str:
    """A line beginning with a number and a dot ("2027. The budget", or a numbered list item) is
    kept as text: the number is content, which an ordered list would move into an attribute."""
    return _ORDERED_MARKER.sub(lambda m: f"{m.group(1)}{m.group(2)}\\{m.group(3)}", markdown)


def promote_empty_table_headers(markdown: str) -> str:
    """A table without header cells (Word's usual table) comes out of the converters with an
    empty header row; its first row is the header."""
    return _EMPTY_HEADER.sub(lambda m: f"{m.group(3)}\n{m.group(2)}", markdown)


def markdown_to_text(markdown: str) -> str:
    """Plain text from Markdown's structure: a block per paragraph, heading or list item,
    table rows with tab-separated cells, code as it is."""
    blocks: list[str] = []
    cells: list[str] = []
    rows: list[str] = []
    for token in _markdown.parse(markdown):
        if token.type == "inline":
            cells.append(_inline_text(token))
        elif token.type in ("paragraph_close", "heading_close"):
            if not rows:
                blocks.append(" ".join(cells))
                cells = []
        elif token.type == "tr_close":
            rows.append("\t".join(cells))
            cells = []
        elif token.type == "table_close":
            blocks.append("\n".join(rows))
            rows = []
        elif token.type in ("fence", "code_block"):
            blocks.append(token.content.rstrip("\n"))
    return "\n\n".join(b for b in blocks if b) + "\n"


def _inline_text(token: object) -> str:
    parts: list[str] = []
    for child in token.children or ():  # type: ignore[attr-defined]
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts)


def markdown_to_html(markdown: str) -> str:
    return sanitize_html(_markdown.render(markdown))


def sanitize_html(html: str) -> str:
    """No scripts, no event-handler attributes, no javascript: links: only what nh3 (ammonia)
    allows by default."""
    return nh3.clean(html)
