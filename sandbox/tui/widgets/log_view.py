"""The log of the selected service, following new lines."""

from __future__ import annotations

from textual.widgets import Log


class ServiceLog(Log):
    """Shows the tail of one service's log; switching service replaces it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, max_lines=500, auto_scroll=True, **kwargs)
        self.service: str | None = None
        self._lines_shown: tuple[str, ...] = ()

    def show(self, service: str, lines: tuple[str, ...]) -> None:
        if service == self.service and lines == self._lines_shown:
            return
        if service == self.service and self._lines_shown and _overlap(self._lines_shown, lines) is not None:
            # The same log grew: append only the new lines, so the view does not jump.
            self.write_lines(lines[_overlap(self._lines_shown, lines):])
        else:
            self.clear()
            self.write_lines(lines)
        self.service = service
        self.border_title = f"log: {service}"
        self._lines_shown = lines


def _overlap(old: tuple[str, ...], new: tuple[str, ...]) -> int | None:
    """Index in ``new`` just past the end of ``old``, when ``new`` continues ``old``."""
    last = old[-1]
    for index in range(len(new) - 1, -1, -1):
        if new[index] == last and new[: index + 1][-len(old):] == old[-(index + 1):]:
            return index + 1
    return None
