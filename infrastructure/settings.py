"""Configuration, from the environment (and the CLI's options, which set the same variables)."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

MiB = 1024 * 1024
log = logging.getLogger(__name__)


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


@dataclass(frozen=True)
class RateLimitSettings:
    """Per minute, but failed sign-ins per account, which count per 15 minutes; 0 is no limit."""

    login_per_minute: int = 10
    login_failures_per_account: int = 5
    posts_per_minute: int = 600
    lookups_per_minute: int = 30
    passwords_per_minute: int = 10
    writes_per_minute: int = 600
    searches_per_minute: int = 60


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    secret_key: str
    token_ttl_seconds: int
    read_wait_seconds: float
    assistant_concurrency: int
    assistant_timeout: float
    assistant_pace: float
    assistant_provider: str
    assistant_answers: str
    llm_base_url: str
    llm_model: str
    llm_api_key: str | None
    llm_context_chars: int
    upload_max_bytes: int
    stream_queue_frames: int
    """How many frames a WebSocket stream may have waiting before the client counts as too slow (4429)."""
    conversion_concurrency: int
    conversion_timeout: float
    conversion_memory_bytes: int
    conversion_max_unpacked_bytes: int
    retention_days: int | None
    retention_interval: float
    allowed_origins: frozenset[str] = frozenset()
    """Origins besides the server's own from which a signed-in browser may open streams."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a separately hosted client (CORS is off when empty)."""
    rate_limits: RateLimitSettings = RateLimitSettings()
    trusted_proxies: tuple[str, ...] = ()
    header_timeout: float = 10.0
    """Seconds a client has to send a request's line and headers."""
    body_idle_timeout: float = 15.0
    """Seconds a request body may pause between chunks."""
    stream_ping_interval: float = 20.0
    """Seconds between the WebSocket protocol pings the server sends on an open stream (0: none)."""
    stream_ping_timeout: float = 20.0
    """Seconds a stream's client has to answer a ping before the server closes the connection (1011)."""
    stream_compression: bool = False
    """permessage-deflate on streams: off, as it keeps ≈ 40 KB of zlib state per open connection (ADR-047)."""
    """Addresses whose `X-Forwarded-For` is believed (none by default: the peer's address counts)."""
    metrics_token: str | None = None
    """When set, `/metrics` answers only requests carrying `Authorization: Bearer <token>`."""
    log_format: str = "console"
    """`console` (aligned, coloured on a terminal) or `json` (one object per line, for a collector)."""
    log_level: str = "info"
    access_log: bool = True
    """One line per HTTP request (method, route, status, duration, user, correlation id, bytes)."""
    otlp_endpoint: str | None = None
    """`OTEL_EXPORTER_OTLP_ENDPOINT`: traces go there over OTLP/HTTP; unset, no tracer is installed."""
    database_url: str | None = None
    """`CHRONICLE_DATABASE_URL` (`postgresql://user:password@host:port/dbname`): the event log and
    the data keys live in that PostgreSQL database; unset, in SQLite files of the data directory."""
    blob_dir: Path | None = None
    """`CHRONICLE_BLOB_DIR`: uploaded and converted files in a directory all nodes share (a network
    mount); unset, in the data directory's `blobs`."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("secret_key", "llm_api_key", "metrics_token")

    def effective(self) -> dict[str, Any]:
        """Every setting as it is in force, for the start-up log line: secrets show only whether
        they are set, and a URL's user and password are cut out."""
        shown: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in self.SECRET_FIELDS:
                value = "***" if value else None
            elif isinstance(value, str) and "@" in value and "://" in value:
                scheme, _, rest = value.partition("://")
                value = f"{scheme}://***@{rest.rpartition('@')[2]}"
            elif isinstance(value, RateLimitSettings):
                value = asdict(value)
            elif isinstance(value, frozenset | tuple):
                value = sorted(value) if isinstance(value, frozenset) else list(value)
            elif isinstance(value, Path):
                value = str(value)
            shown[item.name] = value
        return shown

    @property
    def on_postgres(self) -> bool:
        """Whether the event log and the data keys are in PostgreSQL (else SQLite files)."""
        return self.database_url is not None

    def require_shared_secret(self) -> None:
        """A node on PostgreSQL serves tokens every other node must accept: it needs the one
        signing key all nodes share (`CHRONICLE_SECRET_KEY` or `CHRONICLE_SECRET_KEY_FILE`),
        never one of its own."""
        if self.on_postgres and not self.secret_key:
            raise ValueError(
                "a node on PostgreSQL (CHRONICLE_DATABASE_URL) needs the signing key every node shares: "
                "set CHRONICLE_SECRET_KEY_FILE to a file holding it (or CHRONICLE_SECRET_KEY)"
            )

    @property
    def blob_dir_shared(self) -> bool:
        """Whether the blob directory is one other nodes may use too (`CHRONICLE_BLOB_DIR`)."""
        return self.blob_dir is not None

    @property
    def event_store_path(self) -> Path:
        return self.data_dir / "events.sqlite3"

    @property
    def read_store_path(self) -> Path:
        return self.data_dir / "read.sqlite3"

    @property
    def keys_path(self) -> Path:
        """Personal data keys (crypto-shredding): outside the event log, never in a backup of it."""
        return self.data_dir / "keys.sqlite3"

    @property
    def blobs_path(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None, *, read_only: bool = False) -> Settings:
        """`read_only`: for commands that only read an existing data directory: nothing is
        created in it (no directory, no signing key)."""
        path = Path(data_dir or os.environ.get("CHRONICLE_DATA_DIR") or "./var").resolve()
        if not read_only:
            private_directory(path)
        database_url = _database_url()
        return cls(
            data_dir=path,
            secret_key=_secret_key(path, kept=not read_only and database_url is None),
            token_ttl_seconds=_int("CHRONICLE_TOKEN_TTL", 3600),
            read_wait_seconds=float(os.environ.get("CHRONICLE_READ_WAIT", "").strip() or 5),
            assistant_concurrency=_int("CHRONICLE_ASSISTANT_CONCURRENCY", 4),
            assistant_timeout=float(os.environ.get("CHRONICLE_ASSISTANT_TIMEOUT", "").strip() or 60),
            assistant_pace=float(os.environ.get("CHRONICLE_ASSISTANT_PACE", "").strip() or 0),
            assistant_provider=os.environ.get("CHRONICLE_ASSISTANT_PROVIDER", "").strip() or "local",
            assistant_answers=os.environ.get("CHRONICLE_ASSISTANT_ANSWERS", "").strip() or "questions",
            llm_base_url=os.environ.get("CHRONICLE_LLM_BASE_URL", "").strip(),
            llm_model=os.environ.get("CHRONICLE_LLM_MODEL", "").strip(),
            llm_api_key=os.environ.get("CHRONICLE_LLM_API_KEY") or None,
            llm_context_chars=_int("CHRONICLE_LLM_CONTEXT_CHARS", 12_000),
            upload_max_bytes=_int("CHRONICLE_UPLOAD_MAX_MB", 50) * MiB,
            stream_queue_frames=_int("CHRONICLE_WS_QUEUE", 1000),
            conversion_concurrency=_int("CHRONICLE_CONVERSION_CONCURRENCY", 2),
            conversion_timeout=float(os.environ.get("CHRONICLE_CONVERSION_TIMEOUT", "").strip() or 120),
            conversion_memory_bytes=_int("CHRONICLE_CONVERSION_MEMORY_MB", 2048) * MiB,
            conversion_max_unpacked_bytes=_int("CHRONICLE_CONVERSION_MAX_UNPACKED_MB", 512) * MiB,
            retention_days=_int("CHRONICLE_RETENTION_DAYS", 0) or None,
            retention_interval=float(os.environ.get("CHRONICLE_RETENTION_INTERVAL", "").strip() or 3600),
            allowed_origins=frozenset(_list("CHRONICLE_ALLOWED_ORIGINS") + _list("CHRONICLE_CORS_ORIGINS")),
            cors_origins=tuple(_list("CHRONICLE_CORS_ORIGINS")),
            trusted_proxies=tuple(_list("CHRONICLE_TRUSTED_PROXIES")),
            header_timeout=float(os.environ.get("CHRONICLE_HEADER_TIMEOUT", "").strip() or 10),
            body_idle_timeout=float(os.environ.get("CHRONICLE_BODY_IDLE_TIMEOUT", "").strip() or 15),
            stream_ping_interval=float(os.environ.get("CHRONICLE_WS_PING_INTERVAL", "").strip() or 20),
            stream_ping_timeout=float(os.environ.get("CHRONICLE_WS_PING_TIMEOUT", "").strip() or 20),
            stream_compression=_choice("CHRONICLE_WS_COMPRESSION", ("off", "on")) == "on",
            metrics_token=os.environ.get("CHRONICLE_METRICS_TOKEN", "").strip() or None,
            log_format=_choice("CHRONICLE_LOG_FORMAT", ("console", "json")),
            log_level=_choice("CHRONICLE_LOG_LEVEL", ("info", "debug", "warning", "error", "critical", "trace")),
            access_log=_choice("CHRONICLE_ACCESS_LOG", ("on", "off")) == "on",
            otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip().rstrip("/") or None,
            database_url=database_url,
            blob_dir=Path(os.environ["CHRONICLE_BLOB_DIR"].strip()).resolve() if os.environ.get("CHRONICLE_BLOB_DIR", "").strip() else None,
            rate_limits=RateLimitSettings(
                login_per_minute=_int("CHRONICLE_RATE_LIMIT_LOGIN", 10),
                login_failures_per_account=_int("CHRONICLE_RATE_LIMIT_LOGIN_FAILURES", 5),
                posts_per_minute=_int("CHRONICLE_RATE_LIMIT_POSTS", 600),
                lookups_per_minute=_int("CHRONICLE_RATE_LIMIT_LOOKUPS", 30),
                passwords_per_minute=_int("CHRONICLE_RATE_LIMIT_PASSWORDS", 10),
                writes_per_minute=_int("CHRONICLE_RATE_LIMIT_WRITES", 600),
                searches_per_minute=_int("CHRONICLE_RATE_LIMIT_SEARCHES", 60),
            ),
        )


