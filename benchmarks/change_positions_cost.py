"""What the `changes` projector (ADR-045) adds to a rebuild: a log of N message events over 50
sessions, rebuilt into shadows with every projector but `changes`, and with every projector,
alternating, in the same process.

    python -m benchmarks.change_positions_cost --events 20000 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from application.command_bus import _Pending
from benchmarks.report import save_json
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.shadow_rebuild import rebuild


def run(events: int, rounds: int = 2, sessions: int = 50) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chronicle-changes-") as tmp:
        side = bootstrap(Settings.from_env(Path(tmp)))
        try:
            owner = side.bus.execute_now(RegisterUser("changes@example.org", "Ch", "h"), "bench").value
            ids = [side.bus.execute_now(StartSession(owner.id, f"S{n}", False), str(owner.id)).value.id for n in range(sessions)]
            n = 0
            while side.runner.head() < events:
                side.bus._process(
                    [
                        _Pending(
                            PostMessage(ids[(n + k) % sessions], owner.id, f"message {n + k} about the plan"), "bench", "c", lambda r: None
                        )
                        for k in range(500)
                    ]
                )
                n += 500
            every = side.runner.projectors
            without = [p for p in every if p.name != "changes"]
            seconds: dict[str, list[float]] = {"without_changes": [], "with_changes": []}
            for _ in range(rounds):
                for name, projectors in (("without_changes", without), ("with_changes", every)):
                    started = time.perf_counter()
                    rebuild(side.app, side.settings.read_store_path, projectors)
                    seconds[name].append(time.perf_counter() - started)
            head = side.runner.head()
        finally:
            side.close()
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "events": head,
        "seconds": seconds,
        "events_per_s": {name: head / value for name, value in median.items()},
        "with_to_without_time": median["with_changes"] / median["without_changes"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.events, args.rounds)
    print(result)
    save_json(args.json, result)


if __name__ == "__main__":
    main()
