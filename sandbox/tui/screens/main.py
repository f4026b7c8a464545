"""The dashboard: services, queues, workers, jobs, the producer and timings, in tabs."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, DataTable, Footer, Header, Label, OptionList, TabbedContent, TabPane

from sandbox.monitor.snapshot import Snapshot, TimingWindow
from sandbox.scenario import events
from sandbox.tui import messages
from sandbox.tui.screens.job_detail import JobDetailScreen
from sandbox.tui.screens.workers import ScreenWorkers
from sandbox.tui.stack import Stack
from sandbox.tui.widgets.jobs_table import STATE_FILTERS, JobsTable
from sandbox.tui.widgets.log_view import ServiceLog
from sandbox.tui.widgets.producer_panel import ProducerPanel
from sandbox.tui.widgets.queues_table import QueuesTable
from sandbox.tui.widgets.services_table import ServicesTable
from sandbox.tui.widgets.status_bar import StatusBar
from sandbox.tui.widgets.timing_panel import TimingPanel
from sandbox.tui.widgets.workers_table import WorkersTable, merge_workers

#: Windows the timing view cycles through, in seconds; None means the current or last run.
TIMING_WINDOWS = (60.0, 300.0, 600.0, None)
TABS = ("overview", "jobs", "producer", "timing")
#: Job classes of a run's report, in the order the verdict lists them. Pending jobs are not settled.
JOB_CLASSES = ("finished", "failed", "abandoned", "expired", "orphaned", "lost", "pending", "unaccounted")
SETTLED_CLASSES = JOB_CLASSES[:6]


def job_counts(jobs: dict) -> str:
    """``10 finished · 2 expired``: the finished count, then every other class that is not zero."""
    parts = [f"{jobs.get(name, 0)} {name}" for name in JOB_CLASSES if name == "finished" or jobs.get(name)]
    return " · ".join(parts)


class MainScreen(ScreenWorkers):
    BINDINGS = [
        # The footer fits 80 columns with the app's ? and q; the rest is in the help and the panel titles.
        Binding("s", "send_one", "Send"),
        Binding("n", "send_many", "Send N"),
        Binding("u", "service('start')", "Start"),
        Binding("x", "service('stop')", "Stop"),
        Binding("R", "service('restart')", "Restart", show=False),
        Binding("plus", "workers(1)", "Worker", key_display="+"),
        Binding("minus", "workers(-1)", "Remove worker", show=False),
        Binding("f", "filter_state", "State filter", show=False),
        Binding("g", "filter_queue", "Queue filter", show=False),
        Binding("w", "timing_window", "Timing window", show=False),
        *[Binding(str(number), f"tab('{tab}')", tab.title(), show=False) for number, tab in enumerate(TABS, start=1)],
    ]

    def __init__(self, stack: Stack, scenarios: list[Path], refresh_s: float = 0.5, live: bool = True) -> None:
        super().__init__(stack, refresh_s, live)
        self.scenarios = scenarios
        self.timings = TimingWindow()
        self.timing_window = TIMING_WINDOWS[1]
        self.last_snapshot: Snapshot | None = None
        self.last_report: dict | None = None
        self.connected = False
        self._url = stack.masked_url
        #: The live counts line of the running scenario; None when no run is going.
        self._run_counts: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusBar(id="status")
        with TabbedContent(initial="overview", id="tabs"):
            with TabPane("1 Overview", id="overview"):
                yield ServicesTable(id="services")
                yield QueuesTable(id="queues")
                yield WorkersTable(id="workers")
                yield ServiceLog(id="service-log")
            with TabPane("2 Jobs", id="jobs"):
                yield Label("", id="jobs-filter")
                yield JobsTable(id="jobs-table")
            with TabPane("3 Producer", id="producer"):
                yield ProducerPanel(self.scenarios, id="producer-panel")
            with TabPane("4 Timing", id="timing"):
                with Vertical():
                    yield TimingPanel("", id="timing-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#services").border_title = "Services  u start · x stop · R restart"
        self.query_one("#queues").border_title = "Queues"
        self.query_one("#workers").border_title = "Workers  + add · - remove"
        self.query_one("#jobs-table").border_title = "Jobs  Enter details · f state · g queue"
        self._show_filter()
        if not self.live:
            return
        self.poll_redis()
        self.poll_services()
        if not self.stack.external_redis and self.stack.options.extra_services:
            self.start_extra_services()

    def on_unmount(self) -> None:
        self.close()

    # -- monitor ---------------------------------------------------------------------

    def on_connection_changed(self, message: messages.ConnectionChanged) -> None:
        bar = self.query_one(StatusBar)
        self.connected = message.connected
        if not message.connected:
            bar.disconnected(message.url, message.detail, message.retry_in_s)
        elif self.last_snapshot is None:
            bar.connected(message.url, 0.0, 0, 0, 0)
        self._url = message.url

    def on_snapshot_ready(self, message: messages.SnapshotReady) -> None:
        snapshot = message.snapshot
        self.last_snapshot = snapshot
        workers = merge_workers(snapshot.workers, message.pool_workers, self.stack.removed_workers)
        self.query_one(QueuesTable).show(snapshot.queues)
        self.query_one(WorkersTable).show(workers)
        self.query_one(JobsTable).show(snapshot.jobs)
        self.timings.add(snapshot.jobs)
        self.query_one(StatusBar).connected(self._url, snapshot.latency_ms,
                                            len(snapshot.queues), len(workers), len(snapshot.jobs))
        self._show_timings()
        self._show_run_percentiles()

    def on_services_updated(self, message: messages.ServicesUpdated) -> None:
        self.query_one(ServicesTable).show(message.statuses)

    def on_log_tail(self, message: messages.LogTail) -> None:
        self.query_one(ServiceLog).show(message.service, message.lines)

    @on(DataTable.RowHighlighted, "#services")
    def follow_service_log(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value and event.row_key.value != self.selected_service:
            self.selected_service = event.row_key.value
            self.query_one(ServiceLog).show(self.selected_service, ("(reading the log…)",))

    def on_service_action_done(self, message: messages.ServiceActionDone) -> None:
        self.notify(message.message, severity="information" if message.ok else "error")

    def on_workers_changed(self, message: messages.WorkersChanged) -> None:
        self.notify(message.message, severity="information" if message.ok else "warning")

    # -- actions ---------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        # Keys then act on the tab's main widget without a Tab first.
        focus = {"overview": "#services", "jobs": "#jobs-table", "producer": "#scenarios"}.get(tab)
        if focus:
            self.query_one(focus).focus()

    def action_service(self, action: str) -> None:
        name = self.query_one(ServicesTable).selected or self.selected_service
        self.notify(f"{name}: {action}…")
        self.service_action(name, action)

    def action_workers(self, delta: int) -> None:
        self.change_workers(delta)

    def action_send_one(self) -> None:
        self.send_messages(1, None)

    def action_send_many(self) -> None:
        try:
            count, rate = self.query_one(ProducerPanel).form_values()
        except ValueError as error:
            self.notify(str(error), severity="error")
            return
        self.query_one(ProducerPanel).status(f"sending {count} messages at {rate:g}/s…")
        self.send_messages(count, rate)

    @on(Button.Pressed, "#send-one")
    def _send_one_pressed(self) -> None:
        self.action_send_one()

    @on(Button.Pressed, "#send-many")
    def _send_many_pressed(self) -> None:
        self.action_send_many()

    def on_jobs_sent(self, message: messages.JobsSent) -> None:
        sent = len(message.job_ids)
        if message.error:
            self.notify(f"sent {sent} of {message.requested} jobs, then: {message.error}", severity="error")
        else:
            self.notify(f"sent {sent} job{'s' if sent != 1 else ''} in {message.seconds * 1000:.0f} ms")
        if message.requested > 1:
            self.query_one(ProducerPanel).status(f"sent {sent} of {message.requested} in {message.seconds:.1f} s")

    def on_send_progress(self, message: messages.SendProgress) -> None:
        self.query_one(ProducerPanel).progress(message.sent, message.total)

    def action_filter_state(self) -> None:
        table = self.query_one(JobsTable)
        table.state_filter = STATE_FILTERS[(STATE_FILTERS.index(table.state_filter) + 1) % len(STATE_FILTERS)]
        table.refilter()
        self._show_filter()

    def action_filter_queue(self) -> None:
        table = self.query_one(JobsTable)
        queues = [None] + [queue.name for queue in (self.last_snapshot.queues if self.last_snapshot else ())]
        position = queues.index(table.queue_filter) if table.queue_filter in queues else 0
        table.queue_filter = queues[(position + 1) % len(queues)]
        table.refilter()
        self._show_filter()

    def _show_filter(self) -> None:
        table = self.query_one(JobsTable)
        self.query_one("#jobs-filter", Label).update(
            f"state: {table.state_filter} (f) · queue: {table.queue_filter or 'all'} (g) · Enter opens a job"
        )

    @on(DataTable.RowSelected, "#jobs-table")
    def open_job(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(JobDetailScreen(event.row_key.value, self.stack.redis_url, live=self.live))

    # -- scenario runs ---------------------------------------------------------------

    @on(OptionList.OptionSelected, "#scenarios")
    def start_run(self, event: OptionList.OptionSelected) -> None:
        if not self.run_finished.is_set():
            self.notify("a scenario is already running; wait for its report", severity="warning")
            return
        path = Path(event.option.id)
        self.run_finished.clear()
        self.run_ids.clear()
        panel = self.query_one(ProducerPanel)
        panel.progress(0, 1)
        panel.status(f"{path.stem}: starting; the dashboard's workers pause until it ends")
        self.run_scenario(path)

    def on_run_event(self, message: messages.RunEvent) -> None:
        event = message.event
        panel = self.query_one(ProducerPanel)
        if isinstance(event, events.Progress):
            # Expired or lost jobs are settled too: they will never finish.
            panel.progress(event.finished + event.failed + event.gone, event.total)
            counts = [f"{event.enqueued}/{event.total} enqueued", f"{event.started} started",
                      f"{event.finished} finished", f"{event.failed} failed"]
            if event.gone:
                counts.append(f"{event.gone} expired or lost")
            self._run_counts = " · ".join([*counts, f"{event.elapsed_s:.1f} s"])
            self._show_run_percentiles()
        elif isinstance(event, events.Notice):
            self.notify(event.message)
        elif isinstance(event, events.WorkerCrashed):
            self.notify(f"worker {event.name} crashed ({event.exit_code}): {event.last_error}", severity="error")

    def _show_run_percentiles(self) -> None:
        counts = self._run_counts
        if counts is None or self.run_finished.is_set():
            return
        values = self.timings.values(job_ids=set(list(self.run_ids)))
        processing = sorted(values["processing"])
        text = counts
        if processing:
            p50 = processing[len(processing) // 2]
            p95 = processing[min(len(processing) - 1, int(len(processing) * 0.95))]
            text += f"\nprocessing p50 {p50:.0f} ms · p95 {p95:.0f} ms ({len(processing)} jobs seen)"
        self.query_one(ProducerPanel).status(text)

    def on_run_done(self, message: messages.RunDone) -> None:
        panel = self.query_one(ProducerPanel)
        self._run_counts = None
        if message.report is None:
            panel.status(f"{message.scenario}: did not run: {message.error}")
            self.notify(f"{message.scenario}: {message.error}", severity="error")
            return
        report = message.report
        self.last_report = report
        jobs = report.get("jobs", {})
        total = {key: "–" if value is None else f"{value:.0f}"
                 for key, value in report.get("timings_ms", {}).get("total", {}).items()}
        verdict = "PASSED" if report.get("passed") else f"FAILED (exit {message.exit_code})"
        settled = sum(jobs.get(name, 0) for name in SETTLED_CLASSES)
        panel.progress(settled, max(1, jobs.get("enqueued", 0)))
        counts = job_counts(jobs)
        panel.status(
            f"{message.scenario}: {verdict} · {counts} · total p50 {total.get('p50')} ms p95 {total.get('p95')} ms · "
            f"{report.get('wall_s')} s\nreport: {message.report_path}"
        )
        self.notify(f"{message.scenario}: {verdict}, {counts}",
                    severity="information" if report.get("passed") else "error")
        self._show_timings()

    # -- timings ---------------------------------------------------------------------

    def action_timing_window(self) -> None:
        index = TIMING_WINDOWS.index(self.timing_window)
        self.timing_window = TIMING_WINDOWS[(index + 1) % len(TIMING_WINDOWS)]
        self._show_timings()

    def _show_timings(self) -> None:
        panel = self.query_one(TimingPanel)
        if self.timing_window is None:
            # NOTE: only the run's jobs that passed through the 200-job window are timed here,
            # so a run larger than the window shows a sample; its report has every job.
            ids = set(list(self.run_ids))
            title = "Timings of the current or last scenario run (w: change window)"
            values = self.timings.values(within_s=self.timings.horizon_s, job_ids=ids)
        else:
            title = f"Timings of jobs that ended in the last {self.timing_window / 60:g} min (w: change window)"
            values = self.timings.values(within_s=self.timing_window)
        panel.show(title, values)
