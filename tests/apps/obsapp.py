"""Task module of the observability tests; the database path comes from $HONKER_TEST_DB.

With $HONKER_TEST_SPANS set, importing it installs the OpenTelemetry SDK with an
in-memory exporter and writes every finished span as JSON lines to that file at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import time

import honker

SPANS_FILE = os.environ.get("HONKER_TEST_SPANS")

if SPANS_FILE:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    def dump_spans() -> None:
        with open(str(SPANS_FILE), "w") as f:
            for span in exporter.get_finished_spans():
                ctx = span.get_span_context()
                assert ctx is not None
                f.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "kind": span.kind.name,
                            "trace_id": ctx.trace_id,
                            "span_id": ctx.span_id,
                            "parent_id": span.parent.span_id if span.parent else None,
                            "attributes": dict(span.attributes or {}),
                            "status": span.status.status_code.name,
                        }
                    )
                    + "\n"
                )

    atexit.register(dump_spans)

db = honker.open(os.environ["HONKER_TEST_DB"])
obs = db.queue("obs", visibility_timeout_s=30)


@obs.task(name="quick")
def quick(x: int) -> int:
    if SPANS_FILE:
        from opentelemetry import trace as api

        with api.get_tracer("obsapp").start_as_current_span("inside quick"):
            return x * 2
    return x * 2


@obs.task(name="boom", retries=1, retry_delay_s=0)
def boom() -> None:
    raise ValueError("boom on purpose")


@obs.task(name="wait_for", timeout_s=60)
def wait_for(path: str) -> str:
    """Runs until the file at ``path`` exists."""
    while not os.path.exists(path):
        time.sleep(0.05)
    return "seen"
