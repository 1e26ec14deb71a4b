"""Crypto-shredding: personal fields of events are stored encrypted with a key of the person they
belong to (AES-256-GCM, the person's id as associated data), and the keys live outside the event
log, in `keys.sqlite3`. Destroying a person's key erases those fields everywhere at once: the
stored events keep their exact bytes (so the hash chain still verifies) but read back as
"[erased]", and read models rebuilt from them show the same.

A sealed value is the string `sealed:<subject hex>:<base64 of nonce ‖ ciphertext>`. A value that
quotes other people (an assistant's reply citing their messages or documents) is sealed with
every quoted person's key and the asker's at once, `sealed-all:<subject>,…:<base64>` (see
`_seal_with_all`): it reads back only while every one of those keys exists, so erasing (or
expiring) what was quoted erases the quote too. Until 2026-12-06 such a value was sealed once
per key, each layer around the last (a third larger per key); those still read."""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Mapper, OperationalError, StoredEvent

from domain.assistant_reply import AssistantReply, AssistantReplyFailure
from domain.document import Document
from domain.invitation import Invitation
from domain.message import Message
from domain.user import ERASED, EmailClaim, User

PREFIX = "sealed:"
SEALED_WITH_ALL = "sealed-all:"
_SHARE = 12 + 32 + 16
"""One subject's part of a `sealed-all:` value: a nonce and its encrypted 32-byte share."""
_SHARE_DATA = b"sealed-all share:"
UNREADABLE = "[unreadable]"
_SUBJECT = re.compile(r"[0-9a-f]{32}(\.[0-9a-f]{32}\.\d{4}-\d{2}-\d{2})?")


def _hex(value: Any) -> str | None:
    try:
        return (value if isinstance(value, UUID) else UUID(str(value))).hex
    except ValueError:
        return None  # "cli", "assistant": no person


def _day(moment: Any) -> str:
    """The UTC day of an event's time, a `datetime` or the ISO text it is stored as (the fast
    read path's stored form)."""
    return moment[:10] if isinstance(moment, str) else moment.date().isoformat()


def _person(field: str) -> Callable[[Any], str | None]:
    return lambda event: _hex(getattr(event, field))


def _message(author_field: str) -> Callable[[Any], str | None]:
    """Message content is keyed by author, session and day, so a retention policy can destroy
    a session's old days and an erasure all of a person's keys, without touching the log."""

    def subject(event: Any) -> str | None:
        author = _hex(getattr(event, author_field))  # None for replies stored before they named the asker
        if author is None:
            return None
        return f"{author}.{_hex(event.session_id)}.{_day(event.timestamp)}"

    return subject


PERSONAL: dict[type, tuple[Callable[[Any], str | None], tuple[str, ...]]] = {
    User.UserRegistered: (_person("originator_id"), ("email", "display_name")),
    EmailClaim.EmailClaimed: (_person("user_id"), ("email",)),
    EmailClaim.EmailReclaimed: (_person("user_id"), ("email",)),
    Invitation.InvitationIssued: (_person("originator_id"), ("email",)),
    Message.MessagePosted: (_message("author_id"), ("content",)),
    Message.MessageEdited: (_message("actor_id"), ("content",)),
    Document.DocumentUploaded: (_person("owner_id"), ("filename",)),
    AssistantReply.AssistantReplyCompleted: (_message("asker_id"), ("content",)),
    AssistantReplyFailure.AssistantReplyFailed: (_message("asker_id"), ("partial_content",)),
}
"""Which fields of which events are personal, and the key (subject) they are sealed with."""


def quoted_subjects(event: Any) -> list[str]:
    """The keys of what an assistant reply quotes, from its sources: a cited or context
    message's content key (author, session, day of the quoted version), a cited document's
    owner's key (a `context` source may name either: what an earlier reply in a model's context
    drew on). Sources recorded before they named their authors add nothing."""
    subjects = []
    for source in getattr(event, "sources", None) or ():
        if not isinstance(source, dict):
            continue
        kind = source.get("kind")
        author, session, day = _hex(source.get("author_id")), _hex(source.get("session_id")), source.get("content_day")
        if kind in ("message", "context") and author and session and isinstance(day, str) and _DAY.fullmatch(day):
            subjects.append(f"{author}.{session}.{day}")
        elif kind in ("document", "context") and (owner := _hex(source.get("owner_id"))):
            subjects.append(owner)
    return sorted(set(subjects))


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class DataKeys(Protocol):
    """The data keys of crypto-shredding: `KeyStore` (keys.sqlite3) or `PostgresKeyStore`."""

    def cipher(self, subject: str, *, create: bool) -> AESGCM | None: ...

    def stored_cipher(self, subject: str) -> AESGCM | None: ...

    def destroy(self, person: str) -> None: ...

    def expire(self, before_day: str, sessions: Iterable[str] | None = None, *, keep: Iterable[str] = ()) -> dict[str, int]: ...

    def generation(self) -> int: ...

    def forget(self) -> None: ...


