"""Rebuild benchmark: writes a log of N message events over 50 sessions (group commits of 500
through the command bus), then rebuilds every read model the way `chronicle projections
rebuild --all` does (replay into a scratch shadow, catch up, swap) and reports events/s for
the replay and for the whole rebuild including the swap.

    python -m benchmarks.rebuild --events 1000000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from application.command_bus import _Pending
from benchmarks.report import save_json
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.shadow_rebuild import rebuild


def run(events: int, sessions: int = 50) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="chronicle-rebuild-") as tmp:
        side = bootstrap(Settings.from_env(Path(tmp)))
        try:
            owner = side.bus.execute_now(RegisterUser("rebuild@example.org", "Re", "h"), "bench").value
            ids = [side.bus.execute_now(StartSession(owner.id, f"S{n}", False), str(owner.id)).value.id for n in range(sessions)]
            n = 0
            while side.runner.head() < events:
                batch = [
                    _Pending(
                        PostMessage(ids[(n + k) % sessions], owner.id, f"message {n + k} about the launch plan"),
                        "bench",
                        "c",
                        lambda r: None,
                    )
                    for k in range(500)
                ]
                side.bus._process(batch)
                n += 500
            head = side.runner.head()
            built: list[float] = []
            started = time.perf_counter()
            rebuild(
                side.app,
                side.settings.read_store_path,
                side.runner.projectors,
                lambda done, at: built.append(time.perf_counter()) if done >= at else None,
            )
            total = time.perf_counter() - started
            replay = (built[0] - started) if built else total
            projected = side.runner.positions()
        finally:
            side.close()
    assert min(projected.values()) == head
    return {
        "events": head,
        "projectors": len(projected),
        "replay_seconds": round(replay, 2),
        "total_seconds": round(total, 2),
        "replay_events_per_s": round(head / replay),
        "rebuild_events_per_s": round(head / total),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    args = parser.parse_args()
    result = run(args.events)
    print(json.dumps(result, indent=2))
    save_json(args.json, result)


if __name__ == "__main__":
    main()
