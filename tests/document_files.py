"""Real files of every supported kind, generated with the libraries that write them."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

from docx import Document as WordDocument
from fpdf import FPDF
from openpyxl import Workbook
from pptx import Presentation


def pdf(pages: list[str], *, title: str = "Walrus migration report", password: str | None = None) -> bytes:
    document = FPDF()
    if password is not None:
        document.set_encryption(owner_password="owner-secret", user_password=password)
    for number, text in enumerate(pages):
        document.add_page()
        document.set_font("helvetica", size=16 if number == 0 else 12)
        if number == 0:
            document.cell(text=title, new_x="LMARGIN", new_y="NEXT")
            document.set_font("helvetica", size=12)
        document.multi_cell(0, 8, text)
    return bytes(document.output())


def docx(heading: str, paragraph: str, table: list[list[str]]) -> bytes:
    document = WordDocument()
    document.add_heading(heading, level=1)
    document.add_paragraph(paragraph)
    grid = document.add_table(rows=len(table), cols=len(table[0]))
    for r, row in enumerate(table):
        for c, value in enumerate(row):
            grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_bomb(unpacked_bytes: int) -> bytes:
    """A valid DOCX with one extra part of zeros that deflates to almost nothing."""
    base = zipfile.ZipFile(io.BytesIO(docx("Bomb", "nothing to see", [["a"]])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in base.infolist():
            bomb.writestr(item, base.read(item))
        with bomb.open("word/media/zeros.bin", "w", force_zip64=True) as part:
            chunk = bytes(1024 * 1024)
            for _ in range(unpacked_bytes // len(chunk)):
                part.write(chunk)
    return out.getvalue()


def pptx(title: str, body: str) -> bytes:
    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = title
    slide.placeholders[1].text = body
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "Inventory"
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def png(width: int = 4, height: int = 4) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


HTML_WITH_SCRIPT = (
    b"<!DOCTYPE html><html><head><title>Minutes</title><script>alert('pwned')</script></head><body>"
    b'<h1>Board minutes</h1><p onclick="steal()">The board approved the lighthouse budget.</p>'
    b'<a href="javascript:steal()">link</a><img src=x onerror="steal()"></body></html>'
)
MARKDOWN = b"# Packing list\n\n- tent\n- stove\n\nRemember the **compass** for the glacier crossing.\n"
TEXT = b"The quartermaster counted forty barrels of salted herring before the storm.\n"
CSV = b"city,population\nReykjavik,139875\nAkureyri,19642\n"
JSON = json.dumps({"expedition": "Svalbard", "members": ["Ada", "Grace"], "days": 21}).encode()