class KeyStore:
    """Data keys by subject. Deleted keys are overwritten on disk (secure_delete, rollback
    journal): nothing of a destroyed key stays in the file. Keys are cached per process;
    `forget` drops the cache (on `UserErased` and `ContentExpired`, which every process sees
    through the log)."""

    _open: dict[Path, KeyStore] = {}
    _opening = threading.Lock()

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS data_keys (subject TEXT PRIMARY KEY, key BLOB NOT NULL,"
            " person TEXT NOT NULL, session TEXT, day TEXT)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS data_keys_by_person ON data_keys(person)")
        self._db.execute("CREATE INDEX IF NOT EXISTS data_keys_by_day ON data_keys(day, session)")
        self._db.execute("CREATE TABLE IF NOT EXISTS erased_subjects (subject TEXT PRIMARY KEY, at REAL NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS key_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)")
        self._db.execute("INSERT OR IGNORE INTO key_generation VALUES (1, 0)")
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[AESGCM | None, float]] = {}

    @classmethod
    def at(cls, path: Path) -> KeyStore:
        """One store per file and process, shared by every mapper (so `forget` reaches all)."""
        with cls._opening:
            store = cls._open.get(path)
            if store is None:
                store = cls._open[path] = cls(path)
            return store

    TTL = 5.0
    """Another process may destroy keys: a cached key is trusted this many seconds at most."""

    def cipher(self, subject: str, *, create: bool) -> AESGCM | None:
        """The key of a subject: `person` or `person.session.day`. A storage fault is raised as
        eventsourcing's `OperationalError`, as the event store raises its own."""
        try:
            return self._cipher(subject, create=create)
        except sqlite3.OperationalError as error:
            raise OperationalError(error) from error

    def _cipher(self, subject: str, *, create: bool) -> AESGCM | None:
        entry = self._cache.get(subject)
        if entry is not None and entry[1] > time.monotonic() and (entry[0] is not None or not create):
            return entry[0]
        person, _, rest = subject.partition(".")
        with self._lock:
            row = self._db.execute("SELECT key FROM data_keys WHERE subject=?", (subject,)).fetchone()
            if row is None and create:
                if self._db.execute("SELECT 1 FROM erased_subjects WHERE subject=?", (person,)).fetchone():
                    return None
                session, _, day = rest.partition(".")
                self._db.execute(
                    "INSERT OR IGNORE INTO data_keys VALUES (?,?,?,?,?)",
                    (subject, AESGCM.generate_key(256), person, session or None, day or None),
                )
                row = self._db.execute("SELECT key FROM data_keys WHERE subject=?", (subject,)).fetchone()
            cipher = AESGCM(row[0]) if row else None
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[subject] = (cipher, time.monotonic() + self.TTL)
            return cipher

    def stored_cipher(self, subject: str) -> AESGCM | None:
        """The key of a subject as the file holds it now, past this process's cache: for a
        reader that keeps what it decoded (the audit log's timeline snapshots)."""
        try:
            with self._lock:
                row = self._db.execute("SELECT key FROM data_keys WHERE subject=?", (subject,)).fetchone()
        except sqlite3.OperationalError as error:
            raise OperationalError(error) from error
        return AESGCM(row[0]) if row else None

    def destroy(self, person: str) -> None:
        """Every key of the person; no new key is ever made for them."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM data_keys WHERE person=?", (person,))
            self._db.execute("INSERT OR IGNORE INTO erased_subjects VALUES (?, unixepoch())", (person,))
            self._db.execute("UPDATE key_generation SET value = value + 1")
            self._db.execute("COMMIT")
            self._cache.clear()

    def expire(self, before_day: str, sessions: Iterable[str] | None = None, *, keep: Iterable[str] = ()) -> dict[str, int]:
        """Destroys message keys of days before `before_day`, in `sessions` (all sessions when
        None, except those in `keep`); returns how many per session."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if sessions is None:
                    keep = set(keep)
                    rows = [
                        r
                        for r in self._db.execute(
                            "SELECT session, COUNT(*) FROM data_keys WHERE day < ? AND session IS NOT NULL GROUP BY session", (before_day,)
                        ).fetchall()
                        if r[0] not in keep
                    ]
                else:
                    wanted = list(sessions)
                    rows = [
                        r
                        for r in (
                            self._db.execute(
                                "SELECT session, COUNT(*) FROM data_keys WHERE day < ? AND session = ?", (before_day, s)
                            ).fetchone()
                            for s in wanted
                        )
                        if r and r[1]
                    ]
                for session, _ in rows:
                    self._db.execute("DELETE FROM data_keys WHERE day < ? AND session = ?", (before_day, session))
                if rows:
                    self._db.execute("UPDATE key_generation SET value = value + 1")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if rows:
                self._cache.clear()
            return {session: count for session, count in rows}

    def generation(self) -> int:
        """Goes up whenever keys are destroyed (by any process): what was read before may have
        been readable then and must not be written out again after."""
        with self._lock:
            return int(self._db.execute("SELECT value FROM key_generation").fetchone()[0])

    def forget(self) -> None:
        """Drops every cached key (another process destroyed some)."""
        self._cache.clear()