def private_directory(path: Path) -> Path:
    """The data directory holds message text, emails and the data keys: it is made 0700, and
    one that already exists with looser modes is reported (left as the operator set it)."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700)
        path.chmod(0o700)  # mkdir's mode is masked by the umask
    elif path.stat().st_mode & 0o077:
        log.warning("the data directory %s is readable by others (mode %o); chmod 700 it", path, path.stat().st_mode & 0o777)
    return path


def _choice(name: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed` (the first is the default); anything else stops the start with a clear message."""
    value = os.environ.get(name, "").strip().lower() or allowed[0]
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _database_url() -> str | None:
    """`CHRONICLE_DATABASE_URL`: a `postgresql://` URL, or unset for the embedded SQLite files."""
    value = os.environ.get("CHRONICLE_DATABASE_URL", "").strip()
    if not value:
        return None
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"CHRONICLE_DATABASE_URL must be a postgresql:// URL, not {value.split('://')[0]!r}")
    return value


def _list(name: str) -> list[str]:
    """A comma-separated setting."""
    return [item.strip().rstrip("/") for item in os.environ.get(name, "").split(",") if item.strip()]


def _secret_key(data_dir: Path, *, kept: bool) -> str:
    """`CHRONICLE_SECRET_KEY`, else the contents of `CHRONICLE_SECRET_KEY_FILE`, else (`kept`: one
    SQLite node that may write its data directory) a key generated once and kept there, else none."""
    if value := os.environ.get("CHRONICLE_SECRET_KEY"):
        return value
    if file := os.environ.get("CHRONICLE_SECRET_KEY_FILE", "").strip():
        try:
            key = Path(file).read_text().strip()
        except OSError as error:
            raise ValueError(f"CHRONICLE_SECRET_KEY_FILE: cannot read {file}: {error.strerror}") from None
        if not key:
            raise ValueError(f"CHRONICLE_SECRET_KEY_FILE: {file} is empty")
        return key
    return _kept_secret(data_dir) if kept else ""


def _kept_secret(data_dir: Path) -> str:
    """A signing key generated once and kept (mode 0600) in the data directory."""
    path = data_dir / "secret.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key
