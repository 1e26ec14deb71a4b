"""Fixtures shared by the projector test modules: `log` runs real commands, `projected` applies
the log to the module's `projector(write_side)` in a read store of its own."""

import pytest

from tests.projections.projection_log import ChatLog, Projected


@pytest.fixture
def log(write_side):
    return ChatLog(write_side)


@pytest.fixture
def projected(request, write_side, tmp_path):
    projected = Projected(write_side, request.module.projector(write_side), tmp_path / "read.sqlite3")
    yield projected
    projected.close()
