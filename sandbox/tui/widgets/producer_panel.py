"""The simulated Java producer: one message, N messages at a rate, or a scenario."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option


class NumberField(Input):
    """A form field that Esc leaves, so the dashboard's keys (q, 1 to 4) work again."""

    BINDINGS = [Binding("escape", "leave", "Leave field")]

    def action_leave(self) -> None:
        scenarios = self.screen.query_one("#scenarios", OptionList)
        if scenarios.focusable:
            scenarios.focus()
        else:
            self.blur()


class ProducerPanel(Vertical):
    """Buttons and inputs only: the screen does the sending in its workers."""

    def __init__(self, scenarios: list[Path], **kwargs) -> None:
        super().__init__(**kwargs)
        self.scenarios = scenarios

    def compose(self) -> ComposeResult:
        with Horizontal(id="send-form"):
            yield Button("Send one (s)", id="send-one", compact=True)
            yield Label(" N ")
            yield NumberField("10", id="send-count", type="integer", compact=True)
            yield Label(" at ")
            yield NumberField("5", id="send-rate", type="number", compact=True)
            yield Label(" /s ")
            yield Button("Send N (n)", id="send-many", compact=True)
        yield Label("Scenarios (Enter runs one)", classes="section")
        yield OptionList(*[Option(path.stem, id=str(path)) for path in self.scenarios], id="scenarios")
        yield ProgressBar(id="run-progress", show_eta=False)
        yield Static("", id="run-status")

    def form_values(self) -> tuple[int, float]:
        """N and the rate from the form; raises ValueError with a message for people."""
        count_text = self.query_one("#send-count", Input).value.strip()
        rate_text = self.query_one("#send-rate", Input).value.strip()
        try:
            count, rate = int(count_text), float(rate_text)
        except ValueError:
            raise ValueError(f"N must be a whole number and the rate a number, got {count_text!r} and {rate_text!r}") from None
        if not 1 <= count <= 100_000:
            raise ValueError(f"N must be from 1 to 100000, got {count}")
        if not 0 < rate <= 10_000:
            raise ValueError(f"the rate must be above 0 and at most 10000 per second, got {rate:g}")
        return count, rate

    def progress(self, done: int, total: int) -> None:
        self.query_one("#run-progress", ProgressBar).update(total=max(total, 1), progress=done)

    def status(self, text: str) -> None:
        self.query_one("#run-status", Static).update(text)
