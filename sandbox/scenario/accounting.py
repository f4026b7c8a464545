"""Classify every job of a run from what RQ recorded, so none goes unaccounted."""

from dataclasses import dataclass, field

from sandbox.monitor.harvest import JobRecord

#: Job ids listed per class in a report.
IDS_PER_CLASS = 20

CLASSES = ("finished", "failed", "abandoned", "expired", "orphaned", "lost", "pending")


@dataclass
class RunFacts:
    """Facts the producer and the fault injector keep about a run's jobs beyond Redis."""

    #: Ids whose hash was written but never pushed to a queue.
    orphaned: set[str] = field(default_factory=set)
    #: Jobs held by a worker when it was killed, mapped to what RQ then did with them.
    abandoned: dict[str, str] = field(default_factory=dict)
    #: Ids whose hash TTL has run out since they were sent.
    ttl_elapsed: set[str] = field(default_factory=set)


@dataclass
class Accounting:
    """Job ids per outcome class."""

    enqueued: int = 0
    by_class: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in CLASSES})
    #: What RQ did with each abandoned job: requeued, moved to the failed registry, left started.
    abandoned_actions: dict[str, str] = field(default_factory=dict)

    def count(self, name: str) -> int:
        return len(self.by_class[name])

    @property
    def unaccounted(self) -> int:
        return self.enqueued - sum(len(ids) for ids in self.by_class.values())

    def as_dict(self) -> dict:
        counts = {name: self.count(name) for name in CLASSES}
        actions: dict[str, int] = {}
        for action in self.abandoned_actions.values():
            actions[action] = actions.get(action, 0) + 1
        return {
            "enqueued": self.enqueued,
            **counts,
            "unaccounted": self.unaccounted,
            "abandoned_by_rq_action": actions,
            "ids": {name: ids[:IDS_PER_CLASS] for name, ids in self.by_class.items() if ids},
        }


def classify(record: JobRecord, live_workers: set[str], facts: RunFacts) -> str:
    """Name the outcome class of one job.

    ``live_workers`` contains the names of workers still alive: a job RQ marked
    started whose worker is gone was abandoned, not pending.
    """
    if record.job_id in facts.orphaned:
        return "orphaned"
    if record.status == "finished":
        return "finished"
    if record.job_id in facts.abandoned:
        return "abandoned"
    if record.status in ("failed", "stopped", "canceled"):
        return "failed"
    if record.status == "started" and record.worker_name and record.worker_name not in live_workers:
        return "abandoned"
    if record.status is None:
        # The hash is gone: its TTL ran out (expired) or Redis lost it (a restart without persistence).
        return "expired" if record.job_id in facts.ttl_elapsed else "lost"
    return "pending"


def account(records: list[JobRecord], live_workers: set[str], facts: RunFacts | None = None) -> Accounting:
    facts = facts or RunFacts()
    accounting = Accounting(enqueued=len(records))
    for record in records:
        name = classify(record, live_workers, facts)
        accounting.by_class[name].append(record.job_id)
        if name == "abandoned":
            accounting.abandoned_actions[record.job_id] = facts.abandoned.get(record.job_id, "left in the started registry")
    return accounting
