"""What every projector is: a name, its tables, and how each event changes them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar

from projections.storage import ReadTransaction

Apply = Callable[[Any, ReadTransaction, Any, int], None]


class Projector:
    """Subclasses list their DDL in `schema`, their tables in `tables`, and map event
    classes to methods `(self, tx, event, position)` in `handlers`. Events a projector
    does not handle are skipped (its position still advances past them)."""

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    schema: ClassVar[tuple[str, ...]]
    handlers: ClassVar[dict[type, Apply]]
    rebuild_cost: ClassVar[int] = 1
    """How much of a rebuild's work this projector is, roughly (rows and indexes per message
    event): rebuilds in parallel processes split projectors into groups of about equal cost."""

    def apply(self, tx: ReadTransaction, event: Any, position: int) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(self, tx, event, position)

    def apply_batch(self, tx: ReadTransaction, events: Sequence[tuple[int, Any]]) -> None:
        """Applies `(position, event)`s in order, as `apply` would one at a time (the runner
        checks that they give the same rows). A projector may override it to write a batch
        set-based; the runner falls back to `apply`, event by event, to find an event it refuses."""
        if type(self).apply is not Projector.apply:  # a projector that decides per event itself
            for position, event in events:
                self.apply(tx, event, position)
            return
        handler_of = self.handlers.get  # the handlers, without a call of `apply` per event
        for position, event in events:
            handler = handler_of(type(event))
            if handler is not None:
                handler(self, tx, event, position)


def iso(moment: datetime | str) -> str:
    """A time as the read tables store it: `datetime.isoformat()`, which is also the text an
    event's time is stored as in the log, so a time decoded in its stored form passes through."""
    return moment if type(moment) is str else moment.isoformat()  # type: ignore[union-attr]


def handles(*event_classes: type) -> Callable[[Apply], Apply]:
    """Marks a projector method as the handler of these event classes."""

    def mark(method: Apply) -> Apply:
        method.handles = event_classes  # type: ignore[attr-defined]  # an attribute on a function, which mypy does not model
        return method

    return mark


def collect_handlers(cls: type[Projector]) -> type[Projector]:
    """Class decorator: builds `handlers` from the methods marked with `@handles`."""
    cls.handlers = {event_class: method for method in vars(cls).values() for event_class in getattr(method, "handles", ())}
    return cls
