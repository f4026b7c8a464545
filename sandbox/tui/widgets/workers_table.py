"""Workers registered in Redis, and the pool's own workers that died or were stopped."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import DataTable

from sandbox.monitor.snapshot import WorkerRow
from sandbox.worker.pool import WorkerHandle

STATE_STYLES = {"busy": "yellow", "idle": "green", "dead": "red", "stopped": "dim"}
#: Seconds a worker removed on request stays in the table as stopped.
STOPPED_SHOWN_S = 10.0


def merge_workers(rows: tuple[WorkerRow, ...], pool: tuple[WorkerHandle, ...],
                  removed: dict[str, float] | None = None, now: float | None = None) -> list[WorkerRow]:
    """Redis's view of the workers, plus the pool's workers that are gone from it.

    A pool worker that ended on its own shows ``dead`` and stays. A worker in
    ``removed`` (name to the time of the stop request) shows ``stopped`` for
    `STOPPED_SHOWN_S`, then leaves the table.
    """
    removed = removed or {}
    now = time.time() if now is None else now
    merged = {row.name: row for row in rows}
    for handle in pool:
        if handle.alive:
            continue
        if handle.name not in removed:
            merged[handle.name] = WorkerRow(handle.name, "dead", None, handle.pid)
        elif now - removed[handle.name] < STOPPED_SHOWN_S:
            merged[handle.name] = WorkerRow(handle.name, "stopped", None, handle.pid)
        else:
            merged.pop(handle.name, None)
    return [merged[name] for name in sorted(merged)]


class WorkersTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        for label, key in (("Worker", "name"), ("State", "state"), ("Current job", "job"), ("PID", "pid"), ("Queues", "queues")):
            self.add_column(label, key=key)

    def show(self, rows: list[WorkerRow]) -> None:
        names = {row.name for row in rows}
        for key in [key for key in self.rows if key.value not in names]:
            self.remove_row(key)
        for row in rows:
            cells = {
                "name": row.name,
                "state": Text(row.state, style=STATE_STYLES.get(row.state, "")),
                "job": row.current_job or "",
                "pid": str(row.pid or ""),
                "queues": row.queues,
            }
            if row.name in self.rows:
                for key, value in cells.items():
                    self.update_cell(row.name, key, value, update_width=True)
            else:
                self.add_row(*cells.values(), key=row.name)
