"""Audit benchmark: builds an event log (one session of N messages among other sessions' traffic),
then measures the replay of that session from the log (median of 5), hash-chain verification
(events/s) and a filtered export (events/s).

    python -m benchmarks.audit --session-messages 10000 --other-events 90000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from benchmarks.report import save_json
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.audit_log import AuditLog
from infrastructure.storage.event_chain import verify


async def _fill(side, session_messages: int, other_events: int) -> tuple:  # type: ignore[no-untyped-def]
    owner = (await side.bus.execute(RegisterUser("ann@example.org", "Ann", "h"), "bench")).value
    audited = (await side.bus.execute(StartSession(owner.id, "Audited", False), str(owner.id))).value
    others = [(await side.bus.execute(StartSession(owner.id, f"Other {n}", False), str(owner.id))).value for n in range(20)]

    async def post(session_id, count: int) -> None:  # type: ignore[no-untyped-def]
        for n in range(count):
            await side.bus.execute(PostMessage(session_id, owner.id, f"message {n} about the launch"), str(owner.id))

    per_client = 50
    jobs = [post(audited.id, session_messages // per_client) for _ in range(per_client)]
    jobs += [post(others[n % len(others)].id, other_events // per_client) for n in range(per_client)]
    await asyncio.gather(*jobs)
    return audited.id


def run(session_messages: int, other_events: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="chronicle-audit-") as tmp:
        side = bootstrap(Settings.from_env(Path(tmp)))
        side.bus.start()
        try:
            session_id = asyncio.run(_fill(side, session_messages, other_events))
        finally:
            side.bus.stop()
        head = side.runner.head()
        log = AuditLog(side.settings.event_store_path, side.reader.mapper)
        replays = []
        for _ in range(5):
            started = time.perf_counter()
            timeline = log.timeline(session_id, head)
            replays.append((time.perf_counter() - started) * 1000)
        assert len(timeline.messages) == session_messages
        started = time.perf_counter()
        checked = verify(side.settings.event_store_path)
        verify_seconds = time.perf_counter() - started
        assert checked.ok and checked.events == head
        started, after, exported = time.perf_counter(), 0, 0
        while after < head:
            found, after = log.events(after, 1000, session=session_id)
            exported += len(found)
        export_seconds = time.perf_counter() - started
        side.close()
    return {
        "events": head,
        "session_messages": session_messages,
        "replay_ms_median": round(statistics.median(replays), 1),
        "replay_ms_min": round(min(replays), 1),
        "verify_events_per_s": round(head / verify_seconds),
        "export_session_events_per_s": round(exported / export_seconds),
        "exported": exported,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--session-messages", type=int, default=10_000)
    parser.add_argument("--other-events", type=int, default=90_000)
    parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    args = parser.parse_args()
    result = run(args.session_messages, args.other_events)
    print(json.dumps(result, indent=2))
    save_json(args.json, result)


if __name__ == "__main__":
    main()
