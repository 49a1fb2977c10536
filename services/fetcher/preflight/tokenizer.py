"""The model's tokenizer and chat template, loaded from the bytes of its files (runs in
the check's child process: both come from a hub and are untrusted)."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["Tokenizer"]


class Tokenizer:
    """The model's tokenizer.json and chat template, loaded from memory."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.tokenizer: Any = None
        self.template: str | None = None
        self.config: dict[str, Any] = {}
        self.special: dict[str, str] = {}
        if "config.json" in files:
            self.config = _json_or_empty(files["config.json"])
        if "tokenizer.json" in files:
            from tokenizers import Tokenizer as RustTokenizer

            self.tokenizer = RustTokenizer.from_str(files["tokenizer.json"].decode())
        tok_config: dict[str, Any] = {}
        if "tokenizer_config.json" in files:
            tok_config = _json_or_empty(files["tokenizer_config.json"])
        template = tok_config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if not isinstance(template, str) and "chat_template.jinja" in files:
            template = files["chat_template.jinja"].decode("utf-8", "replace")
        self.template = template if isinstance(template, str) and template else None
        for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = tok_config.get(name)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                self.special[name] = value
        self._compiled: Any = None

    def count(self, text: str) -> int:
        """Tokens of ``text`` (without special tokens)."""
        if self.tokenizer is None:
            return max(1, len(text) // 4)  # no tokenizer.json: ~4 characters a token
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The conversation through the chat template (jinja2 sandbox, as transformers)."""
        if self.template is None:
            return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
        if self._compiled is None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise ValueError(message)

            env = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
            )
            env.globals["raise_exception"] = raise_exception
            # transformers' {% generation %} marks (assistant masks) change no text
            source = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", self.template)
            self._compiled = env.from_string(source)
        return str(
            self._compiled.render(messages=messages, add_generation_prompt=False, **self.special)
        )


def _json_or_empty(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
