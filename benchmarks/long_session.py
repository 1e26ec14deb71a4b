"""Does posting get slower as a session grows? Posts N messages to ONE session through the
command bus (group commits of 500) and compares the cost of a group of 100 posts at the
start with one at the end.

    python -m benchmarks.long_session --messages 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from application.command_bus import _Pending
from benchmarks.report import save_json
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings


def _group(side, session_id, author_id, size: int) -> float:
    batch = [
        _Pending(PostMessage(session_id, author_id, "a message of ordinary length"), "bench", "c", lambda r: None) for _ in range(size)
    ]
    started = time.perf_counter()
    side.bus._process(batch)
    elapsed = time.perf_counter() - started
    assert all(not isinstance(p.result, BaseException) for p in batch)
    return elapsed


def measure(messages: int, repeats: int = 20) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="chronicle-long-") as tmp:
        side = bootstrap(Settings.from_env(Path(tmp)))
        try:
            owner = side.bus.execute_now(RegisterUser("long@example.org", "Long", "h"), "bench").value
            session = side.bus.execute_now(StartSession(owner.id, "Long"), str(owner.id)).value
            early = [_group(side, session.id, owner.id, 100) / 100 for _ in range(repeats)]
            while side.runner.head() < messages:
                _group(side, session.id, owner.id, 500)
            late = [_group(side, session.id, owner.id, 100) / 100 for _ in range(repeats)]
            side.runner.catch_up()
        finally:
            side.close()
    early_us, late_us = statistics.median(early) * 1e6, statistics.median(late) * 1e6
    return {
        "messages": messages,
        "early_us_per_post": round(early_us, 1),
        "late_us_per_post": round(late_us, 1),
        "ratio": round(late_us / early_us, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    args = parser.parse_args()
    result = measure(args.messages)
    save_json(args.json, result)
    print("| messages in the session | µs per post near message 10 | µs per post at the end | ratio |")
    print("|---|---|---|---|")
    print(f"| {result['messages']:,} | {result['early_us_per_post']} | {result['late_us_per_post']} | {result['ratio']} |")


if __name__ == "__main__":
    main()
