"""One job: its hash decoded, its result or exception, and contract findings when a checker is installed."""

from __future__ import annotations

import logging

import redis
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from sandbox import redisconn
from sandbox.errors import SandboxError
from sandbox.monitor.snapshot import JobDetail, read_job_detail
from sandbox.secrets import mask_url
from sandbox.tui import messages

logger = logging.getLogger(__name__)


def contract_findings(connection: redis.Redis, job_id: str) -> tuple[tuple[str, str, str, str], ...] | None:
    """Findings of ``sandbox.contract.check`` as plain strings, or None when that module is absent."""
    try:
        from sandbox.contract.check import check_job
    except ImportError:
        return None
    rows = []
    for finding in check_job(connection, job_id):
        rows.append(tuple(str(getattr(finding, name, "") or "") for name in ("severity", "field", "rule", "message")))
        if not any(rows[-1]):
            rows[-1] = ("", "", "", str(finding))
    return tuple(rows)


def render_detail(job_id: str, detail: JobDetail | None, findings, error: str | None) -> Group:
    parts: list = [Text(f"Job {job_id}", style="bold")]
    if error:
        parts.append(Text(f"cannot read the job: {error}", style="red"))
        return Group(*parts)
    if detail is None or not detail.exists:
        parts.append(Text("the job hash is gone (expired, deleted or never written)", style="yellow"))
        return Group(*parts)

    fields = Table(box=None, show_header=False, pad_edge=False)
    fields.add_column(style="bold cyan", no_wrap=True)
    fields.add_column(overflow="fold")
    for name, value in detail.fields.items():
        fields.add_row(name, value)
    parts += [Text(""), Text("Hash", style="bold underline"), fields, Text(""), Text("Result", style="bold underline")]

    if detail.result_type is None:
        parts.append(Text("no result stored yet", style="dim"))
    else:
        parts.append(Text(f"type: {detail.result_type}"))
        if detail.return_value is not None:
            parts.append(Text(f"return value: {detail.return_value}"))
        if detail.exception:
            parts.append(Text(detail.exception.rstrip(), style="red"))

    parts += [Text(""), Text("Contract findings", style="bold underline")]
    if findings is None:
        parts.append(Text("no contract checker installed (sandbox.contract.check)", style="dim"))
    elif not findings:
        parts.append(Text("none: the hash matches what the installed rq reads", style="green"))
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("severity", "field", "rule", "message"):
            table.add_column(column, overflow="fold")
        for row in findings:
            table.add_row(*row)
        parts.append(table)
    return Group(*parts)


class JobDetailScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("r", "reload", "Reload")]

    def __init__(self, job_id: str, redis_url: str | None, live: bool = True) -> None:
        super().__init__()
        self.job_id = job_id
        self.redis_url = redis_url
        self.live = live
        self.loaded: messages.JobDetailLoaded | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail-scroll"):
            yield Static(Text(f"Job {self.job_id}: loading…"), id="detail")
        yield Footer()

    def on_mount(self) -> None:
        if self.live:
            self.load()

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load(self) -> None:
        try:
            connection = redisconn.connect(self.redis_url, timeout=2.0)
            try:
                detail = read_job_detail(connection, self.job_id)
                findings = contract_findings(connection, self.job_id) if detail.exists else None
            finally:
                connection.close()
            self.post_message(messages.JobDetailLoaded(detail, findings))
        except (redis.RedisError, SandboxError, OSError) as error:
            text = mask_url(str(error).splitlines()[0] if str(error) else type(error).__name__)
            logger.warning("Job %s: cannot load details: %s", self.job_id, text)
            self.post_message(messages.JobDetailLoaded(None, None, error=text))

    def on_job_detail_loaded(self, message: messages.JobDetailLoaded) -> None:
        self.loaded = message
        self.query_one("#detail", Static).update(render_detail(self.job_id, message.detail, message.findings, message.error))
