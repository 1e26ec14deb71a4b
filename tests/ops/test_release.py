"""What an operator installs: `chronicle --version` names the installed package's version, every
installed distribution is pinned in constraints.txt, and deploy/systemd/chronicle.service passes
`systemd-analyze verify` with its hardening in place."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import distributions, version
from pathlib import Path

from tests.e2e.server import CHRONICLE
from tests.ops.system_binaries import system_binary

UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "chronicle.service"
CONSTRAINTS = Path(__file__).parents[2] / "constraints.txt"


def test_chronicle_version_is_the_installed_packages():
    shown = subprocess.run([CHRONICLE, "--version"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"chronicle {version('chronicle')}"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_installed_distribution_is_pinned_in_the_constraints_file():
    """The install commands use constraints.txt, so a new release of a transitive dependency
    cannot change what a fresh clone runs (lxml 6.2.0 once broke DOCX conversion overnight); a
    dependency added to pyproject.toml without a pin here fails this test."""
    pins = dict(
        (_canonical(name), pinned)
        for name, _, pinned in (line.partition("==") for line in CONSTRAINTS.read_text().splitlines())
        if pinned and not name.startswith("#")
    )
    installed = {_canonical(d.metadata["Name"]): d.version for d in distributions()}
    unpinned = {name: v for name, v in installed.items() if pins.get(name) != v and name not in ("chronicle", "pip", "setuptools", "wheel")}
    assert unpinned == {}, f"installed but not pinned at that version in constraints.txt: {unpinned}"


def test_the_systemd_unit_verifies_and_is_hardened(tmp_path):
    """Verified as installed, with ExecStart pointing at this installation's `chronicle` (the
    unit names /opt/chronicle, which does not exist here; systemd-analyze checks it is executable)."""
    text = UNIT.read_text()
    installed = tmp_path / "chronicle.service"
    installed.write_text(text.replace("/opt/chronicle/bin/chronicle", CHRONICLE))
    verified = subprocess.run(
        [system_binary("systemd-analyze", "systemd"), "verify", installed.name], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stdout + verified.stderr
    settings = {line.partition("=")[0]: line.partition("=")[2] for line in text.splitlines() if "=" in line and not line.startswith("#")}
    assert settings["User"] == "chronicle" and settings["ProtectSystem"] == "strict" and settings["NoNewPrivileges"] == "yes"
    assert settings["ReadWritePaths"] == settings["Environment"].removeprefix("CHRONICLE_DATA_DIR=") == "/var/lib/chronicle"
    assert settings["PrivateTmp"] == "yes" and settings["Restart"] == "on-failure"
    assert settings["KillSignal"] == "SIGTERM" and int(settings["TimeoutStopSec"]) > 10
