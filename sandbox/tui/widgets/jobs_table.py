"""Recent jobs with their state and timings, filtered by state and queue, updated in place."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from sandbox.monitor.snapshot import JobRow

STATE_FILTERS = ("all", "queued", "started", "finished", "failed")
STATE_STYLES = {"finished": "green", "failed": "red", "started": "yellow", "queued": "cyan", "gone": "dim"}
#: State and timings first, so they fit 80 columns; names follow.
COLUMNS = (("Job (…id)", "id"), ("State", "state"), ("Wait ms", "wait"), ("Proc ms", "proc"), ("Total ms", "total"),
           ("Queue", "queue"), ("Function", "function"))


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def short_function(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class JobsTable(DataTable):
    """The job window, newest first; a row keeps its place while its state changes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.state_filter = "all"
        #: A queue name, or None for all queues.
        self.queue_filter: str | None = None
        self._rows: tuple[JobRow, ...] = ()

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key((self.cursor_row, 0))
        return row_key.value

    def state_of(self, job_id: str) -> str | None:
        """Return the state shown for a job, or None when it is not in the table."""
        if job_id not in self.rows:
            return None
        return str(self.get_cell(job_id, "state"))

    def _visible(self, row: JobRow) -> bool:
        if self.queue_filter is not None and row.origin != self.queue_filter:
            return False
        return self.state_filter == "all" or (row.status or "gone") == self.state_filter

    def show(self, rows: tuple[JobRow, ...]) -> None:
        self._rows = rows
        visible = [row for row in rows if self._visible(row)]
        order = [row.job_id for row in visible]
        current = [key.value for key in self.rows]

        if order != current:
            # Rows came or went: rebuild in order, keeping the cursor on the same job.
            selected = self.selected
            self.clear()
            for row in visible:
                self.add_row(*self._cells(row).values(), key=row.job_id)
            if selected in order:
                self.move_cursor(row=order.index(selected))
            return

        for row in visible:
            for key, value in self._cells(row).items():
                if str(self.get_cell(row.job_id, key)) != str(value):
                    self.update_cell(row.job_id, key, value, update_width=True)

    def refilter(self) -> None:
        self.show(self._rows)

    def _cells(self, row: JobRow) -> dict:
        state = row.status or "gone"
        return {
            # The head of a UUIDv7 is its timestamp, shared by jobs sent in the same millisecond, so show the random tail.
            "id": "…" + row.job_id[-12:] if len(row.job_id) > 13 else row.job_id,
            "state": Text(state, style=STATE_STYLES.get(state, "")),
            "wait": _ms(row.queue_wait_ms),
            "proc": _ms(row.processing_ms),
            "total": _ms(row.total_ms),
            "queue": row.origin,
            "function": short_function(row.function),
        }
