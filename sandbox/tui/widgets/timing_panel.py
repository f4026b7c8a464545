"""Percentiles of queue wait, processing and total time, and a histogram of the total."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from sandbox.monitor.stats import histogram, summarize

#: Bucket bounds of the histogram, in milliseconds.
BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
TIMINGS = (("queue_wait", "Queue wait"), ("processing", "Processing"), ("total", "Total"))


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def timing_table(values: dict[str, list[float]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ms", "count", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="right" if column != "ms" else "left")
    for key, label in TIMINGS:
        summary = summarize(values.get(key, []))
        table.add_row(label, str(summary.count), _ms(summary.p50), _ms(summary.p95), _ms(summary.p99), _ms(summary.max))
    return table


def histogram_text(values: list[float], width: int = 40) -> Text:
    counts = histogram(values, BOUNDS_MS)
    top = max(counts, default=0) or 1
    labels = [f"≤{bound}" for bound in BOUNDS_MS] + [f">{BOUNDS_MS[-1]}"]
    text = Text()
    for label, count in zip(labels, counts):
        bar = "█" * round(count * width / top)
        text.append(f"{label:>7} ms ", style="dim")
        text.append(bar, style="cyan")
        text.append(f" {count}\n")
    return text


class TimingPanel(Static):
    """Rendered from plain lists of milliseconds; the screen picks the jobs and the window."""

    def show(self, title: str, values: dict[str, list[float]]) -> None:
        width = max(10, self.size.width - 25)
        self.update(Group(
            Text(title, style="bold"),
            timing_table(values),
            Text(""),
            Text("Total time histogram", style="bold"),
            histogram_text(values.get("total", []), width),
        ))
