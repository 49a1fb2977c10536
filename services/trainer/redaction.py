"""A run's secrets: reading them for the training process, and keeping them out of output.

The secrets a spec lists (``secrets: [HF_TOKEN, ...]``) are read from the secret store for
the run's owner right before launch and handed to the training process as environment
variables of the same name; they are never written to the DB, events or platform logs.
Whatever the process prints passes through a :class:`Redactor` before it becomes an event
(``TrainingLog``, ``TrainingProgress``, ``TrainingCompleted`` metrics, the stderr tail in a
``TrainingFailed`` reason): each occurrence of a value — verbatim, URL-quoted, JSON/repr
escaped, or base64-encoded — becomes ``[redacted:NAME]``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from shared.secrets import SecretStore

__all__ = ["MIN_LENGTH", "Redactor", "RunSecrets", "read_run_secrets"]

log = logging.getLogger(__name__)

#: Values shorter than this are not redacted (they would match everywhere).
MIN_LENGTH = 4
#: base64 fragments are only matched for values at least this long (fewer false hits).
_MIN_BASE64 = 8

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PERCENT = re.compile(r"%[0-9A-F]{2}")
#: Variables a secret may never set: the loader's, the interpreter's, the shell's and the
#: platform's own (the run's computed variables are passed in as ``reserved`` as well).
_RESERVED_PREFIXES = ("AIDP_", "LD_", "DYLD_", "PYTHON", "TORCHELASTIC_", "BASH_FUNC_")
_RESERVED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "IFS",
        "ENV",
        "BASH_ENV",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "CUDA_VISIBLE_DEVICES",
        "RANK",
        "LOCAL_RANK",
        "GROUP_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "GLOO_SOCKET_IFNAME",
        "NCCL_SOCKET_IFNAME",
    }
)


def _base64_fragments(value: bytes) -> set[str]:
    """The part of base64(value) that is the same wherever ``value`` sits in an encoded
    stream: one fragment per byte alignment (0, 1, 2), standard and URL-safe alphabets."""
    fragments: set[str] = set()
    for offset, skip in ((0, 0), (1, 2), (2, 3)):
        data = b"\0" * offset + value
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(data).decode().rstrip("=")
            if len(data) % 3:
                text = text[:-1]  # the last character mixes in what follows the value
            fragment = text[skip:]
            if len(fragment) >= _MIN_BASE64:
                fragments.add(fragment)
    return fragments


def _forms(value: str) -> set[str]:
    """The strings under which ``value`` commonly leaks into output."""
    bases = {value, value.strip()}
    if "\n" in value.strip():  # multi-line (a key file): each line leaks on its own
        bases |= {line.strip() for line in value.splitlines()}
    forms: set[str] = set()
    for base in (b for b in bases if len(b) >= MIN_LENGTH):
        quoted = quote(base, safe="")
        forms |= {
            base,
            quoted,
            _PERCENT.sub(lambda m: m.group(0).lower(), quoted),
            quote(base),
            quote_plus(base),
            json.dumps(base)[1:-1],
            json.dumps(base, ensure_ascii=False)[1:-1],
            repr(base)[1:-1],
        }
        if len(base) >= _MIN_BASE64:
            forms |= _base64_fragments(base.encode())
    return {f for f in forms if len(f) >= MIN_LENGTH}


class Redactor:
    """Replaces secret values (and their common encodings) in text with ``[redacted:NAME]``.

    Built from ``{name: value}``; values shorter than :data:`MIN_LENGTH` are ignored.
    Overlapping matches (one value inside another, or two adjacent) are merged into one
    placeholder naming every secret involved, so no fragment of either survives.
    """

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        needles: dict[str, str] = {}
        for name, value in sorted((secrets or {}).items()):
            for form in _forms(value):
                needles.setdefault(form, name)
        # longest first: a placeholder covers the widest match at each position
        self._needles = sorted(needles.items(), key=lambda item: -len(item[0]))
        self.names = sorted({name for name in needles.values()})

    def __bool__(self) -> bool:
        return bool(self._needles)

    def __repr__(self) -> str:  # never the values
        return f"Redactor(names={self.names})"

    def redact(self, text: str) -> str:
        """``text`` with every secret occurrence replaced."""
        if not self._needles or not text:
            return text
        spans: list[tuple[int, int, str]] = []
        for needle, name in self._needles:
            start = text.find(needle)
            while start != -1:
                spans.append((start, start + len(needle), name))
                start = text.find(needle, start + 1)
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        pos = 0
        i = 0
        while i < len(spans):
            start, end, name = spans[i]
            names = [name]
            i += 1
            while i < len(spans) and spans[i][0] <= end:  # overlapping or adjacent
                end = max(end, spans[i][1])
                if spans[i][2] not in names:
                    names.append(spans[i][2])
                i += 1
            out.append(text[pos:start])
            out.append(f"[redacted:{','.join(sorted(names))}]")
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def redact_obj(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string (dict keys too) redacted."""
        if not self._needles:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact_obj(v) for v in value)
        return value


@dataclass(frozen=True)
class RunSecrets:
    """What a run's training process gets: ``env`` (name → value, never logged), the
    ``redactor`` for its output, and ``notes`` for the run's log (names only)."""

    env: dict[str, str] = field(default_factory=dict, repr=False)
    redactor: Redactor = field(default_factory=Redactor)
    notes: list[str] = field(default_factory=list)


def _refused(name: str, reserved: Collection[str]) -> str | None:
    if not _ENV_NAME.fullmatch(name):
        return "is not a valid environment variable name"
    if name in reserved or name in _RESERVED or name.startswith(_RESERVED_PREFIXES):
        return "would override a variable the platform sets"
    return None


def read_run_secrets(
    store: SecretStore,
    *,
    owner_id: str | None,
    names: list[str],
    reserved: Collection[str] = (),
    run_id: object = None,
) -> RunSecrets:
    """Read the spec's secrets for ``owner_id`` (the user the run belongs to).

    Like the fetcher, a name the user has not stored does not fail the run: it is skipped,
    with a warning in the platform log and a note for the run's log. So is a name that is
    not a valid variable name or would override a platform variable. Store errors propagate
    (the launch fails and is retried).
    """
    env: dict[str, str] = {}
    notes: list[str] = []

    def skip(name: str, why: str) -> None:
        log.warning("run %s: secret %s %s; skipped", run_id, name, why)
        notes.append(f"aidp: secret {name} {why}; not set in the training environment")

    for name in dict.fromkeys(names):
        if (why := _refused(name, reserved)) is not None:
            skip(name, why)
            continue
        secret = store.get_user_secret(owner_id, name) if owner_id else None
        if secret is None:
            skip(name, "is not stored for the run's owner" if owner_id else "has no known owner")
            continue
        value = secret.reveal()
        env[name] = value
        if len(value) < MIN_LENGTH:
            log.warning("run %s: secret %s is too short to be redacted from logs", run_id, name)
            notes.append(
                f"aidp: secret {name} is shorter than {MIN_LENGTH} characters and is not "
                "redacted from the logs"
            )
    return RunSecrets(env=env, redactor=Redactor(env), notes=notes)
