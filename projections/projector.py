"""What every projector is: a name, its tables, and how each event changes them."""

from __future__ import annotations

from collections.abc import Callable
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

    def apply(self, tx: ReadTransaction, event: Any, position: int) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(self, tx, event, position)


def iso(moment: datetime) -> str:
    return moment.isoformat()


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
