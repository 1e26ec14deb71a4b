"""Each aggregate declares its event classes beside the methods that apply them (`@event(Class)`),
so a type checker knows them. The fields are written twice, in the class and in the method's
parameters: a parameter the class lacks would be dropped without a word when the event is
triggered, so the two lists are compared here."""

import dataclasses
import importlib
import inspect
import pkgutil

from eventsourcing.domain import CommandMethodDecorator

import domain
from domain.aggregate import ChronicleAggregate

for _module in pkgutil.iter_modules(domain.__path__):
    importlib.import_module(f"domain.{_module.name}")

AGGREGATES = ChronicleAggregate.__subclasses__()
ENVELOPE = {field.name for field in dataclasses.fields(ChronicleAggregate.Created)}


def decorated_methods(aggregate: type[ChronicleAggregate]) -> list[CommandMethodDecorator]:
    return [value for value in vars(aggregate).values() if isinstance(value, CommandMethodDecorator)]


def test_every_aggregate_is_found():
    names = {aggregate.__name__ for aggregate in AGGREGATES}
    assert {"ChatSession", "Message", "Document", "Conversion", "User", "EmailClaim", "Invitation", "DailyUsage"} <= names


def test_every_event_method_names_a_declared_event_class():
    for aggregate in AGGREGATES:
        for method in decorated_methods(aggregate):
            assert method.given_event_cls is not None, f"{aggregate.__name__}.{method.decorated_func.__name__} names its event by a string"


def test_each_event_class_has_exactly_the_parameters_of_the_method_that_applies_it():
    compared = 0
    for aggregate in AGGREGATES:
        for method in decorated_methods(aggregate):
            assert method.given_event_cls is not None
            event_class = getattr(aggregate, method.given_event_cls.__name__)
            fields = [field.name for field in dataclasses.fields(event_class) if field.name not in ENVELOPE]
            parameters = list(inspect.signature(method.decorated_func).parameters)[1:]
            assert fields == parameters, event_class.__qualname__
            compared += 1
    assert compared >= 39
