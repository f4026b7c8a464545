"""The Java-style producer writes what the Java backend writes, byte for byte, in the same commands."""

import json
import zlib

import pytest
import redis

from sandbox.contract.profiles import ProfileOptions, job_data
from sandbox.producer.publisher import Publisher

FUNC = "opik_backend.rq_worker.process_optimizer_job"
QUEUE = "opik:optimizer-cloud"
NOW_NS = 1_796_414_960_994_035_371  # 2026-12-04T20:09:20.994035371Z


def _publisher(url, **options):
    connection = redis.Redis.from_url(url)
    return connection, Publisher(connection, ProfileOptions(**options), clock=lambda: NOW_NS)


def test_java_hash_matches_contract_field_for_field(redis_url):
    connection, publisher = _publisher(redis_url, clock_precision="nanos", ttl_s=86400)
    job_id = publisher.enqueue(QUEUE, FUNC, ["Test_1"])

    stored = connection.hgetall(f"rq:job:{job_id}")
    assert stored == {
        b"id": job_id.encode(),
        b"created_at": b"2026-12-04T20:09:20.994035371Z",
        b"enqueued_at": b"2026-12-04T20:09:20.994035371Z",
        b"status": b"queued",
        b"origin": QUEUE.encode(),
        b"timeout_in_sec": b"86400",
        b"description": FUNC.encode(),
        b"data": b'["opik_backend.rq_worker.process_optimizer_job",null,["Test_1"],{}]',
    }
    assert 86390 < connection.ttl(f"rq:job:{job_id}") <= 86400
    assert connection.lrange(f"rq:queue:{QUEUE}", 0, -1) == [job_id.encode()]
    # The Java side never registers its queues.
    assert not connection.exists("rq:queues")


def test_java_sends_three_separate_commands(redis_url):
    connection, publisher = _publisher(redis_url)
    with connection.monitor() as monitor:
        job_id = publisher.enqueue(QUEUE, FUNC, ["Test_1"])
        commands = []
        for message in monitor.listen():
            command = message["command"].split()[0].upper()
            if command in ("HSET", "EXPIRE", "RPUSH", "MULTI", "EXEC"):
                commands.append(command)
            if command == "RPUSH":
                break
    assert commands == ["HSET", "EXPIRE", "RPUSH"]
    assert connection.exists(f"rq:job:{job_id}")


def test_legacy_zlib_differs_only_in_data(redis_url):
    connection, java = _publisher(redis_url, name="java")
    _, legacy = _publisher(redis_url, name="java-legacy-zlib")
    plain = connection.hgetall(f"rq:job:{java.enqueue(QUEUE, FUNC, ['Test_1'], job_id='a')}")
    packed = connection.hgetall(f"rq:job:{legacy.enqueue(QUEUE, FUNC, ['Test_1'], job_id='b')}")

    assert packed[b"data"][:2] == b"\x78\x9c"
    assert zlib.decompress(packed[b"data"]) == plain[b"data"]
    differing = {field for field in plain if plain[field] != packed[field]}
    assert differing == {b"id", b"data"}


def test_per_queue_ttl_and_description(redis_url):
    connection, publisher = _publisher(redis_url, ttl_s=7200, description="hello from Java")
    job_id = publisher.enqueue(QUEUE, FUNC, ["x"])
    assert connection.hget(f"rq:job:{job_id}", "timeout_in_sec") == b"7200"
    assert connection.hget(f"rq:job:{job_id}", "description") == b"hello from Java"
    assert 7190 < connection.ttl(f"rq:job:{job_id}") <= 7200


def test_omitted_and_extra_fields(redis_url):
    connection, publisher = _publisher(redis_url, omit_fields=("status",), extra_fields={"meta": "{}"})
    stored = connection.hgetall(f"rq:job:{publisher.enqueue(QUEUE, FUNC, ['x'])}")
    assert b"status" not in stored
    assert stored[b"meta"] == b"{}"


def test_non_ascii_payload_is_raw_utf8():
    assert job_data("f", ["Grüße ✓"], {}) == '["f",null,["Grüße ✓"],{}]'.encode()
    assert json.loads(job_data("f", [{"a": [1, 2]}], {"k": True})) == ["f", None, [{"a": [1, 2]}], {"k": True}]


def test_batched_mode_writes_same_hashes(redis_url):
    connection, publisher = _publisher(redis_url)
    ids = publisher.enqueue_many(QUEUE, FUNC, [["a"], ["b"], ["c"]])
    assert connection.lrange(f"rq:queue:{QUEUE}", 0, -1) == [job_id.encode() for job_id in ids]
    assert connection.hget(f"rq:job:{ids[1]}", "data") == b'["opik_backend.rq_worker.process_optimizer_job",null,["b"],{}]'
    assert publisher.queue_size(QUEUE) == 3


def test_rq_native_goes_through_queue_enqueue(redis_url):
    connection, publisher = _publisher(redis_url, name="rq-native")
    job_id = publisher.enqueue(QUEUE, FUNC, ["Test_1"])
    stored = connection.hgetall(f"rq:job:{job_id}")
    assert stored[b"status"] == b"queued"
    assert b"timeout_in_sec" not in stored
    assert connection.sismember("rq:queues", f"rq:queue:{QUEUE}")


@pytest.mark.parametrize("bad", [dict(name="kotlin"), dict(clock_precision="picos"), dict(ttl_s=0),
                                 dict(omit_fields=("colour",))])
def test_profile_options_rejected(bad):
    with pytest.raises(ValueError, match="allowed|at least"):
        ProfileOptions(**bad)


def test_registry_keys_match_installed_rq():
    from rq import registry

    from sandbox.contract.keys import registry_key

    classes = {
        "started": registry.StartedJobRegistry,
        "finished": registry.FinishedJobRegistry,
        "failed": registry.FailedJobRegistry,
        "deferred": registry.DeferredJobRegistry,
        "scheduled": registry.ScheduledJobRegistry,
        "canceled": registry.CanceledJobRegistry,
    }
    for kind, registry_class in classes.items():
        assert registry_key(kind, "q") == registry_class.key_template.format("q")
