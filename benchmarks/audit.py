"""Audit benchmark: builds an event log (one session of N messages among other sessions' traffic),
then measures the replay of that session from the log beside the raw SQLite read of the same rows
(cold: no snapshots; warm at the head; at random as-of points; moved back by 100 positions),
hash-chain verification (events/s) and a filtered export (events/s).

The replay's floor, in the same run: what any replay of these rows must do — read them, parse
each one's JSON (msgspec) and open each sealed message (AES-GCM) — with nothing built from them;
and the replay's two stages apart, on rows already read: decoding them (the fast path) and
folding the decoded events into a timeline.

    python -m benchmarks.audit --session-messages 10000 --other-events 90000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import msgspec

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from application.session_timeline import SessionTimeline
from benchmarks.report import save_json
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.audit_log import AuditLog
from infrastructure.storage.event_chain import verify
from infrastructure.storage.event_reading import EventDecoder
from infrastructure.storage.sealing import open_sealed


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


def _ms(action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _replays(side, session_id, head: int, session_messages: int) -> dict:  # type: ignore[no-untyped-def]
    """Replay times beside the ceiling, all in this run: reading the session's rows raw from
    SQLite (the same query, no decoding). `cold`: a new AuditLog each time (no snapshots);
    `warm`: one AuditLog whose snapshots earlier replays filled; random points; a move of 100."""
    path = side.settings.event_store_path
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    raw_sql = (
        "SELECT s.rowid, s.originator_id, s.originator_version, s.topic, s.state FROM event_chain c"
        " JOIN stored_events s ON s.rowid = c.position WHERE c.session=? AND c.position <= ? ORDER BY c.position"
    )
    raw = [_ms(lambda: db.execute(raw_sql, (session_id.hex, head)).fetchall()) for _ in range(5)]
    rows = db.execute(raw_sql, (session_id.hex, head)).fetchall()
    db.close()
    parse = msgspec.json.Decoder().decode
    parsed = [_ms(lambda: [parse(row[4]) for row in rows]) for _ in range(5)]
    sealed = [content for content in (parse(row[4]).get("content") for row in rows) if isinstance(content, str)]
    keys, ciphers = side.reader.mapper.keys, {}  # a key looked up once per subject, as a replay does

    def cipher_of(subject):  # type: ignore[no-untyped-def]
        if subject not in ciphers:
            ciphers[subject] = keys.stored_cipher(subject)
        return ciphers[subject]

    opened = [_ms(lambda: [open_sealed(content, cipher_of) for content in sealed]) for _ in range(5)]

    def decode_all() -> list:  # type: ignore[type-arg]
        decode = EventDecoder(keys, text_ids=True).decode  # what a replay decodes with, a fresh one each time
        return [decode(originator, version, topic, state) for _, originator, version, topic, state in rows]

    decoded = [_ms(decode_all) for _ in range(5)]
    events = decode_all()

    def fold_all() -> SessionTimeline:
        timeline = SessionTimeline(session_id)
        for row, event in zip(rows, events, strict=True):
            timeline.apply(event, row[0])
        return timeline

    folded = [_ms(fold_all) for _ in range(5)]
    assert len(fold_all().messages) == session_messages
    cold = []
    for _ in range(5):
        fresh = AuditLog(path, side.reader.mapper)
        cold.append(_ms(lambda fresh=fresh: fresh.timeline(session_id, head)))
    log = AuditLog(path, side.reader.mapper)
    timeline = log.timeline(session_id, head)
    assert len(timeline.messages) == session_messages
    warm = [_ms(lambda: log.timeline(session_id, head)) for _ in range(5)]
    rng = random.Random(17)
    points = [rng.randrange(1, head + 1) for _ in range(20)]
    at_random = [_ms(lambda point=point: log.timeline(session_id, point)) for point in points]
    moved = [_ms(lambda point=point: log.timeline(session_id, max(1, point - 100))) for point in points]
    ceiling = statistics.median(raw)
    floor = ceiling + statistics.median(parsed) + statistics.median(opened)
    return {
        "raw_session_rows_ms_median": round(ceiling, 1),
        "parse_json_ms_median": round(statistics.median(parsed), 1),
        "open_sealed_ms_median": round(statistics.median(opened), 1),
        "floor_ms": round(floor, 1),
        "floor_to_raw": round(floor / ceiling, 2),
        "replay_cold_to_floor": round(statistics.median(cold) / floor, 2),
        "decode_ms_median": round(statistics.median(decoded), 1),
        "fold_ms_median": round(statistics.median(folded), 1),
        "decode_and_fold_to_raw": round((statistics.median(decoded) + statistics.median(folded)) / ceiling, 2),
        "replay_ms_median": round(statistics.median(cold), 1),
        "replay_ms_min": round(min(cold), 1),
        "replay_cold_to_raw": round(statistics.median(cold) / ceiling, 2),
        "replay_warm_head_ms_median": round(statistics.median(warm), 2),
        "replay_warm_head_to_raw": round(statistics.median(warm) / ceiling, 3),
        "replay_random_ms_median": round(statistics.median(at_random), 2),
        "replay_random_ms_max": round(max(at_random), 2),
        "replay_moved_100_ms_median": round(statistics.median(moved), 2),
        "replay_moved_100_ms_max": round(max(moved), 2),
    }


def run(session_messages: int, other_events: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="chronicle-audit-") as tmp:
        side = bootstrap(Settings.from_env(Path(tmp)))
        side.bus.start()
        try:
            session_id = asyncio.run(_fill(side, session_messages, other_events))
        finally:
            side.bus.stop()
        head = side.runner.head()
        replay = _replays(side, session_id, head, session_messages)
        started = time.perf_counter()
        checked = verify(side.settings.event_store_path)
        verify_seconds = time.perf_counter() - started
        assert checked.ok and checked.events == head
        log = AuditLog(side.settings.event_store_path, side.reader.mapper)
        started, after, exported = time.perf_counter(), 0, 0
        while after < head:
            found, after = log.events(after, 1000, session=session_id)
            exported += len(found)
        export_seconds = time.perf_counter() - started
        side.close()
    return {
        "events": head,
        "session_messages": session_messages,
        **replay,
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
