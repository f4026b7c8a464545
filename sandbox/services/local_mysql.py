"""MariaDB as a local process: a private data folder, initialised once, on a 127.0.0.1 port."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from sandbox.services.base import STACK_DATABASE, STACK_PASSWORD, STACK_USER, ServiceError
from sandbox.services.health import Result, check_mysql
from sandbox.services.ports import LOCALHOST

logger = logging.getLogger(__name__)

PACKAGE = "mariadb-server"
SERVER_NAMES = ("mariadbd", "mysqld")
INSTALL_DB_NAMES = ("mariadb-install-db", "mysql_install_db")

#: Debian keeps server binaries in sbin folders, which a normal user's PATH often lacks.
SYSTEM_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")

#: Seconds `mariadb-install-db` may take to create the system tables.
INSTALL_TIMEOUT = 120.0

#: A unix socket path longer than this does not fit in sockaddr_un (108 bytes with the NUL).
SOCKET_PATH_LIMIT = 100

#: InnoDB redo log size; the server default (96 MiB) would dwarf a sandbox's data.
INNODB_LOG_FILE_SIZE = "16M"

LOG_NAME = "mysql.log"
INSTALL_LOG_NAME = "install-db.log"
#: Written once the stack's database and users exist; later starts skip provisioning.
PROVISIONED_MARKER = "provisioned"

#: Launches a program detached, its output appended to a log file, in a working folder.
Spawn = Callable[[list[str], Path, Path], subprocess.Popen]


class MissingBinary(ServiceError):
    """A program the service needs is not installed; the message names the package to install."""


def find_program(names: tuple[str, ...], package: str, override: str | None = None) -> str:
    """Return the first of `names` found on PATH or in the sbin folders, or the `override` path."""
    if override is not None:
        if os.access(override, os.X_OK) and Path(override).is_file():
            return override
        raise MissingBinary(f"{Path(override).name} not found at {override}: apt-get install {package}")

    search = os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_SBIN])
    for name in names:
        found = shutil.which(name, path=search)
        if found is not None:
            return found
    raise MissingBinary(f"{names[0]} not found: apt-get install {package}")


class LocalMysql:
    """MariaDB (or MySQL) server run from the machine's own binaries."""

    name = "mysql"
    package = PACKAGE
    port_roles = ("port",)

    def __init__(self, binary: str | None = None) -> None:
        self._override = binary

    def locate(self) -> str:
        server = find_program(SERVER_NAMES, PACKAGE, self._override)
        find_program(INSTALL_DB_NAMES, PACKAGE)
        return server

    def log_path(self, folder: Path) -> Path:
        return folder / LOG_NAME

    def failure_logs(self, folder: Path) -> list[Path]:
        return [folder / INSTALL_LOG_NAME, folder / LOG_NAME]

    def socket_path(self, folder: Path) -> Path:
        path = folder / "mysqld.sock"
        if len(str(path)) <= SOCKET_PATH_LIMIT:
            return path
        # A deep state folder would overflow the socket address; a short name derived from it stays unique.
        digest = hashlib.sha256(str(folder).encode("utf-8")).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"rq-sandbox-mysql-{digest}.sock"

    def prepare(self, folder: Path, ports: dict[str, int]) -> None:
        """Create the system tables in a private data folder on the first start."""
        data = folder / "data"
        if (data / "mysql").is_dir():
            return

        install_db = find_program(INSTALL_DB_NAMES, PACKAGE)
        command = [
            install_db, "--no-defaults", f"--datadir={data}", *self._user_option(),
            "--auth-root-authentication-method=normal", f"--innodb-log-file-size={INNODB_LOG_FILE_SIZE}",
        ]
        logger.info("MySQL: initialising %s", data)
        with open(folder / INSTALL_LOG_NAME, "ab") as log:
            try:
                result = subprocess.run(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=folder, timeout=INSTALL_TIMEOUT, check=False,
                )
            except subprocess.TimeoutExpired:
                raise ServiceError(f"{install_db} did not finish within {INSTALL_TIMEOUT:g} s; log {folder / INSTALL_LOG_NAME}") from None
        if result.returncode != 0:
            # A half-made data folder would be taken for a finished one next time.
            shutil.rmtree(data, ignore_errors=True)
            raise ServiceError(f"{install_db} exited with code {result.returncode}; log {folder / INSTALL_LOG_NAME}")

    def start(self, folder: Path, ports: dict[str, int], binary: str, spawn: Spawn, timeout: float) -> subprocess.Popen:
        command = [
            binary,
            "--no-defaults",
            f"--datadir={folder / 'data'}",
            f"--socket={self.socket_path(folder)}",
            f"--port={ports['port']}",
            f"--bind-address={LOCALHOST}",
            f"--pid-file={folder / 'mysqld.pid'}",
            f"--innodb-log-file-size={INNODB_LOG_FILE_SIZE}",
            *self._user_option(),
        ]
        return spawn(command, self.log_path(folder), folder)

    def check(self, folder: Path, ports: dict[str, int]) -> Result:
        if (folder / PROVISIONED_MARKER).exists():
            return check_mysql(LOCALHOST, ports["port"], STACK_USER, STACK_PASSWORD, database=STACK_DATABASE)
        # Before provisioning only root exists, without a password, reachable over the socket.
        return check_mysql(LOCALHOST, ports["port"], "root", "", unix_socket=str(self.socket_path(folder)))

    def provision(self, folder: Path, ports: dict[str, int]) -> None:
        """Create the stack's database and user and give root the stack password, once."""
        if (folder / PROVISIONED_MARKER).exists():
            return

        import pymysql

        try:
            connection = pymysql.connect(unix_socket=str(self.socket_path(folder)), user="root", password="")
        except pymysql.MySQLError as exc:
            raise ServiceError(f"MySQL: cannot log in as root to create the {STACK_DATABASE} database: {exc}") from None
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{STACK_DATABASE}`")
                # Anonymous accounts would match 'opik'@'localhost' logins before '%' does.
                cursor.execute("SELECT user, host FROM mysql.user WHERE user = ''")
                for user, host in cursor.fetchall():
                    cursor.execute("DROP USER %s@%s", (user, host))
                for host in ("%", "localhost"):
                    cursor.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (STACK_USER, host, STACK_PASSWORD))
                    cursor.execute(f"GRANT ALL PRIVILEGES ON `{STACK_DATABASE}`.* TO %s@%s", (STACK_USER, host))
                cursor.execute("SELECT host FROM mysql.user WHERE user = 'root'")
                for (host,) in cursor.fetchall():
                    cursor.execute("ALTER USER 'root'@%s IDENTIFIED BY %s", (host, STACK_PASSWORD))
                cursor.execute("FLUSH PRIVILEGES")
        except pymysql.MySQLError as exc:
            raise ServiceError(f"MySQL: creating the {STACK_DATABASE} database and user failed: {exc}") from None
        finally:
            connection.close()

        (folder / PROVISIONED_MARKER).write_text("database, user and root password set\n", encoding="utf-8")
        logger.info("MySQL: database %s and user %s created", STACK_DATABASE, STACK_USER)

    def url(self, ports: dict[str, int]) -> str:
        return f"mysql://{STACK_USER}:{STACK_PASSWORD}@{LOCALHOST}:{ports['port']}/{STACK_DATABASE}"

    @staticmethod
    def _user_option() -> list[str]:
        # mariadbd rejects running as root without --user=root; any other user runs as itself.
        return ["--user=root"] if os.geteuid() == 0 else []
