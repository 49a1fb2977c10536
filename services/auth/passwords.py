"""Password hashing (argon2id) and the password policy.

The policy refuses passwords on a shipped list of the 30,000 most common ones
(``data/common-passwords.txt``, from zxcvbn's frequency list: checking a breached-password
service by k-anonymity needs the internet, so the list ships instead), decorated forms of
them, and anything zxcvbn scores below the configured strength.

Verification of an unknown user runs against a dummy hash made with the same parameters,
so "no such user" and "wrong password" cost the same time.
"""

from __future__ import annotations

import re
import secrets
import string
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn  # type: ignore[import-untyped]

from shared.errors import InvalidInput

__all__ = ["Passwords", "check_policy", "common_passwords"]

MIN_LENGTH = 10
MAX_LENGTH = 1024
#: zxcvbn's running time grows with the length; the first characters decide the score.
_SCORED_PREFIX = 72
_COMMON_FILE = Path(__file__).parent / "data" / "common-passwords.txt"
_DECORATION = re.compile(r"^[\W\d_]+|[\W\d_]+$")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common (breached) passwords, lowercased."""
    lines = _COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def _classes(password: str) -> int:
    groups = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    found = {i for ch in password for i, group in enumerate(groups) if ch in group}
    if any(not any(ch in group for group in groups) for ch in password):
        found.add(len(groups))
    return len(found)


def _is_common(password: str) -> bool:
    """The password, or its core without leading/trailing digits and symbols
    (``Password1!`` → ``password``, ``Summer2024!`` → ``summer``), is on the list."""
    lowered = password.strip().lower()
    common = common_passwords()
    core = _DECORATION.sub("", lowered)
    return lowered in common or (len(core) >= 3 and core in common)


def check_policy(password: str, *, email: str, field: str = "password", min_score: int = 3) -> None:
    """Raise :class:`InvalidInput` naming ``field`` unless ``password`` meets the policy:
    length, two kinds of characters, not the email, not on the common-password list (nor a
    decorated form of one), and a zxcvbn strength score of at least ``min_score`` (0-4)."""
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
    local = email.split("@", 1)[0].lower()
    if lowered == email.lower() or lowered == local:
        raise InvalidInput(f"{field}: must not be your email address")
    if _is_common(password):
        raise InvalidInput(
            f"{field}: is too common (it, or it with digits and symbols added, is on "
            "breached-password lists); choose a passphrase of several unrelated words"
        )
    result = zxcvbn(password[:_SCORED_PREFIX], user_inputs=[email, local])
    if int(result["score"]) < min_score:
        feedback = result.get("feedback") or {}
        hints = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
        hint = " ".join(h.strip() for h in hints if h and h.strip())
        raise InvalidInput(
            f"{field}: is too easy to guess"
            + (f" ({hint})" if hint else "")
            + "; a passphrase of several unrelated words works well"
        )


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
