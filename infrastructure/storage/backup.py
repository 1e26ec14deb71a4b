"""Backups that restore: an online, consistent copy of a data directory, and its restore.

A backup is two directories, on purpose:

- the *event backup* (`chronicle-backup.json`, `events.sqlite3`, `blobs/`): the log, copied with
  SQLite's online backup API in one step (one read transaction: a snapshot, while the server
  keeps writing), and the stored files, hard-linked when on the same filesystem (they are
  content-addressed and never rewritten), copied otherwise;
- the *keys backup* (`chronicle-keys.json`, `keys.sqlite3`, `secret.key` when the signing key is
  kept in the data directory): the data keys of crypto-shredding and the signing key, kept apart
  so that an old event backup never carries the key of a person erased since.

The read store is not copied: it is derived from the log, and a copy taken at another moment
than the log's could show what an erasure removed since. A restore rebuilds it from the log.

Order matters. Keys are copied after the log: a key is made before the first event sealed with it
is committed, so every event in the copy has its key in the keys copy, unless the key was
destroyed meanwhile (an erasure or an expiry, which must win). Files are copied before the log
and again under the blob lock right after it: uploads place a file and record its event under that
lock, and the collector removes files under it, so every file the copied log references is copied.

A restore re-applies every erasure and expiry recorded in the restored log to the restored keys,
so a keys backup older than the events (accepted only on request) cannot bring back a person
the log says was erased."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.chat_session import ChatSession
from domain.user import User
from infrastructure.settings import Settings, private_directory
from infrastructure.storage.blob_store import BlobLock
from infrastructure.storage.event_chain import chain_head, verify
from infrastructure.storage.sealing import KeyStore

EVENTS_MANIFEST = "chronicle-backup.json"
KEYS_MANIFEST = "chronicle-keys.json"
FORMAT = 1
SECRET_KEY_FILE = "secret.key"


class BackupRefused(Exception):
    """The operator asked for something that cannot be done as given (one line, exit 2)."""


class BackupFailed(Exception):
    """The copy could not be made or does not verify (one line, exit 1)."""


@dataclass(frozen=True)
class BackupReport:
    events: int
    head_position: int
    head_hash: str
    keys_position: int
    files_linked: int
    files_copied: int
    secret_key_copied: bool


@dataclass(frozen=True)
class RestoreReport:
    events: int
    head_position: int
    head_hash: str
    files: int
    erasures_applied: int
    expiries_applied: int
    read_models_at: int
    missing_files: list[str]
    erased_since: list[str]
    """People the keys backup says were erased whose erasure the restored log does not record
    (erased after the event backup): their sealed fields read as erased, but their files and
    their account's state come back until they are erased again."""


def take_backup(settings: Settings, destination: Path, keys_destination: Path) -> BackupReport:
    """Copies the log and files to `destination` and the keys to `keys_destination`, while a
    server may be serving. Both must be new or empty directories."""
    try:
        return _take_backup(settings, destination, keys_destination)
    except sqlite3.Error as error:
        raise BackupFailed(f"SQLite: {error}") from error


def _take_backup(settings: Settings, destination: Path, keys_destination: Path) -> BackupReport:
    destination, keys_destination = destination.resolve(), keys_destination.resolve()
    if destination == keys_destination or destination in keys_destination.parents or keys_destination in destination.parents:
        raise BackupRefused("the keys must go to a directory apart from the event backup (neither inside the other)")
    data_dir = settings.data_dir.resolve()
    for target in (destination, keys_destination):
        if target == data_dir or data_dir in target.parents:
            raise BackupRefused(f"{target} is inside the data directory; back up to another place")
        _require_empty(target, "back up into")
    private_directory(destination)
    private_directory(keys_destination)

    blobs = _FileCopier(settings.blobs_path, destination / "blobs", link=True)
    blobs.copy_new()  # the bulk, without holding up uploads
    with _blob_lock(settings.blobs_path):
        _copy_sqlite(settings.event_store_path, destination / "events.sqlite3")
        blobs.copy_new()  # what was placed meanwhile: the copied log references nothing else
    copied = verify(destination / "events.sqlite3")
    if not copied.ok:
        raise BackupFailed(f"the copied log does not verify at position {copied.broken_at}: {copied.problem}")

    keys_position, _ = chain_head(settings.event_store_path)  # every event up to here has its key now
    if settings.keys_path.is_file():
        _copy_sqlite(settings.keys_path, keys_destination / "keys.sqlite3")
    secret = settings.data_dir / SECRET_KEY_FILE
    secret_copied = secret.is_file()
    if secret_copied:
        _copy_file(secret, keys_destination / SECRET_KEY_FILE)

    log_id = _log_id(destination / "events.sqlite3")
    taken_at = datetime.now(UTC).isoformat()
    _write_manifest(
        keys_destination / KEYS_MANIFEST,
        {"format": FORMAT, "kind": "keys", "taken_at": taken_at, "log": log_id, "position": keys_position},
    )
    _write_manifest(
        destination / EVENTS_MANIFEST,
        {
            "format": FORMAT,
            "kind": "events",
            "taken_at": taken_at,
            "log": log_id,
            "events": copied.events,
            "head_position": copied.head_position,
            "head_hash": copied.head_hash,
            "files": blobs.linked + blobs.copied,
        },
    )
    return BackupReport(copied.events, copied.head_position, copied.head_hash, keys_position, blobs.linked, blobs.copied, secret_copied)


