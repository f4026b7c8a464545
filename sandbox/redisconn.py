"""Open Redis connections that fail with one clear line and never show a password."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import redis

from sandbox.errors import InfrastructureError, UsageError
from sandbox.secrets import mask_text, mask_url

logger = logging.getLogger(__name__)

SCHEMES = ("redis", "rediss", "unix")
URL_HINT = "use redis://[:password@]host:port/db"

#: rq 2.x moves jobs between lists with LMOVE/BLMOVE, which arrived in Redis 6.2.
MINIMUM_VERSION = (6, 2, 0)


def validate_url(url: str) -> None:
    """Raise UsageError unless the URL is a redis, rediss or unix URL with a host or socket path."""
    masked = mask_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a port that is not a number
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid Redis URL '{masked}': {exc}; {URL_HINT}") from None

    if parts.scheme not in SCHEMES:
        raise UsageError(f"invalid Redis URL '{masked}': {URL_HINT}")
    if parts.scheme == "unix" and not parts.path:
        raise UsageError(f"invalid Redis URL '{masked}': missing socket path (unix:///path/redis.sock)")
    if parts.scheme != "unix" and not parts.hostname:
        raise UsageError(f"invalid Redis URL '{masked}': missing host; {URL_HINT}")
    if port == 0:
        raise UsageError(f"invalid Redis URL '{masked}': port 0; {URL_HINT}")
    database = parts.path.lstrip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise UsageError(f"invalid Redis URL '{masked}': database {database!r} is not a number; {URL_HINT}")


def _auth_hint(message: str, has_password: bool) -> str:
    lowered = message.lower()
    if "without any password configured" in lowered or "no password is set" in lowered:
        return "the server has no password; remove it from the URL"
    if "noauth" in lowered or not has_password:
        return "the server requires a password; put it in the URL"
    return "check the password"


def _connect_reason(exc: redis.RedisError, timeout: float) -> str:
    if isinstance(exc, redis.TimeoutError):
        return f"timed out after {timeout:g} s"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(exc).strip().rstrip(".")


def connect(url: str, decode_responses: bool = False, timeout: float = 5.0) -> redis.Redis:
    """Return a client for `url` checked with PING, or raise UsageError or InfrastructureError."""
    validate_url(url)
    masked = mask_url(url)

    try:
        conn = redis.Redis.from_url(
            url,
            decode_responses=decode_responses,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    except ValueError as exc:
        raise UsageError(f"invalid Redis URL '{masked}': {mask_url(str(exc))}; {URL_HINT}") from None

    password = conn.connection_pool.connection_kwargs.get("password")
    secrets = [password] if password else []

    try:
        conn.ping()
        if password and not conn.connection_pool.connection_kwargs.get("username"):
            # HELLO accepts any password on a server that has none, so a wrong --redis-url
            # would go unnoticed. A plain AUTH reports it.
            conn.execute_command("AUTH", password)
    except redis.AuthenticationError as exc:
        conn.close()
        hint = _auth_hint(str(exc), bool(password))
        raise UsageError(f"authentication failed for {masked}: {hint}") from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        conn.close()
        reason = mask_text(_connect_reason(exc, timeout), secrets)
        raise InfrastructureError(
            f"cannot connect to Redis at {masked}: {reason}; start it or pass another --redis-url"
        ) from None
    except redis.ResponseError as exc:
        # For instance a database index the server does not have.
        conn.close()
        raise UsageError(f"Redis at {masked} rejected the connection: {mask_text(str(exc), secrets)}") from None

    logger.debug("Connected to Redis at %s", masked)
    return conn


def _parse_version(text: str) -> tuple[int, int, int]:
    numbers = [int(part) for part in text.split(".")[:3]]
    while len(numbers) < 3:
        numbers.append(0)
    return (numbers[0], numbers[1], numbers[2])


def server_version(conn: redis.Redis) -> tuple[int, int, int]:
    """Return the server's version from INFO server."""
    info = conn.info("server")
    return _parse_version(str(info["redis_version"]))


def require_version(
    conn: redis.Redis, url: str, minimum: tuple[int, int, int] = MINIMUM_VERSION
) -> tuple[int, int, int]:
    """Return the server version, or raise when it is older than `minimum`."""
    found = server_version(conn)
    if found < minimum:
        found_text = ".".join(map(str, found))
        minimum_text = ".".join(map(str, minimum))
        raise InfrastructureError(
            f"Redis at {mask_url(url)} is version {found_text}; rq 2.x needs {minimum_text} or newer "
            "because it moves jobs between lists with LMOVE/BLMOVE"
        )
    return found


def redis_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """Return REDIS_URL, else a URL built from the deployed worker's REDIS_HOST/PORT/DB/PASSWORD."""
    env = os.environ if environ is None else environ

    url = env.get("REDIS_URL", "").strip()
    if url:
        return url

    host = env.get("REDIS_HOST", "").strip()
    if not host:
        return None

    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = env.get("REDIS_PORT", "").strip() or "6379"
    db = env.get("REDIS_DB", "").strip() or "0"
    password = env.get("REDIS_PASSWORD", "")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"
