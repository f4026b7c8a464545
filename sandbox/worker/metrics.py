"""The worker's OpenTelemetry instruments and their JSON snapshot files.

Each worker process owns one `MeterProvider`. A background thread writes its
cumulative state to a JSON file about every half second and once more at
shutdown. The pool merges those files with `load_metrics`. The SDK's
`PeriodicExportingMetricReader` is not used because it restarts its export
thread in every forked work horse, which would then write the parent's stale
state over the parent's file.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum

logger = logging.getLogger(__name__)

METER_NAME = "rq_worker"
METRICS_FILE_ENV = "RQ_SANDBOX_METRICS_FILE"
SNAPSHOT_INTERVAL_S = 0.5

PROCESSED = "rq_worker.jobs.processed"
SUCCEEDED = "rq_worker.jobs.succeeded"
FAILED = "rq_worker.jobs.failed"
CONCURRENT = "rq_worker.jobs.concurrent"
PROCESSING_TIME = "rq_worker.job.processing_time"
QUEUE_WAIT_TIME = "rq_worker.job.queue_wait_time"
TOTAL_TIME = "rq_worker.job.total_time"


@dataclass(frozen=True)
class WorkerInstruments:
    """The seven instruments a metrics worker records into."""

    processed: Counter
    succeeded: Counter
    failed: Counter
    concurrent: UpDownCounter
    processing_time: Histogram
    queue_wait_time: Histogram
    total_time: Histogram

    @classmethod
    def from_meter(cls, meter: Meter) -> WorkerInstruments:
        return cls(
            processed=meter.create_counter(PROCESSED, unit="1", description="Jobs the worker ran to an outcome"),
            succeeded=meter.create_counter(SUCCEEDED, unit="1", description="Jobs that finished"),
            failed=meter.create_counter(FAILED, unit="1", description="Jobs that failed"),
            concurrent=meter.create_up_down_counter(CONCURRENT, unit="1", description="Jobs running now"),
            processing_time=meter.create_histogram(
                PROCESSING_TIME, unit="ms", description="From the job's started_at to its ended_at"
            ),
            queue_wait_time=meter.create_histogram(
                QUEUE_WAIT_TIME, unit="ms", description="From the job's created_at to its started_at"
            ),
            total_time=meter.create_histogram(
                TOTAL_TIME, unit="ms", description="From the job's created_at to its ended_at"
            ),
        )


class MetricsSink:
    """A meter provider of its own whose cumulative state goes to a JSON file."""

    def __init__(self, path: Path | None, interval_s: float = SNAPSHOT_INTERVAL_S):
        self.path = path
        self.interval_s = interval_s
        self._reader = InMemoryMetricReader()
        # shutdown_on_exit is off because close() writes the last snapshot first.
        self._provider = MeterProvider(metric_readers=[self._reader], shutdown_on_exit=False)
        self.instruments = WorkerInstruments.from_meter(self._provider.get_meter(METER_NAME))
        self._owner_pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    def start(self) -> None:
        """Start writing snapshots in the background; a sink without a path only collects."""
        if self.path is None or self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write_snapshot()
        self._thread = threading.Thread(target=self._run, name="metrics-snapshot", daemon=True)
        self._thread.start()

    def snapshot(self) -> dict[str, Any]:
        """Return the cumulative state in the format `load_metrics` returns."""
        return metrics_to_dict(self._reader.get_metrics_data())

    def write_snapshot(self) -> None:
        # A forked work horse inherits this object; only the owner writes the file.
        if self.path is None or os.getpid() != self._owner_pid:
            return
        document = {"pid": self._owner_pid, "written_at": time.time(), "metrics": self.snapshot()}
        with self._write_lock:
            _write_atomically(self.path, json.dumps(document, sort_keys=True))

    def close(self) -> None:
        """Stop the background thread, write the final snapshot and shut the provider down."""
        if os.getpid() != self._owner_pid:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.write_snapshot()
        finally:
            self._provider.shutdown()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.write_snapshot()
            except OSError:
                logger.exception("Metrics: cannot write snapshot %s", self.path)


_default_sink: MetricsSink | None = None
_default_sink_lock = threading.Lock()


def default_sink() -> MetricsSink:
    """Return the process-wide sink, writing to `RQ_SANDBOX_METRICS_FILE` when that is set.

    Workers built without an explicit sink use it, for example when `rq worker
    --worker-class` starts one of this package's classes.
    """
    global _default_sink
    with _default_sink_lock:
        if _default_sink is None or _default_sink._owner_pid != os.getpid():
            path = os.environ.get(METRICS_FILE_ENV)
            _default_sink = MetricsSink(Path(path) if path else None)
            _default_sink.start()
            # A forked work horse leaves through os._exit, which skips atexit.
            atexit.register(_default_sink.close)
        return _default_sink


def metrics_to_dict(data: Any) -> dict[str, Any]:
    """Convert the SDK's `MetricsData` to `{name: {"kind", "unit", "points"}}`."""
    result: dict[str, Any] = {}
    if data is None:
        return result

    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                entry = _metric_entry(metric)
                if entry is not None:
                    result[metric.name] = entry
    return result


