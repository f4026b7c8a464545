"""The stack's services: state, health, port and uptime, one row each."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import DataTable

from sandbox.services.base import ServiceStatus, State
from sandbox.tui.stack import uptime

STATE_STYLES = {
    State.HEALTHY: "green",
    State.STARTING: "yellow",
    State.UNHEALTHY: "red",
    State.STOPPED: "dim",
    State.UNAVAILABLE: "magenta",
}


class ServicesTable(DataTable):
    """One row per service; the highlighted row is the one the service keys act on."""

    COLUMNS = ("Service", "Backend", "State", "Port", "Uptime", "Detail")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for name in self.COLUMNS:
            self.add_column(name, key=name.lower())

    @property
    def selected(self) -> str | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key((self.cursor_row, 0))
        return row_key.value

    def show(self, statuses: tuple[ServiceStatus, ...], now: float | None = None) -> None:
        now = now if now is not None else time.time()
        for status in statuses:
            cells = {
                "service": status.name,
                "backend": status.backend,
                "state": Text(status.state.value, style=STATE_STYLES.get(status.state, "")),
                "port": str(status.port or ""),
                "uptime": uptime(status.started_at, now) if status.state is State.HEALTHY else "",
                "detail": (status.detail or status.url or "").splitlines()[0] if (status.detail or status.url) else "",
            }
            if status.name in self.rows:
                for key, value in cells.items():
                    self.update_cell(status.name, key, value, update_width=True)
            else:
                self.add_row(*cells.values(), key=status.name)
