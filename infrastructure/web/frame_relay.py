"""Ephemeral frames across nodes: an assistant reply's `reply.started`/`reply.delta` pieces and
`typing` notices are produced on one node, but the session's subscribers may be on any node.

`FrameRelay.publish` hands a frame to this node's channels at once and, on PostgreSQL, queues it
for the others: a sender task sends the queue in batches (`SELECT pg_notify('chronicle_frames',
…)`, one transaction per batch) on a connection of its own; a listener task `LISTEN`s on another
and publishes what other nodes sent to this node's channels, where every stream checks it as it
checks a local frame (membership per reply).

The same carriage takes a request to cancel a reply to the node that leads (only it runs the
chat engine): `request_cancel` on the node that took the HTTP request, `on_cancel` on every
other node, where the engine cancels the reply if it is running there.

Only ephemeral frames travel this way, and they may be lost (a full queue, a payload over
PostgreSQL's 8000-byte limit, a dropped connection): a reply's stored outcome reaches every
node through its own projection of the log, as every committed frame does. A positioned
(committed) frame is never accepted from the relay, so the relay cannot duplicate, reorder or
forge what the feeds carry (ADR-042).

Any role that may connect to the database may also `NOTIFY`, so every payload is signed: an
HMAC-SHA256 under a key derived from the nodes' shared secret key, over the sending node, the
time it was sent (milliseconds, strictly rising per node) and the frame. A node ignores a payload
whose signature does not check, one older than `FRESH_SECONDS`, and one not newer than the last it
took from the same node, so a captured payload cannot be replayed either."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from uuid import UUID, uuid4

import psycopg
from prometheus_client import Counter

from infrastructure.storage.postgres_notifications import KEEPALIVES
from projections.frames import POSITIONED, session_channel

log = logging.getLogger(__name__)

FRAMES_CHANNEL = "chronicle_frames"
MAX_PAYLOAD_BYTES = 7999
"""PostgreSQL refuses a NOTIFY payload of 8000 bytes or more."""
BATCH = 200
_SEPARATOR = "\x1f"
_STORED = POSITIONED.decode()
_SESSION = session_channel("")
_MAC_CHARACTERS = 32
"""The signature's first 128 bits, hex."""
FRESH_SECONDS = 30.0
"""How old a payload may be when it arrives; the nodes' clocks must agree that closely (NTP)."""
_CANCEL = "reply-cancel"
"""The relay's channel name for a request to cancel a reply (no stream's channel has it)."""

RELAYED_FRAMES = Counter(
    "chronicle_relayed_frames", "Ephemeral frames carried between nodes over PostgreSQL (sent, received, dropped)", ["outcome"]
)


