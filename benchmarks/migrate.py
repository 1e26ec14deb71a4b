"""Migration benchmark: writes a SQLite log of N message events over 50 sessions (group commits
of 500 through the command bus, sealed content, one data key per session and day), then copies
it into a fresh PostgreSQL database with `chronicle migrate` (the real command, in its own
process) at each batch size, and, in the same run, walks the source's chain with `chronicle
audit verify` as the yardstick (migrate also recomputes every link, then writes).

    python -m benchmarks.migrate --events 100000 --batch-sizes 1000 5000 20000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from application.command_bus import _Pending
from benchmarks.report import save_json
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from tests.postgres import fresh_database

CHRONICLE = str(Path(sys.executable).parent / "chronicle")


def fill(data_dir: Path, events: int, sessions: int = 50) -> int:
    side = bootstrap(Settings.from_env(data_dir))
    try:
        owner = side.bus.execute_now(RegisterUser("migrate@example.org", "Mi", "h"), "bench").value
        ids = [side.bus.execute_now(StartSession(owner.id, f"S{n}", False), str(owner.id)).value.id for n in range(sessions)]
        n = 0
        while side.runner.head() < events:
            batch = [
                _Pending(
                    PostMessage(ids[(n + k) % sessions], owner.id, f"message {n + k} about the launch plan"), "bench", "c", lambda r: None
                )
                for k in range(500)
            ]
            side.bus._process(batch)
            n += 500
        return side.runner.head()
    finally:
        side.close()


def _timed(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([CHRONICLE, *args], capture_output=True, text=True, env={**os.environ, "CHRONICLE_SECRET_KEY": "bench"})
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(done.stderr)
    return elapsed, done.stdout


def run(events: int, batch_sizes: list[int]) -> dict:
    with tempfile.TemporaryDirectory(prefix="chronicle-migrate-") as tmp:
        data_dir = Path(tmp) / "var"
        head = fill(data_dir, events)
        verify_s, verified = _timed("audit", "verify", "--data-dir", str(data_dir))
        source_hash = verified.strip().rsplit("head hash ", 1)[1]
        result: dict = {"events": head, "verify_sqlite_s": round(verify_s, 2), "verify_sqlite_events_per_s": round(head / verify_s)}
        for size in batch_sizes:
            with fresh_database() as url:
                wall, summary = _timed("migrate", "--to", url, "--batch-size", str(size), "--data-dir", str(data_dir))
                assert f"head hash {source_hash}" in summary, summary
                seconds = float(re.search(r"; ([0-9.]+)s \(", summary).group(1))  # type: ignore[union-attr]
                pg_s, pg_verified = _timed("audit", "verify", "--data-dir", str(Path(tmp) / "pg"), "--database-url", url)
                assert pg_verified.strip().endswith(source_hash)
            result[f"batch_{size}"] = {
                "migrate_s": round(seconds, 2),
                "migrate_events_per_s": round(head / seconds),
                "process_wall_s": round(wall, 2),
                "verify_postgresql_s": round(pg_s, 2),
                "migrate_over_sqlite_verify": round(seconds / verify_s, 2),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this file.")
    args = parser.parse_args()
    result = run(args.events, args.batch_sizes)
    print(json.dumps(result, indent=2))
    save_json(args.json, result)


if __name__ == "__main__":
    main()
