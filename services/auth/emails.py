"""Email normalisation: one spelling per mailbox, no look-alikes.

An address is NFKC-normalised, trimmed and lowercased; its domain is IDNA-encoded (so
``bücher.example`` and ``xn--bcher-kva.example`` are one account). Refused, with a message
that says why: invisible characters (zero-width, bidirectional overrides and isolates, any
other format character), control characters, and a local part or domain label that mixes
scripts (Latin with Cyrillic or Greek look-alikes, ...).
"""

from __future__ import annotations

import re
import unicodedata

import idna

__all__ = ["normalise_email"]

_SHAPE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# Scripts are named by the first word of a letter's Unicode name (LATIN, CYRILLIC, ...).
# CJK ideographs and kana are commonly mixed in one name; treat them as one script.
_SCRIPT_ALIASES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK"}


def _script(ch: str) -> str | None:
    """The script of a letter, or None for digits, punctuation and symbols."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    word = name.split(" ", 1)[0] if name else "UNKNOWN"
    return _SCRIPT_ALIASES.get(word, word)


def _single_script(part: str, what: str) -> None:
    scripts = {s for s in map(_script, part) if s is not None}
    if len(scripts) > 1:
        raise ValueError(
            f"the {what} mixes scripts ({', '.join(sorted(s.lower() for s in scripts))}); "
            "look-alike letters from another alphabet are not allowed"
        )


def normalise_email(value: str) -> str:
    """The canonical form of ``value``; ``ValueError`` saying why it is refused."""
    email = unicodedata.normalize("NFKC", value).strip()
    for ch in email:
        category = unicodedata.category(ch)
        if category in ("Cf", "Cc", "Co", "Cs", "Cn") or ch in "\u2028\u2029":
            raise ValueError(
                f"contains an invisible or control character (U+{ord(ch):04X}); "
                "type the address again"
            )
    email = email.lower()
    if len(email) > 254 or not _SHAPE.match(email):
        raise ValueError("not a valid email address")
    local, domain = email.rsplit("@", 1)
    _single_script(local, "part before @")
    labels = domain.split(".")
    for label in labels:
        _single_script(label, "domain")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError("the domain is not a valid internationalised domain name") from exc
    normalised = f"{local}@{ascii_domain}"
    if len(normalised) > 254:
        raise ValueError("not a valid email address")
    return normalised
