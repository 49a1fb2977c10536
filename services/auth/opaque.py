"""Opaque tokens as selector + verifier: look up by the selector, compare the verifier's
SHA-256 in constant time. Only the hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["API_TOKEN_PREFIX", "new_selector", "new_verifier", "sha256_hex", "verifier_matches"]

API_TOKEN_PREFIX = "aidp_"


def new_selector() -> str:
    return secrets.token_hex(12)  # 24 hex chars, not secret: it only finds the row


def new_verifier() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def verifier_matches(stored_hash: str, presented: str) -> bool:
    return hmac.compare_digest(stored_hash.encode(), sha256_hex(presented).encode())
