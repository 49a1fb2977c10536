"""The OpenAI wire format of the inference server: answers, chunks, stop sequences and
SSE framing (one ``data: <json>\\n\\n`` per chunk, then ``data: [DONE]\\n\\n``).

Standard library only: staged beside ``server.py`` on a node (as
``serving_openai_answers.py``) and imported by the engines; the request checks are in
``openai_wire.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

__all__ = [
    "SSE_DONE",
    "chat_chunk",
    "chat_response",
    "completion_chunk",
    "completion_response",
    "models_list",
    "new_id",
    "sse",
    "StopMatcher",
    "usage",
]

#: The end of every stream.
SSE_DONE = b"data: [DONE]\n\n"


class StopMatcher:
    """Cuts streamed text at the first stop sequence, never letting part of one out.

    :meth:`feed` returns the text that is safe to send now and whether a stop sequence
    was reached (the text before it is returned, the sequence and the rest are not). Text
    that could be the start of a stop sequence is held back until the next piece decides;
    :meth:`flush` returns what is held back once the generation ends without a stop.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        if not self.stops:
            return text, False
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held, self.stopped = "", True
            return buffer[:cut], True
        keep = 0  # the longest tail of the buffer that begins some stop sequence
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buffer)), keep, -1):
                if s.startswith(buffer[-n:]):
                    keep = n
                    break
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def chat_response(
    *,
    id: str,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:  # noqa: A002
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(
    *,
    id: str,  # noqa: A002
    model: str,
    created: int,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage_counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; with ``usage_counts`` the final one (no choices)."""
    chunk: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if usage_counts is not None
        else [
            {
                "index": 0,
                "delta": delta or {},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
    }
    if usage_counts is not None:
        chunk["usage"] = usage_counts
    return chunk


def completion_response(
    *,
    id: str,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:  # noqa: A002
    return {
        "id": id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_chunk(
    *,
    id: str,  # noqa: A002
    model: str,
    created: int,
    text: str = "",
    finish_reason: str | None = None,
    usage_counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": []
        if usage_counts is not None
        else [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage_counts is not None:
        chunk["usage"] = usage_counts
    return chunk


def models_list(name: str, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the one model this deployment serves."""
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "aidp"}],
    }
