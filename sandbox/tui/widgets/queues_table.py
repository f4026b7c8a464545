"""Queue depth, registry counts and a sparkline of the depth, one row per queue."""

from __future__ import annotations

from textual.widgets import DataTable

from sandbox.monitor.snapshot import REGISTRY_KINDS, QueueStats

BARS = "▁▂▃▄▅▆▇█"
#: Short headers so the table fits 80 columns.
HEADERS = {"started": "Run", "finished": "Done", "failed": "Fail", "deferred": "Def", "scheduled": "Sch", "canceled": "Can"}
#: Columns left for the sparkline next to the numbers.
MIN_SPARK, MAX_SPARK = 10, 60


def sparkline(values: tuple[int, ...] | list[int], width: int) -> str:
    """Draw the last ``width`` values as block characters scaled to their maximum (the lowest block while all are 0)."""
    values = list(values)[-width:]
    top = max(values, default=0)
    if top == 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, value * (len(BARS) - 1) // top)] for value in values)


class QueuesTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_column("Queue", key="queue")
        self.add_column("Depth", key="depth")
        for kind in REGISTRY_KINDS:
            self.add_column(HEADERS[kind], key=kind)
        self.add_column("Depth history", key="history")

    def _spark_width(self) -> int:
        # Room left after the names and numbers; grows with the terminal.
        return max(MIN_SPARK, min(MAX_SPARK, self.size.width - 75))

    def show(self, queues: tuple[QueueStats, ...]) -> None:
        width = self._spark_width()
        names = {queue.name for queue in queues}
        for key in [key for key in self.rows if key.value not in names]:
            self.remove_row(key)
        for queue in queues:
            cells = {"queue": queue.name, "depth": str(queue.depth)}
            cells.update({kind: str(queue.registries.get(kind, 0)) for kind in REGISTRY_KINDS})
            cells["history"] = sparkline(queue.history, width)
            if queue.name in self.rows:
                for key, value in cells.items():
                    self.update_cell(queue.name, key, value, update_width=True)
            else:
                self.add_row(*cells.values(), key=queue.name)