class SealingMapper(Mapper[UUID]):
    """eventsourcing's Mapper, sealing personal fields on the way in and opening them on the way
    out. `keys` is set by `open_event_store`."""

    keys: DataKeys | None = None

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        personal = PERSONAL.get(type(domain_event))
        if personal is None or self.keys is None:
            return super().to_stored_event(domain_event)
        subject_of, fields = personal
        subject = subject_of(domain_event)
        if subject is None:
            return super().to_stored_event(domain_event)
        cipher = self.keys.cipher(subject, create=True)
        quoted = [(q, self.keys.cipher(q, create=True)) for q in quoted_subjects(domain_event) if q != subject]
        quoted_keys = [(q, quoted_cipher) for q, quoted_cipher in quoted if quoted_cipher is not None]
        sealed = object.__new__(type(domain_event))
        state = dict(vars(domain_event))
        for field in fields:
            value = state.get(field)
            if not isinstance(value, str):
                continue
            if not quoted:
                state[field] = _seal(cipher, subject, value)
            elif cipher is None or len(quoted_keys) < len(quoted):
                state[field] = _seal(cipher, subject, ERASED)  # someone it quotes was erased: so is the quote
            else:
                state[field] = _seal_with_all([*quoted_keys, (subject, cipher)], value)
        object.__setattr__(sealed, "__dict__", state)
        return super().to_stored_event(sealed)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = super().to_domain_event(stored_event)
        if self.keys is None:
            if type(event) in PERSONAL:
                open_personal_fields(event, _without_keys)
            return event
        keys = self.keys
        return open_personal_fields(event, lambda subject: keys.cipher(subject, create=False))


CipherOf = Callable[[str], AESGCM | None]
"""The key of a subject (None once it was destroyed)."""


def open_personal_fields(event: Any, cipher_of: CipherOf) -> Any:
    """Opens the sealed personal fields of a decoded event in place (erased ones read as
    `[erased]`): what the sealing mapper and the audit log's fast reader both do."""
    personal = PERSONAL.get(type(event))
    if personal is None:
        return event
    state = vars(event)
    quoted = quoted_subjects(event)
    layers = 1 + len([q for q in quoted if q != personal[0](event)]) if quoted else 1  # one more per quoted person
    for field in personal[1]:
        value = state.get(field)
        if quoted and isinstance(value, str) and value.startswith(SEALED_WITH_ALL):
            state[field] = open_sealed_with_all(value, cipher_of)
            continue
        for _ in range(layers):  # sealed before 2026-12-06: a layer per quoted key
            if not (isinstance(value, str) and value.startswith(PREFIX)):
                break
            value = open_sealed(value, cipher_of)
        state[field] = value
    return event


