"""Converters on real files, in a job process, as the worker runs them."""

from pathlib import Path

import pytest

from infrastructure.documents.conversion_jobs import JobLimits, run_job
from infrastructure.documents.converters import markdown_to_text
from projections.document_search import passages
from tests import document_files as files

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def job(tmp_path: Path, data: bytes, media_type: str, target: str, **limits) -> tuple:
    source = tmp_path / "source"
    source.write_bytes(data)
    output = tmp_path / f"out.{target}"
    outcome = run_job(source, media_type, target, output, JobLimits(**limits))
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
