"""The simulated Java publisher: writes RQ jobs into Redis as the backend's RqPublisher does."""

import logging
import time
from typing import Any, Mapping

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from sandbox.contract import keys
from sandbox.contract.ids import uuid7
from sandbox.contract.profiles import ProfileOptions, java_job_hash
from sandbox.contract.timestamps import instant_string, truncate_ns

logger = logging.getLogger(__name__)


class Publisher:
    """Enqueue jobs with one producer profile.

    The Java profiles send HSET, EXPIRE and RPUSH as three separate commands, no
    MULTI and no pipeline, so a failure between them leaves what the Java side
    would leave. ``enqueue_many`` pipelines the same commands for load; it is
    labelled batched in reports because its command timing differs.
    """

    def __init__(self, connection: redis.Redis, options: ProfileOptions, clock=time.time_ns):
        self.connection = connection
        self.options = options
        self._clock = clock

    def _created_at(self) -> str:
        return instant_string(truncate_ns(self._clock(), self.options.clock_precision))

    def enqueue(
        self,
        queue: str,
        func: str,
        args: list[Any],
        kwargs: Mapping[str, Any] | None = None,
        job_id: str | None = None,
    ) -> str:
        """Write one job and return its id."""
        job_id = job_id or uuid7()
        kwargs = kwargs or {}

        if self.options.name == "rq-native":
            return self._enqueue_rq_native(queue, func, args, kwargs, job_id)

        job_hash = java_job_hash(job_id, queue, func, args, kwargs, self._created_at(), self.options)
        key = keys.job_key(job_id)
        self.connection.hset(key, mapping=job_hash)
        self.connection.expire(key, self.options.ttl_s)
        self.connection.rpush(keys.queue_key(queue), job_id)
        return job_id

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

    def _enqueue_rq_native(self, queue, func, args, kwargs, job_id) -> str:
        rq_queue = Queue(queue, connection=self.connection, serializer=JSONSerializer)
        job = rq_queue.enqueue_call(
            func,
            args=tuple(args),
            kwargs=dict(kwargs),
            job_id=job_id,
            ttl=self.options.ttl_s,
            description=self.options.description,
        )
        return job.id

    def queue_size(self, queue: str) -> int:
        """The Java side's ``getQueueSize``: LLEN of the queue list."""
        return int(self.connection.llen(keys.queue_key(queue)))
