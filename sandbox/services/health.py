"""Health checks that speak each service's own protocol.

Every check returns ``(ok, error)``: ``(True, "")`` when the service replied as expected,
else ``(False, "<one line>")``. None of them raises, and each one is bounded by `timeout`.
"""

from __future__ import annotations

import base64
import logging
import os
import urllib.error
import urllib.request
from urllib.parse import urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sandbox.services.base import ServiceError

logger = logging.getLogger(__name__)

#: Seconds one check may take, connecting and reading the reply included.
DEFAULT_TIMEOUT = 3.0

#: Maximum characters of a server's reply quoted in an error.
ANSWER_LIMIT = 200

Result = tuple[bool, str]


class UnhealthyError(ServiceError):
    """A service was started but failed its health check within the time allowed."""


def _one_line(text: object) -> str:
    flat = " ".join(str(text).split())
    return flat[:ANSWER_LIMIT] + ("..." if len(flat) > ANSWER_LIMIT else "")


def _failure(what: str, exc: BaseException) -> Result:
    error = f"{what}: {type(exc).__name__}: {_one_line(exc)}"
    logger.debug("Health check failed: %s", error)
    return False, error


def check_redis(host: str, port: int, password: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Result:
    """PING, authenticated when a password is given."""
    what = f"Redis PING on {host}:{port}"
    client = redis.Redis(
        host=host,
        port=port,
        password=password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # Retries with backoff would stretch a refused connection into seconds of waiting.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        if client.ping():
            return True, ""
        return False, f"{what}: no PONG"
    except Exception as exc:  # noqa: BLE001 - a check reports every failure, it never raises
        return _failure(what, exc)
    finally:
        client.close()


def check_mysql(
    host: str,
    port: int,
    user: str,
    password: str,
    database: str | None = None,
    unix_socket: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Result:
    """Log in and run ``SELECT 1``."""
    # Imported here so that a machine without PyMySQL still runs the Redis-only sandbox.
    try:
        import pymysql
    except ImportError:
        return False, "PyMySQL is not installed: pip install 'pymysql>=1.1'"

    where = unix_socket or f"{host}:{port}"
    what = f"MySQL SELECT 1 on {where} as {user}"
    if unix_socket is not None and not os.path.exists(unix_socket):
        # PyMySQL does not close its socket when connecting fails; skipping a path that does
        # not exist yet avoids most such leaks while the server starts.
        return False, f"{what}: no socket file yet"
    try:
        connection = pymysql.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            unix_socket=unix_socket,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
        )
    except Exception as exc:  # noqa: BLE001
        return _failure(what, exc)

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            row = cursor.fetchone()
        if row != (1,):
            return False, f"{what}: answered {row!r}"
        return True, ""
    except Exception as exc:  # noqa: BLE001
        return _failure(what, exc)
    finally:
        connection.close()


def clickhouse_request(
    host: str,
    port: int,
    query: str | None = None,
    user: str | None = None,
    password: str | None = None,
    database: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Send one query over ClickHouse's HTTP interface and return the response body.

    Raises ServiceError (HTTP error status) or OSError (connection). Without a query this requests ``/ping``. The query travels in the POST body so that
    statements that write (CREATE, INSERT) are accepted.
    """
    path = "/ping" if query is None else "/"
    params = {"database": database} if database else {}
    url = f"http://{host}:{port}{path}" + (f"?{urlencode(params)}" if params else "")
    data = query.encode("utf-8") if query is not None else None
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode("utf-8")).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")

    # An explicit opener without proxies: the server is on the loopback, and an
    # http_proxy from the environment must not reroute (or see) the request.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        # ClickHouse puts the reason (wrong password, syntax) in the body.
        body = exc.read().decode("utf-8", errors="replace")
        raise ServiceError(f"HTTP {exc.code}: {_one_line(body)}") from None


def check_clickhouse(
    host: str,
    port: int,
    user: str | None = None,
    password: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Result:
    """Check that ``GET /ping`` returns ``Ok.``, then that ``SELECT 1`` as `user` returns ``1``."""
    where = f"{host}:{port}"
    try:
        answer = clickhouse_request(host, port, timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        return _failure(f"ClickHouse /ping on {where}", exc)
    if answer.strip() != "Ok.":
        return False, f"ClickHouse /ping on {where}: answered {_one_line(answer)!r}"

    what = f"ClickHouse SELECT 1 on {where}" + (f" as {user}" if user else "")
    try:
        answer = clickhouse_request(host, port, "SELECT 1", user=user, password=password, timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        return _failure(what, exc)
    if answer.strip() != "1":
        return False, f"{what}: answered {_one_line(answer)!r}"
    return True, ""
