"""Read a scenario YAML file into a validated Scenario.

The file is composed (not loaded) with PyYAML's SafeLoader so every node keeps its
line, and each error names the file, the line and the field:
`scenarios/x.yaml:7: workers.mode: 'forked' is not one of process, simple, thread`.
"""

import difflib
import logging
import math
import re
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sandbox.contract.profiles import JAVA_FIELDS
from sandbox.errors import UsageError
from sandbox.scenario import model
from sandbox.scenario.faults import FAULT_TYPES, Fault
from sandbox.scenario.durations import RATE_FORMS, FormatError, parse_duration, parse_rate
from sandbox.scenario.model import Scenario

logger = logging.getLogger(__name__)

#: Largest scenario file read, in bytes. Anything bigger is not a hand-written scenario.
MAX_FILE_BYTES = 1024 * 1024

#: Limits on free-form JSON payloads, which YAML aliases could otherwise make endless.
MAX_PAYLOAD_DEPTH = 32
MAX_PAYLOAD_NODES = 10_000

TOP_KEYS = ("name", "description", "services", "backend", "redis", "workers", "producer", "job", "phases", "expect", "faults")
FAULT_KEYS = ("type", "at", "after_finished", "duration", "replace", "count", "ttl", "work")
REDIS_KEYS = ("persistence",)
WORKER_KEYS = ("count", "mode", "queues", "serializer", "decode_responses", "pythonpath", "job_timeout", "restart_dead")
COUNT_RANGE_KEYS = ("at_least", "at_most")
PRODUCER_KEYS = (
    "profile", "queue", "function", "ttl", "description", "clock_precision", "batched", "omit_fields", "extra_fields",
)
JOB_KEYS = ("work", "failure_rate", "seed")
PHASE_KEYS = ("name", "messages", "duration", "rate", "ramp", "payload")
RAMP_KEYS = ("from", "to")
EXPECT_COUNT_KEYS = ("finished", "failed", "abandoned", "expired", "orphaned", "lost", "pending")
EXPECT_KEYS = (*EXPECT_COUNT_KEYS, "deadline", "latency", "errors", "worker_crash")
ERROR_RULE_KEYS = ("contains", "count", "at_least")

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_QUEUE = re.compile(r"\S{1,255}")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_LATENCY = re.compile(
    rf"({'|'.join(model.LATENCY_STATS)})_({'|'.join(model.LATENCY_TIMINGS)})_ms"
    rf"\s*({'|'.join(model.COMPARISONS)})\s*(\d+(?:\.\d*)?|\.\d+)"
)
_INT_BOUND = 2**63


class ScenarioError(UsageError):
    """A scenario file that cannot be run, reported as `<file>:<line>: <field>: <problem>`."""

    def __init__(
        self,
        file: str,
        problem: str,
        *,
        line: int | None = None,
        field: str | None = None,
        allowed: tuple[str, ...] | None = None,
    ) -> None:
        self.file = file
        #: 1-based line number, or None for problems with the file as a whole.
        self.line = line
        #: Dotted field path with [i] for list items, such as `phases[0].rate`.
        self.field = field
        self.problem = problem
        self.allowed = allowed
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where}: {self.field}: {self.problem}" if self.field else f"{where}: {self.problem}"
        if self.allowed:
            text += "; allowed: " + ", ".join(self.allowed)
        # A str() of one line is the contract the command line relies on.
        return " ".join(text.splitlines())


def load_scenario(path: str | Path) -> Scenario:
    """Read, parse and validate the scenario file at `path`."""
    label = str(path)
    file = Path(path)
    if not label:
        raise ScenarioError("<empty path>", "no scenario file given")

    try:
        if file.is_dir():
            raise ScenarioError(label, "is a folder, not a scenario file")
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError(label, f"file is too large ({size} bytes); a scenario file is at most 1 MiB")
        data = file.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(label, "file not found") from None
    except OSError as exc:
        raise ScenarioError(label, f"cannot read the file: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ScenarioError(label, f"invalid file name: {exc}") from None

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start]
        raise ScenarioError(label, f"not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8", line=line) from None

    return parse_scenario(text.removeprefix("\ufeff"), path=label)


