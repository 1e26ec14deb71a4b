"""Audit replays through the fast read path and the snapshot cache give exactly what the reference
replay gives (every event decoded by eventsourcing's mapper and folded from the start), at any
as-of point, before and after an erasure."""

from __future__ import annotations

import random
from uuid import UUID

import msgspec
import pytest
from eventsourcing.persistence import StoredEvent

from application.accounts import RegisterUser
from application.chat import AddMember, DeleteMessage, EditMessage, PostMessage, RemoveMember, StartSession, UpdateSession
from application.documents import AttachDocument, CompleteConversion, DetachDocument, RequestConversion, StartConversion, UploadDocument
from application.erasure import erase_person
from application.session_timeline import SessionTimeline
from domain.conversion import TARGETS, conversion_id_for
from domain.user import ERASED
from infrastructure.storage.audit_log import AuditLog
from infrastructure.storage.event_chain import session_of
from infrastructure.storage.event_reading import EventDecoder
from infrastructure.storage.timeline_snapshots import TimelineSnapshots


def stored_events(side, as_of: int | None = None) -> list[tuple[int, StoredEvent]]:
    """Every stored event up to `as_of` with its position, as the store's recorder reads them
    (SQLite or PostgreSQL)."""
    head = side.reader.recorder.max_notification_id() or 0
    stop = head if as_of is None else min(as_of, head)
    notifications = side.reader.recorder.select_notifications(start=1, limit=max(stop, 1), stop=stop) if stop else []
    return [(n.id, StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)) for n in notifications]


def reference_timeline(side, session_id: UUID, as_of: int) -> SessionTimeline:
    """The replay as it was before the fast path: the session's events (by the rule the chain's
    `session` column is written with) and its documents' events, each decoded by the sealing
    mapper, folded from the start."""
    events = stored_events(side, as_of)
    rows = [(p, e) for p, e in events if session_of(UUID(str(e.originator_id)).hex, e.topic, e.state) == session_id.hex]
    documents = {UUID(str(e.originator_id)) for _, e in rows if e.topic == "domain.document:Document.DocumentAttached"}
    aggregates = {*documents, *(conversion_id_for(d, t) for d in documents for t in TARGETS)}
    rows += [(p, e) for p, e in events if UUID(str(e.originator_id)) in aggregates]
    timeline = SessionTimeline(session_id)
    for position, event in sorted(rows, key=lambda r: r[0]):
        timeline.apply(side.reader.mapper.to_domain_event(event), position)
    return timeline


def audit_log(side, snapshots: TimelineSnapshots) -> AuditLog:
    """The auditors' reader on the store's backend (the SQLite file, or the PostgreSQL recorder)."""
    source = side.settings.event_store_path if side.settings.database_url is None else side.reader.recorder
    return AuditLog(source, side.reader.mapper, snapshots)


def same(replayed: SessionTimeline, reference: SessionTimeline) -> bool:
    """The same as JSON, which is how the API and `audit replay --format json` show it (a replay
    keeps ids as their text, where the mapper's events hold `UUID`s)."""
    return msgspec.json.encode([replayed.view(), replayed.steps]) == msgspec.json.encode([reference.view(), reference.steps])


def story(side, rng: random.Random) -> dict:
    """A session with members joining and leaving, posts, edits and deletions by several people, a
    rename, and documents: one attached from the start, one uploaded and converted elsewhere before
    it is attached here, then detached."""
    bus = side.bus

    def run(command, actor):
        outcome = bus.execute_now(command, str(actor))
        assert outcome.value is not None, outcome
        return outcome.value

    ann, bob, cat = (run(RegisterUser(f"{n}@example.org", n.title(), "hash"), "test") for n in ("ann", "bob", "cat"))
    session = run(StartSession(ann.id, "Plans", assistant=False), ann.id)
    elsewhere = run(StartSession(cat.id, "Elsewhere", assistant=False), cat.id)
    early = run(UploadDocument(cat.id, "early.md", "text/markdown", 10, "a" * 64, elsewhere.id), cat.id)
    conversion = run(RequestConversion(early.id, cat.id, "text"), cat.id)
    run(StartConversion(conversion.id), cat.id)
    run(CompleteConversion(conversion.id, "b" * 64, 5, None, 5, 1), cat.id)
    members, messages = {ann.id}, []
    for step in range(160):
        choice = rng.random()
        if choice < 0.08:
            user = rng.choice([bob, cat])
            if user.id in members:
                run(RemoveMember(session.id, ann.id, user.id), ann.id)
                members.discard(user.id)
            else:
                run(AddMember(session.id, ann.id, user.id), ann.id)
                members.add(user.id)
        elif choice < 0.2 and messages:
            author, message_id = rng.choice(messages)
            if author in members:
                run(EditMessage(session.id, message_id, author, f"edited at {step}"), author)
        elif choice < 0.26 and messages:
            author, message_id = messages.pop(rng.randrange(len(messages)))
            run(DeleteMessage(session.id, message_id, ann.id), ann.id)
        else:
            author = rng.choice(sorted(members))
            messages.append((author, run(PostMessage(session.id, author, f"said at {step}"), author).message.id))
        if step == 40:
            run(UpdateSession(session.id, ann.id, title="Plans, renamed"), ann.id)
            document = run(UploadDocument(ann.id, "plan.md", "text/markdown", 10, "c" * 64, session.id), ann.id)
        if step == 90:
            if cat.id not in members:
                run(AddMember(session.id, ann.id, cat.id), ann.id)
                members.add(cat.id)
            run(AttachDocument(early.id, session.id, cat.id), cat.id)
            attached_at = side.runner.head()
        if step == 120:
            run(DetachDocument(document.id, session.id, ann.id), ann.id)
    return {"session": session, "ann": ann, "bob": bob, "attached_at": attached_at}


