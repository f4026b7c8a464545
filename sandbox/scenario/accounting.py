"""Classify every job of a run from what RQ recorded, so none goes unaccounted."""

from dataclasses import dataclass, field

from sandbox.monitor.harvest import JobRecord

#: Job ids listed per class in a report.
IDS_PER_CLASS = 20

CLASSES = ("finished", "failed", "abandoned", "expired", "pending")


@dataclass
class Accounting:
    """Job ids per outcome class."""

    enqueued: int = 0
    by_class: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in CLASSES})

    def count(self, name: str) -> int:
        return len(self.by_class[name])

    @property
    def unaccounted(self) -> int:
        return self.enqueued - sum(len(ids) for ids in self.by_class.values())

    def as_dict(self) -> dict:
        counts = {name: self.count(name) for name in CLASSES}
        return {
            "enqueued": self.enqueued,
            **counts,
            "unaccounted": self.unaccounted,
            "ids": {name: ids[:IDS_PER_CLASS] for name, ids in self.by_class.items() if ids},
        }


def classify(record: JobRecord, live_workers: set[str]) -> str:
    """Name the outcome class of one job.

    ``live_workers`` holds the names of workers still alive: a job RQ marked
    started whose worker is gone was abandoned, not pending.
    """
    if record.status is None:
        return "expired"
    if record.status == "finished":
        return "finished"
    if record.status in ("failed", "stopped", "canceled"):
        return "failed"
    if record.status == "started" and record.worker_name and record.worker_name not in live_workers:
        return "abandoned"
    return "pending"


def account(records: list[JobRecord], live_workers: set[str]) -> Accounting:
    accounting = Accounting(enqueued=len(records))
    for record in records:
        accounting.by_class[classify(record, live_workers)].append(record.job_id)
    return accounting
