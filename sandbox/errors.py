"""Exit codes and the exceptions that map onto them."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit status of every `rq-sandbox` command."""

    OK = 0
    #: A scenario expectation failed, or a check found an error-level problem.
    FAILED = 1
    #: Bad input: a scenario file, an option, a URL or a payload was rejected.
    USAGE = 2
    #: Infrastructure failed: Redis would not start or respond, a worker died.
    INFRASTRUCTURE = 3
    #: Interrupted by the user (Ctrl-C).
    INTERRUPTED = 130


class SandboxError(Exception):
    """An error the command line reports as one line, without a traceback."""

    exit_code = ExitCode.INFRASTRUCTURE


class UsageError(SandboxError):
    """The user gave input that cannot be run: nothing was started or written."""

    exit_code = ExitCode.USAGE


class InfrastructureError(SandboxError):
    """Redis, a worker or another service failed underneath the run."""

    exit_code = ExitCode.INFRASTRUCTURE
