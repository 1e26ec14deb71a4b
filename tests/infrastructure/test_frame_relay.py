"""The frame relay between nodes (ADR-042) on a real PostgreSQL database: what one node publishes
reaches another node's channels, and a payload that any database role could `NOTIFY` by hand
(unsigned, signed with another key, replayed, stale) reaches nobody."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator
from uuid import UUID, uuid4

import anyio
import psycopg
import pytest
from prometheus_client import REGISTRY

from infrastructure.web.frame_relay import FRAMES_CHANNEL, FrameRelay
from projections.frames import session_channel
from tests.postgres import fresh_database
from tests.waiting import until

pytestmark = pytest.mark.anyio

KEY = "the cluster's shared secret key"


@pytest.fixture
def database_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


class Node:
    """A relay with what reached this node's channels and the cancels it was asked for."""

    def __init__(self, url: str, key: str = KEY) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.cancels: list[tuple[UUID, UUID]] = []
        self.relay = FrameRelay(url, key, lambda channel, body: self.frames.append((channel, body)), on_cancel=self._cancel)

    def _cancel(self, session_id: UUID, reply_id: UUID) -> None:
        self.cancels.append((session_id, reply_id))

    def received(self) -> list[bytes]:
        return [body for _, body in self.frames]


@pytest.fixture
async def nodes(database_url: str) -> AsyncIterator[tuple[Node, Node]]:
    a, b = Node(database_url), Node(database_url)
    for node in (a, b):
        node.relay.start()
    try:
        await until(lambda: a.relay.listening.is_set() and b.relay.listening.is_set(), "both relays to listen", timeout=10)
        yield a, b
    finally:
        for node in (a, b):
            await node.relay.stop()


def refused(outcome: str) -> float:
    """How many payloads this process's relays refused for `outcome` (the metric operators read)."""
    return REGISTRY.get_sample_value("chronicle_relayed_frames_total", {"outcome": outcome}) or 0.0


def notify(url: str, payload: str) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SELECT pg_notify(%s, %s)", (FRAMES_CHANNEL, payload))


def signed(key: str, node: str, sequence: int, sent_ms: int, channel: str, body: str, label: bytes = b"chronicle frame relay v2") -> str:
    """A payload as a relay writes it, under `key`."""
    message = "\x1f".join((node, str(sequence), str(sent_ms), channel, body))
    derived = hmac.new(key.encode(), label, hashlib.sha256).digest()
    return hmac.new(derived, message.encode(), hashlib.sha256).hexdigest()[:32] + "\x1f" + message


async def test_a_frame_published_on_one_node_reaches_the_other_once_and_a_cancel_reaches_its_callback(nodes: tuple[Node, Node]):
    a, b = nodes
    channel = session_channel(str(uuid4()))
    a.relay.publish(channel, b'{"type":"typing","n":1}')
    a.relay.publish(channel, b'{"type":"typing","n":2}')
    session_id, reply_id = uuid4(), uuid4()
    assert a.relay.request_cancel(session_id, reply_id)
    await until(lambda: b.cancels, "the cancel to reach the other node", timeout=10)
    assert b.frames == [(channel, b'{"type":"typing","n":1}'), (channel, b'{"type":"typing","n":2}')]
    assert b.cancels == [(session_id, reply_id)]
    assert a.received() == [b'{"type":"typing","n":1}', b'{"type":"typing","n":2}'], "published locally once, not again from the relay"
    assert a.cancels == []


