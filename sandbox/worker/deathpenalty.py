"""A death penalty that enforces no job timeout, for workers running in threads."""

from rq.timeouts import BaseDeathPenalty


class NoOpDeathPenalty(BaseDeathPenalty):
    """Let every job run to its end.

    RQ's default death penalty arms SIGALRM, which only works on the main
    thread. The deployed service runs its workers in threads and uses this
    instead, so job timeouts are not enforced there; thread mode does the same.
    """

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass
