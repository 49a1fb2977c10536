"""Tracing and structured logging.

Trace context travels in the envelope's ``traceparent`` (W3C format) and in the AMQP
``traceparent`` header, so one trace spans a publish and the handler that consumes it.
Log records pass through :class:`ScrubbingFilter`, which masks anything that looks like a
credential before it reaches a handler.

With no exporter configured (the default) the OpenTelemetry SDK is not even imported: spans
are the API's no-ops and the bus helpers only carry the W3C context along, so tracing costs
nothing per request or per event. With an exporter, root spans are sampled at
``sample_ratio`` and children follow their parent (parent-based), so at volume most events
cost no span.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.urls import scrub_urls

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = [
    "ScrubbingFilter",
    "consumer_span",
    "current_traceparent",
    "memory_exporter",
    "producer_span",
    "scrub",
    "setup_logging",
    "setup_tracing",
    "tracer",
]

_PROPAGATOR = TraceContextTextMapPropagator()
_memory_exporter: InMemorySpanExporter | None = None
_recording = False  # an SDK provider is installed: spans are real


def setup_tracing(service_name: str, exporter: str = "none", sample_ratio: float = 1.0) -> None:
    """Install a tracer provider once per process (later calls only add an exporter).

    ``exporter="none"`` installs nothing. Otherwise root spans are kept with probability
    ``sample_ratio`` and every child follows its parent's decision."""
    global _memory_exporter, _recording
    if exporter == "none":
        return
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
    )
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
        trace.set_tracer_provider(provider)
    _recording = True
    span_exporter: SpanExporter | None = None
    if exporter == "console":
        span_exporter = ConsoleSpanExporter(out=sys.stderr)
    elif exporter == "memory" and _memory_exporter is None:
        _memory_exporter = span_exporter = InMemorySpanExporter()
    if span_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))


def memory_exporter() -> InMemorySpanExporter | None:
    """The in-memory exporter installed by ``setup_tracing(..., "memory")`` (tests)."""
    return _memory_exporter


def tracer(name: str = "aidp") -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, or None outside any span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def producer_span(name: str, traceparent: str | None, **attributes: Any) -> Iterator[None]:
    """A PRODUCER span for a publish, a child of the envelope's ``traceparent``."""
    if not _recording:  # no SDK: the envelope already carries the context; nothing to record
        yield
        return
    ctx = _PROPAGATOR.extract({"traceparent": traceparent} if traceparent else {})
    with tracer().start_as_current_span(name, context=ctx, kind=trace.SpanKind.PRODUCER) as span:
        for key, value in attributes.items():
            if value is not None:
                span.set_attribute(key, str(value))
        yield


@contextmanager
def consumer_span(name: str, traceparent: str | None, **attributes: Any) -> Iterator[None]:
    """Run a consumer's work in a span that continues the producer's trace."""
    ctx = _PROPAGATOR.extract({"traceparent": traceparent} if traceparent else {})
    token = otel_context.attach(ctx)
    if not _recording:  # no SDK: only carry the context, so what the work publishes joins it
        try:
            yield
        finally:
            otel_context.detach(token)
        return
    try:
        with tracer().start_as_current_span(name, kind=trace.SpanKind.CONSUMER) as span:
            for key, value in attributes.items():
                if value is not None:
                    span.set_attribute(key, str(value))
            yield
    finally:
        otel_context.detach(token)


# --- logging ---------------------------------------------------------------------------

_SECRET_PATTERNS = [
    # key=value / "key": "value" forms for credential-looking keys
    re.compile(
        r"(?i)((?:password|passwd|secret(?:_id)?|token|api[_-]?key|authorization|private_key)"
        r"[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+)?[^\s\"',}]+"
    ),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"()\bhf_[A-Za-z0-9]{10,}"),  # HuggingFace tokens
    re.compile(r"()\bkgat_[A-Za-z0-9]{8,}"),  # Kaggle API tokens
    re.compile(r"()\baidp_[A-Za-z0-9_-]{16,}"),  # aidp API tokens
    re.compile(r"()\b(?:hvs|s|hvb)\.[A-Za-z0-9]{20,}"),  # Vault/OpenBao tokens
    re.compile(r"()eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"()-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(amqps?://[^:/\s]+:)[^@\s]+(?=@)"),
    re.compile(r"(postgresql(?:\+\w+)?://[^:/\s]+:)[^@\s]+(?=@)"),
]


def scrub(text: str) -> str:
    """Mask credential-looking substrings of ``text``; URLs lose their user info and query
    string (a signed URL's token; httpx logs every request's full URL)."""
    text = scrub_urls(text)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class ScrubbingFilter(logging.Filter):
    """Rewrites each record's message with :func:`scrub` (args are rendered first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not kill logging
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry)


def setup_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Configure the root logger once: one stderr handler that scrubs secrets."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if any(getattr(h, "_aidp", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._aidp = True  # type: ignore[attr-defined]
    handler.addFilter(ScrubbingFilter())
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(_JsonFormatter() if json_lines else text)
    root.addHandler(handler)
    # Per-request and per-migration chatter drowns the platform's own story at INFO.
    for noisy in ("httpx", "httpcore", "alembic.runtime.migration", "aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