async def test_payloads_notified_by_hand_unsigned_foreign_replayed_or_stale_are_ignored(database_url: str, nodes: tuple[Node, Node]):
    """A role that can connect may NOTIFY on the relay's channel; without the key it cannot make
    a node show a frame or cancel a reply, and what it captured it cannot send again."""
    a, b = nodes
    channel = session_channel(str(uuid4()))
    now_ms = time.time_ns() // 1_000_000
    forged_cancel = f"{uuid4()} {uuid4()}"
    with psycopg.connect(database_url, autocommit=True) as eavesdropper:
        eavesdropper.execute(f"LISTEN {FRAMES_CHANNEL}")
        a.relay.publish(channel, b'{"type":"typing","n":1}')
        captured = await anyio.to_thread.run_sync(lambda: [n.payload for n in eavesdropper.notifies(timeout=10, stop_after=1)])
    await until(lambda: len(b.frames) == 1, "the genuine frame to reach the other node", timeout=10)
    forgeries = [
        "\x1f".join(("0" * 32, "intruder", "1", str(now_ms), channel, '{"type":"typing","n":"unsigned"}')),
        f"intruder\x1f{channel}\x1f" + '{"type":"typing","n":"old format"}',
        "é",  # not even ASCII where the signature should be
        "no separator at all",
        signed("another cluster's key", "intruder", 1, now_ms, channel, '{"type":"typing","n":"foreign key"}'),
        signed("another cluster's key", "intruder", 2, now_ms, "reply-cancel", forged_cancel),
        signed(KEY, "a node of long ago", 1, now_ms - 120_000, channel, '{"type":"typing","n":"stale"}'),
        signed(KEY, "a node from the future", 1, now_ms + 120_000, channel, '{"type":"typing","n":"future"}'),
        captured[0],
        captured[0].replace('"n":1', '"n":"tampered body"'),  # a genuine payload altered: on `a` its own, on `b` forged
        captured[0].replace(channel, session_channel(str(uuid4()))),
    ]
    v1 = "\x1f".join(("intruder", str(now_ms), channel, '{"type":"typing","n":"version 1"}'))  # before sequence numbers
    v1_key = hmac.new(KEY.encode(), b"chronicle frame relay v1", hashlib.sha256).digest()
    forgeries.append(hmac.new(v1_key, v1.encode(), hashlib.sha256).hexdigest()[:32] + "\x1f" + v1)
    before = {outcome: refused(outcome) for outcome in ("forged", "stale", "replayed")}
    for payload in forgeries:
        notify(database_url, payload)
    a.relay.publish(channel, b'{"type":"typing","n":2}')  # notifications arrive in commit order: this one comes last
    await until(lambda: b'{"type":"typing","n":2}' in b.received(), "the second genuine frame", timeout=10)
    assert b.received() == [b'{"type":"typing","n":1}', b'{"type":"typing","n":2}']
    assert b.cancels == []
    # Both nodes hear every payload sent by hand; the capture and its alterations are `a`'s own
    # there (ignored unchecked). `a` may still be reading when `b` has its frame: wait for the counts.
    expected = {"forged": 16, "stale": 4, "replayed": 1}

    def counted() -> dict[str, float]:
        return {outcome: refused(outcome) - before[outcome] for outcome in before}

    await until(lambda: counted() == expected, "every forgery to be counted", timeout=10)
    assert counted() == expected


async def test_with_the_database_unreachable_the_queue_fills_and_a_cancel_is_refused_not_lost_silently():
    """What makes the endpoint answer 503 for a forwarded cancel: the relay cannot queue it. With
    the database unreachable nothing drains the relay's bounded queue; frames still reach this
    node's own channels, and once the queue is full each one it cannot take is counted as
    dropped and `request_cancel` says so (False)."""
    from tests.e2e.server import free_port

    local: list[bytes] = []
    relay = FrameRelay(f"postgresql://127.0.0.1:{free_port()}/nothing", KEY, lambda channel, body: local.append(body), queue_frames=2)
    relay.start()
    try:
        dropped = refused("dropped")
        channel = session_channel(str(uuid4()))
        for n in range(3):
            relay.publish(channel, b'{"type":"typing","n":%d}' % n)
        assert local == [b'{"type":"typing","n":0}', b'{"type":"typing","n":1}', b'{"type":"typing","n":2}'], "shown on this node"
        assert refused("dropped") - dropped == 1, "two queued, the third dropped"
        assert not relay.request_cancel(uuid4(), uuid4())
        assert refused("dropped") - dropped == 2
        assert not relay.listening.is_set()
    finally:
        await relay.stop()
    assert not relay.request_cancel(uuid4(), uuid4()), "a stopped relay queues nothing"
