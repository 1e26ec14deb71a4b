"""The projection runner: exactly once, restart-safe, and rebuildable."""

import threading

from application.accounts import RegisterUser
from application.chat import EditMessage, PostMessage, StartSession
from domain.message import Message
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.workers.projection_runner import ProjectionRunner
from projections.catalog import all_projectors
from projections.messages import SessionMessagesProjector

TABLES = ("users", "sessions", "session_members", "messages", "message_versions")


def fill(side, messages: int = 1500) -> int:
    owner = side.bus.execute_now(RegisterUser("ann@example.org", "Ann", "h"), "t").value
    session = side.bus.execute_now(StartSession(owner.id, "Busy"), str(owner.id)).value
    for i in range(messages):
        posted = side.bus.execute_now(PostMessage(session.id, owner.id, f"m{i}"), str(owner.id)).value
        if i % 10 == 0:
            side.bus.execute_now(EditMessage(session.id, posted.message.id, owner.id, f"m{i}!"), str(owner.id))
    return side.runner.head()


def test_two_runners_on_one_read_store_apply_each_event_exactly_once(write_side, data_dir):
    head = fill(write_side, 600)
    other_store = SQLiteReadStore(data_dir / "read.sqlite3")
    runners = [
        write_side.runner,
        ProjectionRunner(write_side.app, other_store, all_projectors(write_side.blobs.read_text), batch_size=37),
    ]
    threads = [threading.Thread(target=r.catch_up) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(write_side.runner.positions().values()) == {head}
    dump = write_side.read_store.dump(TABLES)
    assert len(dump["messages"]) == 600 and len(dump["message_versions"]) == 120
    write_side.read_store.reset(all_projectors(write_side.blobs.read_text))
    write_side.runner.catch_up()
    assert write_side.read_store.dump(TABLES) == dump
    other_store.close()


def test_a_runner_resumes_from_its_recorded_position_after_a_restart(write_side, data_dir):
    head = fill(write_side, 100)
    partial = ProjectionRunner(write_side.app, write_side.read_store, all_projectors(write_side.blobs.read_text), batch_size=50)
    partial.catch_up_once()
    assert set(partial.positions().values()) == {50}
    restarted = ProjectionRunner(write_side.app, SQLiteReadStore(data_dir / "read.sqlite3"), all_projectors(write_side.blobs.read_text))
    assert set(restarted.positions().values()) == {50}
    restarted.catch_up()
    assert set(restarted.positions().values()) == {head}
    assert len(write_side.read_store.dump(("messages",))["messages"]) == 100


class Fragile(SessionMessagesProjector):
    """The messages projector with a bug: it cannot take a message saying "boom"."""

    name = "fragile"
    tables = ("fragile_messages",)
    schema = ("CREATE TABLE IF NOT EXISTS fragile_messages (id TEXT PRIMARY KEY, content TEXT)",)

    def apply(self, tx, event, position):
        if type(event) is Message.MessagePosted:
            if event.content == "boom":
                raise ValueError("cannot take a boom")
            tx.execute("INSERT INTO fragile_messages VALUES (?,?)", (str(event.originator_id), event.content))


def test_a_failing_projector_stops_before_the_event_while_the_others_go_on(write_side, data_dir):
    owner = write_side.bus.execute_now(RegisterUser("ann@example.org", "Ann", "h"), "t").value
    session = write_side.bus.execute_now(StartSession(owner.id, "Busy"), str(owner.id)).value
    for content in ("one", "two", "boom", "three"):
        outcome = write_side.bus.execute_now(PostMessage(session.id, owner.id, content), str(owner.id))
        if content == "boom":
            boom_at = outcome.position
    store = SQLiteReadStore(data_dir / "read.sqlite3")
    runner = ProjectionRunner(write_side.app, store, [Fragile(), SessionMessagesProjector()], batch_size=3)
    runner.catch_up()
    head = runner.head()
    assert runner.positions() == {"fragile": boom_at - 1, "messages": head}
    assert runner.failures["fragile"].position == boom_at and "cannot take a boom" in runner.failures["fragile"].error
    assert sorted(r[2] for r in store.dump(["fragile_messages"])["fragile_messages"]) == ["one", "two"]
    assert len(store.dump(["messages"])["messages"]) == 4
    write_side.bus.execute_now(PostMessage(session.id, owner.id, "four"), str(owner.id))
    runner.catch_up()
    assert runner.positions()["fragile"] == boom_at - 1 and runner.positions()["messages"] == runner.head()
