"""The chat engine (infrastructure/workers/chat_engine.py) driven directly: a real write side
in tmp_path (command bus and projection runner in their threads), the local assistant provider
reading the real read store, and the engine in the test's event loop. Covers: a question gets a
grounded, cited reply streamed as ephemeral frames; other messages and sessions without the
assistant get none; a used-up quota is recorded without asking the provider; a timeout and a
cancellation are recorded with the text so far; a reply abandoned by a stop is answered once
after the next start; a question deleted before its turn, or while the engine waits for the read
models, or edited into a statement, gets no reply."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from eventsourcing.application import AggregateNotFoundError

from application.chat import PostMessage
from domain.assistant_reply import AssistantReply, AssistantReplyFailure, reply_id_for
from infrastructure.assistants.local_assistant import LocalAssistant
from infrastructure.storage.read_store import AioSQLiteReadConnection, SQLiteReadStore
from infrastructure.workers.chat_engine import ChatEngine
from tests.projections.projection_log import ChatLog
from tests.waiting import until

pytestmark = pytest.mark.anyio


@pytest.fixture
def running(write_side):
    """The write side as the server runs it: the bus and the runner in their own threads."""
    write_side.runner.start()
    write_side.bus.start()
    return write_side


@pytest.fixture
async def db(running):
    connection = await AioSQLiteReadConnection.open(running.settings.read_store_path)
    yield connection
    await connection.close()


class Engine:
    """Starts a ChatEngine wired as the server wires it, and keeps the frames it publishes."""

    def __init__(self, side, db, *, pace=0.0, grounded_at=None, **options):
        self.side = side
        self.frames: list[dict] = []
        self.positions = SQLiteReadStore(side.settings.read_store_path)
        loop = asyncio.get_running_loop()
        self.engine = ChatEngine(
            side.reader,
            side.bus,
            self.positions,
            LocalAssistant(db, pace_seconds=pace),
            lambda channel, body: self.frames.append(msgspec.json.decode(body)),
            grounded_at=grounded_at or self.grounded_at,
            **options,
        )
        side.bus.on_commit = lambda position: (side.runner.wake(position), loop.call_soon_threadsafe(self.engine.wake))
        self.engine.start()

    async def grounded_at(self, position):
        await until(lambda: min(self.side.runner.positions().values()) >= position, "the read models to catch up")

    async def stop(self):
        await self.engine.stop()
        self.positions.close()

    def outcome(self, message_id):
        try:
            return self.side.reader.repository.get(reply_id_for(message_id))
        except AggregateNotFoundError:
            return None

    async def outcome_of(self, message_id, timeout=10.0):
        return await until(lambda: self.outcome(message_id), f"the outcome of {message_id}", timeout)


async def post(side, session, author, content):
    outcome = await side.bus.execute(PostMessage(session, author, content), str(author))
    return outcome.value.message.id


async def test_a_question_gets_a_reply_citing_an_earlier_message_streamed_in_frames(running, db):
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann, assistant=True)
    earlier = await post(running, session, ann, "The launch date is the fourth of July.")
    engine = Engine(running, db)
    question = await post(running, session, ann, "When is the launch date?")
    reply = await engine.outcome_of(question)
    await engine.stop()
    assert isinstance(reply, AssistantReply) and reply.status == "completed"
    assert "launch" in reply.content and str(earlier) in reply.content
    assert [s["message_id"] for s in reply.sources] == [str(earlier)]
    assert engine.outcome(earlier) is None, "a statement is not a question"
    kinds = [f["type"] for f in engine.frames]
    assert kinds[0] == "reply.started" and set(kinds[1:]) == {"reply.delta"}
    assert [f["seq"] for f in engine.frames[1:]] == list(range(1, len(kinds)))
    assert "".join(f["delta"] for f in engine.frames[1:]) == reply.content


async def test_no_reply_in_a_session_with_the_assistant_off(running, db):
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    quiet, chatty = log.session(ann, "Quiet", assistant=False), log.session(ann, "Chatty")
    unanswered = await post(running, quiet, ann, "is anyone there?")
    engine = Engine(running, db)
    answered = await post(running, chatty, ann, "is anyone there?")
    await engine.outcome_of(answered)  # the engine scans in log order: it has passed the first
    await engine.stop()
    assert engine.outcome(unanswered) is None


async def test_a_used_up_quota_is_recorded_as_a_refusal_without_asking_the_provider(running, db):
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann)

    async def no_quota_left(user_id):
        return False

    engine = Engine(running, db, may_reply=no_quota_left)
    question = await post(running, session, ann, "what now?")
    failure = await engine.outcome_of(question)
    await engine.stop()
    assert isinstance(failure, AssistantReplyFailure) and failure.reason == "quota_exceeded"
    assert engine.frames == []


async def test_a_reply_past_its_timeout_is_recorded_as_failed_with_its_text_so_far(running, db):
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann)
    engine = Engine(running, db, pace=5.0, timeout_seconds=0.2)
    question = await post(running, session, ann, "what is the meaning of all this, really?")
    failure = await engine.outcome_of(question)
    await engine.stop()
    assert isinstance(failure, AssistantReplyFailure) and failure.reason == "timeout"
    [failed] = running.reader.events.get(reply_id_for(question))
    assert failed.partial_content and failed.partial_content == engine.frames[1]["delta"]


async def test_a_failed_reply_records_what_its_text_so_far_drew_on(running, db):
    """Its partial text is sealed with the quoted people's keys too (see test_sealing.py)."""
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann)
    earlier = await post(running, session, ann, "The vault code rotates on Friday.")
    engine = Engine(running, db, pace=5.0, timeout_seconds=0.5)
    question = await post(running, session, ann, "When does the vault code rotate?")
    failure = await engine.outcome_of(question)
    await engine.stop()
    assert isinstance(failure, AssistantReplyFailure) and failure.reason == "timeout"
    [failed] = running.reader.events.get(reply_id_for(question))
    assert failed.partial_content and [s["message_id"] for s in failed.sources] == [str(earlier)]