class FrameRelay:
    """This node's end of the relay; with no database URL (one SQLite node) it only publishes locally."""

    def __init__(
        self,
        database_url: str | None,
        secret_key: str,
        publish_local: Callable[[str, bytes], None],
        on_cancel: Callable[[UUID, UUID], object] = lambda session_id, reply_id: None,
        queue_frames: int = 10_000,
    ) -> None:
        self.node = uuid4().hex
        """Tells this node's own notifications (which it hears too) from the others'."""
        self._url = database_url
        self._key = hmac.new(secret_key.encode(), b"chronicle frame relay v1", hashlib.sha256).digest()
        self._sent_ms = 0
        self._newest_ms: dict[str, int] = {}
        """The newest send time taken from each other node: anything not newer is a replay."""
        self._skewed: set[str] = set()
        self._local = publish_local
        self._on_cancel = on_cancel
        self._queue_frames = queue_frames
        self._queue: asyncio.Queue[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()

    def publish(self, channel: str, body: bytes) -> None:
        """Called on the event loop; never blocks: a frame that cannot be queued is dropped."""
        self._local(channel, body)
        self._enqueue(channel, body.decode())

    def _sign(self, signed: str) -> str:
        return hmac.new(self._key, signed.encode(), hashlib.sha256).hexdigest()[:_MAC_CHARACTERS]

    def _enqueue(self, channel: str, body: str) -> bool:
        if self._queue is None:
            return False
        self._sent_ms = max(time.time_ns() // 1_000_000, self._sent_ms + 1)
        signed = _SEPARATOR.join((self.node, str(self._sent_ms), channel, body))
        payload = f"{self._sign(signed)}{_SEPARATOR}{signed}"
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            RELAYED_FRAMES.labels("dropped").inc()
            return False
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            RELAYED_FRAMES.labels("dropped").inc()
            return False
        return True

    def request_cancel(self, session_id: UUID, reply_id: UUID) -> bool:
        """Asks the other nodes to cancel a reply (the one that runs it does); False without a
        database (one SQLite node) or when the request cannot be queued."""
        return self._enqueue(_CANCEL, f"{session_id} {reply_id}")

    def start(self) -> None:
        if self._url is None:
            return
        self._queue = asyncio.Queue(self._queue_frames)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._send(), name="frame-relay-send"),
            asyncio.get_running_loop().create_task(self._listen(), name="frame-relay-listen"),
        ]

    async def stop(self) -> None:
        self._queue = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _connect(self, role: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
        assert self._url is not None
        return await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=5, application_name=f"chronicle frame relay {role}", **KEEPALIVES
        )

    async def _send(self) -> None:
        """Sends what is queued, up to BATCH frames per transaction; a batch that fails is lost."""
        backoff = 0.1
        while True:
            try:
                async with await self._connect("sender") as conn:
                    backoff = 0.1
                    while True:
                        assert self._queue is not None
                        batch = [await self._queue.get()]
                        while len(batch) < BATCH and not self._queue.empty():
                            batch.append(self._queue.get_nowait())
                        await conn.execute(
                            "SELECT pg_notify(%s, f.p) FROM unnest(%s::text[]) WITH ORDINALITY AS f(p, n) ORDER BY f.n",
                            (FRAMES_CHANNEL, batch),
                        )
                        RELAYED_FRAMES.labels("sent").inc(len(batch))
            except psycopg.Error as error:
                log.warning("the frame relay cannot send (%s); reconnecting in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with await self._connect("listener") as conn:
                    await conn.execute(f"LISTEN {FRAMES_CHANNEL}")
                    self.listening.set()
                    backoff = 0.1
                    async for notification in conn.notifies():
                        self._receive(notification.payload)
            except psycopg.Error as error:
                self.listening.clear()
                log.warning("the frame relay stopped listening (%s); reconnecting in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _receive(self, payload: str) -> None:
        """Another node's ephemeral frame, to this node's channel; anything else is ignored."""
        mac, _, signed = payload.partition(_SEPARATOR)
        node, _, rest = signed.partition(_SEPARATOR)
        if node == self.node:
            return
        sent, _, rest = rest.partition(_SEPARATOR)
        channel, _, body = rest.partition(_SEPARATOR)
        if not hmac.compare_digest(mac, self._sign(signed)) or not self._fresh(node, sent):
            RELAYED_FRAMES.labels("refused").inc()
            return
        if channel == _CANCEL:
            self._cancel(body)
            return
        if not channel.startswith(_SESSION) or not body.startswith("{") or body.startswith(_STORED):
            RELAYED_FRAMES.labels("refused").inc()
            return
        RELAYED_FRAMES.labels("received").inc()
        with contextlib.suppress(RuntimeError):  # the channels plugin has stopped: the server is shutting down
            self._local(channel, body.encode())

    def _fresh(self, node: str, sent: str) -> bool:
        """Signed by a node of the cluster: now also not replayed and not stale."""
        sent_ms = int(sent)  # the signature checked, so the sender wrote it
        if sent_ms <= self._newest_ms.get(node, 0):
            return False
        age = time.time() - sent_ms / 1000
        if abs(age) > FRESH_SECONDS:
            if node not in self._skewed:
                self._skewed.add(node)
                log.warning("frames relayed from node %s are %.0f s old on arrival; are the nodes' clocks in sync?", node, age)
            return False
        self._newest_ms[node] = sent_ms
        return True

    def _cancel(self, body: str) -> None:
        try:
            session_id, reply_id = (UUID(part) for part in body.split(" "))
        except ValueError:
            RELAYED_FRAMES.labels("refused").inc()
            return
        RELAYED_FRAMES.labels("received").inc()
        try:
            self._on_cancel(session_id, reply_id)
        except Exception:  # noqa: BLE001 - the listener must go on relaying frames
            log.exception("a relayed request to cancel reply %s failed", reply_id)
