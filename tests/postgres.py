"""A fresh PostgreSQL database per test on the server at 127.0.0.1:5432 (`CHRONICLE_TEST_POSTGRES`
names another server), dropped afterwards. An unreachable server fails the test, never skips it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

SERVER = os.environ.get("CHRONICLE_TEST_POSTGRES", "postgresql://127.0.0.1:5432")


def _admin() -> psycopg.Connection[tuple]:
    try:
        return psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"these tests need the PostgreSQL server at {SERVER} (set CHRONICLE_TEST_POSTGRES): {error}", pytrace=False)


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new empty database, dropped (with its remaining connections) afterwards."""
    name = f"chronicle_test_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