async def test_a_cancelled_reply_is_recorded_as_cancelled_with_its_text_so_far(running, db):
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann)
    engine = Engine(running, db, pace=5.0)
    question = await post(running, session, ann, "what is the plan for the next quarter?")
    await until(lambda: any(f["type"] == "reply.delta" for f in engine.frames), "the first piece of the reply")
    assert engine.engine.cancel(session, reply_id_for(question))
    reply = await engine.outcome_of(question)
    await engine.stop()
    assert isinstance(reply, AssistantReply) and reply.status == "cancelled"
    assert reply.content == engine.frames[1]["delta"]


async def test_a_reply_abandoned_by_a_stop_is_answered_once_after_the_next_start(running, db):
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann)
    slow = Engine(running, db, pace=5.0)
    question = await post(running, session, ann, "who decided this?")
    await until(lambda: slow.frames, "the reply to start")
    await slow.stop()
    assert slow.outcome(question) is None, "a stop records nothing"
    restarted = Engine(running, db)
    later = await post(running, session, ann, "and why?")
    await restarted.outcome_of(later)
    reply = await restarted.outcome_of(question)
    await restarted.stop()
    assert isinstance(reply, AssistantReply) and reply.status == "completed"
    assert len(list(running.reader.events.get(reply_id_for(question)))) == 1


async def test_a_question_deleted_before_its_turn_gets_no_reply_and_an_edited_one_is_answered_as_it_reads(running, db):
    """Replies can wait behind others (or a restart): the engine answers the question as it is now."""
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann)
    budget = await post(running, session, ann, "The budget is ten thousand pounds.")
    await post(running, session, ann, "The launch is on Friday.")
    deleted = await post(running, session, ann, "is the root password hunter2?")
    log.delete(session, deleted, ann)
    edited = await post(running, session, ann, "When is the launch?")
    log.edit(session, edited, ann, "How big is the budget?")
    engine = Engine(running, db)  # started after both changes: the posts wait in the log
    reply = await engine.outcome_of(edited)
    await engine.stop()
    assert engine.outcome(deleted) is None
    assert [s["message_id"] for s in reply.sources] == [str(budget)], reply.content
    assert not any("hunter2" in f.get("delta", "") for f in engine.frames)


async def test_a_question_edited_into_a_statement_before_its_turn_gets_no_reply(running, db):
    """Whether to answer is decided on the text as it reads when the reply's turn comes."""
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann)
    taken_back = await post(running, session, ann, "Should we move the launch?")
    log.edit(session, taken_back, ann, "Never mind, the launch stays on Friday.")
    engine = Engine(running, db, concurrency=1)  # started after the edit: the post waits in the log
    later = await post(running, session, ann, "is anyone there?")
    await engine.outcome_of(later)  # one reply at a time, in log order: the edited one's turn has passed
    await engine.stop()
    assert engine.outcome(taken_back) is None
    assert [f["reply_to"] for f in engine.frames if f["type"] == "reply.started"] == [str(later)]


async def test_a_question_deleted_while_the_engine_waits_for_the_read_models_gets_no_reply(running, db):
    """The engine reads the question after the read models have caught up with it: a deletion
    that lands during that wait is not answered either."""
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann)
    question = await post(running, session, ann, "is the root password hunter2?")
    waited: list[int] = []

    async def deleted_meanwhile(position):
        if not waited:
            waited.append(position)
            log.delete(session, question, ann)
        await engine.grounded_at(position)

    engine = Engine(running, db, grounded_at=deleted_meanwhile, concurrency=1)  # one reply at a time, in log order
    later = await post(running, session, ann, "is anyone there?")
    await engine.outcome_of(later)
    await engine.stop()
    assert waited, "the engine waited for the read models"
    assert engine.outcome(question) is None
    assert not any("hunter2" in f.get("delta", "") for f in engine.frames)


async def test_a_question_the_read_models_are_behind_fails_without_asking_the_provider(running, db):
    """A stopped projector would otherwise have the assistant quote what was since deleted or detached."""
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    session = log.session(ann)

    async def behind(position):
        raise TimeoutError("the read models did not reach the position")

    engine = Engine(running, db, grounded_at=behind)
    question = await post(running, session, ann, "what did we decide?")
    failure = await engine.outcome_of(question)
    await engine.stop()
    assert isinstance(failure, AssistantReplyFailure) and failure.reason == "timeout" and "behind" in failure.detail
    assert engine.frames == [], "the provider was not asked"


async def test_stopping_right_after_a_wake_up_returns(running, db):
    """On Python 3.11 `asyncio.wait_for` swallowed a cancel that met a wake-up: stop() hung."""
    log = ChatLog(running)
    ann = log.user("ann@example.org")
    engine = Engine(running, db)
    await engine.outcome_of(await post(running, log.session(ann), ann, "anyone?"))  # now idle, waiting
    engine.engine.wake()
    async with asyncio.timeout(10):
        await engine.stop()
