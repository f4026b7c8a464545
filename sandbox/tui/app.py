"""The Textual application: the stylesheet, the global keys and the main screen."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from sandbox.errors import ExitCode
from sandbox.tui.screens.help import HelpScreen
from sandbox.tui.screens.main import MainScreen
from sandbox.tui.stack import Stack


class SandboxApp(App):
    """The dashboard. The stack is started before and stopped after, by `run_tui` or a test."""

    CSS_PATH = "app.tcss"
    TITLE = "rq-sandbox"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]

    #: A closed terminal (SIGHUP) or a kill (SIGTERM) quits like `q`, so what was started is stopped.
    EXIT_SIGNALS = (signal.SIGHUP, signal.SIGTERM)

    def __init__(self, stack: Stack, scenarios: list[Path], refresh_s: float = 0.5, live: bool = True,
                 handle_signals: bool = False) -> None:
        super().__init__()
        self.stack = stack
        self.handle_signals = handle_signals
        self.main = MainScreen(stack, scenarios, refresh_s=refresh_s, live=live)
        self.sub_title = stack.masked_url

    def get_default_screen(self) -> MainScreen:
        return self.main

    def on_mount(self) -> None:
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in self.EXIT_SIGNALS:
                loop.add_signal_handler(sig, self.exit, None, int(ExitCode.INTERRUPTED))

    def on_unmount(self) -> None:
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in self.EXIT_SIGNALS:
                loop.remove_signal_handler(sig)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def shutdown(self, timeout: float = 30.0) -> bool:
        """After the app has exited: end a scenario run still going, so its workers stop too."""
        self.main.close()
        return self.main.stop_run(timeout)
