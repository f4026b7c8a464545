"""One line: which Redis, whether the monitor reaches it, and how fast."""

from __future__ import annotations

from textual.widgets import Static


class StatusBar(Static):
    """The connection state is a CSS class (connected, disconnected) so the stylesheet colours it."""

    def on_mount(self) -> None:
        self.set_class(True, "connecting")
        self.update("Redis: connecting…")

    def connected(self, url: str, latency_ms: float, queues: int, workers: int, jobs: int) -> None:
        self.set_classes("connected")
        self.update(f"Redis {url} · connected · {latency_ms:.1f} ms · "
                    f"{queues} queues · {workers} workers · {jobs} jobs")

    def disconnected(self, url: str, detail: str, retry_in_s: float) -> None:
        self.set_classes("disconnected")
        self.update(f"Redis {url} · DISCONNECTED: {detail} · retrying in {retry_in_s:.1f} s")
