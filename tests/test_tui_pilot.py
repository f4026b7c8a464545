"""The dashboard driven by Textual's pilot against a real Redis and real rq workers."""

import asyncio
import functools
import time
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, ProgressBar
from textual.widgets._footer import FooterKey

from sandbox.tui import messages
from sandbox.tui.app import SandboxApp
from sandbox.tui.commands import scenario_files
from sandbox.tui.screens.job_detail import JobDetailScreen
from sandbox.tui.stack import Stack, StackOptions, make_backend
from sandbox.tui.widgets.jobs_table import JobsTable
from sandbox.tui.widgets import workers_table
from sandbox.tui.widgets.producer_panel import ProducerPanel
from sandbox.tui.widgets.queues_table import QueuesTable
from sandbox.tui.widgets.services_table import ServicesTable
from sandbox.tui.widgets.status_bar import StatusBar
from sandbox.tui.widgets.workers_table import WorkersTable

SCENARIOS = scenario_files(Path(__file__).resolve().parent.parent / "scenarios")
#: Long enough that a second job waits in the queue while the first one runs.
WORK_MS = 800


def run_async(test):
    """Run an async test on a fresh event loop (no asyncio plugin is installed)."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return wrapper


async def wait_for(pilot, condition, timeout: float = 20.0, description: str = "condition"):
    """Let the app run until `condition()` is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {description}")
        await pilot.pause(0.05)


@pytest.fixture
def stack(redis_url, tmp_path):
    stack = Stack(StackOptions(redis_url=redis_url, state_dir=tmp_path, extra_services=(), work_ms=WORK_MS))
    stack.start()
    yield stack
    stack.stop()


def make_app(stack, seen):
    app = SandboxApp(stack, SCENARIOS, refresh_s=0.1)
    hook = seen.append
    return app, hook


@run_async
async def test_jobs_table_shows_queued_started_finished(stack):
    seen = []
    app, hook = make_app(stack, seen)
    try:
        async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
            await wait_for(pilot, lambda: app.main.last_snapshot and app.main.last_snapshot.workers, description="the worker")
            await pilot.press("s", "s")
            await wait_for(pilot, lambda: [m for m in seen if isinstance(m, messages.JobsSent)][1:],
                           description="two JobsSent messages")
            # The two sends run on two threads: whichever job the worker did not take first waits.
            ids = [m.job_ids[0] for m in seen if isinstance(m, messages.JobsSent)]
            await pilot.press("2")
            table = app.main.query_one(JobsTable)
            states = {job_id: [] for job_id in ids}

            def both_finished():
                for job_id, seen_states in states.items():
                    state = table.state_of(job_id)
                    if state and (not seen_states or seen_states[-1] != state):
                        seen_states.append(state)
                return all(table.state_of(job_id) == "finished" for job_id in ids)

            await wait_for(pilot, both_finished, description="both jobs to finish")

            assert ["queued", "started", "finished"] in states.values(), states
            second = next(job_id for job_id, seen_states in states.items() if seen_states[0] == "queued")
            row = next(row for row in app.main.last_snapshot.jobs if row.job_id == second)
            assert row.processing_ms >= WORK_MS * 0.9
            assert row.queue_wait_ms >= WORK_MS * 0.5
            assert str(table.get_cell(second, "proc")) == f"{row.processing_ms:.0f}"
            assert app.main.query_one(StatusBar).has_class("connected")
    finally:
        app.shutdown()


