"""Password hashing (argon2id) and the password policy.

Verification of an unknown user runs against a dummy hash made with the same parameters,
so "no such user" and "wrong password" cost the same time.
"""

from __future__ import annotations

import secrets
import string

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from shared.errors import InvalidInput

__all__ = ["COMMON_PASSWORDS", "Passwords", "check_policy"]

MIN_LENGTH = 10
MAX_LENGTH = 1024

#: A short deny-list of the most common passwords of 10+ characters (lowercased).
COMMON_PASSWORDS = frozenset(
    {
        "1234567890",
        "12345678910",
        "0123456789",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "qwertyuiop",
        "qwerty1234",
        "qwerty12345",
        "qwerty123456",
        "password12",
        "password123",
        "password1234",
        "password!1",
        "passw0rd123",
        "iloveyou12",
        "abc1234567",
        "abcdefghij",
        "aa12345678",
        "football12",
        "baseball12",
        "welcome123",
        "welcome1234",
        "letmein123",
        "changeme123",
        "administrator",
        "admin12345",
        "admin123456",
        "trustno1234",
        "monkey12345",
        "dragon12345",
        "sunshine12",
        "princess12",
        "q1w2e3r4t5",
        "zaq12wsxcde",
        "asdfghjkl1",
        "1234qwerasdf",
        "p@ssw0rd123",
        "p@ssword123",
        "secret1234",
        "master12345",
    }
)


def _classes(password: str) -> int:
    groups = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    found = {i for ch in password for i, group in enumerate(groups) if ch in group}
    if any(not any(ch in group for group in groups) for ch in password):
        found.add(len(groups))
    return len(found)


def check_policy(password: str, *, email: str, field: str = "password") -> None:
    """Raise :class:`InvalidInput` naming ``field`` unless ``password`` meets the policy."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"{field}: must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"{field}: must be at most {MAX_LENGTH} characters long")
    if _classes(password) < 2:
        raise InvalidInput(
            f"{field}: must mix at least two kinds of characters "
            "(lowercase, uppercase, digits, symbols)"
        )
    lowered = password.strip().lower()
    if lowered == email.lower() or lowered == email.split("@", 1)[0].lower():
        raise InvalidInput(f"{field}: must not be your email address")
    if lowered in COMMON_PASSWORDS:
        raise InvalidInput(f"{field}: is too common; choose another")


class Passwords:
    """argon2id hashing with fixed parameters and a timing-equal miss path."""

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; ``None`` (unknown user) costs the same and fails."""
        try:
            ok = self._hasher.verify(stored_hash or self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
