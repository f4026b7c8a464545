"""The key bindings, on `?`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("1 2 3 4", "Overview, Jobs, Producer, Timing tabs"),
    ("s", "send one message, like the guide's curl (Test message N)"),
    ("n", "send N messages at the rate in the Producer form"),
    ("Enter", "on a scenario: run it; on a job: open its details"),
    ("u / x / R", "start / stop / restart the selected service"),
    ("+ / -", "add / remove a pool worker"),
    ("f / g", "jobs: cycle the state filter / the queue filter"),
    ("w", "timings: cycle the window (1, 5, 10 min, the last run)"),
    ("Esc", "close a job's details or this help; leave a form field"),
    ("r", "in a job's details: read it again"),
    ("?", "this help"),
    ("q", "quit, stopping what the dashboard started (unless --keep-services)"),
)


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        lines = "\n".join(f"[b]{key:>10}[/b]  {text}" for key, text in KEYS)
        with VerticalScroll(id="help"):
            yield Static(f"[b]rq-sandbox tui: keys[/b]\n\n{lines}")