@run_async
async def test_job_detail_decodes_hash_and_result(stack):
    seen = []
    app, hook = make_app(stack, seen)
    try:
        async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
            await pilot.press("s")
            sent = await wait_for(pilot, lambda: [m for m in seen if isinstance(m, messages.JobsSent)], description="JobsSent")
            job_id = sent[0].job_ids[0]
            await pilot.press("2")
            table = app.main.query_one(JobsTable)
            await wait_for(pilot, lambda: table.state_of(job_id) == "finished", description="the job to finish")

            table.focus()
            table.move_cursor(row=table.get_row_index(job_id))
            await pilot.press("enter")
            screen = await wait_for(pilot, lambda: isinstance(app.screen, JobDetailScreen) and app.screen)
            loaded = await wait_for(pilot, lambda: screen.loaded, description="the job's details")

            assert screen.job_id == job_id
            detail = loaded.detail
            assert detail.fields["status"] == "finished"
            assert detail.fields["origin"] == "opik:optimizer-cloud"
            assert detail.fields["data"] == (
                '["sandbox.worker.jobs.process_optimizer_job", null, ["Test message 1"], {}]'
            )
            assert detail.result_type == "successful"
            assert "Test message 1" in detail.return_value
            assert detail.exception is None
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, JobDetailScreen), description="the detail to close")
    finally:
        app.shutdown()


@run_async
async def test_picker_runs_ten_messages(stack):
    seen = []
    app, hook = make_app(stack, seen)
    try:
        async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
            await pilot.press("3")
            picker = app.main.query_one("#scenarios", OptionList)
            picker.focus()
            picker.highlighted = [path.stem for path in SCENARIOS].index("ten-messages")
            await pilot.press("enter")

            done = await wait_for(pilot, lambda: [m for m in seen if isinstance(m, messages.RunDone)], timeout=60,
                                  description="the run to end")
            result = done[0]
            assert result.error is None
            assert result.report["jobs"]["finished"] == 10
            assert result.report["jobs"]["failed"] == 0
            assert result.report["passed"] is True, result.report["expectations"]
            assert result.report_path.is_file()
            assert result.report_path.parent == stack.options.state_dir / "reports"
            progress = [m.event for m in seen if isinstance(m, messages.RunEvent)]
            assert progress, "no run event reached the screen"
            status = str(app.main.query_one(ProducerPanel).query_one("#run-status").render())
            assert "ten-messages: PASSED · 10 finished · total" in status
            bar = app.main.query_one("#run-progress", ProgressBar)
            assert (bar.progress, bar.total) == (10, 10)
            # The dashboard's own workers come back once the run is over.
            await wait_for(pilot, lambda: stack.pool.workers and stack.pool.workers[0].alive, description="workers back")
    finally:
        app.shutdown()


@run_async
async def test_services_stop_redis_then_recover(tmp_path):
    backend = make_backend("local", tmp_path / "services")
    stack = Stack(StackOptions(state_dir=tmp_path / "tui", extra_services=()), backend=backend)
    stack.start()
    app = SandboxApp(stack, [], refresh_s=0.1)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.main.query_one(ServicesTable)
            bar = app.main.query_one(StatusBar)

            def redis_state():
                return "redis" in table.rows and str(table.get_cell("redis", "state"))

            await wait_for(pilot, lambda: redis_state() == "healthy" and bar.has_class("connected"), description="healthy")
            table.focus()
            table.move_cursor(row=table.get_row_index("redis"))
            await pilot.press("x")
            await wait_for(pilot, lambda: redis_state() == "stopped", description="redis stopped")
            await wait_for(pilot, lambda: bar.has_class("disconnected"), description="the monitor to notice")

            await pilot.press("u")
            await wait_for(pilot, lambda: redis_state() == "healthy", description="redis healthy again")
            await wait_for(pilot, lambda: bar.has_class("connected"), timeout=15, description="the monitor to reconnect")
    finally:
        app.shutdown()
        stack.stop()
    assert backend.status(["redis"])[0].state.value == "stopped"


@run_async
async def test_password_never_on_screen(redis_server_with_password, tmp_path):
    from conftest import TEST_PASSWORD

    stack = Stack(StackOptions(redis_url=redis_server_with_password, state_dir=tmp_path, extra_services=()))
    stack.start()
    app = SandboxApp(stack, [], refresh_s=0.1)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            bar = app.main.query_one(StatusBar)
            await wait_for(pilot, lambda: bar.has_class("connected") and app.main.last_snapshot, description="connected")
            await pilot.press("s")
            await wait_for(pilot, lambda: app.main.last_snapshot.jobs, description="a job in the window")

            shown = [str(bar.render()), app.sub_title, str(app.main.query_one(ServicesTable).get_row_at(0))]
            assert all(TEST_PASSWORD not in text for text in shown), shown
            assert "redis://:***@127.0.0.1" in str(bar.render())
    finally:
        app.shutdown()
        stack.stop()
    log_files = list(tmp_path.rglob("*.log"))
    assert all(TEST_PASSWORD not in path.read_text(errors="replace") for path in log_files)


