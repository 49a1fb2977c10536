"""One trace spans a publish and the handler that consumes it, on both buses."""

from __future__ import annotations

import uuid

from opentelemetry import trace

from shared.events import Envelope, ProjectCreated, new_event
from shared.telemetry import memory_exporter, setup_tracing, tracer
from tests.integration.shared.harness import BusHarness, eventually


async def test_one_trace_spans_a_publish_and_its_consumer(harness: BusHarness) -> None:
    setup_tracing("test", "memory")
    exporter = memory_exporter()
    assert exporter is not None
    exporter.clear()
    handled: list[int] = []

    async def handler(_envelope: Envelope) -> None:
        handled.append(trace.get_current_span().get_span_context().trace_id)

    bus = await harness.bus()
    await bus.subscribe("traced", ["ProjectCreated"], handler)
    with tracer().start_as_current_span("POST /api/projects", kind=trace.SpanKind.SERVER) as root:
        envelope = new_event(ProjectCreated(owner_id=uuid.uuid4(), spec={}))
        await bus.publish(envelope)
    trace_id = root.get_span_context().trace_id
    assert envelope.traceparent is not None
    assert envelope.traceparent.split("-")[1] == f"{trace_id:032x}"

    await eventually(lambda: len(handled) == 1, what="the delivery")
    assert handled == [trace_id]

    def spans(kind: trace.SpanKind) -> list:  # type: ignore[type-arg]
        return [s for s in exporter.get_finished_spans() if s.kind == kind]

    await eventually(lambda: len(spans(trace.SpanKind.CONSUMER)) == 1, what="the consumer span")
    [consumer] = spans(trace.SpanKind.CONSUMER)
    [producer] = spans(trace.SpanKind.PRODUCER)
    assert consumer.name == "consume ProjectCreated"
    assert producer.name == "publish ProjectCreated"
    assert consumer.context.trace_id == producer.context.trace_id == trace_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == root.get_span_context().span_id


def test_without_an_exporter_the_sdk_is_not_loaded_and_context_still_travels() -> None:
    """The default (no exporter) must not import the OpenTelemetry SDK (its per-request and
    per-event spans cost CPU at volume), yet a handler's publishes still join the trace."""
    import subprocess
    import sys

    probe = (
        "import sys, uuid\n"
        "from shared.telemetry import setup_tracing, consumer_span, producer_span\n"
        "from shared.events import ProjectCreated, new_event\n"
        "setup_tracing('svc', 'none')\n"
        "parent = '00-' + 'ab' * 16 + '-' + 'cd' * 8 + '-01'\n"
        "with consumer_span('consume X', parent):\n"
        "    with producer_span('publish X', parent):\n"
        "        child = new_event(ProjectCreated(owner_id=uuid.uuid4(), spec={}))\n"
        "print(child.traceparent)\n"
        "print(any(m.startswith('opentelemetry.sdk') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0].split("-")[1] == "ab" * 16, "the handler's event left the trace"
    assert out[1] == "False", "the tracing SDK was imported with no exporter configured"
