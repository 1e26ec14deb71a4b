import os
from pathlib import Path

import pytest

from infrastructure.bootstrap import bootstrap
from infrastructure.write_side import WriteSide
from tests.backend import BACKEND, ON_POSTGRES, databases, settings_for


def pytest_report_header() -> str:
    return f"backend: {BACKEND} (CHRONICLE_TEST_BACKEND)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, tests about the SQLite files themselves are deselected (counted in the
    summary as deselected, never skipped)."""
    if not ON_POSTGRES:
        return
    deselected = [item for item in items if item.get_closest_marker("sqlite_only")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("sqlite_only")]


@pytest.fixture(scope="module", autouse=True)
def _module_databases():
    """Drops the databases a module's own fixtures made (a module's server), after them."""
    mark = databases.mark()
    yield
    databases.drop_since(mark)


@pytest.fixture(autouse=True)
def _test_databases():
    """Drops the databases a test made, once its fixtures (servers, stores) are closed."""
    mark = databases.mark()
    yield
    databases.drop_since(mark)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def write_side(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CHRONICLE_SECRET_KEY", raising=False)
    side: WriteSide = bootstrap(settings_for(data_dir))
    yield side
    side.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def event_count(side: WriteSide) -> int:
    return side.app.recorder.max_notification_id() or 0


os.environ.setdefault("CHRONICLE_RATE_LIMIT_POSTS", "0")
os.environ.setdefault("CHRONICLE_RATE_LIMIT_WRITES", "0")
os.environ.setdefault("CHRONICLE_RATE_LIMIT_SEARCHES", "0")
os.environ.setdefault("CHRONICLE_RATE_LIMIT_PASSWORDS", "0")  # in-process tests register many users; test_rate_limits sets it
