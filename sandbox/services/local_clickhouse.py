"""ClickHouse as a local process, with a config and users file of its own."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from xml.sax.saxutils import escape

from sandbox.services.base import STACK_DATABASE, STACK_PASSWORD, STACK_USER, ServiceError
from sandbox.services.health import Result, check_clickhouse, clickhouse_request
from sandbox.services.local_mysql import Spawn, find_program
from sandbox.services.ports import LOCALHOST

logger = logging.getLogger(__name__)

PACKAGE = "clickhouse-server"
SERVER_NAMES = ("clickhouse-server",)

CONFIG_NAME = "config.xml"
USERS_NAME = "users.xml"
LOG_NAME = "clickhouse-server.log"
ERROR_LOG_NAME = "clickhouse-server.err.log"
#: Output before the logger is configured (a bad config, a taken port) lands here.
CONSOLE_LOG_NAME = "console.log"

#: Bytes for each cache; the packaged defaults (5-8 GiB) suit a server, not a laptop.
CACHE_BYTES = 256 * 1024 * 1024

#: Bytes one query may use.
QUERY_MEMORY_BYTES = 2 * 1024 * 1024 * 1024


def _tag(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


class LocalClickhouse:
    """clickhouse-server listening on 127.0.0.1 only, with the stack's user and database."""

    name = "clickhouse"
    package = PACKAGE
    #: HTTP first: it is the port the stack's URL names.
    port_roles = ("http", "tcp")

    def __init__(self, binary: str | None = None) -> None:
        self._override = binary

    def locate(self) -> str:
        return find_program(SERVER_NAMES, PACKAGE, self._override)

    def log_path(self, folder: Path) -> Path:
        return folder / LOG_NAME

    def failure_logs(self, folder: Path) -> list[Path]:
        return [folder / ERROR_LOG_NAME, folder / CONSOLE_LOG_NAME]

    def prepare(self, folder: Path, ports: dict[str, int]) -> None:
        """Write config.xml and users.xml for these ports; ClickHouse creates its folders itself."""
        config = [
            '<?xml version="1.0"?>',
            "<yandex>",
            "  <logger>",
            "    " + _tag("level", "information"),
            "    " + _tag("log", folder / LOG_NAME),
            "    " + _tag("errorlog", folder / ERROR_LOG_NAME),
            "    " + _tag("size", "10M"),
            "    " + _tag("count", 2),
            "  </logger>",
            "  " + _tag("http_port", ports["http"]),
            "  " + _tag("tcp_port", ports["tcp"]),
            "  " + _tag("listen_host", LOCALHOST),
            # ClickHouse joins file names onto these paths: they must end with a slash.
            "  " + _tag("path", f"{folder / 'data'}/"),
            "  " + _tag("tmp_path", f"{folder / 'tmp'}/"),
            "  " + _tag("user_files_path", f"{folder / 'user_files'}/"),
            "  " + _tag("format_schema_path", f"{folder / 'format_schemas'}/"),
            "  " + _tag("users_config", folder / USERS_NAME),
            "  " + _tag("default_profile", "default"),
            "  " + _tag("default_database", "default"),
            "  " + _tag("max_concurrent_queries", 100),
            "  " + _tag("mark_cache_size", CACHE_BYTES),
            "  " + _tag("uncompressed_cache_size", CACHE_BYTES),
            "</yandex>",
        ]
        (folder / CONFIG_NAME).write_text("\n".join(config) + "\n", encoding="utf-8")

        # The stack's user alone: no password-less 'default' user listens, even on the loopback.
        users = [
            '<?xml version="1.0"?>',
            "<yandex>",
            "  <profiles><default>" + _tag("max_memory_usage", QUERY_MEMORY_BYTES) + "</default></profiles>",
            "  <users>",
            f"    <{STACK_USER}>",
            "      " + _tag("password", STACK_PASSWORD),
            "      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>",
            "      <profile>default</profile>",
            "      <quota>default</quota>",
            f"    </{STACK_USER}>",
            "  </users>",
            "  <quotas><default><interval>",
            "    <duration>3600</duration><queries>0</queries><errors>0</errors>",
            "    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>",
            "  </interval></default></quotas>",
            "</yandex>",
        ]
        # The file contains the password, so only its owner may read it.
        fd = os.open(folder / USERS_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(users) + "\n")

    def start(self, folder: Path, ports: dict[str, int], binary: str, spawn: Spawn, timeout: float) -> subprocess.Popen:
        return spawn([binary, f"--config-file={folder / CONFIG_NAME}"], folder / CONSOLE_LOG_NAME, folder)

    def check(self, folder: Path, ports: dict[str, int]) -> Result:
        return check_clickhouse(LOCALHOST, ports["http"], STACK_USER, STACK_PASSWORD)

    def provision(self, folder: Path, ports: dict[str, int]) -> None:
        """Create the stack's database; harmless when it exists."""
        try:
            clickhouse_request(
                LOCALHOST, ports["http"], f"CREATE DATABASE IF NOT EXISTS {STACK_DATABASE}",
                user=STACK_USER, password=STACK_PASSWORD,
            )
        except (OSError, ServiceError) as exc:
            raise ServiceError(f"ClickHouse: creating database {STACK_DATABASE} failed: {exc}") from None

    def url(self, ports: dict[str, int]) -> str:
        return f"http://{STACK_USER}:{STACK_PASSWORD}@{LOCALHOST}:{ports['http']}/?database={STACK_DATABASE}"
