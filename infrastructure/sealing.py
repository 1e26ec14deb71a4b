"""Crypto-shredding: personal fields of events are stored encrypted with a key of the person they
belong to (AES-256-GCM, the person's id as associated data), and the keys live outside the event
log, in `keys.sqlite3`. Destroying a person's key erases those fields everywhere at once: the
stored events keep their exact bytes (so the hash chain still verifies) but read back as
"[erased]", and read models rebuilt from them show the same.

A sealed value is the string `sealed:<subject hex>:<base64 of nonce ‖ ciphertext>`."""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Mapper, StoredEvent

from domain.document import Document
from domain.message import Message
from domain.user import ERASED, EmailClaim, User

PREFIX = "sealed:"
PERSONAL: dict[type, tuple[str, tuple[str, ...]]] = {
    User.UserRegistered: ("originator_id", ("email", "display_name")),
    EmailClaim.EmailClaimed: ("user_id", ("email",)),
    Message.MessagePosted: ("author_id", ("content",)),
    Message.MessageEdited: ("actor_id", ("content",)),
    Document.DocumentUploaded: ("owner_id", ("filename",)),
}
"""Which fields of which events are personal, and which field names the person they belong to."""


class KeyStore:
    """Data keys by subject. Deleted keys are overwritten on disk (secure_delete, rollback
    journal): nothing of a destroyed key stays in the file. Keys are cached per process;
    `forget` drops one (on `UserErased`, which every process sees through the log)."""

    _open: dict[Path, KeyStore] = {}
    _opening = threading.Lock()

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("CREATE TABLE IF NOT EXISTS data_keys (subject TEXT PRIMARY KEY, key BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS erased_subjects (subject TEXT PRIMARY KEY, at REAL NOT NULL)")
        self._lock = threading.Lock()
        self._cache: dict[str, AESGCM | None] = {}

    @classmethod
    def at(cls, path: Path) -> KeyStore:
        """One store per file and process, shared by every mapper (so `forget` reaches all)."""
        with cls._opening:
            store = cls._open.get(path)
            if store is None:
                store = cls._open[path] = cls(path)
            return store

    def cipher(self, subject: str, *, create: bool) -> AESGCM | None:
        cached = self._cache.get(subject)
        if cached is not None or (subject in self._cache and not create):
            return cached
        with self._lock:
            row = self._db.execute("SELECT key FROM data_keys WHERE subject=?", (subject,)).fetchone()
            if row is None and create:
                if self._db.execute("SELECT 1 FROM erased_subjects WHERE subject=?", (subject,)).fetchone():
                    return None
                self._db.execute("INSERT OR IGNORE INTO data_keys VALUES (?, ?)", (subject, AESGCM.generate_key(256)))
                row = self._db.execute("SELECT key FROM data_keys WHERE subject=?", (subject,)).fetchone()
            cipher = AESGCM(row[0]) if row else None
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[subject] = cipher
            return cipher

    def destroy(self, subject: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM data_keys WHERE subject=?", (subject,))
            self._db.execute("INSERT OR IGNORE INTO erased_subjects VALUES (?, unixepoch())", (subject,))
            self._db.execute("COMMIT")
            self._cache[subject] = None

    def forget(self, subject: str) -> None:
        self._cache.pop(subject, None)


def _subject(value: Any) -> str | None:
    try:
        return (value if isinstance(value, UUID) else UUID(str(value))).hex
    except ValueError:
        return None  # "cli", "assistant": no person


class SealingMapper(Mapper[UUID]):
    """eventsourcing's Mapper, sealing personal fields on the way in and opening them on the way
    out. `keys` is set by `open_event_store`."""

    keys: KeyStore | None = None

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        personal = PERSONAL.get(type(domain_event))
        if personal is None or self.keys is None:
            return super().to_stored_event(domain_event)
        subject_field, fields = personal
        subject = _subject(getattr(domain_event, subject_field))
        if subject is None:
            return super().to_stored_event(domain_event)
        cipher = self.keys.cipher(subject, create=True)
        sealed = object.__new__(type(domain_event))
        state = dict(vars(domain_event))
        for field in fields:
            value = state.get(field)
            if isinstance(value, str):
                state[field] = _seal(cipher, subject, value)
        object.__setattr__(sealed, "__dict__", state)
        return super().to_stored_event(sealed)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = super().to_domain_event(stored_event)
        personal = PERSONAL.get(type(event))
        if personal is not None:
            state = vars(event)
            for field in personal[1]:
                value = state.get(field)
                if isinstance(value, str) and value.startswith(PREFIX):
                    state[field] = self._open(value)
        return event

    def _open(self, value: str) -> str:
        if self.keys is None:
            raise RuntimeError("a sealed field cannot be read without the key store")
        _, subject, data = value.split(":", 2)
        cipher = self.keys.cipher(subject, create=False)
        if cipher is None:
            return ERASED
        raw = base64.b64decode(data)
        return cipher.decrypt(raw[:12], raw[12:], subject.encode()).decode()


def _seal(cipher: AESGCM | None, subject: str, value: str) -> str:
    if cipher is None:
        return ERASED  # the person was erased: nothing of theirs is stored any more
    nonce = os.urandom(12)
    return f"{PREFIX}{subject}:{base64.b64encode(nonce + cipher.encrypt(nonce, value.encode(), subject.encode())).decode()}"
