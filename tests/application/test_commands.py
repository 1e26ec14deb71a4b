"""Commands through the command bus, on a real SQLite event store."""

from uuid import uuid4

import anyio
import pytest

from application.accounts import RegisterUser, user_by_email
from application.assistant import wants_reply
from application.chat import (
    AddMember,
    DeleteMessage,
    EditMessage,
    PostMessage,
    RemoveMember,
    StartSession,
    UpdateSession,
)
from domain.aggregate import DomainError, InvalidValue
from domain.chat_session import ChatSession, SessionIsArchived, SessionNotFound
from domain.message import Message
from domain.user import EmailAlreadyRegistered
from infrastructure.bootstrap import bootstrap
from tests.backend import settings_for
from tests.conftest import event_count


def register(side, email="ann@example.org"):
    return side.bus.execute_now(RegisterUser(email, "Ann", "hash"), "test").value


def test_register_appends_the_user_and_the_email_claim_and_login_finds_it(write_side):
    outcome = write_side.bus.execute_now(RegisterUser("Ann@Example.org", "Ann", "hash"), "test")
    assert outcome.position == 2 == event_count(write_side)
    assert user_by_email(write_side.app, "ann@EXAMPLE.org").id == outcome.value.id


def test_a_second_registration_of_the_same_email_in_other_case_is_refused_and_appends_nothing(write_side):
    register(write_side, "ann@example.org")
    with pytest.raises(EmailAlreadyRegistered):
        register(write_side, "ANN@example.org")
    assert event_count(write_side) == 2


def test_a_refused_command_appends_no_event(write_side):
    owner = register(write_side)
    session = write_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    before = event_count(write_side)
    for command in [
        PostMessage(session.id, uuid4(), "stranger"),
        PostMessage(session.id, owner.id, ""),
        PostMessage(uuid4(), owner.id, "no such session"),
        UpdateSession(session.id, owner.id, title=""),
        AddMember(session.id, owner.id, uuid4()),
        EditMessage(session.id, uuid4(), owner.id, "x"),
    ]:
        with pytest.raises(DomainError):
            write_side.bus.execute_now(command, str(owner.id))
    assert event_count(write_side) == before


def test_a_session_id_that_names_another_kind_of_aggregate_is_not_found(write_side):
    owner = register(write_side)
    with pytest.raises(SessionNotFound):
        write_side.bus.execute_now(PostMessage(owner.id, owner.id, "hi"), str(owner.id))


def test_post_edit_delete_and_membership_are_stored_with_positions(write_side):
    bus = write_side.bus
    owner, guest = register(write_side), register(write_side, "guest@example.org")
    session = bus.execute_now(StartSession(owner.id, "Plans", assistant=False), str(owner.id)).value
    assert session.assistant is False
    added = bus.execute_now(AddMember(session.id, owner.id, guest.id), str(owner.id))
    posted = bus.execute_now(PostMessage(session.id, guest.id, "hello"), str(guest.id))
    edited = bus.execute_now(EditMessage(session.id, posted.value.message.id, guest.id, "hello!"), str(guest.id))
    deleted = bus.execute_now(DeleteMessage(session.id, posted.value.message.id, owner.id), str(owner.id))
    left = bus.execute_now(RemoveMember(session.id, guest.id, guest.id), str(guest.id))
    positions = [added.position, posted.position, edited.position, deleted.position, left.position]
    assert positions == sorted(positions) and len(set(positions)) == 5
    message = write_side.app.repository.get(posted.value.message.id)
    assert isinstance(message, Message) and message.deleted and message.version == 3
    assert not write_side.app.repository.get(session.id).is_member(guest.id)


