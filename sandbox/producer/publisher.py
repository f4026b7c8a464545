"""The simulated Java publisher: writes RQ jobs into Redis as the backend's RqPublisher does."""

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from sandbox.contract import keys
from sandbox.contract.ids import uuid7
from sandbox.contract.profiles import ProfileOptions, java_job_hash
from sandbox.contract.timestamps import instant_string, truncate_ns

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for commands that hit a connection error."""

    #: Tries per command, the first included.
    attempts: int = 6
    #: Delay before the first retry, in seconds; it doubles each time.
    base_delay_s: float = 0.05
    #: Upper bound of one delay, in seconds.
    max_delay_s: float = 2.0
    #: Upper bound of the time spent retrying one command, in seconds.
    max_total_s: float = 20.0


#: Errors a retry can cure: the command may or may not have reached Redis.
RETRYABLE = (redis.ConnectionError, redis.TimeoutError)


class Publisher:
    """Enqueue jobs with one producer profile.

    The Java profiles send HSET, EXPIRE and RPUSH as three separate commands, no
    MULTI and no pipeline, so a failure between them leaves what the Java side
    would leave. ``enqueue_many`` pipelines the same commands for load; it is
    labelled batched in reports because its command timing differs.
    """

    def __init__(
        self,
        connection: redis.Redis,
        options: ProfileOptions,
        clock=time.time_ns,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.connection = connection
        self.options = options
        self._clock = clock
        self.retry = retry
        self._sleep = sleep
        #: Commands sent again after a connection error.
        self.retries = 0
        #: Retries that found the hash already written before the error.
        self.hashes_found_on_retry = 0
        #: Retries that found the id already pushed before the error.
        self.pushes_found_on_retry = 0

    def _call(self, command: str, job_id: str, send: Callable[[], Any], already_done: Callable[[], bool]) -> None:
        """Send one command, retrying connection errors without doing the same write twice.

        After an error the command may have reached Redis anyway (the reply was
        lost), so each retry first checks whether its write is already there.
        """
        if self.retry is None:
            send()
            return

        started = time.monotonic()
        delay = self.retry.base_delay_s
        for attempt in range(1, self.retry.attempts + 1):
            try:
                if attempt > 1 and already_done():
                    return
                send()
                return
            except RETRYABLE as error:
                spent = time.monotonic() - started
                if attempt == self.retry.attempts or spent >= self.retry.max_total_s:
                    logger.error("Job %s: %s failed after %d attempts in %.1fs: %s", job_id, command, attempt, spent, error)
                    raise
                pause = random.uniform(0, min(delay, self.retry.max_delay_s))
                logger.warning("Job %s: %s failed (%s); retry %d in %.3fs", job_id, command, error, attempt, pause)
                self.retries += 1
                self._sleep(pause)
                delay *= 2

    def _created_at(self) -> str:
        return instant_string(truncate_ns(self._clock(), self.options.clock_precision))

    def enqueue(
        self,
        queue: str,
        func: str,
        args: list[Any],
        kwargs: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        ttl_s: int | None = None,
        skip_push: bool = False,
    ) -> str:
        """Write one job and return its id.

        ``ttl_s`` overrides the profile's TTL for this job. ``skip_push`` stops after
        HSET and EXPIRE, as a writer that dies before its RPUSH leaves the job.
        """
        job_id = job_id or uuid7()
        kwargs = kwargs or {}
        ttl_s = ttl_s or self.options.ttl_s

        if self.options.name == "rq-native":
            return self._enqueue_rq_native(queue, func, args, kwargs, job_id, ttl_s)

        job_hash = java_job_hash(job_id, queue, func, args, kwargs, self._created_at(), self.options)
        key = keys.job_key(job_id)
        queue_key = keys.queue_key(queue)

        self._call("HSET", job_id, lambda: self.connection.hset(key, mapping=job_hash),
                   lambda: self._found(self.connection.exists(key), "hash"))
        self._call("EXPIRE", job_id, lambda: self.connection.expire(key, ttl_s), lambda: False)
        if skip_push:
            return job_id
        self._call("RPUSH", job_id, lambda: self.connection.rpush(queue_key, job_id),
                   lambda: self._found(self.connection.lpos(queue_key, job_id) is not None, "push"))
        return job_id

    def _found(self, present, what: str) -> bool:
        if present:
            if what == "hash":
                self.hashes_found_on_retry += 1
            else:
                self.pushes_found_on_retry += 1
        return bool(present)

    def enqueue_many(
        self,
        queue: str,
        func: str,
        args_list: list[list[Any]],
        job_ids: list[str] | None = None,
    ) -> list[str]:
        """Write many jobs in one pipelined round trip (batched mode, same commands per job)."""
        if self.options.name == "rq-native":
            return [self.enqueue(queue, func, args) for args in args_list]

        job_ids = job_ids or [uuid7() for _ in args_list]
        pipe = self.connection.pipeline(transaction=False)
        for job_id, args in zip(job_ids, args_list):
            job_hash = java_job_hash(job_id, queue, func, args, {}, self._created_at(), self.options)
            key = keys.job_key(job_id)
            pipe.hset(key, mapping=job_hash)
            pipe.expire(key, self.options.ttl_s)
            pipe.rpush(keys.queue_key(queue), job_id)
        pipe.execute()
        return job_ids

    def _enqueue_rq_native(self, queue, func, args, kwargs, job_id, ttl_s) -> str:
        rq_queue = Queue(queue, connection=self.connection, serializer=JSONSerializer)
        job = rq_queue.enqueue_call(
            func,
            args=tuple(args),
            kwargs=dict(kwargs),
            job_id=job_id,
            ttl=ttl_s,
            description=self.options.description,
        )
        return job.id

    def queue_size(self, queue: str) -> int:
        """Return the queue length as the Java side's ``getQueueSize`` does (LLEN)."""
        return int(self.connection.llen(keys.queue_key(queue)))
