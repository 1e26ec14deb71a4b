"""Converters on real files, in a job process, as the worker runs them."""

import html
import re
from pathlib import Path

import pytest

from infrastructure.documents.conversion_jobs import ConversionJobs, JobLimits
from infrastructure.documents.converters import convert, markdown_to_text
from projections.document_search import passages
from tests import document_files as files

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def job(tmp_path: Path, data: bytes, media_type: str, target: str, **limits) -> tuple:
    source = tmp_path / "source"
    source.write_bytes(data)
    output = tmp_path / f"out.{target}"
    outcome = ConversionJobs(JobLimits(**limits)).run(source, media_type, target, output)
    return outcome, output.read_text() if outcome.sha256 else None


def test_a_pdf_converts_with_its_page_count(tmp_path):
    outcome, text = job(tmp_path, files.pdf(["First page.", "Second page.", "Third page."]), "application/pdf", "text")
    assert outcome.pages == 3 and outcome.reason is None
    assert "First page." in text and "Third page." in text and "\f" not in text


def test_a_docx_table_becomes_a_markdown_table_and_tab_separated_text(tmp_path):
    data = files.docx("Crew", "Who sails.", [["name", "role"], ["Ada", "navigator"]])
    _, markdown = job(tmp_path, data, DOCX, "markdown")
    assert "# Crew" in markdown and "| name | role |" in markdown and "| Ada | navigator |" in markdown
    _, text = job(tmp_path, data, DOCX, "text")
    assert text.startswith("Crew\n\nWho sails.") and "Ada\tnavigator" in text


def test_a_memory_hungry_conversion_is_stopped_by_the_memory_guard(tmp_path):
    outcome, _ = job(tmp_path, files.docx_bomb(96 * 1024 * 1024), DOCX, "markdown", max_unpacked_bytes=1024**3, memory_bytes=400 * 1024**2)
    assert outcome.reason == "too_large", outcome


def test_markdown_to_text_keeps_words_and_drops_syntax():
    text = markdown_to_text("# Title\n\nSome *emphasis* and `code`.\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert text == "Title\n\nSome emphasis and code.\n\none\n\ntwo\n\na\tb\n1\t2\n"


@pytest.mark.parametrize("size", [50, 200, 1000])
def test_passages_cover_the_text_in_order_within_their_size(size):
    words = [f"word{n}" for n in range(2000)]
    text = "\n\n".join(" ".join(words[i : i + 37]) for i in range(0, len(words), 37))
    cut = passages(text, size)
    assert all(len(p) <= size for p in cut)
    assert " ".join(" ".join(cut).split()) == " ".join(words)


NUMBERED = "2027. The budget grows.\n3) Ships leave at 0600.\n- Ropes: 12 coils\n# Hashtag notes 7"
TABLE = [["Site", "Count"], ["Svalbard", "312"], ["Tromso", "48"]]
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CORPUS = {
    "pdf": ("application/pdf", files.pdf([NUMBERED, "Site Count Svalbard 312 Tromso 48"], title="Walrus report 9")),
    "docx": (DOCX, files.docx("Walrus report 9", NUMBERED.replace("\n", " / "), TABLE)),
    "pptx": ("application/vnd.openxmlformats-officedocument.presentationml.presentation", files.pptx("Walrus report 9", NUMBERED)),
    "xlsx": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        files.xlsx([["Site", "Count"], ["Svalbard", 312], ["Tromso", 48]]),
    ),
    "html": (
        "text/html",
        b"<h1>Walrus report 9</h1><ol start='2027'><li>The budget grows.</li></ol><p>3) Ships leave at 0600.</p>"
        b"<table><tr><td>Site</td><td>Count</td></tr><tr><td>Svalbard</td><td>312</td></tr></table>",
    ),
    "text": ("text/plain", f"Walrus report 9\n{NUMBERED}\nSite\tCount\nSvalbard\t312\n".encode()),
}
_WORD = re.compile(r"[A-Za-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(html.unescape(re.sub(r"<[^>]+>", " ", text)))


@pytest.mark.parametrize("kind", sorted(CORPUS))
@pytest.mark.parametrize("target", ["text", "markdown", "html"])
def test_every_word_and_number_of_the_source_survives_every_target(tmp_path, kind, target):
    """Numbered lines ("2027. …"), tables whose first row is their header, lists: nothing is
    lost on the way from any source type to any target (ordered-list numbers included)."""
    media_type, data = CORPUS[kind]
    source, output = tmp_path / "source", tmp_path / "out"
    source.write_bytes(data)
    convert(source, media_type, target, output, max_unpacked_bytes=10**9)
    converted = output.read_text()
    expected = set(_words(NUMBERED)) | {"Walrus", "report", "9"}
    if kind in ("pdf", "docx", "text", "html"):
        expected |= {"Site", "Count", "Svalbard", "312"}
    if kind == "xlsx":
        expected = {"Site", "Count", "Svalbard", "312", "Tromso", "48"}
    if kind == "html":  # <ol start=2027> is a list whose numbering is markup, not the word 2027
        expected = {"Walrus", "report", "9", "The", "budget", "grows", "3", "Ships", "0600", "Site", "Count", "Svalbard", "312"}
    missing = expected - set(_words(converted))
    assert not missing, (missing, converted)
    if kind in ("docx", "xlsx", "html") and target != "text":
        assert "Site" in _words(converted.split("Svalbard")[0]), "the header row keeps its words, before the data"


def test_a_table_without_header_cells_gets_its_first_row_as_header(tmp_path):
    source, output = tmp_path / "t.docx", tmp_path / "out"
    source.write_bytes(files.docx("Crew", "Who sails.", TABLE))
    convert(source, DOCX, "markdown", output, max_unpacked_bytes=10**9)
    assert "| Site | Count |\n| --- | --- |\n| Svalbard | 312 |" in output.read_text()


def test_a_small_csv_that_would_convert_to_megabytes_is_refused_as_too_large(tmp_path):
    """markitdown pads every row to the widest: one row of 2,000 commas and 2,000 rows of one
    cell (6 KB) came out as 12 MB of Markdown, which counted against no quota."""
    bomb = ("," * 2000 + "\n" + "x\n" * 2000).encode()
    outcome, _ = job(tmp_path, bomb, "text/csv", "markdown")
    assert outcome.reason == "too_large" and "more than the 4,194,304 allowed" in outcome.detail, outcome
    fine, markdown = job(tmp_path, b"name,role\nAda,navigator\n", "text/csv", "markdown")
    assert fine.reason is None and "| Ada | navigator |" in markdown
