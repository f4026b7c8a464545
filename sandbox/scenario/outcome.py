"""Turn what RQ recorded for a run into its report: accounting, timings, errors, metrics, expectations."""

import logging
import time

import redis

from sandbox.contract import keys
from sandbox.monitor import harvest
from sandbox.monitor.stats import summarize
from sandbox.scenario.accounting import RunFacts, account
from sandbox.scenario.expectations import ExpectationResult, evaluate
from sandbox.scenario.faults import where_abandoned
from sandbox.scenario.report import versions
from sandbox.secrets import mask_url

logger = logging.getLogger(__name__)

#: Distinct error groups listed in a report.
ERROR_GROUPS = 20


def _ms(later, earlier) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() * 1000.0


def timings(records, sent_by_id) -> dict:
    """Queue wait, processing and total per job, measured from each job's scheduled send time."""
    queue_wait, processing, total, send_lag = [], [], [], []
    for record in records:
        sent = sent_by_id[record.job_id]
        send_lag.append(sent.lag_s * 1000.0)
        if record.started_at is None:
            continue
        scheduled = record.started_at.timestamp() - sent.scheduled_at
        queue_wait.append(scheduled * 1000.0)
        if record.ended_at is not None:
            processing.append(_ms(record.ended_at, record.started_at))
            total.append((record.ended_at.timestamp() - sent.scheduled_at) * 1000.0)
    return {
        "queue_wait": summarize(queue_wait).as_dict(),
        "processing": summarize(processing).as_dict(),
        "total": summarize(total).as_dict(),
        "send_lag": summarize(send_lag).as_dict(),
    }


def group_errors(error_texts: dict[str, str]) -> list[dict]:
    """Group failed jobs by exception type, with one full example line and up to 20 ids each."""
    groups: dict[str, dict] = {}
    for job_id, text in error_texts.items():
        line = harvest.last_error_line(text)
        error_type = line.split(":", 1)[0] if ":" in line else line
        group = groups.setdefault(error_type, {"error_type": error_type, "error": line, "count": 0, "job_ids": []})
        group["count"] += 1
        if len(group["job_ids"]) < 20:
            group["job_ids"].append(job_id)
    ordered = sorted(groups.values(), key=lambda group: -group["count"])
    return ordered[:ERROR_GROUPS]


def metrics_checks(metrics: dict, jobs: dict, failed_in_registry: int, total_fn) -> list[ExpectationResult]:
    """Compare the emitted metrics with what Redis recorded for the same jobs."""
    run_by_workers = jobs["finished"] + jobs["failed"]
    processed = total_fn(metrics, "rq_worker.jobs.processed")
    failed = total_fn(metrics, "rq_worker.jobs.failed")
    succeeded = total_fn(metrics, "rq_worker.jobs.succeeded")
    checks = [
        ExpectationResult("metrics: processed == finished + failed", run_by_workers, processed,
                          processed == run_by_workers),
        ExpectationResult("metrics: succeeded == finished", jobs["finished"], succeeded,
                          succeeded == jobs["finished"]),
        ExpectationResult("metrics: failed == jobs in the failed registry", failed_in_registry, failed,
                          failed == failed_in_registry),
    ]
    for name in ("rq_worker.job.processing_time", "rq_worker.job.queue_wait_time", "rq_worker.job.total_time"):
        count = total_fn(metrics, name)
        checks.append(ExpectationResult(f"metrics: {name} count == finished + failed", run_by_workers, count,
                                        count == run_by_workers))
    return checks


def count_in_failed_registry(connection: redis.Redis, records) -> int:
    """Count the run's jobs in their queue's failed registry (ZSCORE, read-only)."""
    pipe = connection.pipeline(transaction=False)
    for record in records:
        pipe.zscore(keys.registry_key("failed", record.origin or ""), record.job_id)
    return sum(1 for score in pipe.execute() if score is not None)