@run_async
async def test_picker_run_counts_and_queue(stack):
    seen = []
    app, hook = make_app(stack, seen)
    try:
        async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
            await pilot.press("3")
            picker = app.main.query_one("#scenarios", OptionList)
            picker.highlighted = [path.stem for path in SCENARIOS].index("ttl-expiry")
            await pilot.press("enter")

            queues = app.main.query_one(QueuesTable)
            await wait_for(pilot, lambda: "sandbox:faults" in queues.rows, timeout=10,
                           description="the run's queue in the Queues table")
            done = await wait_for(pilot, lambda: [m for m in seen if isinstance(m, messages.RunDone)], timeout=60,
                                  description="the run to end")
            assert done[0].report["jobs"]["expired"] == 3, done[0].report["jobs"]

            status = str(app.main.query_one("#run-status").render())
            assert "ttl-expiry: PASSED · 1 finished · 3 expired · total" in status
            bar = app.main.query_one("#run-progress", ProgressBar)
            assert (bar.progress, bar.total) == (4, 4)

            # The queue stays after the run, and the queue filter offers it.
            await wait_for(pilot, lambda: stack.pool.workers and stack.pool.workers[0].alive, description="workers back")
            assert "sandbox:faults" in queues.rows
            await pilot.press("2")
            offered = set()
            for _ in range(len(app.main.last_snapshot.queues) + 1):
                await pilot.press("g")
                offered.add(app.main.query_one("#jobs-table", JobsTable).queue_filter)
            assert "sandbox:faults" in offered
    finally:
        app.shutdown()


@run_async
async def test_removed_worker_stopped_then_gone(stack, monkeypatch):
    monkeypatch.setattr(workers_table, "STOPPED_SHOWN_S", 1.5)
    app, hook = make_app(stack, [])
    try:
        async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
            table = app.main.query_one(WorkersTable)
            bar = app.main.query_one(StatusBar)

            def states():
                return {key.value: str(table.get_cell(key, "state")) for key in table.rows}

            await pilot.press("plus")
            await wait_for(pilot, lambda: len(states()) == 2 and "?" not in states().values(), description="two workers")
            newest = stack.pool.workers[-1].name
            await pilot.press("minus")

            await wait_for(pilot, lambda: states().get(newest) == "stopped", description="the worker shown as stopped")
            assert "dead" not in states().values()
            assert f"· {table.row_count} workers ·" in bar.text
            await wait_for(pilot, lambda: newest not in states(), description="the stopped worker to leave the table")
            assert list(states().values()) == ["idle"]
            await wait_for(pilot, lambda: "· 1 workers ·" in bar.text, description="the header count")
    finally:
        app.shutdown()


@run_async
async def test_producer_field_esc_frees_keys(tmp_path):
    # No Redis: the keys are the screen's, not the monitor's.
    stack = Stack(StackOptions(redis_url="redis://127.0.0.1:1/0", state_dir=tmp_path, extra_services=()))
    app = SandboxApp(stack, SCENARIOS, live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        field = app.main.query_one("#send-count", Input)
        field.focus()
        await pilot.press("end", "1", "q")
        assert field.value == "101"
        assert app.main.query_one("#tabs").active == "producer"
        assert app.is_running
        footer = [(key.key_display, key.description) for key in app.screen.query(FooterKey)]
        assert ("esc", "Leave field") in footer

        await pilot.press("escape")
        assert app.focused is app.main.query_one("#scenarios")
        await pilot.press("1")
        assert app.main.query_one("#tabs").active == "overview"
        await pilot.press("3", "q")
        await wait_for(pilot, lambda: not app.is_running, description="q to quit")
    assert app.return_code == 0
