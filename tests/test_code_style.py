"""The Python code passes ruff's lint rules and is formatted as ruff formats it, and mypy finds no
type errors in the packages it checks (the rules of both are in pyproject.toml), so neither style
nor a type slip needs a review comment."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUFF = [sys.executable, "-m", "ruff"]
MYPY = [sys.executable, "-m", "mypy"]


def test_ruff_finds_nothing_to_complain_about():
    checked = subprocess.run([*RUFF, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_code_is_formatted_as_ruff_formats_it():
    formatted = subprocess.run([*RUFF, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_mypy_finds_no_type_errors():
    """Strict for domain/, application/ and projections/: `files` and the flags are in [tool.mypy]."""
    checked = subprocess.run(MYPY, cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
