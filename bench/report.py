"""Render benchmark sections as markdown and rewrite the results part of the docs page."""

import re
from datetime import datetime, timezone
from pathlib import Path

from bench.results import Section, Table

START_MARK = "<!-- results:start (written by bench/run.py --write-docs) -->"
END_MARK = "<!-- results:end -->"


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(_escape(h) for h in t.headers) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in t.rows]
    return lines


def _verdict(met: bool | None) -> str:
    if met is None:
        return "not measured"
    return "met" if met else "**missed**"


def render(sections: list[Section], machine: dict[str, str], command: str, duration_s: float) -> str:
    """Render the results as markdown: machine, command, targets, then one part per section."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Recorded {when}, whole run {duration_s:.0f} s, with:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    lines += table(Table(["machine", ""], [[name, value] for name, value in machine.items()]))

    lines += ["", "### Targets", ""]
    rows = [
        [target.name, target.goal, target.measured, _verdict(target.met)]
        for section in sections
        for target in section.targets
    ]
    lines += table(Table(["target", "goal", "measured", "result"], rows))

    for section in sections:
        lines += ["", f"### {section.title}", ""]
        for t in section.tables:
            lines += table(t) + [""]
        for note in section.notes:
            lines += [note, ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


def _marks(path: Path) -> tuple[str, int, int]:
    text = path.read_text(encoding="utf-8")
    start = text.find(START_MARK)
    end = text.find(END_MARK)
    if start < 0 or end < start:
        raise ValueError(f"{path} lacks the markers {START_MARK!r} and {END_MARK!r}")
    return text, start, end


def check_docs(path: Path) -> None:
    """Raise `ValueError` now, rather than after a run of minutes, when `path` cannot take the results."""
    _marks(path)


def write_docs(path: Path, results: str) -> None:
    """Replace what lies between the result markers of `path`, keeping the rest of the page."""
    text, start, end = _marks(path)
    before = text[: start + len(START_MARK)]
    after = text[end:]
    path.write_text(f"{before}\n{results}{after}", encoding="utf-8")
