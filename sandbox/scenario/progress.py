"""Headless face of a run: a progress bar on a terminal, plain lines otherwise, and the summary."""

import shutil
import sys
import time
from typing import TextIO

from sandbox.scenario import events

#: Seconds between plain progress lines when the output is not a terminal.
LINE_INTERVAL_S = 1.0


class HeadlessProgress:
    """Subscribe to a run's events and show them on ``stream`` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._last_line = 0.0
        self._bar_open = False

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.Progress):
            self._progress(event)
        elif isinstance(event, events.RunStarted):
            kind = "the run's own" if event.embedded_redis else "external"
            self._line(f"run {event.scenario}: {event.total_jobs} jobs, {kind} Redis {event.redis_url}")
        elif isinstance(event, events.WorkersReady):
            self._line(f"{len(event.names)} {event.mode} worker(s) ready")
        elif isinstance(event, events.WorkerCrashed):
            job = f" while holding job {event.job_id}" if event.job_id else ""
            self._line(f"worker {event.name} died (exit {event.exit_code}){job}: {event.last_error or 'no error logged'}")
        elif isinstance(event, events.Notice):
            self._line(event.message)
        elif isinstance(event, events.RunFinished):
            self._close_bar()

    def _progress(self, event: events.Progress) -> None:
        done = event.finished + event.failed + event.gone
        gone = f"  gone {event.gone}" if event.gone else ""
        text = (
            f"enqueued {event.enqueued}/{event.total}  finished {event.finished}  failed {event.failed}  "
            f"started {event.started}{gone}  {event.elapsed_s:5.1f}s"
        )
        if self.tty:
            width = 24
            filled = int(width * done / event.total) if event.total else width
            bar = "#" * filled + "-" * (width - filled)
            # A line longer than the terminal wraps, and each redraw would then add a line.
            columns = shutil.get_terminal_size((80, 24)).columns
            line = f"[{bar}] {text}"[: max(20, columns - 1)]
            self.stream.write(f"\r{line}\x1b[K")
            self.stream.flush()
            self._bar_open = True
            return

        now = time.monotonic()
        if now - self._last_line >= LINE_INTERVAL_S or done == event.total:
            self._last_line = now
            self.stream.write(f"progress: {text}\n")
            self.stream.flush()

    def _line(self, text: str) -> None:
        self._close_bar()
        self.stream.write(f"{text}\n")
        self.stream.flush()

    def _close_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary(report: dict) -> str:
    """Render the end-of-run summary as text."""
    jobs = report["jobs"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    if report.get("interrupted"):
        verdict = "INTERRUPTED"

    lines = [
        f"{report['scenario']}: {verdict} in {report['wall_s']:.2f}s",
        (
            f"  jobs: enqueued {jobs['enqueued']}, finished {jobs['finished']}, failed {jobs['failed']}, "
            f"abandoned {jobs['abandoned']}, expired {jobs['expired']}, orphaned {jobs['orphaned']}, "
            f"lost {jobs['lost']}, pending {jobs['pending']}, unaccounted {jobs['unaccounted']}"
        ),
    ]

    for name in ("queue_wait", "processing", "total"):
        timing = report["timings_ms"][name]
        lines.append(
            f"  {name + ' ms:':16} p50 {_fmt(timing['p50'])}  p95 {_fmt(timing['p95'])}  "
            f"p99 {_fmt(timing['p99'])}  max {_fmt(timing['max'])}  (n={timing['count']})"
        )

    throughput = report["throughput"]
    lines.append(f"  throughput: enqueue {throughput['enqueue_per_s'] or '-'}/s, complete {throughput['complete_per_s'] or '-'}/s")

    for group in report.get("errors", [])[:5]:
        lines.append(f"  error x{group['count']}: {group['error']}")
    for fault in report.get("faults", []):
        lines.append(f"  {fault['fault']}: {fault['detail'] or 'never fired'}")
    for crash in report["workers"]["crashes"]:
        taken = f" holding job {crash['job_id']}" if crash.get("job_id") else ""
        lines.append(f"  worker crash: {crash['worker']} exit {crash['exit_code']}{taken}: {crash['last_error']}")
    if report.get("infrastructure_error"):
        lines.append(f"  infrastructure error: {report['infrastructure_error']}")
    if report.get("metrics_checks_skipped"):
        lines.append(f"  metrics checks skipped: {report['metrics_checks_skipped']}")

    for item in report["expectations"]:
        mark = "ok  " if item["passed"] else "FAIL"
        lines.append(f"  [{mark}] {item['name']}: expected {item['expected']}, got {item['actual']}")

    versions = report["versions"]
    lines.append(f"  rq {versions['rq']}, redis-py {versions['redis_py']}, Redis server {versions['redis_server']}")
    return "\n".join(lines)