@pytest.mark.parametrize("seed", [1, 2])
def test_snapshot_assisted_replays_equal_full_replays_at_random_points_and_after_an_erasure(write_side, seed):
    rng = random.Random(seed)
    made = story(write_side, rng)
    session_id = made["session"].id
    snapshots = TimelineSnapshots(every=7)
    log = audit_log(write_side, snapshots)
    head = write_side.runner.head()
    for as_of in [head, *rng.sample(range(1, head + 1), 60)]:
        assert same(log.timeline(session_id, as_of), reference_timeline(write_side, session_id, as_of)), as_of
    assert len(snapshots) > 10
    bob_posted = [m for m in log.timeline(session_id, head).messages.values() if m["author_id"] == str(made["bob"].id)]
    assert bob_posted and all(m["content"] != ERASED for m in bob_posted)

    erase_person(write_side.reader, write_side.keys, lambda command: write_side.bus.execute_now(command, "admin"), made["bob"].id)
    for as_of in [head, *rng.sample(range(1, head + 1), 30)]:
        replayed = log.timeline(session_id, as_of)
        assert same(replayed, reference_timeline(write_side, session_id, as_of)), as_of
    erased = [m for m in log.timeline(session_id, head).messages.values() if m["author_id"] == str(made["bob"].id)]
    assert erased and all(m["content"] in (ERASED, None) for m in erased)


def test_a_document_attached_after_a_snapshot_with_events_before_it_is_replayed_from_the_start(write_side):
    made = story(write_side, random.Random(4))
    session_id, attached_at = made["session"].id, made["attached_at"]
    log = audit_log(write_side, TimelineSnapshots(every=1))
    assert same(log.timeline(session_id, attached_at - 1), reference_timeline(write_side, session_id, attached_at - 1))
    after = log.timeline(session_id, attached_at + 3)
    assert same(after, reference_timeline(write_side, session_id, attached_at + 3))
    assert "early.md" in [d.get("filename") for d in after.documents.values()]


def test_the_fast_decoder_gives_what_the_mapper_gives_for_every_stored_event(write_side):
    story(write_side, random.Random(3))
    decoder, as_text = EventDecoder(write_side.keys), EventDecoder(write_side.keys, text_ids=True)
    events = [event for _, event in stored_events(write_side)]
    assert len({e.topic for e in events}) > 12
    for event in events:
        row = (UUID(str(event.originator_id)).hex, event.originator_version, event.topic, event.state)
        fast, text = decoder.decode(*row), as_text.decode(*row)
        slow = write_side.reader.mapper.to_domain_event(event)
        assert type(fast) is type(slow) and vars(fast) == vars(slow), event.topic
        ids_as_text = {key: str(value) if isinstance(value, UUID) else value for key, value in vars(slow).items()}
        assert type(text) is type(slow) and vars(text) == ids_as_text, event.topic


def test_snapshots_of_an_older_key_generation_are_never_served():
    snapshots = TimelineSnapshots(every=1)
    timeline = SessionTimeline(UUID(int=1))
    from infrastructure.storage.timeline_snapshots import TimelineSnapshot

    snapshots.keep(UUID(int=1), 3, TimelineSnapshot(10, 1, frozenset(), timeline))
    assert snapshots.nearest(UUID(int=1), 3, 12) is not None
    assert snapshots.nearest(UUID(int=1), 4, 12) is None
    snapshots.keep(UUID(int=1), 3, TimelineSnapshot(11, 2, frozenset(), timeline))  # read before the erasure: refused
    assert snapshots.nearest(UUID(int=1), 3, 12) is None and len(snapshots) == 0