def load_metrics(paths: Iterable[Path | str]) -> dict[str, Any]:
    """Merge the snapshot files of several worker processes into one cumulative view.

    Points with equal attributes are added up: counter values, histogram counts,
    sums and buckets; min and max are taken over all files. A missing file is
    skipped because a worker may not have written its first snapshot yet.
    """
    merged: dict[str, Any] = {}
    for path in paths:
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as error:
            logger.warning("Metrics: skipping unreadable snapshot %s: %s", path, error)
            continue

        for name, entry in document.get("metrics", {}).items():
            _merge_entry(merged, name, entry)
    return merged


def metric_total(merged: dict[str, Any], name: str, **attributes: str) -> float:
    """Sum `value` (or `count` for a histogram) over the points of `name` that carry `attributes`."""
    entry = merged.get(name)
    if entry is None:
        return 0
    key = "count" if entry["kind"] == "histogram" else "value"
    return sum(
        point[key]
        for point in entry["points"]
        if all(point["attributes"].get(attr) == value for attr, value in attributes.items())
    )


def _metric_entry(metric: Any) -> dict[str, Any] | None:
    data = metric.data
    if isinstance(data, Sum):
        kind = "counter" if data.is_monotonic else "updowncounter"
        points = [{"attributes": dict(p.attributes or {}), "value": p.value} for p in data.data_points]
    elif isinstance(data, HistogramData):
        kind = "histogram"
        points = [
            {
                "attributes": dict(p.attributes or {}),
                "count": p.count,
                "sum": p.sum,
                "min": p.min,
                "max": p.max,
                "bucket_counts": list(p.bucket_counts),
                "explicit_bounds": list(p.explicit_bounds),
            }
            for p in data.data_points
        ]
    else:
        logger.debug("Metrics: skipping %s of unexpected type %s", metric.name, type(data).__name__)
        return None
    return {"kind": kind, "unit": metric.unit, "points": points}


def _merge_entry(merged: dict[str, Any], name: str, entry: dict[str, Any]) -> None:
    target = merged.setdefault(name, {"kind": entry["kind"], "unit": entry["unit"], "points": []})
    by_attributes = {_attributes_key(p["attributes"]): p for p in target["points"]}

    for point in entry["points"]:
        existing = by_attributes.get(_attributes_key(point["attributes"]))
        if existing is None:
            copy = json.loads(json.dumps(point))
            target["points"].append(copy)
            by_attributes[_attributes_key(point["attributes"])] = copy
        elif target["kind"] == "histogram":
            _merge_histogram_point(name, existing, point)
        else:
            existing["value"] += point["value"]


def _merge_histogram_point(name: str, into: dict[str, Any], point: dict[str, Any]) -> None:
    if into["explicit_bounds"] != point["explicit_bounds"]:
        raise ValueError(f"cannot merge {name}: snapshots use different histogram bounds")
    into["count"] += point["count"]
    into["sum"] += point["sum"]
    into["min"] = min(into["min"], point["min"])
    into["max"] = max(into["max"], point["max"])
    into["bucket_counts"] = [a + b for a, b in zip(into["bucket_counts"], point["bucket_counts"])]


def _attributes_key(attributes: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(attributes.items()))


def _write_atomically(path: Path, text: str) -> None:
    # Readers see the old snapshot or the new one, never a half-written file.
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
