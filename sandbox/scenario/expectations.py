"""Evaluate a scenario's expectations against the outcome of its run."""

import operator
from dataclasses import dataclass

_OPERATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}


@dataclass(frozen=True)
class ExpectationResult:
    name: str
    expected: object
    actual: object
    passed: bool

    def as_dict(self) -> dict:
        return {"name": self.name, "expected": self.expected, "actual": self.actual, "passed": self.passed}


def evaluate(expect, jobs: dict, timings: dict, error_texts: list[str], crashes: list[dict], deadline_hit: bool,
             restart_dead: bool = False):
    """Return one result per expectation; ``unaccounted == 0`` is always checked.

    ``jobs`` and ``timings`` are the report's sections, ``error_texts`` the
    exception text RQ stored for each failed job, and ``crashes`` the worker crashes.
    """
    results = []

    for name in ("finished", "failed", "abandoned", "expired", "orphaned", "lost", "pending"):
        expected = getattr(expect, name, None)
        if isinstance(expected, tuple):
            low, high = expected
            results.append(ExpectationResult(name, f"{low}..{high}", jobs[name], low <= jobs[name] <= high))
        elif expected is not None:
            results.append(ExpectationResult(name, expected, jobs[name], jobs[name] == expected))

    results.append(ExpectationResult("unaccounted", 0, jobs["unaccounted"], jobs["unaccounted"] == 0))

    if expect.finished is not None or expect.failed is not None:
        # A run that stopped at its deadline with jobs still pending did not finish in time.
        results.append(ExpectationResult("deadline", f"all done within {expect.deadline_s:g}s",
                                         "deadline reached" if deadline_hit else "in time",
                                         not deadline_hit or jobs["pending"] == 0))

    for rule in expect.latency:
        summary = timings.get(rule.timing) or {}
        actual = summary.get(rule.stat)
        passed = actual is not None and _OPERATORS[rule.op](actual, rule.value)
        results.append(ExpectationResult(rule.text, f"{rule.op} {rule.value:g}", actual, passed))

    texts = list(error_texts) + [crash.get("last_error") or "" for crash in crashes]
    for rule in expect.errors:
        matched = sum(1 for text in texts if rule.contains in text)
        if rule.count is not None:
            expected, passed = rule.count, matched == rule.count
        elif rule.at_least is not None:
            expected, passed = f">= {rule.at_least}", matched >= rule.at_least
        else:
            expected, passed = ">= 1", matched >= 1
        results.append(ExpectationResult(f"error contains {rule.contains!r}", expected, matched, passed))

    # A scenario that restarts dead workers accepts crashes unless its expectations name them.
    if expect.worker_crash is not None or not restart_dead:
        expected_crash = bool(expect.worker_crash)
        results.append(ExpectationResult("worker crash", expected_crash, bool(crashes), bool(crashes) == expected_crash))
    return results
