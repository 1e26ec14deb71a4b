"""Snapshots of the audit timeline fold, so that moving the as-of point re-folds only from the
nearest snapshot before it. A cache in memory only: dropping it changes nothing but speed.

A snapshot at position p holds the fold of the session's events up to p, with the events up to p
of the documents attached to the session by p (and of their conversions), and the set of those
documents. It is keyed by the key store's generation, which goes up whenever any process destroys
keys (an erasure, an expiry): content decoded before that is never served after it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from uuid import UUID

from application.session_timeline import SessionTimeline


@dataclass(frozen=True)
class TimelineSnapshot:
    position: int
    """The last position folded in (the fold holds every relevant event up to it)."""
    events: int
    """How many rows the fold has applied: snapshots are taken every `every` of them."""
    documents: frozenset[str]
    """The hex ids of the documents attached to the session by `position`."""
    timeline: SessionTimeline


class TimelineSnapshots:
    """Snapshots by session, ordered by position, all of one key generation (a newer generation
    drops them all); the least recently used sessions are dropped once the snapshots hold more
    than `capacity` records in all."""

    def __init__(self, every: int = 250, capacity: int = 2_000_000) -> None:
        self.every = every
        self._capacity = capacity
        self._generation: int | None = None
        self._sessions: OrderedDict[UUID, list[TimelineSnapshot]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def nearest(self, session_id: UUID, generation: int, as_of: int) -> TimelineSnapshot | None:
        """The latest snapshot at or before `as_of` taken under this key generation."""
        with self._lock:
            if not self._enter(generation):
                return None
            found = self._sessions.get(session_id)
            if not found:
                return None
            self._sessions.move_to_end(session_id)
            best = None
            for snapshot in found:
                if snapshot.position > as_of:
                    break
                best = snapshot
            return best

    def keep(self, session_id: UUID, generation: int, snapshot: TimelineSnapshot) -> None:
        with self._lock:
            if not self._enter(generation):
                return  # keys were destroyed since this fold read them
            found = self._sessions.setdefault(session_id, [])
            self._sessions.move_to_end(session_id)
            if any(s.position == snapshot.position for s in found):
                return
            found.append(snapshot)
            found.sort(key=lambda s: s.position)
            self._size += _size(snapshot)
            while self._size > self._capacity and len(self._sessions) > 1:
                _, dropped = self._sessions.popitem(last=False)
                self._size -= sum(_size(s) for s in dropped)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._size = 0

    def __len__(self) -> int:
        with self._lock:
            return sum(len(found) for found in self._sessions.values())

    def _enter(self, generation: int) -> bool:
        """False for an older generation than the cache's; a newer one empties the cache."""
        if self._generation is not None and generation < self._generation:
            return False
        if generation != self._generation:
            self._sessions.clear()
            self._size = 0
            self._generation = generation
        return True


def _size(snapshot: TimelineSnapshot) -> int:
    timeline = snapshot.timeline
    return 1 + len(timeline.messages) + len(timeline.steps) + len(timeline.members) + len(timeline.documents) + len(timeline.conversions)
