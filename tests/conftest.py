import os
from pathlib import Path

import pytest

from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.write_side import WriteSide


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def write_side(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CHRONICLE_SECRET_KEY", raising=False)
    side: WriteSide = bootstrap(Settings.from_env(data_dir))
    yield side
    side.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def event_count(side: WriteSide) -> int:
    return side.app.recorder.max_notification_id() or 0


os.environ.setdefault("CHRONICLE_RATE_LIMIT_POSTS", "0")
