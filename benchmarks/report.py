"""Where the benchmark tools leave their results besides the terminal: a JSON file, when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_json(path: Path | None, result: Any) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
