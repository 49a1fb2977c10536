"""The OpenAI wire format of the inference server: request checks and error bodies (the
answers and SSE framing: ``openai_answers.py``).

Standard library only: it is staged beside ``server.py`` on a node (as
``serving_openai_wire.py``) and imported by the engines. The request checks follow the
OpenAI API: an unknown argument, a wrong type or a value out of range is a 400
``invalid_request_error`` naming the parameter, never a 500; an unknown model is a 404
``model_not_found``. Errors are ``{"error": {"message", "type", "param", "code"}}``.

Streams are server-sent events: one ``data: <json>\\n\\n`` per chunk, then
``data: [DONE]\\n\\n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ChatRequest",
    "CompletionRequest",
    "GenerationParams",
    "OpenAIError",
    "error_body",
    "parse_chat",
    "parse_completion",
]


MAX_STOP = 4  # as OpenAI: at most four stop sequences
MAX_STOP_CHARS = 256
MAX_MESSAGES = 512
ROLES = ("system", "developer", "user", "assistant", "tool")

#: Arguments the API defines that this server accepts (some only at their neutral value).
_COMMON = {
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "n",
    "seed",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "logit_bias",
    "metadata",
    "store",
}
_CHAT_ONLY = {"messages", "max_completion_tokens", "top_logprobs", "parallel_tool_calls"}
_COMPLETION_ONLY = {"prompt", "echo", "best_of", "suffix"}


class OpenAIError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI error fields."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",  # noqa: A002 - the wire name
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.type, self.param, self.code = (
            message,
            status,
            type,
            param,
            code,
        )

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",  # noqa: A002 - the wire name
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """``{"error": {...}}`` as the OpenAI API answers a failed request."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass
class GenerationParams:
    """What a generation may do, after the checks."""

    max_tokens: int | None = None  # None: up to the context the model has left
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, str]]
    params: GenerationParams
    stream: bool = False
    include_usage: bool = False


@dataclass
class CompletionRequest:
    model: str
    prompt: str
    params: GenerationParams
    stream: bool = False
    include_usage: bool = False
    echo: bool = False


def _invalid(message: str, param: str | None, code: str | None = "invalid_value") -> OpenAIError:
    return OpenAIError(message, param=param, code=code)


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{key} must be a number", key, "invalid_type")
    if not lo <= value <= hi:
        raise _invalid(f"{key} must be between {lo:g} and {hi:g}, got {value}", key)
    return float(value)


def _int(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{key} must be an integer", key, "invalid_type")
    if not lo <= value <= hi:
        raise _invalid(f"{key} must be between {lo} and {hi}, got {value}", key)
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(f"{key} must be a boolean", key, "invalid_type")
    return value


def _common(
    body: Any, served: str, allowed: set[str], *, max_tokens_cap: int
) -> tuple[str, GenerationParams, bool, bool]:
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object", None, "invalid_type")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _invalid(
            f"Unrecognized request argument supplied: {unknown[0]}", unknown[0], "unknown_parameter"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model: the model to use is required (GET /v1/models lists it)", "model")
    if model != served:
        raise OpenAIError(
            f"The model `{model}` does not exist; this deployment serves `{served}`",
            status=404,
            param="model",
            code="model_not_found",
        )
    if _int(body, "n", 1, 128) not in (None, 1):
        raise _invalid("n: only one choice per request is supported", "n")
    for key in ("presence_penalty", "frequency_penalty"):
        if _number(body, key, 0.0, -2.0, 2.0) != 0.0:
            raise _invalid(f"{key} is not supported by this engine", key, "unsupported_value")
    if body.get("logprobs") not in (None, False, 0):
        raise _invalid("logprobs are not supported by this engine", "logprobs", "unsupported_value")
    if body.get("logit_bias") not in (None, {}):
        raise _invalid(
            "logit_bias is not supported by this engine", "logit_bias", "unsupported_value"
        )
    max_tokens = _int(body, "max_tokens", 1, max_tokens_cap)
    if "max_completion_tokens" in allowed and body.get("max_completion_tokens") is not None:
        max_tokens = _int(body, "max_completion_tokens", 1, max_tokens_cap)
    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        stop=_stops(body.get("stop")),
        seed=_int(body, "seed", -(2**63), 2**63 - 1),
    )
    if params.top_p == 0.0:
        raise _invalid("top_p must be greater than 0", "top_p")
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise _invalid("stream_options is only allowed when stream is true", "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise _invalid("stream_options: only include_usage is supported", "stream_options")
        include_usage = _flag(options, "include_usage")
    return model, params, stream, include_usage


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _invalid("stop must be a string or a list of strings", "stop", "invalid_type")
    if len(stops) > MAX_STOP:
        raise _invalid(f"stop: at most {MAX_STOP} sequences", "stop")
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        raise _invalid(f"stop: a sequence has at most {MAX_STOP_CHARS} characters", "stop")
    return [s for s in stops if s]


def _content(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text ones
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _invalid(
                    f"messages[{index}].content: only text parts are supported",
                    f"messages[{index}].content",
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise _invalid(
                    f"messages[{index}].content: a text part needs a string 'text'",
                    f"messages[{index}].content",
                    "invalid_type",
                )
            texts.append(text)
        return "".join(texts)
    raise _invalid(
        f"messages[{index}].content must be a string or a list of text parts",
        f"messages[{index}].content",
        "invalid_type",
    )


def parse_chat(body: Any, *, served: str, max_tokens_cap: int = 32768) -> ChatRequest:
    """Check a ``/v1/chat/completions`` body (OpenAIError on anything wrong)."""
    model, params, stream, include_usage = _common(
        body, served, _COMMON | _CHAT_ONLY, max_tokens_cap=max_tokens_cap
    )
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages must be a non-empty list", "messages")
    if len(raw) > MAX_MESSAGES:
        raise _invalid(f"messages: at most {MAX_MESSAGES}", "messages")
    messages = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _invalid(f"messages[{i}] must be an object", f"messages[{i}]", "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise _invalid(
                f"messages[{i}].role must be one of {', '.join(ROLES)}", f"messages[{i}].role"
            )
        # the developer role is the system role of newer OpenAI models
        messages.append(
            {"role": "system" if role == "developer" else role, "content": _content(message, i)}
        )
    return ChatRequest(
        model=model, messages=messages, params=params, stream=stream, include_usage=include_usage
    )


def parse_completion(body: Any, *, served: str, max_tokens_cap: int = 32768) -> CompletionRequest:
    """Check a ``/v1/completions`` body (OpenAIError on anything wrong)."""
    model, params, stream, include_usage = _common(
        body, served, _COMMON | _COMPLETION_ONLY, max_tokens_cap=max_tokens_cap
    )
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _invalid("prompt must be a string (one prompt per request)", "prompt", "invalid_type")
    if body.get("best_of") not in (None, 1):
        raise _invalid("best_of is not supported by this engine", "best_of", "unsupported_value")
    if body.get("suffix") not in (None, ""):
        raise _invalid("suffix is not supported by this engine", "suffix", "unsupported_value")
    return CompletionRequest(
        model=model,
        prompt=prompt,
        params=params,
        stream=stream,
        include_usage=include_usage,
        echo=_flag(body, "echo"),
    )
