"""The look of the dashboard and of a job's details, pinned by SVG snapshots.

The app runs with ``live=False``: it polls nothing and connects nowhere. The
screen gets a fixed state through the same messages its workers post, so no
port, time or pid changes between runs.
"""

from datetime import datetime, timezone
from pathlib import Path

from sandbox.monitor.snapshot import JobDetail, JobRow, QueueStats, Snapshot, WorkerRow
from sandbox.services.base import ServiceStatus, State
from sandbox.tui import messages
from sandbox.tui.app import SandboxApp
from sandbox.tui.screens.job_detail import JobDetailScreen
from sandbox.tui.stack import Stack, StackOptions

#: Shown, never connected to; the password must appear masked.
SHOWN_URL = "redis://:hunter2@127.0.0.1:6390/0"
QUEUE = "opik:optimizer-cloud"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(T0.timestamp() + ms / 1000, tz=timezone.utc)


JOBS = (
    JobRow("01a2b3c4-0000-7000-8000-00000000000c", "queued", "sandbox.worker.jobs.process_optimizer_job", QUEUE,
           enqueued_at=_at(1200)),
    JobRow("01a2b3c4-0000-7000-8000-00000000000b", "started", "sandbox.worker.jobs.process_optimizer_job", QUEUE,
           enqueued_at=_at(600), started_at=_at(700)),
    JobRow("01a2b3c4-0000-7000-8000-00000000000a", "finished", "sandbox.worker.jobs.process_optimizer_job", QUEUE,
           enqueued_at=_at(0), started_at=_at(12), ended_at=_at(515)),
)
SNAPSHOT = Snapshot(
    at=T0.timestamp(),
    queues=(
        QueueStats("opik:hello_world_queue", 0, dict.fromkeys(("started", "finished", "failed", "deferred", "scheduled", "canceled"), 0), (0,) * 10),
        QueueStats(QUEUE, 1, {"started": 1, "finished": 41, "failed": 2, "deferred": 0, "scheduled": 0, "canceled": 0},
                   (0, 1, 3, 6, 9, 7, 4, 2, 1, 1)),
    ),
    workers=(WorkerRow("tui-host-100-0", "busy", JOBS[1].job_id, 100, QUEUE),),
    jobs=JOBS,
    round_trips=1,
    latency_ms=0.4,
)
SERVICES = (
    ServiceStatus("redis", "local", State.HEALTHY, port=6390, url="redis://:***@127.0.0.1:6390/0"),
    ServiceStatus("mysql", "local", State.STOPPED),
    ServiceStatus("clickhouse", "local", State.UNAVAILABLE, detail="clickhouse-server not found: install clickhouse-server"),
)


def make_app() -> SandboxApp:
    stack = Stack(StackOptions(redis_url=SHOWN_URL, state_dir=Path("unused"), extra_services=()))
    scenarios = [Path(f"scenarios/{name}.yaml") for name in ("burst-1000", "failures", "ten-messages")]
    return SandboxApp(stack, scenarios, live=False)


async def show_fixed_state(pilot) -> None:
    screen = pilot.app.main
    screen.post_message(messages.ServicesUpdated(SERVICES))
    screen.post_message(messages.ConnectionChanged(True, screen.stack.masked_url))
    screen.post_message(messages.SnapshotReady(SNAPSHOT))
    screen.post_message(messages.LogTail("redis", ("1:M * Ready to accept connections tcp",)))
    await pilot.pause()


def test_main_screen(snap_compare):
    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=show_fixed_state)


def test_main_screen_80x24_jobs_tab(snap_compare):
    async def jobs_tab(pilot):
        await show_fixed_state(pilot)
        await pilot.press("2")

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=jobs_tab)


def test_job_detail_screen(snap_compare):
    detail = JobDetail(
        job_id=JOBS[2].job_id,
        fields={
            "created_at": "2026-01-02T03:04:05.000000Z",
            "data": '["sandbox.worker.jobs.process_optimizer_job", null, ["Test message 1"], {}]',
            "description": "sandbox.worker.jobs.process_optimizer_job",
            "ended_at": "2026-01-02T03:04:05.515000Z",
            "origin": QUEUE,
            "status": "finished",
        },
        result_type="successful",
        return_value='{"message": "Test message 1"}',
    )

    async def open_detail(pilot):
        screen = JobDetailScreen(JOBS[2].job_id, SHOWN_URL, live=False)
        await pilot.app.push_screen(screen)
        screen.post_message(messages.JobDetailLoaded(detail, (("error", "data", "utf-8", "not valid UTF-8"),)))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=open_detail)