def restore_backup(
    source: Path,
    keys_source: Path,
    data_dir: Path,
    *,
    allow_older_keys: bool = False,
    progress: Callable[[int, int], None] = lambda done, head: None,
) -> RestoreReport:
    """Restores an event backup and a keys backup into a new or empty data directory, destroys
    again every key the restored log says was destroyed, and rebuilds the read models."""
    events = _read_manifest(source / EVENTS_MANIFEST, "events", source)
    keys = _read_manifest(keys_source / KEYS_MANIFEST, "keys", keys_source)
    if events["log"] != keys["log"] and events["log"] and keys["log"]:
        raise BackupRefused(f"the keys backup {keys_source} belongs to another event log than {source}")
    if keys["position"] < events["head_position"] and not allow_older_keys:
        raise BackupRefused(
            f"the keys backup was taken at position {keys['position']}, before this event backup "
            f"(position {events['head_position']}): content written after it would read as erased; "
            "give a keys backup taken with or after this one, or --allow-older-keys to accept that"
        )
    data_dir = data_dir.resolve()
    _require_empty(data_dir, "restore into")
    private_directory(data_dir)
    try:
        return _restore_files(source, keys_source, data_dir, events, progress)
    except sqlite3.Error as error:
        _empty(data_dir)  # it was empty: leave it so, and a second attempt may run
        raise BackupFailed(f"SQLite: {error}") from error
    except BaseException:
        _empty(data_dir)
        raise


def _restore_files(
    source: Path, keys_source: Path, data_dir: Path, events: dict[str, Any], progress: Callable[[int, int], None]
) -> RestoreReport:
    from infrastructure.bootstrap import bootstrap  # the write side, to rebuild the read models

    _copy_sqlite(source / "events.sqlite3", data_dir / "events.sqlite3")
    restored = verify(data_dir / "events.sqlite3", expect_head=events["head_hash"] if events["head_position"] else None)
    if not restored.ok or restored.head_hash != events["head_hash"]:
        raise BackupFailed(f"the backup's log does not verify: {restored.problem or 'its head is not the one recorded'}")
    if (keys_source / "keys.sqlite3").is_file():
        _copy_sqlite(keys_source / "keys.sqlite3", data_dir / "keys.sqlite3")
    if (keys_source / SECRET_KEY_FILE).is_file():
        _copy_file(keys_source / SECRET_KEY_FILE, data_dir / SECRET_KEY_FILE)
    files = _FileCopier(source / "blobs", data_dir / "blobs", link=False)
    files.copy_new()

    settings = Settings.from_env(data_dir)
    erasures, expiries, erased_in_log = reapply_destructions(settings)
    erased_since = sorted(str(UUID(person)) for person in _erased_in_keys(settings.keys_path) - erased_in_log)
    write = bootstrap(settings)
    try:
        write.runner.catch_up(progress)
        if write.runner.failures:
            name, failure = next(iter(write.runner.failures.items()))
            raise BackupFailed(f"the {name} read model failed at position {failure.position}: {failure.error}")
        reached = min(write.runner.positions().values(), default=0)
        missing = _missing_files(write.read_store, write.blobs.exists)
    finally:
        write.close()
    return RestoreReport(
        restored.events, restored.head_position, restored.head_hash, files.copied, erasures, expiries, reached, missing, erased_since
    )


