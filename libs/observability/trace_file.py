"""A span exporter that appends one JSON object per finished span to a file (OMS_TRACE_FILE):
the tests read it, and so can a developer without a collector. Imported only when tracing is on."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class FileSpanExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (OMS_TRACE_FILE)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            lines.append(json.dumps({
                "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
                "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                "name": span.name, "kind": span.kind.name,
                "service": span.resource.attributes.get("service.name"),
                "instance": span.resource.attributes.get("service.instance.id"),
                "start": span.start_time, "end": span.end_time,
                "attributes": {k: v if isinstance(v, (str, int, float, bool)) else str(v)
                               for k, v in (span.attributes or {}).items()},
                "links": [f"{link.context.trace_id:032x}-{link.context.span_id:016x}" for link in span.links],
            }))
        with self._lock, self._path.open("a") as out:
            out.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
