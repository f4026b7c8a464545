"""Producer throughput: the java profile, rq's Queue.enqueue, redis-benchmark and the batched mode.

Every rate is jobs per second from one connection. redis-benchmark sends the
java profile's three commands (HSET with the same fields and sizes, EXPIRE,
RPUSH) with one client. Its job rate counts one job per HSET + EXPIRE + RPUSH:
``1 / (1/r_hset + 1/r_expire + 1/r_rpush)``.
"""

import logging
import subprocess
import time

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench.results import Section, Table, Target
from bench.stats import median, ratio, rate, spread, times
from sandbox.contract import keys
from sandbox.contract.ids import uuid7
from sandbox.contract.profiles import ProfileOptions, java_job_hash
from sandbox.contract.timestamps import now_instant
from sandbox.producer.publisher import Publisher

logger = logging.getLogger(__name__)

FUNCTION = "sandbox.worker.jobs.process_noop"
QUEUE = "bench-producer"

#: Jobs per repeat for the producers that pay a round trip per command.
ROUND_TRIP_JOBS = 2_000
#: Jobs per repeat in batched mode, sent in batches of BATCH_SIZE.
BATCHED_JOBS = 20_000
BATCH_SIZE = 500
#: Requests per command for redis-benchmark without and with a pipeline.
PLAIN_REQUESTS = 20_000
PIPELINED_REQUESTS = 100_000
PIPELINE_DEPTH = 64
#: Key space for __rand_int__, so HSET writes many distinct hashes as the java profile does.
KEY_SPACE = 100_000


def java_rate(connection: redis.Redis, jobs: int = ROUND_TRIP_JOBS) -> float:
    publisher = Publisher(connection, ProfileOptions(name="java"))
    start = time.perf_counter()
    for number in range(jobs):
        publisher.enqueue(QUEUE, FUNCTION, [f"Test_{number}"])
    return jobs / (time.perf_counter() - start)


def rq_enqueue_rate(connection: redis.Redis, jobs: int = ROUND_TRIP_JOBS) -> float:
    queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
    start = time.perf_counter()
    for number in range(jobs):
        queue.enqueue(FUNCTION, f"Test_{number}")
    return jobs / (time.perf_counter() - start)


def batched_rate(connection: redis.Redis, jobs: int = BATCHED_JOBS, batch_size: int = BATCH_SIZE) -> float:
    publisher = Publisher(connection, ProfileOptions(name="java"))
    start = time.perf_counter()
    for first in range(0, jobs, batch_size):
        publisher.enqueue_many(QUEUE, FUNCTION, [[f"Test_{n}"] for n in range(first, min(jobs, first + batch_size))])
    return jobs / (time.perf_counter() - start)


def java_commands() -> list[list[str]]:
    """Return the java profile's HSET, EXPIRE and RPUSH, with a random key of the same length."""
    job_id = uuid7()
    options = ProfileOptions(name="java")
    job_hash = java_job_hash(job_id, QUEUE, FUNCTION, ["Test_1"], {}, now_instant("micros"), options)
    # __rand_int__ expands to 12 digits, the length of a uuid's last group.
    key = keys.job_key(job_id[:-12] + "__rand_int__")
    fields = [part for name, value in job_hash.items() for part in (name, value.decode())]
    return [
        ["HSET", key, *fields],
        ["EXPIRE", key, str(options.ttl_s)],
        ["RPUSH", keys.queue_key(QUEUE), job_id],
    ]


def redis_benchmark_rate(binary: str, port: int, command: list[str], requests: int, pipeline: int) -> float:
    """Return the requests per second redis-benchmark reports for one command from one client."""
    argv = [
        binary, "-h", "127.0.0.1", "-p", str(port), "-c", "1", "-n", str(requests),
        "-P", str(pipeline), "-r", str(KEY_SPACE), "--csv", *command,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"redis-benchmark exited with {result.returncode}: {result.stderr.strip()[-300:]}")

    # The test name repeats the command unescaped, quotes included, so the numbers
    # are read from the right: rps is the first of the last seven columns.
    rows = [line for line in result.stdout.splitlines() if line.strip() and not line.startswith('"test"')]
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no result: {result.stdout!r}")
    return float(rows[-1].rsplit(",", 7)[1].strip('"'))


