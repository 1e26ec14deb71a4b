"""Rebuild benchmark: writes a log of N message events over 50 sessions (group commits of 500
through the command bus), then, in the same run and on the same log:

- the ceiling: the same process reads and decodes the whole log through the fast read path
  (`log_reader` + `EventDecoder` in stored form, as the projection runner does) and does nothing else;
- the rebuild of every read model the way `chronicle projections rebuild --all` does it (replay
  into a scratch shadow, catch up, swap) in one process, and with `--workers N` in N processes;
- with `--before PATH`, the same rebuild by the code checked out at PATH (another commit), in a
  process of its own on a copy of the same data directory;
- the rebuild's floor: the ceiling plus the wall time the one-process rebuild spent inside SQLite
  on the read store's files (the shadow's writes and commits, the swap's statements), timed per
  call (fetching rows is not timed: the few reads a rebuild makes). However fast the projectors'
  own Python, a one-process rebuild that writes these tables with these statements cannot beat it.
  The slowest statements are listed with their seconds (`sqlite_slowest_statements_seconds`).

Rates are events/s by the wall clock and by the process's CPU time (`time.process_time`): on a
shared, loaded host the CPU figure is the steadier one and the ratio is what to compare.

    python -m benchmarks.rebuild --events 1000000 --workers 2 --before /path/to/old/checkout --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from application.command_bus import _Pending
from benchmarks.report import save_json
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.event_reading import EventDecoder, log_reader
from infrastructure.storage.shadow_rebuild import SHADOW_PREFIX, rebuild

_REBUILD_ELSEWHERE = """
import json, sys, time
from pathlib import Path
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.shadow_rebuild import rebuild
side = bootstrap(Settings.from_env(Path(sys.argv[1])))
head = side.runner.head()
wall, cpu = time.perf_counter(), time.process_time()
rebuild(side.app, side.settings.read_store_path, side.runner.projectors)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
side.close()
print(json.dumps({"events": head, "wall": wall, "cpu": cpu}))
"""


def write_log(side, events: int, sessions: int) -> None:
    owner = side.bus.execute_now(RegisterUser("rebuild@example.org", "Re", "h"), "bench").value
    ids = [side.bus.execute_now(StartSession(owner.id, f"S{n}", False), str(owner.id)).value.id for n in range(sessions)]
    n = 0
    while side.runner.head() < events:
        batch = [
            _Pending(PostMessage(ids[(n + k) % sessions], owner.id, f"message {n + k} about the launch plan"), "bench", "c", lambda r: None)
            for k in range(500)
        ]
        side.bus._process(batch)
        n += 500


class SQLiteTime(sqlite3.Connection):
    """A connection that adds up the wall time of its `execute` and `executemany` calls (the
    statement's work inside SQLite, commits included), by what it is a connection to: a rebuild's
    shadow ("build") or the read store ("swap", where only the swap writes during a rebuild)."""

    spent: ClassVar[dict[str, float]] = {"build": 0.0, "swap": 0.0}
    by_statement: ClassVar[dict[str, float]] = {}
    """Seconds per phase and statement: where the floor's time goes."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._phase = "build" if Path(str(database)).name.startswith(SHADOW_PREFIX) else "swap"

    def execute(self, *args: Any) -> sqlite3.Cursor:
        started = time.perf_counter()
        try:
            return super().execute(*args)
        finally:
            self._count(args[0], time.perf_counter() - started)

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        started = time.perf_counter()
        try:
            return super().executemany(*args)
        finally:
            self._count(args[0], time.perf_counter() - started)

    def _count(self, sql: str, seconds: float) -> None:
        self.spent[self._phase] += seconds
        statement = f"{self._phase}: {' '.join(sql.split())}"
        self.by_statement[statement] = self.by_statement.get(statement, 0.0) + seconds


def timing_sqlite(read_store: Path) -> Any:
    """`sqlite3.connect` for the read store's files with `SQLiteTime` connections (the log's own
    connection, opened before, is untouched)."""
    connect = sqlite3.connect

    def timed(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if Path(str(database)).parent == read_store.parent and Path(str(database)).name.startswith("read."):
            kwargs["factory"] = SQLiteTime
        return connect(database, *args, **kwargs)

    return timed


def read_and_decode(side) -> tuple[int, float, float]:
    """The ceiling: every stored event read in batches and decoded as the runner decodes them."""
    reader, keys = log_reader(side.app.recorder), side.keys
    wall, cpu = time.perf_counter(), time.process_time()
    at = count = 0
    while rows := reader.rows_after(at, 10_000):
        decode = EventDecoder(keys, text_ids=True, text_times=True, cipher_of=lambda subject: keys.cipher(subject, create=False)).decode
        for row in rows:
            decode(row[1], row[2], row[3], row[4])
        at, count = rows[-1][0], count + len(rows)
    return count, time.perf_counter() - wall, time.process_time() - cpu


def _rate(events: int, seconds: float) -> int:
    return round(events / seconds) if seconds > 0 else 0


def measure(data: Path, workers: int = 1, profile: bool = False) -> dict[str, Any]:
    """In a fresh process (no heap left over from writing the log): the ceiling, then the
    rebuild in one process, its profile (a run of its own), and the rebuild in `workers` processes."""
    side = bootstrap(Settings.from_env(data))
    SQLiteTime.spent.update(build=0.0, swap=0.0)
    SQLiteTime.by_statement.clear()
    try:
        head = side.runner.head()
        decoded, ceiling_wall, ceiling_cpu = read_and_decode(side)
        built: list[float] = []
        connect, sqlite3.connect = sqlite3.connect, timing_sqlite(side.settings.read_store_path)
        try:
            started, cpu = time.perf_counter(), time.process_time()
            rebuild(
                side.app,
                side.settings.read_store_path,
                side.runner.projectors,
                lambda done, at: built.append(time.perf_counter()) if done >= at and not built else None,
            )
            total, total_cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            sqlite3.connect = connect
        found: dict[str, Any] = {
            "events": head,
            "decoded": decoded,
            "ceiling_wall": ceiling_wall,
            "ceiling_cpu": ceiling_cpu,
            "wall": total,
            "cpu": total_cpu,
            "replay": (built[0] - started) if built else total,
            "sqlite_build": SQLiteTime.spent["build"],
            "sqlite_swap": SQLiteTime.spent["swap"],
            "sqlite_statements": dict(sorted(SQLiteTime.by_statement.items(), key=lambda item: -item[1])[:12]),
        }
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(rebuild, side.app, side.settings.read_store_path, side.runner.projectors)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
            found["profile"] = out.getvalue()
        if workers > 1:
            started = time.perf_counter()
            rebuild(side.app, side.settings.read_store_path, side.runner.projectors, settings=side.settings, workers=workers)
            found["parallel_wall"] = time.perf_counter() - started
        found["positions"] = side.runner.positions()
    finally:
        side.close()
    return found


def _in_process(code: Path | None, args: list[str]) -> dict[str, Any]:
    """`python -c` of a fresh interpreter, with `code` (a checkout) first on its path."""
    env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else dict(os.environ)
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(events: int, sessions: int = 50, workers: int = 1, before: Path | None = None, profile: bool = False) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="chronicle-rebuild-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir(mode=0o700)
        side = bootstrap(Settings.from_env(data))
        try:
            write_log(side, events, sessions)
            side.runner.catch_up()
        finally:
            side.close()
        old = None
        if before is not None:  # the older checkout's rebuild, on a copy of the same log, just before ours
            copy = Path(tmp) / "before"
            shutil.copytree(data, copy)
            old = _in_process(before, ["-c", _REBUILD_ELSEWHERE, str(copy)])
        ours = Path(__file__).resolve().parent.parent
        new = _in_process(
            ours, ["-m", "benchmarks.rebuild", "--measure", str(data), "--workers", str(workers), *(["--profile"] if profile else [])]
        )
    head = new["events"]
    floor = new["ceiling_wall"] + new["sqlite_build"] + new["sqlite_swap"]
    assert new["decoded"] == head and min(new["positions"].values()) == head
    result: dict[str, object] = {
        "events": head,
        "projectors": len(new["positions"]),
        "ceiling_events_per_s": _rate(head, new["ceiling_wall"]),
        "ceiling_events_per_cpu_s": _rate(head, new["ceiling_cpu"]),
        "replay_seconds": round(new["replay"], 2),
        "total_seconds": round(new["wall"], 2),
        "replay_events_per_s": _rate(head, new["replay"]),
        "rebuild_events_per_s": _rate(head, new["wall"]),
        "rebuild_events_per_cpu_s": _rate(head, new["cpu"]),
        "rebuild_of_ceiling_wall": round(new["ceiling_wall"] / new["wall"], 3),
        "rebuild_of_ceiling_cpu": round(new["ceiling_cpu"] / new["cpu"], 3),
        "sqlite_build_seconds": round(new["sqlite_build"], 3),
        "sqlite_swap_seconds": round(new["sqlite_swap"], 3),
        "sqlite_slowest_statements_seconds": {sql: round(seconds, 3) for sql, seconds in new["sqlite_statements"].items()},
        "floor_seconds": round(floor, 2),
        "floor_events_per_s": _rate(head, floor),
        "floor_of_ceiling": round(new["ceiling_wall"] / floor, 3),
        "rebuild_of_floor": round(floor / new["wall"], 3),
    }
    if "parallel_wall" in new:
        result[f"rebuild_{workers}_processes_events_per_s"] = _rate(head, new["parallel_wall"])
        result[f"rebuild_{workers}_processes_of_ceiling_wall"] = round(new["ceiling_wall"] / new["parallel_wall"], 3)
    if old is not None:
        result["before_rebuild_events_per_s"] = _rate(old["events"], old["wall"])
        result["before_rebuild_events_per_cpu_s"] = _rate(old["events"], old["cpu"])
        result["before_rebuild_of_ceiling_cpu"] = round(new["ceiling_cpu"] / old["cpu"], 3)
    if "profile" in new:
        result["profile"] = new["profile"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1, help="also rebuild with this many processes (groups of projectors)")
    parser.add_argument("--before", type=Path, help="a checkout of another commit: its rebuild on a copy of the same log")
    parser.add_argument("--profile", action="store_true", help="cProfile the one-process rebuild; print its top functions")
    parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the measuring process, on a written log
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.workers, args.profile)))
        return
    result = run(args.events, workers=args.workers, before=args.before, profile=args.profile)
    profile = result.pop("profile", None)
    print(json.dumps(result, indent=2))
    if profile:
        print(profile)
    save_json(args.json, result)


if __name__ == "__main__":
    main()