def open_sealed(value: str, cipher_of: CipherOf) -> str:
    """One layer of a sealed value: its plaintext, `[erased]` when its key is gone, or
    `[unreadable]` when the stored bytes were altered."""
    parts = value.split(":", 2)  # subjects hold no ":"
    if len(parts) != 3 or not _is_subject(parts[1]):
        return value  # plaintext stored before sealing existed, which merely starts with "sealed:"
    subject, data = parts[1], parts[2]
    cipher = cipher_of(subject)
    if cipher is None:
        return ERASED
    try:
        raw = base64.b64decode(data, validate=True)
        return cipher.decrypt(raw[:12], raw[12:], subject.encode()).decode()
    except (ValueError, InvalidTag):
        return UNREADABLE  # altered after it was stored: `chronicle audit verify` says where


def open_sealed_with_all(value: str, cipher_of: CipherOf) -> str:
    """A `sealed-all:` value (of an event whose sources name keys: only the mapper writes those
    there): its plaintext, `[erased]` when any one of its keys is gone, or `[unreadable]` when
    the stored bytes were altered."""
    parts = value.split(":", 2)
    subjects = parts[1].split(",") if len(parts) == 3 else []
    if not subjects or not all(_is_subject(subject) for subject in subjects):
        return UNREADABLE
    ciphers = [cipher for cipher in map(cipher_of, subjects) if cipher is not None]
    if len(ciphers) < len(subjects):
        return ERASED
    try:
        raw = base64.b64decode(parts[2], validate=True)
        key = 0
        for index, (subject, cipher) in enumerate(zip(subjects, ciphers, strict=True)):
            share = raw[index * _SHARE : (index + 1) * _SHARE]
            key ^= int.from_bytes(cipher.decrypt(share[:12], share[12:], _SHARE_DATA + subject.encode()))
        sealed = raw[len(subjects) * _SHARE :]
        return AESGCM(key.to_bytes(32)).decrypt(sealed[:12], sealed[12:], SEALED_WITH_ALL.encode() + parts[1].encode()).decode()
    except (ValueError, InvalidTag):
        return UNREADABLE  # altered after it was stored: `chronicle audit verify` says where


_SUBJECTS_SEEN: set[str] = set()


def _is_subject(text: str) -> bool:
    """`_SUBJECT.fullmatch`, remembered for the subjects already seen (a replay meets the same few)."""
    if text in _SUBJECTS_SEEN:
        return True
    if not _SUBJECT.fullmatch(text):
        return False
    if len(_SUBJECTS_SEEN) > 100_000:
        _SUBJECTS_SEEN.clear()
    _SUBJECTS_SEEN.add(text)
    return True


def _without_keys(subject: str) -> AESGCM | None:
    raise RuntimeError("a sealed field cannot be read without the key store")


def _seal(cipher: AESGCM | None, subject: str, value: str) -> str:
    if cipher is None:
        return ERASED  # the person was erased: nothing of theirs is stored any more
    nonce = os.urandom(12)
    return f"{PREFIX}{subject}:{base64.b64encode(nonce + cipher.encrypt(nonce, value.encode(), subject.encode())).decode()}"


def _seal_with_all(keys: list[tuple[str, AESGCM]], value: str) -> str:
    """One layer, however many keys: the value is encrypted with a fresh key that is the XOR of
    one random 32-byte share per subject, and each share with its subject's key (associated data:
    `sealed-all share:` and the subject; the value's, `sealed-all:` and the list of subjects, so
    no part can pass for a `sealed:` value or another part). Every share is
    needed, so destroying any one key makes the value unreadable, as a layer per key did; each
    key adds its subject and 60 bytes, where a layer per key made the value a third larger."""
    subjects = ",".join(subject for subject, _ in keys)
    parts: list[bytes] = []
    key = 0
    for subject, cipher in keys:
        share, nonce = os.urandom(32), os.urandom(12)
        key ^= int.from_bytes(share)
        parts.append(nonce + cipher.encrypt(nonce, share, _SHARE_DATA + subject.encode()))
    nonce = os.urandom(12)
    parts.append(nonce + AESGCM(key.to_bytes(32)).encrypt(nonce, value.encode(), SEALED_WITH_ALL.encode() + subjects.encode()))
    return f"{SEALED_WITH_ALL}{subjects}:{base64.b64encode(b''.join(parts)).decode()}"
