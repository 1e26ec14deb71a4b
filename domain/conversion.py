"""Conversions of a document into another format. There is one per document and target (its
id derives from both), so asking twice answers the same conversion; the worker that performs
it records when it started and how it ended; a failed one may be retried (`chronicle documents
reconvert --failed`), which starts a new attempt of the same conversion."""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.aggregate import ChronicleAggregate, Conflict, InvalidValue

TARGETS = ("markdown", "text", "html")
FAILURE_REASONS = ("unsupported_type", "corrupt_file", "encrypted", "too_large", "timeout", "document_deleted")
STATUSES = ("pending", "running", "completed", "failed")


def conversion_id_for(document_id: UUID, target: str) -> UUID:
    return uuid5(document_id, f"conversion:{target}")


class ConversionIsFinished(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(f"the conversion is already {status}")


class Conversion(ChronicleAggregate):
    @staticmethod
    def create_id(document_id: UUID, target: str) -> UUID:
        return conversion_id_for(document_id, target)

    class ConversionRequested(ChronicleAggregate.Created):
        document_id: UUID
        owner_id: UUID
        target: str

    @event(ConversionRequested)
    def __init__(self, document_id: UUID, owner_id: UUID, target: str) -> None:
        self.document_id = document_id
        self.owner_id = owner_id
        self.target = target
        self.status = "pending"
        self.attempt = 1

    @classmethod
    def request(cls, document_id: UUID, owner_id: UUID, target: str) -> Conversion:
        if target not in TARGETS:
            raise InvalidValue("target", f"target must be one of {', '.join(TARGETS)}")
        return cls(document_id=document_id, owner_id=owner_id, target=target)

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")

    def retry(self) -> None:
        """A failed conversion is done again (e.g. after a converter was fixed)."""
        if self.status != "failed":
            raise Conflict(f"only a failed conversion can be retried; this one is {self.status}")
        self._retried(attempt=self.attempt + 1)

    class ConversionRetried(ChronicleAggregate.Event):
        attempt: int

    @event(ConversionRetried)
    def _retried(self, attempt: int) -> None:
        self.status = "pending"
        self.attempt = attempt

    def start(self) -> None:
        self._require_open()
        if self.status == "pending":
            self._started(attempt=self.attempt)

    class ConversionStarted(ChronicleAggregate.Event):
        attempt: int

    @event(ConversionStarted)
    def _started(self, attempt: int) -> None:
        self.status = "running"

    def complete(self, output_sha256: str, output_size: int, pages: int | None, characters: int, duration_ms: int) -> None:
        self._require_open()
        self._completed(
            output_sha256=output_sha256,
            output_size=output_size,
            pages=pages,
            characters=characters,
            duration_ms=duration_ms,
        )

    class ConversionCompleted(ChronicleAggregate.Event):
        output_sha256: str
        output_size: int
        pages: int | None
        characters: int
        duration_ms: int

    @event(ConversionCompleted)
    def _completed(self, output_sha256: str, output_size: int, pages: int | None, characters: int, duration_ms: int) -> None:
        self.status = "completed"
        self.output_sha256 = output_sha256

    def fail(self, reason: str, detail: str, duration_ms: int) -> None:
        if reason not in FAILURE_REASONS:
            raise InvalidValue("reason", f"reason must be one of {', '.join(FAILURE_REASONS)}")
        self._require_open()
        self._failed(reason=reason, detail=detail[:500], duration_ms=duration_ms)

    class ConversionFailed(ChronicleAggregate.Event):
        reason: str
        detail: str
        duration_ms: int

    @event(ConversionFailed)
    def _failed(self, reason: str, detail: str, duration_ms: int) -> None:
        self.status = "failed"

    def _require_open(self) -> None:
        if self.finished:
            raise ConversionIsFinished(self.status)