def build_report(runner, started: float) -> dict:
    """Harvest the run's jobs from Redis and assemble the report."""
    scenario = runner.scenario
    state = runner.state
    sent = list(state.sent)
    sent_by_id = {job.job_id: job for job in sent}

    report = {
        "scenario": scenario.name,
        "scenario_file": str(scenario.path) if scenario.path else None,
        "passed": False,
        "interrupted": state.interrupted,
        "infrastructure_error": state.infrastructure_error,
        "deadline_reached": state.deadline_hit,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": None,
        "redis": {
            "url": mask_url(runner.redis_url) if runner.redis_url else None,
            "embedded": runner.redis_process is not None,
        },
        "services": {
            "backend": runner.scenario.backend if runner.backend is not None else None,
            "started": list(runner.services_started),
            "statuses": runner.service_statuses,
        },
        "producer": {
            "profile": scenario.producer.profile,
            "queue": scenario.producer.queue,
            "function": scenario.producer.function,
            "clock_precision": scenario.producer.clock_precision,
            "ttl_s": scenario.producer.ttl_s,
            "batched": scenario.producer.batched,
            "retries": state.producer_retries,
        },
        "workers": {
            "count": scenario.workers.count,
            "mode": scenario.workers.mode,
            "queues": list(scenario.workers.queues),
            "serializer": scenario.workers.serializer,
            "decode_responses": scenario.workers.decode_responses,
            "crashes": state.crashes,
            "fault_exits": state.fault_exits,
        },
        "faults": [record.as_dict() for record in runner.faults.records],
        "monitor_read_errors": state.monitor_errors,
    }

    connection = runner.connection
    abandoned_actions: dict[str, str] = dict(runner.abandoned_actions)
    if connection is not None and set(runner.faults.killed_jobs) - set(abandoned_actions):
        try:
            # RQ's own recovery of jobs whose worker was killed, recorded as RQ left them.
            abandoned_actions.update(runner.faults.recover_abandoned(force=True))
        except redis.RedisError as error:
            logger.error("Recovering abandoned jobs failed: %s", error)
            abandoned_actions = {job_id: f"recovery failed: {error}" for job_id in runner.faults.killed_jobs}
    records = []
    error_texts: dict[str, str] = {}
    server_version = None
    if connection is not None:
        try:
            records = harvest.read_jobs(connection, [job.job_id for job in sent])
            failed_ids = [r.job_id for r in records if r.terminal and r.status != "finished"]
            error_texts = harvest.read_errors(connection, failed_ids)
            server_version = connection.info("server").get("redis_version")
        except redis.RedisError as error:
            logger.error("Reading the run's jobs from Redis failed: %s", error)
            state.infrastructure_error = state.infrastructure_error or f"reading jobs from Redis failed: {error}"

    # A job a crashed worker had taken and no worker finished was abandoned, whatever RQ did with it since.
    for crash in state.crashes:
        job_id = crash.get("job_id")
        if job_id and job_id in sent_by_id and job_id not in abandoned_actions and connection is not None:
            record = next((r for r in records if r.job_id == job_id), None)
            if record is not None and record.status != "finished":
                try:
                    abandoned_actions[job_id] = where_abandoned(connection, job_id, scenario.workers.queues)
                except redis.RedisError as error:
                    abandoned_actions[job_id] = f"unknown ({error})"

    crashed = {crash["worker"] for crash in state.crashes} | {item["worker"] for item in state.fault_exits}
    live = {w.name for w in runner.pool.workers} - crashed if runner.pool else set()
    facts = RunFacts(orphaned=set(state.orphaned), abandoned=abandoned_actions)
    now = time.time()
    for record in records:
        if record.status is None:
            sent_job = sent_by_id[record.job_id]
            ttl_s = state.short_ttl.get(record.job_id, scenario.producer.ttl_s)
            if sent_job.scheduled_at + sent_job.lag_s + ttl_s <= now:
                facts.ttl_elapsed.add(record.job_id)
    accounting = account(records, live, facts)
    if len(records) < len(sent):
        accounting.enqueued = len(sent)
    jobs = accounting.as_dict()
    report["jobs"] = jobs
    report["errors"] = group_errors(error_texts)
    report["timings_ms"] = timings(records, sent_by_id)

    wall_s = time.time() - started
    report["wall_s"] = round(wall_s, 3)
    first = min((job.scheduled_at for job in sent), default=None)
    ends = [r.ended_at.timestamp() for r in records if r.ended_at is not None]
    produce_s = (max(job.scheduled_at for job in sent) - first) if sent else 0.0
    complete_s = (max(ends) - first) if ends and first is not None else 0.0
    report["throughput"] = {
        "enqueue_per_s": round(len(sent) / produce_s, 2) if produce_s > 0 else None,
        "complete_per_s": round(len(ends) / complete_s, 2) if complete_s > 0 else None,
    }

    results = evaluate(
        scenario.expect,
        jobs=jobs,
        timings=report["timings_ms"],
        error_texts=list(error_texts.values()),
        crashes=state.crashes,
        deadline_hit=state.deadline_hit,
        restart_dead=scenario.workers.restart_dead,
    )

    metrics = {}
    if runner.pool is not None:
        from sandbox.worker.metrics import metric_total

        metrics = runner.pool.metrics()
        killed = bool(runner.faults.killed_jobs)
        if killed or state.crashes:
            # A killed process never writes its last snapshot (taken every 0.5 s), so counts can fall short.
            report["metrics_checks_skipped"] = "a worker died; its last metrics snapshot may miss its final jobs"
        elif connection is not None and not state.infrastructure_error:
            # Jobs RQ's cleanup moved there were never run to an end by a worker, so no metric counts them.
            run_failed = set(accounting.by_class["failed"])
            in_registry = count_in_failed_registry(connection, [r for r in records if r.job_id in run_failed])
            results += metrics_checks(metrics, jobs, in_registry, metric_total)
    report["metrics"] = metrics

    report["expectations"] = [result.as_dict() for result in results]
    report["passed"] = (
        all(result.passed for result in results)
        and not state.interrupted
        and not state.infrastructure_error
    )
    report["versions"] = versions(server_version)
    return report
