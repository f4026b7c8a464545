"""The main screen's thread workers: every Redis, service and worker-pool call of the dashboard.

Each worker only calls the engine and posts messages from `sandbox.tui.messages`;
the handlers in `main.py` change the widgets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

import redis
from textual import work
from textual.screen import Screen
from textual.worker import get_current_worker

from sandbox import redisconn
from sandbox.contract.profiles import ProfileOptions
from sandbox.errors import SandboxError
from sandbox.monitor.snapshot import Monitor
from sandbox.producer.pacing import Pacer, PhasePlan, schedule
from sandbox.producer.publisher import Publisher
from sandbox.secrets import mask_text
from sandbox.services.base import ServiceError
from sandbox.tui import messages
from sandbox.tui.stack import Stack

logger = logging.getLogger(__name__)

#: Seconds between two looks at the queues' names (a SCAN), much rarer than snapshots.
DISCOVER_EVERY_S = 5.0
#: Seconds between two looks at the services, their logs and the pool.
SERVICES_EVERY_S = 2.0
#: Maximum wait between two attempts to reach a Redis that went away, in seconds.
MAX_BACKOFF_S = 5.0
#: The guide's hello-world endpoint enqueues this function on this queue.
SEND_QUEUE = "opik:optimizer-cloud"
SEND_FUNCTION = "sandbox.worker.jobs.process_optimizer_job"
#: Ids of a run's latest jobs added to the job window per event; a large run would push out every other job.
RUN_IDS_WATCHED = 150


class ScreenWorkers(Screen):
    """Base of the main screen: state shared with the workers, and the workers themselves."""

    def __init__(self, stack: Stack, refresh_s: float = 0.5, live: bool = True) -> None:
        super().__init__()
        self.stack = stack
        self.refresh_s = refresh_s
        self.live = live
        #: Ids sent since the last snapshot; appended by any thread, drained by the monitor.
        self.new_ids: deque[str] = deque()
        #: Queues watched besides the stack's, such as a scenario run's; replaced whole, never changed in place.
        self.extra_queues: frozenset[str] = frozenset()
        #: Ids of the current scenario run, appended by the runner's thread.
        self.run_ids: list[str] = []
        self.runner = None
        self.run_finished = threading.Event()
        self.run_finished.set()
        self.selected_service = "redis"
        self._stop_polling = threading.Event()
        self._pool_lock = threading.Lock()
        self._counter = 0
        self._counter_lock = threading.Lock()

    def next_message(self) -> str:
        with self._counter_lock:
            self._counter += 1
            return f"Test message {self._counter}"

    def _secrets(self) -> list[str]:
        url = self.stack.redis_url or ""
        try:
            password = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("password") if url else None
        except ValueError:
            password = None
        return [password] if password else []

    def _one_line(self, error: BaseException) -> str:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return mask_text(text, self._secrets())

    def close(self) -> None:
        """Let the polling loops end at their next wait."""
        self._stop_polling.set()

    # -- polling ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="monitor")
    def poll_redis(self) -> None:
        """Take a snapshot every `refresh_s`; on a lost connection, retry with backoff."""
        worker = get_current_worker()
        monitor: Monitor | None = None
        next_discovery = 0.0
        failures = 0
        url = self.stack.masked_url
        while not worker.is_cancelled and not self._stop_polling.is_set():
            tick = time.monotonic()
            try:
                if monitor is None:
                    monitor = Monitor(redisconn.connect(self.stack.redis_url, timeout=2.0), queues=self.stack.options.queues)
                extra = self.extra_queues
                if not extra <= monitor.known_queues:
                    monitor.add_queues(extra)
                if tick >= next_discovery:
                    monitor.discover_queues()
                    next_discovery = tick + DISCOVER_EVERY_S
                ids = [self.new_ids.popleft() for _ in range(len(self.new_ids))]
                snapshot = monitor.snapshot(ids)
                pool = tuple(self.stack.pool.workers) if self.stack.pool is not None else ()
                if failures:
                    logger.info("Monitor: Redis at %s is back after %d failed attempts", url, failures)
                    failures = 0
                self.post_message(messages.ConnectionChanged(True, url))
                self.post_message(messages.SnapshotReady(snapshot, pool))
                delay = self.refresh_s - (time.monotonic() - tick)
            except (redis.RedisError, SandboxError, OSError) as error:
                failures += 1
                delay = min(MAX_BACKOFF_S, self.refresh_s * 2 ** min(failures, 6))
                if monitor is not None:
                    monitor.connection.close()
                monitor = None
                next_discovery = 0.0
                detail = self._one_line(error)
                logger.warning("Monitor: Redis at %s unreachable (%s); retry in %.1f s", url, detail, delay)
                self.post_message(messages.ConnectionChanged(False, url, detail, delay))
            self._stop_polling.wait(max(0.0, delay))

    @work(thread=True, exclusive=True, exit_on_error=False, group="services")
    def poll_services(self) -> None:
        """Service states, the selected service's log and the pool's dead workers, every few seconds."""
        worker = get_current_worker()
        while not worker.is_cancelled and not self._stop_polling.is_set():
            try:
                self.post_message(messages.ServicesUpdated(tuple(self.stack.statuses())))
                service = self.selected_service
                self.post_message(messages.LogTail(service, tuple(self.stack.log_tail(service))))
                self._report_worker_exits()
            except (ServiceError, SandboxError, OSError) as error:
                logger.warning("Services: status failed: %s", error)
            self._stop_polling.wait(SERVICES_EVERY_S)

    def _report_worker_exits(self) -> None:
        if self.stack.pool is None:
            return
        with self._pool_lock:
            exits = self.stack.pool.poll()
        for exit_ in exits:
            reason = exit_.last_error or "no error logged"
            self.post_message(messages.WorkersChanged(
                f"worker {exit_.name} exited with {exit_.exit_code}: {reason} (log {exit_.log_path})", ok=False))

    # -- actions ---------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="services-action")
    def service_action(self, name: str, action: str) -> None:
        try:
            status = self.stack.act(name, action)
            text = f"{name}: {action} done, now {status.state.value}"
            if status.detail:
                text += f" ({status.detail})"
            self.post_message(messages.ServiceActionDone(name, action, text, ok=True))
        except (ServiceError, SandboxError, OSError) as error:
            self.post_message(messages.ServiceActionDone(name, action, f"{name}: {action} failed: {self._one_line(error)}", ok=False))
        self.post_message(messages.ServicesUpdated(tuple(self.stack.statuses())))

    @work(thread=True, exit_on_error=False, group="services-action")
    def start_extra_services(self) -> None:
        self.stack.start_extra_services()
        self.post_message(messages.ServicesUpdated(tuple(self.stack.statuses())))

    @work(thread=True, exit_on_error=False, group="pool")
    def change_workers(self, delta: int) -> None:
        try:
            with self._pool_lock:
                if delta > 0:
                    text = f"worker {self.stack.add_worker()} started"
                else:
                    name = self.stack.remove_worker()
                    text = f"worker {name} stopped" if name else "no worker left to stop"
            self.post_message(messages.WorkersChanged(text, ok=True))
        except SandboxError as error:
            self.post_message(messages.WorkersChanged(self._one_line(error), ok=False))

    @work(thread=True, exit_on_error=False, group="send")
    def send_messages(self, count: int, rate_per_s: float | None) -> None:
        """Enqueue like the guide's curl: one message, or ``count`` at ``rate_per_s`` on an open-loop schedule."""
        worker = get_current_worker()
        sent: list[str] = []
        started = time.perf_counter()
        error = None
        connection = None
        try:
            connection = redisconn.connect(self.stack.redis_url)
            publisher = Publisher(connection, ProfileOptions())
            offsets = [offset for _, offset in schedule([PhasePlan(count, rate_per_s)])]
            for index, _ in Pacer(offsets):
                if worker.is_cancelled or self._stop_polling.is_set():
                    break
                job_id = publisher.enqueue(SEND_QUEUE, SEND_FUNCTION, [self.next_message()])
                sent.append(job_id)
                self.new_ids.append(job_id)
                if count > 1:
                    self.post_message(messages.SendProgress(index + 1, count))
        except (redis.RedisError, SandboxError, OSError) as exc:
            error = self._one_line(exc)
            logger.warning("Producer: sending stopped after %d of %d jobs: %s", len(sent), count, error)
        finally:
            if connection is not None:
                connection.close()
        self.post_message(messages.JobsSent(tuple(sent), count, time.perf_counter() - started, error))

    @work(thread=True, exclusive=True, exit_on_error=False, group="run")
    def run_scenario(self, path: Path) -> None:
        """Run a scenario file through the runner against the dashboard's Redis; write its report."""
        from sandbox.scenario.loader import load_scenario
        from sandbox.scenario.report import write_json
        from sandbox.scenario.runner import Runner, RunOptions

        name = path.stem
        paused = False
        try:
            scenario = load_scenario(path)
            name = scenario.name
            self.extra_queues = self.extra_queues | {scenario.producer.queue, *scenario.workers.queues}
            stamp = time.strftime("%Y%m%d-%H%M%S")
            state_dir = self.stack.options.state_dir
            options = RunOptions(redis_url=self.stack.redis_url, state_dir=state_dir / "runs" / f"{name}-{stamp}")
            # The run's metrics must count only the run's own workers.
            with self._pool_lock:
                paused = self.stack.pause_workers()
            self.runner = Runner(scenario, options, subscribers=[self._forward_run_event])
            report, exit_code = self.runner.run()
            report_path = state_dir / "reports" / f"{name}-{stamp}.json"
            write_json(report, report_path)
            self.post_message(messages.RunDone(name, report, exit_code, report_path))
        except (SandboxError, OSError) as error:
            self.post_message(messages.RunDone(name, None, int(getattr(error, "exit_code", 3)), error=self._one_line(error)))
        finally:
            self.runner = None
            if paused and not self._stop_polling.is_set():
                try:
                    with self._pool_lock:
                        self.stack.resume_workers()
                except SandboxError as error:
                    self.post_message(messages.WorkersChanged(f"workers did not restart: {self._one_line(error)}", ok=False))
            self.run_finished.set()

    def _forward_run_event(self, event) -> None:
        runner = self.runner
        if runner is not None:
            fresh = [job.job_id for job in runner.state.sent[len(self.run_ids):]]
            self.run_ids.extend(fresh)
            self.new_ids.extend(fresh[-RUN_IDS_WATCHED:])
        self.post_message(messages.RunEvent(event))

    def stop_run(self, timeout: float = 30.0) -> bool:
        """Ask a scenario run to end (no more sends, its workers stopped) and wait for its report."""
        runner = self.runner
        if runner is not None:
            runner.state.stop_producing.set()
            if runner.pool is not None:
                runner.pool.stop(timeout=5.0)
        return self.run_finished.wait(timeout)
