"""Password hashing with argon2id (argon2-cffi's defaults). CPU-heavy: call it off the event loop."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

PASSWORD_MIN = 8
PASSWORD_MAX = 256


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_for_no_one(password: str) -> None:
    """Costs what `verify_password` costs, for a sign-in to an unknown address: the answer's
    timing does not tell which addresses have accounts."""
    verify_password(_hash_of_no_one(), password)


@cache
def _hash_of_no_one() -> str:
    """Made on first use, not at import (it costs a hash: ~0.1 s)."""
    return hash_password("not a real password")
