"""One line: which Redis, whether the monitor reaches it, and how fast."""

from __future__ import annotations

from textual import events
from textual.widgets import Static


class StatusBar(Static):
    """The connection state is a CSS class (connected, disconnected) so the stylesheet colours it.

    When the line does not fit, the URL goes first: the title shows it too.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._url = ""
        self._rest = "connecting…"

    def on_mount(self) -> None:
        self.set_class(True, "connecting")
        self._show()

    def on_resize(self, event: events.Resize) -> None:
        self._show()

    def connected(self, url: str, latency_ms: float, queues: int, workers: int, jobs: int) -> None:
        self.set_classes("connected")
        self._url = url
        self._rest = f"connected · {latency_ms:.1f} ms · {queues} queues · {workers} workers · {jobs} jobs"
        self._show()

    def disconnected(self, url: str, detail: str, retry_in_s: float) -> None:
        self.set_classes("disconnected")
        self._url = url
        self._rest = f"DISCONNECTED: {detail} · retrying in {retry_in_s:.1f} s"
        self._show()

    @property
    def text(self) -> str:
        """The line as shown at the current width."""
        full = f"Redis {self._url} · {self._rest}" if self._url else f"Redis {self._rest}"
        width = self.content_size.width
        return full if not width or len(full) <= width else f"Redis {self._rest}"

    def _show(self) -> None:
        self.update(self.text)