def redis_benchmark_job_rate(binary: str, port: int, requests: int, pipeline: int) -> float:
    """Return the jobs per second if each job costs one HSET, EXPIRE and RPUSH at redis-benchmark's rates."""
    seconds_per_job = sum(
        1.0 / redis_benchmark_rate(binary, port, command, requests, pipeline) for command in java_commands()
    )
    return 1.0 / seconds_per_job


def measure(connection: redis.Redis, port: int, redis_benchmark: str | None, repeats: int) -> Section:
    """Run every producer `repeats` times, interleaved, and compare them within each repeat."""
    section = Section("Producer: jobs/s from one connection")
    if redis_benchmark is None:
        section.notes.append("redis-benchmark was not found: install redis-tools to get the baseline")

    samples: dict[str, list[float]] = {
        "java": [], "rq": [], "bench": [], "bench_pipelined": [], "batched": [],
    }
    runners = {
        "java": lambda: java_rate(connection),
        "rq": lambda: rq_enqueue_rate(connection),
        "batched": lambda: batched_rate(connection),
    }
    if redis_benchmark is not None:
        runners["bench"] = lambda: redis_benchmark_job_rate(redis_benchmark, port, PLAIN_REQUESTS, 1)
        runners["bench_pipelined"] = lambda: redis_benchmark_job_rate(
            redis_benchmark, port, PIPELINED_REQUESTS, PIPELINE_DEPTH
        )

    for repeat in range(repeats):
        for name, runner in runners.items():
            connection.flushall()
            samples[name].append(runner())
            logger.info("Producer %s, repeat %d: %.0f jobs/s", name, repeat + 1, samples[name][-1])
    connection.flushall()

    def per_repeat_ratio(top: str, bottom: str) -> float:
        pairs = list(zip(samples[top], samples[bottom]))
        return median([ratio(a, b) for a, b in pairs]) if pairs else float("nan")

    rows = [
        ("java profile: `Publisher.enqueue` (HSET, EXPIRE, RPUSH: 3 round trips)", "java", "bench"),
        ("rq `Queue.enqueue(..., serializer=JSONSerializer)`", "rq", "bench"),
        ("redis-benchmark, same 3 commands, `-c 1 -P 1` (baseline)", "bench", "bench"),
        (f"batched: `Publisher.enqueue_many`, batches of {BATCH_SIZE}", "batched", "bench_pipelined"),
        (f"redis-benchmark, same 3 commands, `-c 1 -P {PIPELINE_DEPTH}` (pipelined baseline)",
         "bench_pipelined", "bench_pipelined"),
    ]
    section.tables.append(Table(
        ["producer", "jobs/s (median)", "range", "vs its redis-benchmark baseline"],
        [[label, rate(median(samples[key])), spread(samples[key]), times(per_repeat_ratio(key, base))]
         for label, key, base in rows],
    ))

    java_vs_rq = per_repeat_ratio("java", "rq")
    batched_vs_limit = per_repeat_ratio("batched", "bench_pipelined")
    section.targets.append(Target(
        "java profile >= rq Queue.enqueue", ">= 1.00x",
        f"{times(java_vs_rq)} ({rate(median(samples['java']))} vs {rate(median(samples['rq']))} jobs/s)",
        java_vs_rq >= 1.0,
    ))
    section.targets.append(Target(
        "batched >= 1/4 of redis-benchmark pipelined", ">= 0.25x",
        f"{times(batched_vs_limit)} ({rate(median(samples['batched']))} vs "
        f"{rate(median(samples['bench_pipelined']))} jobs/s)",
        batched_vs_limit >= 0.25 if redis_benchmark is not None else None,
    ))
    section.notes.append(
        f"{ROUND_TRIP_JOBS:,} jobs per repeat for java and rq, {BATCHED_JOBS:,} for batched; redis-benchmark "
        f"{PLAIN_REQUESTS:,} requests per command unpipelined, {PIPELINED_REQUESTS:,} pipelined, one client, "
        f"keys drawn from {KEY_SPACE:,}. Ratios are medians of per-repeat ratios."
    )
    return section