def reapply_destructions(settings: Settings) -> tuple[int, int, set[str]]:
    """Destroys the keys of every person whose erasure, and of every session day whose expiry,
    the log records: a keys backup older than those events must not make them readable again.
    Returns how many erasures and expiries were applied, and the erased people (hex ids)."""
    from infrastructure.storage.event_store import open_event_store

    keys = KeyStore.at(settings.keys_path)
    app = open_event_store(settings, cached=False)
    erased = get_topic(User.UserErased)
    expired = get_topic(ChatSession.ContentExpired)
    erasures = expiries = 0
    people: set[str] = set()
    try:
        after = 0
        while notifications := app.recorder.select_notifications(after, 1000, topics=[erased, expired], inclusive_of_start=False):
            for notification in notifications:
                if notification.topic == erased:
                    person = UUID(str(notification.originator_id)).hex
                    keys.destroy(person)
                    people.add(person)
                    erasures += 1
                else:
                    event = app.mapper.to_domain_event(notification)
                    keys.expire(event.before, [UUID(str(notification.originator_id)).hex])
                    expiries += 1
            after = notifications[-1].id
    finally:
        app.close()
    return erasures, expiries, people


def _erased_in_keys(keys_path: Path) -> set[str]:
    """The people (hex ids) whose keys the key store records as destroyed by an erasure."""
    db = sqlite3.connect(f"file:{keys_path}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT subject FROM erased_subjects")}
    finally:
        db.close()


def _missing_files(read_store: Any, exists: Callable[[str], bool]) -> list[str]:
    """Files the rebuilt read models reference and the restored directory lacks."""
    with read_store.transaction() as tx:
        rows = tx.fetch_all("SELECT DISTINCT sha256 FROM blob_references")
    return sorted(row["sha256"] for row in rows if not exists(row["sha256"]))


class _FileCopier:
    """Copies `blobs/ab/cd/<sha256>` files not yet at the target, by hard link when allowed
    and possible (same filesystem), else by copy; a file removed meanwhile is skipped. A copy
    whose bytes do not match their address is refused on restore (`link=False`)."""

    def __init__(self, source: Path, target: Path, *, link: bool) -> None:
        self.source, self.target, self.link = source, target, link
        self.linked = self.copied = 0

    def copy_new(self) -> None:
        if not self.source.is_dir():
            return
        for path in self.source.glob("??/??/*"):
            if len(path.name) != 64 or not path.is_file():
                continue
            target = self.target / path.relative_to(self.source)
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                if self.link:
                    try:
                        os.link(path, target)
                        self.linked += 1
                        continue
                    except OSError as error:
                        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                            raise
                        self.link = False  # another filesystem: copy from now on
                if _copy_file(path, target) != path.name and not self.link:
                    raise BackupFailed(f"the stored file {path.name} is damaged (its bytes no longer have that SHA-256)")
                self.copied += 1
            except FileNotFoundError:
                continue  # removed as unreferenced since it was listed
        _fsync_tree(self.target)


@contextmanager
def _blob_lock(blobs: Path) -> Iterator[None]:
    """The blob lock of a running server (nothing to lock when no file was ever stored)."""
    if not blobs.is_dir():
        yield
        return
    with BlobLock(blobs / ".lock"):
        yield


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup in a single step: one read transaction on the source, so the copy
    is one committed state of it, taken while writers go on (WAL) or wait briefly (keys)."""
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    writer = sqlite3.connect(target, isolation_level=None)
    try:
        reader.backup(writer, pages=-1, sleep=0.05)
        writer.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        writer.close()
        reader.close()
    target.chmod(0o600)
    _fsync(target)


def _copy_file(source: Path, target: Path) -> str:
    """Copies a file (0600, fsynced); returns the SHA-256 of the bytes copied."""
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as data:
        while chunk := data.read(1024 * 1024):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    if root.is_dir():
        for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            _fsync(directory)


def _log_id(path: Path) -> str | None:
    """The first link of the hash chain: which log this is (None for an empty one)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT hash FROM event_chain WHERE position = 1").fetchone()
    finally:
        db.close()
    return bytes(row[0]).hex() if row else None


def _require_empty(path: Path, doing: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupRefused(f"{path} is not an empty directory; {doing} a new or empty one")


def _empty(path: Path) -> None:
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _write_manifest(path: Path, content: dict[str, Any]) -> None:
    """Written last, atomically: a backup without its manifest is incomplete and is refused."""
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(content, out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    partial.rename(path)
    _fsync(path.parent)


def _read_manifest(path: Path, kind: str, directory: Path) -> dict[str, Any]:
    what = f"{kind.replace('events', 'event')} backup"
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupRefused(f"{directory} is not a complete Chronicle {what} (no {path.name})") from None
    except (OSError, ValueError) as error:
        raise BackupRefused(f"{path} cannot be read: {error}") from None
    if not isinstance(content, dict) or content.get("kind") != kind or content.get("format") != FORMAT:
        raise BackupRefused(f"{path} does not describe a {what} this version of Chronicle restores")
    return content