def parse_scenario(text: str, path: str | Path = "<string>") -> Scenario:
    """Parse and validate scenario YAML; `path` names the source in errors and anchors `workers.pythonpath`."""
    label = str(path)
    source = None if label == "<string>" else Path(path)
    scenario = _Reader(label, source).scenario(text)
    logger.debug("Scenario %s: %d phases, %d messages", scenario.name, len(scenario.phases), scenario.total_messages)
    return scenario



def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """Walker over the composed YAML tree that turns each node into a checked value."""

    def __init__(self, label: str, source: Path | None) -> None:
        self.label = label
        self.base = source.parent if source is not None else Path.cwd()
        self.source = source
        self.constructor = SafeConstructor()
        self.payload_nodes = 0

    # Errors and node access

    def fail(self, node: Node, path: str, problem: str, allowed: tuple[str, ...] | None = None) -> NoReturn:
        raise ScenarioError(self.label, problem, line=_line(node), field=path or None, allowed=allowed)

    def value(self, node: Node, path: str) -> Any:
        """Construct a scalar; mappings and lists come back as the nodes themselves."""
        if not isinstance(node, ScalarNode):
            return node
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.fail(node, path, f"invalid value: {problem}")
        except (ValueError, TypeError) as exc:
            # An explicit tag on text it cannot hold, such as `!!int abc`, fails inside the constructor.
            self.fail(node, path, f"invalid value for tag {node.tag}: {exc}")

    def describe(self, node: Node, path: str) -> str:
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        value = self.value(node, path)
        kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", type(None): "null"}
        kind = kinds.get(type(value), f"a {type(value).__name__}")
        return kind if value is None else f"{kind} {_show(value)}"

    def expected(self, node: Node, path: str, kind: str) -> NoReturn:
        self.fail(node, path, f"expected {kind}, got {self.describe(node, path)}")

    def mapping(self, node: Node, path: str, allowed: tuple[str, ...] | None) -> dict[str, tuple[Node, Node]]:
        """Return key -> (key node, value node), rejecting duplicates and, when `allowed` is given, unknown keys.

        A null section (`workers:` with nothing under it) reads as an empty mapping.
        """
        if isinstance(node, ScalarNode) and self.value(node, path) is None:
            return {}
        if not isinstance(node, MappingNode):
            self.expected(node, path, "a mapping")

        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.fail(key_node, path, "merge keys (<<) are not supported; write the keys out")
            key = self.value(key_node, path)
            if not isinstance(key, str):
                self.fail(key_node, path, f"keys must be strings, got {self.describe(key_node, path)}")

            key_path = _join(path, key)
            if key in entries:
                first = _line(entries[key][0])
                self.fail(key_node, key_path, f"duplicate key (first given on line {first})")
            if allowed is not None and key not in allowed:
                self.fail(key_node, key_path, f"unknown key{_suggest(key, allowed)}", allowed)
            entries[key] = (key_node, value_node)
        return entries

    def required(self, entries: dict, parent: Node, path: str, key: str) -> Node:
        if key not in entries:
            self.fail(parent, _join(path, key), "required key is missing")
        return entries[key][1]

    def sequence(self, node: Node, path: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.expected(node, path, "a list")
        return node.value

    # Typed scalars

    def integer(self, node: Node, path: str, low: int = -_INT_BOUND, high: int = _INT_BOUND - 1) -> int:
        value = self.value(node, path)
        if type(value) is not int:
            self.expected(node, path, "an integer")
        if not low <= value <= high:
            bounds = f"{low} or more" if high == _INT_BOUND - 1 else f"{low}..{high}"
            self.fail(node, path, f"{value} is out of range; use {bounds}")
        return value

    def number(self, node: Node, path: str, low: float, high: float) -> float:
        value = self.value(node, path)
        if type(value) not in (int, float):
            self.expected(node, path, "a number")
        if not (math.isfinite(value) and low <= value <= high):
            self.fail(node, path, f"{value} is out of range; use {low:g}..{high:g}")
        return float(value)

    def boolean(self, node: Node, path: str) -> bool:
        value = self.value(node, path)
        if type(value) is not bool:
            self.expected(node, path, "true or false")
        return value

    def string(self, node: Node, path: str, pattern: re.Pattern | None = None, form: str = "") -> str:
        value = self.value(node, path)
        if not isinstance(value, str):
            self.expected(node, path, "a string")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(node, path, f"{_show(value)} is not {form}")
        return value

    def optional_string(self, node: Node, path: str) -> str | None:
        return None if self.value(node, path) is None else self.string(node, path)

    def choice(self, node: Node, path: str, allowed: tuple[str, ...]) -> str:
        value = self.value(node, path)
        if not isinstance(value, str) or value not in allowed:
            given = _show(value) if isinstance(value, str) else self.describe(node, path)
            self.fail(node, path, f"{given} is not one of {', '.join(allowed)}")
        return value

    def duration(self, node: Node, path: str, *, low: float = 0.0, above_low: bool = False) -> float:
        """Read a duration in seconds within [low, MAX_DURATION_S], or (low, ...] when `above_low`."""
        value = self.value(node, path)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.expected(node, path, "a duration such as 500ms, 2s or 1.5m")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(node, path, str(exc))

        too_low = seconds <= low if above_low else seconds < low
        if too_low:
            self.fail(node, path, f"{_show(value)} must be {'greater than' if above_low else 'at least'} {low:g}s")
        if seconds > model.MAX_DURATION_S:
            self.fail(node, path, f"{_show(value)} is too long; the maximum is 365d")
        return seconds

    def rate(self, node: Node, path: str, *, allow_burst: bool) -> float | None:
        value = self.value(node, path)
        forms = f"{RATE_FORMS.replace(' or ', ', ')} or burst" if allow_burst else RATE_FORMS
        if not isinstance(value, str):
            self.fail(node, path, f"{self.describe(node, path)} is not a rate; use {forms}")
        if allow_burst and value.strip() == "burst":
            return None
        try:
            return parse_rate(value)
        except FormatError:
            self.fail(node, path, f"{_show(value)} is not a rate; use {forms}")
        except ValueError as exc:
            self.fail(node, path, str(exc))

    # Sections

    def scenario(self, text: str) -> model.Scenario:
        root = self.compose(text)
        if not isinstance(root, MappingNode):
            self.fail(root, "", f"the top level must be a mapping of scenario keys, got {self.describe(root, '')}")
        top = self.mapping(root, "", TOP_KEYS)

        def section(key: str) -> Node | None:
            return top[key][1] if key in top else None

        name = self.string(self.required(top, root, "", "name"), "name", _NAME, "a valid name; use letters, digits, _ . and -")
        producer = self.producer(self.required(top, root, "", "producer"))
        phases = self.phases(self.required(top, root, "", "phases"))
        options: dict[str, Any] = {
            "name": name,
            "path": self.source,
            "redis": self.redis(section("redis")),
            "producer": producer,
            "workers": self.workers(section("workers"), producer.queue),
            "job": self.job(section("job")),
            "phases": phases,
            "expect": self.expect(section("expect"), sum(phase.messages for phase in phases)),
        }

        # Keys left out keep the defaults declared on model.Scenario.
        if "description" in top:
            options["description"] = self.optional_string(top["description"][1], "description")
        if "services" in top:
            options["services"] = self.services(top["services"][1])
        if "backend" in top:
            options["backend"] = self.choice(top["backend"][1], "backend", model.BACKENDS)
        if "faults" in top:
            options["faults"] = self.faults(top["faults"][1], sum(phase.messages for phase in phases))
        return model.Scenario(**options)

    def faults(self, node: Node, total_messages: int) -> tuple[Fault, ...]:
        faults = []
        for index, item in enumerate(self.sequence(node, "faults")):
            path = f"faults[{index}]"
            keys = self.mapping(item, path, FAULT_KEYS)
            fault_type = self.choice(self.required(keys, item, path, "type"), f"{path}.type", FAULT_TYPES)
            options: dict[str, Any] = {"type": fault_type, "label": f"{path} {fault_type}"}

            if ("at" in keys) == ("after_finished" in keys):
                self.fail(item, path, "give exactly one trigger: at (a duration) or after_finished (a job count)")
            if "at" in keys:
                options["at_s"] = self.duration(keys["at"][1], f"{path}.at")
            else:
                options["after_finished"] = self.integer(keys["after_finished"][1], f"{path}.after_finished", 0, total_messages)

            if "duration" in keys:
                options["duration_s"] = self.duration(keys["duration"][1], f"{path}.duration", above_low=True)
                if options["duration_s"] > 300:
                    self.fail(keys["duration"][1], f"{path}.duration", "is longer than 300s; pause Redis for less")
            if "replace" in keys:
                options["replace"] = self.boolean(keys["replace"][1], f"{path}.replace")
            if "count" in keys:
                options["count"] = self.integer(keys["count"][1], f"{path}.count", 1, total_messages)
            if "ttl" in keys:
                options["ttl_s"] = self.ttl(keys["ttl"][1], f"{path}.ttl")
            if "work" in keys:
                options["work_s"] = self.duration(keys["work"][1], f"{path}.work", above_low=True)

            allowed = {
                "pause-redis": {"duration"},
                "kill-worker": {"replace"},
                "stop-worker": {"replace"},
                "producer-crash": {"count"},
                "short-ttl": {"count", "ttl"},
                "long-jobs": {"count", "work"},
                "restart-redis": set(),
            }[fault_type]
            for key in ("duration", "replace", "count", "ttl", "work"):
                if key in keys and key not in allowed:
                    self.fail(keys[key][0], f"{path}.{key}", f"does not apply to {fault_type}",
                              tuple(sorted(allowed)) or ("type", "at", "after_finished"))
            faults.append(Fault(**options))
        return tuple(faults)

    def compose(self, text: str) -> Node:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            raise ScenarioError(self.label, f"invalid YAML: {exc.problem or exc.context}", line=line) from None
        except yaml.reader.ReaderError as exc:
            line = text[: exc.position].count("\n") + 1
            raise ScenarioError(self.label, f"invalid YAML: {exc.reason} #x{exc.character:04x}", line=line) from None
        except yaml.YAMLError as exc:
            raise ScenarioError(self.label, f"invalid YAML: {exc}") from None

        if root is None:
            raise ScenarioError(self.label, "the file is empty; a scenario needs at least name, producer and phases")
        return root

    def services(self, node: Node) -> tuple[str, ...]:
        services: list[str] = []
        for index, item in enumerate(self.sequence(node, "services")):
            service = self.choice(item, f"services[{index}]", model.SERVICES)
            if service in services:
                self.fail(item, f"services[{index}]", f"{service!r} is listed twice")
            services.append(service)

        if "redis" not in services:
            self.fail(node, "services", "must contain redis, which carries the queues")
        return tuple(services)

    def redis(self, node: Node | None) -> model.RedisOptions:
        keys = self.mapping(node, "redis", REDIS_KEYS) if node is not None else {}
        options = {}
        if "persistence" in keys:
            options["persistence"] = self.choice(keys["persistence"][1], "redis.persistence", model.PERSISTENCE_MODES)
        return model.RedisOptions(**options)

    def producer(self, node: Node) -> model.ProducerOptions:
        keys = self.mapping(node, "producer", PRODUCER_KEYS)
        options: dict[str, Any] = {
            "queue": self.string(
                self.required(keys, node, "producer", "queue"), "producer.queue", _QUEUE, "a queue name; use a non-empty name without spaces"
            ),
            "function": self.string(
                self.required(keys, node, "producer", "function"), "producer.function", _DOTTED, "a dotted path; use module.attr"
            ),
        }

        if "profile" in keys:
            options["profile"] = self.choice(keys["profile"][1], "producer.profile", model.PRODUCER_PROFILES)
        if "ttl" in keys:
            options["ttl_s"] = self.ttl(keys["ttl"][1], "producer.ttl")
        if "description" in keys:
            options["description"] = self.optional_string(keys["description"][1], "producer.description")
        if "clock_precision" in keys:
            options["clock_precision"] = self.choice(keys["clock_precision"][1], "producer.clock_precision", model.CLOCK_PRECISIONS)
        if "batched" in keys:
            options["batched"] = self.boolean(keys["batched"][1], "producer.batched")
        if "omit_fields" in keys:
            options["omit_fields"] = self.omit_fields(keys["omit_fields"][1], "producer.omit_fields")
        if "extra_fields" in keys:
            options["extra_fields"] = self.extra_fields(keys["extra_fields"][1], "producer.extra_fields")

        # RQ's own enqueue writes its hash itself, so only the Java writers can drop or add fields.
        for key in ("omit_fields", "extra_fields"):
            if options.get(key) and options.get("profile") == "rq-native":
                self.fail(keys[key][0], f"producer.{key}", "applies to the java and java-legacy-zlib profiles, not rq-native")
        for name in options.get("omit_fields", ()):
            if name in options.get("extra_fields", {}):
                self.fail(keys["extra_fields"][1], f"producer.extra_fields.{name}", "is also in omit_fields; give it in one of them")
        return model.ProducerOptions(**options)

    def omit_fields(self, node: Node, path: str) -> tuple[str, ...]:
        names: list[str] = []
        for index, item in enumerate(self.sequence(node, path)):
            name = self.choice(item, f"{path}[{index}]", JAVA_FIELDS)
            if name in names:
                self.fail(item, f"{path}[{index}]", f"{name!r} is listed twice")
            names.append(name)
        return tuple(names)

    def extra_fields(self, node: Node, path: str) -> dict[str, str]:
        fields: dict[str, str] = {}
        for name, (_, value_node) in self.mapping(node, path, None).items():
            field_path = _join(path, name)
            if not name.strip():
                self.fail(value_node, field_path, "the field name is empty")
            value = self.value(value_node, field_path)
            # Redis stores text; an integer is written as its digits, as the Java writer writes timeout_in_sec.
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                self.expected(value_node, field_path, "a string or an integer")
            fields[name] = str(value)
        return fields

    def ttl(self, node: Node, path: str) -> int:
        seconds = self.duration(node, path, low=1.0)
        # Redis EXPIRE takes whole seconds, which is what the producer sends.
        if seconds != int(seconds):
            self.fail(node, path, f"{seconds:g}s is not a whole number of seconds")
        return int(seconds)

    def workers(self, node: Node | None, producer_queue: str) -> model.WorkerOptions:
        keys = self.mapping(node, "workers", WORKER_KEYS) if node is not None else {}
        options: dict[str, Any] = {"queues": (producer_queue,)}

        if "count" in keys:
            options["count"] = self.integer(keys["count"][1], "workers.count", 0, model.MAX_WORKERS)
        if "mode" in keys:
            options["mode"] = self.choice(keys["mode"][1], "workers.mode", model.WORKER_MODES)
        if "queues" in keys:
            options["queues"] = self.queues(keys["queues"][1], "workers.queues")
        if "serializer" in keys:
            options["serializer"] = self.serializer(keys["serializer"][1], "workers.serializer")
        if "decode_responses" in keys:
            options["decode_responses"] = self.boolean(keys["decode_responses"][1], "workers.decode_responses")
        if "pythonpath" in keys:
            options["pythonpath"] = self.pythonpath(keys["pythonpath"][1], "workers.pythonpath")
        if "restart_dead" in keys:
            options["restart_dead"] = self.boolean(keys["restart_dead"][1], "workers.restart_dead")
        if "job_timeout" in keys:
            timeout = keys["job_timeout"][1]
            if self.value(timeout, "workers.job_timeout") is not None:
                options["job_timeout_s"] = self.duration(timeout, "workers.job_timeout", low=1.0)
        return model.WorkerOptions(**options)

    def queues(self, node: Node, path: str) -> tuple[str, ...]:
        names: list[str] = []
        for index, item in enumerate(self.sequence(node, path)):
            name = self.string(item, f"{path}[{index}]", _QUEUE, "a queue name; use a non-empty name without spaces")
            if name in names:
                self.fail(item, f"{path}[{index}]", f"{name!r} is listed twice")
            names.append(name)

        if not names:
            self.fail(node, path, "must name at least one queue; leave the key out to use the producer's queue")
        return tuple(names)

    def serializer(self, node: Node, path: str) -> str:
        value = self.string(node, path)
        if value not in ("json", "pickle") and not _DOTTED.fullmatch(value):
            self.fail(node, path, f"{_show(value)} is not a serializer; use json, pickle or a dotted path module.attr")
        return value

    def pythonpath(self, node: Node, path: str) -> tuple[Path, ...]:
        folders: list[Path] = []
        for index, item in enumerate(self.sequence(node, path)):
            item_path = f"{path}[{index}]"
            text = self.string(item, item_path)
            if not text.strip():
                self.fail(item, item_path, "is empty; give a folder path")

            folder = (self.base / Path(text).expanduser()).resolve()
            if not folder.exists():
                self.fail(item, item_path, f"folder not found: {folder}")
            if not folder.is_dir():
                self.fail(item, item_path, f"is not a folder: {folder}")
            folders.append(folder)
        return tuple(folders)

    def job(self, node: Node | None) -> model.JobOptions:
        keys = self.mapping(node, "job", JOB_KEYS) if node is not None else {}
        options: dict[str, Any] = {}
        if "work" in keys:
            options["work_s"] = self.duration(keys["work"][1], "job.work")
        if "failure_rate" in keys:
            options["failure_rate"] = self.number(keys["failure_rate"][1], "job.failure_rate", 0.0, 1.0)
        if "seed" in keys:
            options["seed"] = self.integer(keys["seed"][1], "job.seed")
        return model.JobOptions(**options)

    def phases(self, node: Node) -> tuple[model.Phase, ...]:
        items = self.sequence(node, "phases")
        if not items:
            self.fail(node, "phases", "must list at least one phase")

        phases: list[model.Phase] = []
        for index, item in enumerate(items):
            phase = self.phase(item, f"phases[{index}]", index)
            if any(earlier.name == phase.name for earlier in phases):
                self.fail(item, f"phases[{index}].name", f"{phase.name!r} is used by an earlier phase; phase names must be unique")
            phases.append(phase)
        return tuple(phases)

    def phase(self, node: Node, path: str, index: int) -> model.Phase:
        keys = self.mapping(node, path, PHASE_KEYS)
        if isinstance(node, ScalarNode):
            self.expected(node, path, "a mapping")

        name = f"phase-{index + 1}"
        if "name" in keys:
            name = self.string(keys["name"][1], f"{path}.name")
            if not name.strip():
                self.fail(keys["name"][1], f"{path}.name", "is empty; give a name or leave the key out")

        if "messages" in keys and "duration" in keys:
            self.fail(node, path, "messages and duration are both given; give exactly one")
        if "messages" not in keys and "duration" not in keys:
            self.fail(node, path, "give either messages or duration")
        if "rate" in keys and "ramp" in keys:
            self.fail(node, path, "rate and ramp are both given; give at most one")

        rate = self.rate(keys["rate"][1], f"{path}.rate", allow_burst=True) if "rate" in keys else None
        ramp = self.ramp(keys["ramp"][1], f"{path}.ramp") if "ramp" in keys else None

        duration_s = None
        if "messages" in keys:
            messages = self.integer(keys["messages"][1], f"{path}.messages", 1, model.MAX_PHASE_MESSAGES)
        else:
            duration_node = keys["duration"][1]
            duration_s = self.duration(duration_node, f"{path}.duration", above_low=True)
            messages = self.timed_messages(duration_node, f"{path}.duration", duration_s, rate, ramp)

        payload = model.DEFAULT_PAYLOAD
        if "payload" in keys:
            payload = self.payload(keys["payload"][1], f"{path}.payload")

        return model.Phase(name=name, messages=messages, rate_per_s=rate, ramp=ramp, duration_s=duration_s, payload=payload)

    def timed_messages(
        self, node: Node, path: str, duration_s: float, rate: float | None, ramp: tuple[float, float] | None
    ) -> int:
        """Derive a timed phase's message count from its rate, or from the mean of its linear ramp."""
        if rate is None and ramp is None:
            self.fail(node, path, "a timed phase needs a rate or a ramp; a burst phase takes messages")

        per_s = rate if rate is not None else (ramp[0] + ramp[1]) / 2
        messages = round(per_s * duration_s)
        if not 1 <= messages <= model.MAX_PHASE_MESSAGES:
            self.fail(node, path, f"rate x duration gives {messages} messages; use 1..{model.MAX_PHASE_MESSAGES}")
        return messages

    def ramp(self, node: Node, path: str) -> tuple[float, float]:
        keys = self.mapping(node, path, RAMP_KEYS)
        if isinstance(node, ScalarNode):
            self.expected(node, path, "a mapping {from: <rate>, to: <rate>}")
        start = self.rate(self.required(keys, node, path, "from"), f"{path}.from", allow_burst=False)
        end = self.rate(self.required(keys, node, path, "to"), f"{path}.to", allow_burst=False)
        return (start, end)

    def payload(self, node: Node, path: str) -> Any:
        if isinstance(node, ScalarNode) and not isinstance(self.value(node, path), str):
            self.expected(node, path, "a string template, a mapping or a list")
        self.payload_nodes = 0
        return self.json_value(node, path, 0)

    def json_value(self, node: Node, path: str, depth: int) -> Any:
        """Convert a payload node into JSON-like data, checking every str leaf as a template."""
        self.payload_nodes += 1
        if depth > MAX_PAYLOAD_DEPTH or self.payload_nodes > MAX_PAYLOAD_NODES:
            # The path of a runaway alias loop would be as long as the loop, so name the payload itself.
            root = path[: path.index(".payload") + len(".payload")]
            self.fail(node, root, f"too large; a payload has at most {MAX_PAYLOAD_DEPTH} levels and {MAX_PAYLOAD_NODES} values")

        if isinstance(node, MappingNode):
            keys = self.mapping(node, path, None)
            return {key: self.json_value(value, _join(path, key), depth + 1) for key, (_, value) in keys.items()}
        if isinstance(node, SequenceNode):
            return [self.json_value(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(node.value)]

        value = self.value(node, path)
        if isinstance(value, str):
            try:
                model.check_template(value)
            except ValueError as exc:
                self.fail(node, path, str(exc))
            return value
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        self.fail(node, path, f"{self.describe(node, path)} is not a JSON value; quote it to send a string")

    def expect(self, node: Node | None, total_messages: int) -> model.Expectations:
        keys = self.mapping(node, "expect", EXPECT_KEYS) if node is not None else {}
        options: dict[str, Any] = {}

        for key in EXPECT_COUNT_KEYS:
            if key in keys:
                options[key] = self.count_expectation(keys[key][1], f"expect.{key}", total_messages)

        # The count classes are disjoint shares of the enqueued jobs, so their lower bounds cannot add up to more.
        counted = sum(_lower(options.get(key, 0)) for key in EXPECT_COUNT_KEYS)
        if counted > total_messages:
            self.fail(node, "expect", f"the counts add up to {counted}, more jobs than the scenario enqueues ({total_messages})")

        if "deadline" in keys:
            options["deadline_s"] = self.duration(keys["deadline"][1], "expect.deadline", above_low=True)
        if "latency" in keys:
            options["latency"] = self.latency(keys["latency"][1], "expect.latency")
        if "errors" in keys:
            options["errors"] = self.error_rules(keys["errors"][1], "expect.errors")
        if "worker_crash" in keys:
            options["worker_crash"] = self.boolean(keys["worker_crash"][1], "expect.worker_crash")
        return model.Expectations(**options)

    def count_expectation(self, node: Node, path: str, total_messages: int) -> int | tuple[int, int]:
        """Read an exact count, or a range ``{at_least: N, at_most: M}`` for counts a fault makes uncertain."""
        if isinstance(node, MappingNode):
            keys = self.mapping(node, path, COUNT_RANGE_KEYS)
            if not keys:
                self.fail(node, path, "give at_least, at_most or both", COUNT_RANGE_KEYS)
            low = self.integer(keys["at_least"][1], f"{path}.at_least", 0, total_messages) if "at_least" in keys else 0
            high = (
                self.integer(keys["at_most"][1], f"{path}.at_most", 0, total_messages)
                if "at_most" in keys
                else total_messages
            )
            if low > high:
                self.fail(node, path, f"at_least {low} is more than at_most {high}")
            return (low, high)

        count = self.integer(node, path, 0)
        if count > total_messages:
            self.fail(node, path, f"{count} is more jobs than the scenario enqueues ({total_messages})")
        return count

    def latency(self, node: Node, path: str) -> tuple[model.LatencyRule, ...]:
        rules = []
        for index, item in enumerate(self.sequence(node, path)):
            text = self.string(item, f"{path}[{index}]")
            match = _LATENCY.fullmatch(text.strip())
            if match is None:
                self.fail(
                    item,
                    f"{path}[{index}]",
                    f"{_show(text)} is not a latency rule; use <stat>_<timing>_ms <op> <number> with stat "
                    f"{'|'.join(model.LATENCY_STATS)}, timing {'|'.join(model.LATENCY_TIMINGS)}, "
                    f"op {' '.join(model.COMPARISONS)}",
                )
            stat, timing, op, value = match.groups()
            rules.append(model.LatencyRule(stat=stat, timing=timing, op=op, value=float(value), text=text.strip()))
        return tuple(rules)

    def error_rules(self, node: Node, path: str) -> tuple[model.ErrorRule, ...]:
        rules = []
        for index, item in enumerate(self.sequence(node, path)):
            item_path = f"{path}[{index}]"
            keys = self.mapping(item, item_path, ERROR_RULE_KEYS)
            contains = self.string(self.required(keys, item, item_path, "contains"), f"{item_path}.contains")
            if not contains:
                self.fail(keys["contains"][1], f"{item_path}.contains", "is empty; give the text to search for")
            if "count" in keys and "at_least" in keys:
                self.fail(item, item_path, "count and at_least are both given; give at most one")

            count = self.integer(keys["count"][1], f"{item_path}.count", 0) if "count" in keys else None
            at_least = 1 if count is None else None
            if "at_least" in keys:
                at_least = self.integer(keys["at_least"][1], f"{item_path}.at_least", 0)
            rules.append(model.ErrorRule(contains=contains, count=count, at_least=at_least))
        return tuple(rules)


def _lower(expected: int | tuple[int, int]) -> int:
    return expected[0] if isinstance(expected, tuple) else expected


def _suggest(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
