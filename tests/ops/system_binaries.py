"""The operations tests run Debian's own nginx and Prometheus: `.ci/run` installs them; a test
that cannot find one fails and says how to get it (it is never skipped)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def system_binary(name: str, package: str) -> str:
    """The binary's path; /usr/sbin is searched too (nginx lives there, outside a user's PATH)."""
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found is None:
        pytest.fail(f"{name} is not installed: `apt-get install -y {package}` (.ci/run does this)", pytrace=False)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(condition: Callable[[], T | None], timeout: float, what: str, poll: float = 0.2) -> T:
    """Polls until `condition` returns something truthy; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout:g} s: {what}", pytrace=False)
        time.sleep(poll)
    return result
