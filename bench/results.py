"""Tables and checked targets that a benchmark section returns."""

from dataclasses import dataclass, field


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Target:
    """A speed target and whether this run met it."""

    name: str
    goal: str
    measured: str
    #: None when the run could not measure it (a missing tool, say).
    met: bool | None


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    #: Lines printed under the tables: how it was measured, what dominates.
    notes: list[str] = field(default_factory=list)
