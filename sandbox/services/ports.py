"""Local TCP ports for the servers the sandbox starts."""

import socket

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """Return a port that nothing listens on right now. Another process may still take it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    """Tell whether binding `port` would fail because something already uses it.

    Binding instead of connecting keeps the check silent towards whatever listens, and
    SO_REUSEADDR mirrors redis-server, so a port left in TIME_WAIT by a server we just
    stopped still counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