def test_a_posted_message_is_not_kept_in_the_aggregate_cache_and_an_edit_loads_it_from_the_store(write_side):
    bus, cache = write_side.bus, write_side.app.repository.cache
    owner = register(write_side)
    session = bus.execute_now(StartSession(owner.id, "Plans", assistant=False), str(owner.id)).value
    posted = bus.execute_now(PostMessage(session.id, owner.id, "hello"), str(owner.id)).value.message
    cached = set(cache.cache)
    assert session.id in cached and owner.id in cached  # what every post needs stays
    assert posted.id not in cached  # messages are most of what is saved, and rarely commanded again
    edited = bus.execute_now(EditMessage(session.id, posted.id, owner.id, "hello!"), str(owner.id))
    assert edited.position > 0 and posted.id in set(cache.cache)  # loaded back for the edit, then kept
    message = write_side.app.repository.get(posted.id)
    assert isinstance(message, Message) and message.content == "hello!" and message.version == 2


def test_a_repeated_client_message_id_answers_the_first_message_and_appends_nothing(write_side):
    owner = register(write_side)
    session = write_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    first = write_side.bus.execute_now(PostMessage(session.id, owner.id, "hi", "c-1"), str(owner.id))
    head = event_count(write_side)
    again = write_side.bus.execute_now(PostMessage(session.id, owner.id, "hi", "c-1"), str(owner.id))
    assert again.value.message.id == first.value.message.id
    assert again.value.first_position == first.position
    assert event_count(write_side) == head


def test_events_carry_the_actor_and_correlation_id_of_the_command(write_side):
    owner = register(write_side)
    write_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id), "corr-7")
    last = write_side.app.recorder.select_notifications(start=event_count(write_side), limit=1)[0]
    event = write_side.app.mapper.to_domain_event(last)
    assert (event.actor_id, event.correlation_id) == (str(owner.id), "corr-7")


@pytest.mark.anyio
async def test_concurrent_commands_are_committed_in_groups_and_none_is_lost(write_side):
    bus = write_side.bus
    owner = register(write_side)
    session = bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    bus.start()
    results = []

    async def post(i: int) -> None:
        results.append(await bus.execute(PostMessage(session.id, owner.id, f"m{i}"), str(owner.id)))

    batches_before = bus.batches
    async with anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(post, i)
    assert len({r.position for r in results}) == 300
    assert bus.batches - batches_before < 300
    notifications = write_side.app.recorder.select_notifications(start=1, limit=1000)
    contents = [write_side.app.mapper.to_domain_event(n) for n in notifications]
    assert sorted(e.content for e in contents if isinstance(e, Message.MessagePosted)) == sorted(f"m{i}" for i in range(300))


@pytest.mark.anyio
async def test_a_refused_command_in_a_group_fails_alone(write_side):
    bus = write_side.bus
    owner = register(write_side)
    session = bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    bus.start()
    outcomes: dict[str, object] = {}

    async def post(key: str, content: str) -> None:
        try:
            outcomes[key] = await bus.execute(PostMessage(session.id, owner.id, content), str(owner.id))
        except InvalidValue as error:
            outcomes[key] = error

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(post, f"ok{i}", "fine")
            tg.start_soon(post, f"bad{i}", "")
    assert all(isinstance(outcomes[f"bad{i}"], InvalidValue) for i in range(50))
    assert all(not isinstance(outcomes[f"ok{i}"], Exception) for i in range(50))
    assert event_count(write_side) == 3 + 50


def test_two_writers_renaming_one_session_concurrently_never_lose_an_update(write_side, data_dir):
    """A second application on the same file stands for another process. Both rename the
    same session at once: stale saves conflict and are retried against fresh state."""
    import threading

    from application.command_bus import CommandConflict

    owner = register(write_side)
    session_id = write_side.bus.execute_now(StartSession(owner.id, "v0"), str(owner.id)).value.id
    other = bootstrap(settings_for(data_dir))
    succeeded: list[str] = []
    gave_up: list[str] = []

    def rename_many(side, prefix: str) -> None:
        for i in range(40):
            try:
                side.bus.execute_now(UpdateSession(session_id, owner.id, title=f"{prefix}{i}"), str(owner.id))
                succeeded.append(f"{prefix}{i}")
            except CommandConflict:
                gave_up.append(f"{prefix}{i}")

    try:
        threads = [threading.Thread(target=rename_many, args=(s, p)) for s, p in ((write_side, "a"), (other, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fresh = bootstrap(settings_for(data_dir))
        session = fresh.app.repository.get(session_id)
        fresh.close()
        renames = [
            write_side.app.mapper.to_domain_event(n).title
            for n in write_side.app.recorder.select_notifications(start=1, limit=1000)
            if n.topic.endswith("SessionRenamed")
        ]
        assert sorted(renames) == sorted(succeeded)
        assert session.version == 1 + len(succeeded)
        assert len(succeeded) + len(gave_up) == 80 and len(succeeded) >= 60
    finally:
        other.close()


def test_archiving_is_final_for_posts(write_side):
    from application.chat import ArchiveSession

    owner = register(write_side)
    session = write_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    write_side.bus.execute_now(ArchiveSession(session.id, owner.id), str(owner.id))
    with pytest.raises(SessionIsArchived):
        write_side.bus.execute_now(PostMessage(session.id, owner.id, "late"), str(owner.id))


def test_a_post_repeated_within_one_group_is_answered_with_the_first_after_it_is_saved(write_side):
    from application.command_bus import _Pending

    owner = register(write_side)
    session = write_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    head = event_count(write_side)
    group = [_Pending(PostMessage(session.id, owner.id, "hi", "same"), str(owner.id), "c", lambda r: None) for _ in range(3)]
    write_side.bus._process(group)
    first, *repeats = [p.result for p in group]
    assert event_count(write_side) == head + 1 == first.position
    assert first.value.first_position is None
    for repeat in repeats:
        assert repeat.value.message.id == first.value.message.id
        assert repeat.value.first_position == first.position


def test_a_command_that_fails_after_changing_an_aggregate_fails_alone_and_leaves_no_trace(write_side):
    """The group is then run command by command; the failed change is not saved and the
    cached aggregate is not left holding it."""
    from dataclasses import dataclass

    from application.command_bus import CommandBus, _Pending
    from infrastructure.bootstrap import HANDLERS
    from infrastructure.storage.event_store import event_log

    @dataclass(frozen=True)
    class RenameThenCrash:
        session_id: object
        by: object

    def rename_then_crash(uow, cmd):
        session = uow.get(ChatSession, cmd.session_id, SessionNotFound())
        session.rename(cmd.by, "half-done")
        raise RuntimeError("crashed midway")

    bus = CommandBus(write_side.app, event_log(write_side.app), {**HANDLERS, RenameThenCrash: rename_then_crash})
    owner = register(write_side)
    session = bus.execute_now(StartSession(owner.id, "Original"), str(owner.id)).value
    group = [
        _Pending(PostMessage(session.id, owner.id, "before"), str(owner.id), "c", lambda r: None),
        _Pending(RenameThenCrash(session.id, owner.id), str(owner.id), "c", lambda r: None),
        _Pending(PostMessage(session.id, owner.id, "after"), str(owner.id), "c", lambda r: None),
    ]
    head = event_count(write_side)
    bus._process(group)
    assert isinstance(group[1].result, RuntimeError)
    assert all(not isinstance(p.result, BaseException) for p in (group[0], group[2]))
    assert event_count(write_side) == head + 2
    assert write_side.app.repository.get(session.id).title == "Original"


@pytest.mark.parametrize(
    "content, answered",
    [
        ("When is the launch?", True),
        ("Is it Friday? I think so.", True),
        ("@assistant list the risks", True),
        ("Assistant, what did Ann say", True),
        ("assistant: summarise", True),
        ("The launch is on Friday.", False),
        ("Thanks!", False),
        ("The URL is https://x.org/?q=1", False),
        ("an assistant manager joined", False),
    ],
)
def test_the_assistant_answers_questions_and_messages_addressed_to_it(content, answered):
    assert wants_reply(content) is answered
    assert wants_reply(content, "all") is True
