# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet's results folder, read as plain data: hosts, their runs, baselines, tuning runs, peer classes.

Standard library only. Runs on the controller (module vllm_fleet_report), from the results folder alone:

    <results>/<host>/<YYYYmmddTHHMMSSZ>/latency.json, throughput.json, capacity.json   one verification run
    <results>/<host>/baseline-throughput.json                                         the host's baseline
    <results>/tune/<host>/<run>/trials.json                                           one tuning run
    <results>/fleet-<YYYYmmddTHHMMSSZ>.json                                           a verification's fleet table

Result files of every format vllm_benchmark wrote are read: 1.0 (metrics only), 1.1 (with `context`),
1.2 (`rounds_format` 2: rounds, verdicts, workload) and 1.2 with `samples` (per-request latencies). A file
that cannot be read becomes a note, never an exception.

Peers are hosts of one hardware class: same GPU model and count (or CPU model and vCPUs), driver, vLLM
variant and version, model, settings (the flags in force, less address and port) and workload. A host
whose headline metric is worse than its class's median by more than the tolerance is a straggler.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.vllm_bench_checks import HIGHER_IS_BETTER

STAMP = re.compile(r"\A\d{8}T\d{6}Z\Z")
FLEET_FILE = re.compile(r"\Afleet-(\d{8}T\d{6}Z)\.json\Z")
RESULT_KINDS = ("latency", "throughput", "capacity")
BASELINE_FILE = "baseline-throughput.json"
TUNE_DIR = "tune"
# Folders under the results folder that are not hosts.
NOT_HOSTS = frozenset({TUNE_DIR, "rolling"})
LATENCIES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2e", "E2E"))
# The fleet table's numbers, from the throughput run.
TABLE_METRICS = ("request_throughput", "total_token_throughput", "p99_ttft_ms", "median_tpot_ms")
# Peers are compared on these unless told otherwise: the metrics verification judges against a baseline.
DEFAULT_PEER_METRICS = ("request_throughput", "total_token_throughput", "median_ttft_ms", "median_tpot_ms")
HISTORY_METRICS = ("request_throughput", "total_token_throughput", "p99_ttft_ms", "median_tpot_ms")
# The changes against the baseline the table shows: the metrics verification judges by default.
CHANGE_METRICS = ("request_throughput", "total_token_throughput", "median_ttft_ms", "median_tpot_ms")
LABELS = {
    "request_throughput": "req/s",
    "output_throughput": "output tok/s",
    "total_token_throughput": "tok/s",
    "mean_e2e_ms": "mean E2E",
    "capacity": "capacity",
}
UNITS = {"request_throughput": "req/s", "output_throughput": "tok/s", "total_token_throughput": "tok/s"}
# Flags that name where a server listens or what it is called, not how it performs.
IGNORED_FLAGS = frozenset({"--host", "--port", "--served-model-name", "--api-key"})
STEP_FIELDS = (
    "load",
    "goodput",
    "attainment",
    "served",
    "p50_ttft_ms",
    "p99_ttft_ms",
    "p50_tpot_ms",
    "p99_tpot_ms",
)
# A step's fields under the names vllm_benchmark's capacity mode writes them (the first name found wins).
STEP_ALIASES = {
    "goodput": ("goodput", "request_goodput"),
    "attainment": ("attainment", "slo_attainment"),
    "served": ("served", "request_throughput"),
}
WORKLOAD_FIELDS = (
    "mode",
    "endpoint",
    "dataset",
    "input_len",
    "output_len",
    "requests",
    "max_concurrency",
    "request_rate",
    "ignore_eos",
)


def label(metric: str) -> str:
    """A metric's short name for people: 'req/s', 'p99 TTFT', 'median TPOT'."""
    if metric in LABELS:
        return LABELS[metric]
    match = re.fullmatch(r"(mean|median|std|min|max|p\d+)_(ttft|tpot|itl|e2e)_ms", metric)
    if match:
        return f"{match.group(1)} {match.group(2).upper()}"
    return metric


def unit(metric: str) -> str:
    return UNITS.get(metric, "ms" if metric.endswith("_ms") else "req/s" if metric == "capacity" else "")


def higher_is_better(metric: str) -> bool:
    return metric in HIGHER_IS_BETTER or metric == "capacity"


def number_text(value: float | None, digits: int = 2) -> str:
    """'19.25', '3,695.7' for big numbers, '-' for none."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.{digits}f}"


def change_words(change_pct: float, higher_better: bool) -> tuple[str, str]:
    """('+12.0%', 'better') for a change of a metric: the sign is the value's, the word says which way is good."""
    if change_pct == 0:
        return "±0.0%", "unchanged"
    better = (change_pct > 0) == higher_better
    return f"{change_pct:+.1f}%", "better" if better else "worse"


def _number(value: Any) -> float | None:
    """A finite float from a JSON value, or None (booleans, strings, NaN are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _truthy(value: Any) -> bool | None:
    """A boolean that a Jinja-built row may hold as text ('True', 'false')."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def stamp_time(stamp: str) -> datetime | None:
    """The UTC time of a run folder's name (20260101T120000Z)."""
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


@dataclass
class Change:
    """One metric against the baseline."""

    metric: str
    change_pct: float
    higher_is_better: bool
    # True: a significant change (verdict faster/slower); False: within noise; None: a single-run comparison.
    significant: bool | None
    verdict: str
    text: str
    fails: bool = False

    @property
    def better(self) -> bool | None:
        if self.change_pct == 0:
            return None
        return (self.change_pct > 0) == self.higher_is_better

    def brief(self) -> str:
        """'req/s -12.0% worse', with '(within noise)' when the rounds could not tell it from noise."""
        signed, word = change_words(self.change_pct, self.higher_is_better)
        tail = ""
        if self.verdict == "too noisy":
            tail = " (too noisy to judge)"
        elif self.significant is False:
            tail = " (within noise)"
        return f"{label(self.metric)} {signed} {word}{tail}"


@dataclass
class Step:
    """One load step of a capacity run or a tuning trial."""

    values: dict[str, float]
    in_flight: bool = False

    def get(self, name: str) -> float | None:
        return self.values.get(name)


@dataclass
class Result:
    """One result file of vllm_benchmark, of any format."""

    path: str
    kind: str
    fmt: str
    metrics: dict[str, float]
    passed: bool | None
    problems: list[str]
    changes: dict[str, Change]
    context: dict[str, Any]
    workload: dict[str, Any]
    model: str | None
    server_version: str | None
    finished_at: str | None
    samples: dict[str, list[float]]
    sample_counts: dict[str, int]
    steps: list[Step]
    capacity: float | None
    capacity_load: float | None
    rounds: int
    verdict_brief: str
    too_noisy: list[str]
    context_changes: list[str]
    requests: int | None
    sessions: int = 1  # as a baseline: the sessions it holds (its own rounds and the earlier ones)

    @property
    def completed(self) -> int:
        return int(self.metrics.get("completed") or 0)

    @property
    def has_numbers(self) -> bool:
        return self.completed > 0

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name) if self.has_numbers else None


@dataclass
class Run:
    """One verification run of a host: the folder <host>/<stamp>/ and, when known, its fleet table row."""

    stamp: str
    latency: Result | None = None
    throughput: Result | None = None
    capacity: Result | None = None
    row: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def when(self) -> datetime | None:
        return stamp_time(self.stamp)

    @property
    def results(self) -> list[Result]:
        return [r for r in (self.latency, self.throughput, self.capacity) if r is not None]

    @property
    def main(self) -> Result | None:
        """The result the fleet table's numbers come from: the throughput run's."""
        return self.throughput

    def passed(self) -> bool:
        if self.row is not None and _truthy(self.row.get("passed")) is not None:
            return bool(_truthy(self.row.get("passed")))
        results = self.results
        return bool(results) and all(r.passed is not False for r in results) and not self.notes

    def failures(self) -> list[str]:
        if self.row is not None and isinstance(self.row.get("failures"), list):
            return [str(f) for f in self.row["failures"]]
        failures = [f"{r.kind}: {p}" for r in self.results for p in r.problems]
        return failures + self.notes

    def too_noisy(self) -> list[str]:
        """The judged metrics too noisy to judge (the run passed without a verdict on them)."""
        if self.row is not None and isinstance(self.row.get("too_noisy"), list):
            return [str(t) for t in self.row["too_noisy"]]
        return self.throughput.too_noisy if self.throughput is not None else []

    def step_source(self) -> Result | None:
        """The result with load steps (a capacity or sweep run), if this run has one."""
        for result in (self.capacity, self.throughput):
            if result is not None and result.steps:
                return result
        return None


@dataclass
class Trial:
    index: int
    settings: dict[str, Any]
    status: str
    capacity: float | None
    reason: str | None
    steps: list[Step]
    capacity_load: float | None = None


@dataclass
class TuneRun:
    """results/tune/<host>/<run>/trials.json (the contract in module vllm_fleet_report's documentation)."""

    path: str
    run: str
    knobs: list[str]
    slo: dict[str, Any]
    start_settings: dict[str, Any]
    start_capacity: float | None
    chosen_settings: dict[str, Any]
    chosen_capacity: float | None
    trials: list[Trial]
    notes: list[str]

    def chosen_trial(self) -> Trial | None:
        for trial in self.trials:
            if trial.status == "ok" and trial.settings == self.chosen_settings:
                return trial
        return None


@dataclass
class Peer:
    """One metric of a host against its class's median."""

    metric: str
    value: float
    median: float
    change_pct: float  # (value - median) / median * 100
    worse_pct: float  # in the metric's worse direction; negative when better than the median
    straggler: bool

    def brief(self) -> str:
        signed, word = change_words(self.change_pct, higher_is_better(self.metric))
        return f"{label(self.metric)} {signed} {word}"

    def failure(self, host: str, tolerance: float) -> str:
        """What names a straggler: host, metric, value, the class median."""
        return (
            f"{host}: {self.metric} {number_text(self.value)} {unit(self.metric)} is {abs(self.change_pct):.1f}% "
            f"{'below' if higher_is_better(self.metric) else 'above'} its class median "
            f"{number_text(self.median)} {unit(self.metric)} (worse by more than the peer tolerance of {tolerance:g}%)"
        )


@dataclass
class PeerClass:
    key: tuple
    index: int
    label: str
    settings: str
    hosts: list[str]
    medians: dict[str, float]
    known: bool  # False: the result has no context, so the hardware is unknown


@dataclass
class Host:
    name: str
    runs: list[Run] = field(default_factory=list)  # oldest first
    baseline: Result | None = None
    tuning: list[TuneRun] = field(default_factory=list)  # oldest first
    notes: list[str] = field(default_factory=list)
    current: bool = False  # verified in the run that calls the report (its row was given)
    peer_class: PeerClass | None = None
    peers: dict[str, Peer] = field(default_factory=dict)
    straggler_failures: list[str] = field(default_factory=list)

    @property
    def latest(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    def latest_with(self, kind: str) -> Result | None:
        """The newest run's result of this kind, from the newest run only (an older one is history)."""
        run = self.latest
        return getattr(run, kind) if run is not None else None

    @property
    def stragglers(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.straggler]

    def context(self) -> dict[str, Any]:
        """What the newest run was measured on (its results' context, else an earlier run's)."""
        for run in reversed(self.runs):
            for result in (run.throughput, run.latency, run.capacity):
                if result is not None and result.context:
                    return result.context
        return {}

    def capacity(self) -> tuple[float | None, str]:
        """(capacity within the SLO in req/s, where it comes from): a capacity run, else the newest tuning run."""
        run = self.latest
        source = run.step_source() if run else None
        if source is not None and source.capacity is not None:
            return source.capacity, f"capacity run {run.stamp}"
        for tune in reversed(self.tuning):
            if tune.chosen_capacity is not None:
                return tune.chosen_capacity, f"tuning run {tune.run}"
        return None, ""

    def baseline_recorded(self) -> bool:
        run = self.latest
        if run is None:
            return False
        if run.row is not None and _truthy(run.row.get("baseline_recorded")) is not None:
            return bool(_truthy(run.row.get("baseline_recorded")))
        tp = run.throughput
        return bool(
            tp is not None
            and self.baseline is not None
            and tp.finished_at is not None
            and tp.finished_at == self.baseline.finished_at
        )

    def passed(self) -> bool:
        run = self.latest
        return bool(run is not None and run.passed()) and not self.straggler_failures

    def failures(self) -> list[str]:
        run = self.latest
        return (run.failures() if run is not None else []) + self.straggler_failures


@dataclass
class Fleet:
    root: str
    hosts: list[Host]
    notes: list[str]
    classes: list[PeerClass] = field(default_factory=list)
    tolerance_pct: float = 10.0
    peer_metrics: tuple[str, ...] = DEFAULT_PEER_METRICS

    def host(self, name: str) -> Host | None:
        for host in self.hosts:
            if host.name == name:
                return host
        return None


# ------------------------------------------------------------------ reading


def read_json(path: str) -> tuple[Any, str | None]:
    """(data, None) or (None, why it cannot be read)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle), None
    except OSError as exc:
        return None, f"{path}: cannot be read ({exc.strerror or exc})"
    except (ValueError, RecursionError) as exc:
        return None, f"{path}: not JSON ({str(exc)[:200]})"


def _numbers(source: Any) -> dict[str, float]:
    if not isinstance(source, Mapping):
        return {}
    return {str(k): n for k, v in source.items() if (n := _number(v)) is not None}


def _changes(data: Mapping[str, Any]) -> dict[str, Change]:
    """Against the baseline: the rounds' verdicts (format 2), else the single-value comparison (format 1)."""
    changes: dict[str, Change] = {}
    verdicts = data.get("verdicts")
    if isinstance(verdicts, Mapping) and verdicts:
        for metric, row in verdicts.items():
            if not isinstance(row, Mapping) or _number(row.get("change_pct")) is None:
                continue
            word = str(row.get("verdict") or "")
            changes[str(metric)] = Change(
                metric=str(metric),
                change_pct=float(row["change_pct"]),
                higher_is_better=higher_is_better(str(metric)),
                significant=word in ("faster", "slower"),
                verdict=word,
                text=str(row.get("text") or word),
                fails=bool(row.get("fails")),
            )
        return changes
    comparison = data.get("baseline_comparison")
    if isinstance(comparison, Mapping):
        for metric, row in comparison.items():
            if not isinstance(row, Mapping) or _number(row.get("change_pct")) is None:
                continue
            higher = row.get("higher_is_better")
            higher = higher if isinstance(higher, bool) else higher_is_better(str(metric))
            change = float(row["change_pct"])
            changes[str(metric)] = Change(
                metric=str(metric),
                change_pct=change,
                higher_is_better=higher,
                significant=None,
                verdict="single run",
                text=f"{change:+.2f}% against the baseline's single run",
                fails=bool(row.get("regressed")),
            )
    return changes


def _samples(data: Mapping[str, Any]) -> tuple[dict[str, list[float]], dict[str, int]]:
    samples: dict[str, list[float]] = {}
    raw = data.get("samples")
    if isinstance(raw, Mapping):
        for key, _name in LATENCIES:
            values = raw.get(f"{key}_ms")
            if isinstance(values, list):
                # Numbers only, finite (NaN fails both comparisons); written sorted, so sorting costs one pass.
                kept = sorted(v for v in values if (type(v) is float or type(v) is int) and -math.inf < v < math.inf)
                if kept:
                    samples[key] = [float(v) for v in kept]
    counts = {}
    raw_counts = data.get("sample_counts")
    if isinstance(raw_counts, Mapping):
        for key, _name in LATENCIES:
            count = _number(raw_counts.get(f"{key}_ms"))
            if count is not None:
                counts[key] = int(count)
    return samples, counts


def _step_value(item: Mapping[str, Any], name: str) -> float | None:
    for key in STEP_ALIASES.get(name, (name,)):
        value = _number(item.get(key))
        if value is not None:
            return value
    return None


def parse_steps(raw: Any) -> list[Step]:
    """Load steps: a list of objects with numbers under STEP_FIELDS (or their aliases); sorted by load.

    Anything else is left out. A capacity run measures a load as requests in flight; a step that says so
    (capacity mode's `request_goodput`, `slo_attainment`) is marked `in_flight` for the axis label.
    """
    if not isinstance(raw, list):
        return []
    steps = []
    for item in raw:
        if isinstance(item, Mapping) and _number(item.get("load")) is not None:
            values = {name: n for name in STEP_FIELDS if (n := _step_value(item, name)) is not None}
            steps.append(Step(values, in_flight="request_goodput" in item or "slo_attainment" in item))
    return sorted(steps, key=lambda s: s.values["load"])


def result_format(data: Mapping[str, Any]) -> str:
    """Which vllm_benchmark wrote it: '1.0' (metrics only), '1.1' (with context), '2' (rounds), '2+samples'."""
    if data.get("rounds_format") == 2:
        return "2+samples" if isinstance(data.get("samples"), Mapping) else "2"
    return "1.1" if isinstance(data.get("context"), Mapping) else "1.0"


def parse_result(data: Any, path: str, kind: str, samples: bool = True) -> tuple[Result | None, str | None]:
    """A Result from a result file's JSON, or (None, why not); samples=False leaves the samples out (history)."""
    if not isinstance(data, Mapping):
        return None, f"{path}: not a JSON object"
    metrics = _numbers(data.get("metrics"))
    if not metrics and not isinstance(data.get("steps"), list):
        return None, f"{path}: no metrics (not a vllm_benchmark result)"
    kept, counts = _samples(data) if samples else ({}, {})
    problems = data.get("problems")
    plan = data.get("plan") if isinstance(data.get("plan"), Mapping) else {}
    workload = dict(data["workload"]) if isinstance(data.get("workload"), Mapping) else {}
    if not workload and plan:
        # Format 1 has no workload; its plan and parameters say the same.
        workload = {name: plan.get(name) for name in WORKLOAD_FIELDS if name in plan}
        workload["request_rate"] = str(workload.get("request_rate"))
    parameters = data.get("parameters") if isinstance(data.get("parameters"), Mapping) else {}
    if "ignore_eos" not in workload and isinstance(parameters.get("ignore_eos"), bool):
        workload["ignore_eos"] = parameters["ignore_eos"]
    rounds = data.get("rounds") if isinstance(data.get("rounds"), list) else data.get("round_metrics")
    requests = _number(plan.get("requests"))
    result = Result(
        path=path,
        kind=kind,
        fmt=result_format(data),
        metrics=metrics,
        passed=data["passed"] if isinstance(data.get("passed"), bool) else None,
        problems=[str(p) for p in problems] if isinstance(problems, list) else [],
        changes=_changes(data),
        context=dict(data["context"]) if isinstance(data.get("context"), Mapping) else {},
        workload=workload,
        model=str(data["model"]) if isinstance(data.get("model"), str) else None,
        server_version=str(data["server_version"]) if isinstance(data.get("server_version"), str) else None,
        finished_at=str(data["finished_at"]) if isinstance(data.get("finished_at"), str) else None,
        samples=kept,
        sample_counts=counts,
        steps=parse_steps(data.get("steps")),
        capacity=_number(data.get("capacity")),
        capacity_load=_number(data.get("capacity_load")),
        rounds=len(rounds) if isinstance(rounds, list) else 1,
        verdict_brief=str(data.get("verdict_brief") or ""),
        too_noisy=[str(t) for t in data.get("too_noisy") or [] if isinstance(t, str)],
        context_changes=[str(c) for c in data.get("context_changes") or [] if isinstance(c, str)],
        requests=int(requests) if requests is not None else None,
        sessions=1 + (len(data["sessions"]) if isinstance(data.get("sessions"), list) else 0),
    )
    return result, None


def without_samples(text: str) -> str:
    """A result file's text with its samples object emptied (lists of numbers: no brace inside); else as it is."""
    key = text.find('"samples":')
    start = text.find("{", key) if key >= 0 else -1
    end = text.find("}", start) if start >= 0 else -1
    if end < 0 or text.find("{", start + 1, end) >= 0 or text[key + len('"samples":') : start].strip():
        return text
    return text[: start + 1] + text[end:]


def read_result(path: str, kind: str, samples: bool = True) -> tuple[Result | None, str | None]:
    """A result file; samples=False reads a history run: its samples (most of its bytes) are cut out unparsed."""
    if samples:
        data, error = read_json(path)
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            return None, f"{path}: cannot be read ({exc.strerror or exc})"
        try:
            data, error = json.loads(without_samples(text)), None
        except (ValueError, RecursionError):
            try:  # not the shape vllm_benchmark writes: the whole file, as it is
                data, error = json.loads(text), None
            except (ValueError, RecursionError) as exc:
                data, error = None, f"{path}: not JSON ({str(exc)[:200]})"
    if error:
        return None, error
    return parse_result(data, path, kind, samples)


def _settings(raw: Any) -> dict[str, Any]:
    return {str(k): v for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def parse_trials(data: Any, path: str, fallback_run: str) -> tuple[TuneRun | None, str | None]:
    """A TuneRun from trials.json, or (None, why not). Malformed trials are left out with a note each."""
    if not isinstance(data, Mapping):
        return None, f"{path}: not a JSON object"
    if not isinstance(data.get("trials"), list):
        return None, f"{path}: no list of trials"
    notes = []
    trials = []
    for position, item in enumerate(data["trials"], 1):
        if not isinstance(item, Mapping) or not isinstance(item.get("settings"), Mapping):
            notes.append(f"{path}: trial {position} is not an object with settings; left out")
            continue
        index = _number(item.get("index"))
        status = item.get("status") if item.get("status") in ("ok", "failed") else "failed"
        # The tuning role keeps a trial's capacity run under `details`; the contract allows them at the top too.
        details = item.get("details") if isinstance(item.get("details"), Mapping) else {}
        trials.append(
            Trial(
                index=int(index) if index is not None else position,
                settings=_settings(item["settings"]),
                status=status,
                capacity=_number(item.get("capacity")),
                reason=str(item["reason"]) if item.get("reason") is not None else None,
                steps=parse_steps(item.get("steps") if "steps" in item else details.get("steps")),
                capacity_load=_number(item.get("capacity_load", details.get("capacity_load"))),
            )
        )
    start = data.get("start") if isinstance(data.get("start"), Mapping) else {}
    chosen = data.get("chosen") if isinstance(data.get("chosen"), Mapping) else {}
    knobs = data.get("knobs")
    if not isinstance(knobs, list) or not all(isinstance(k, str) for k in knobs):
        knobs = sorted({k for t in trials for k in t.settings})
    return (
        TuneRun(
            path=path,
            run=str(data.get("run") or fallback_run),
            knobs=list(knobs),
            slo={
                **(dict(data["slo"]) if isinstance(data.get("slo"), Mapping) else {}),
                **({"attainment": data["slo_attainment"]} if _number(data.get("slo_attainment")) is not None else {}),
            },
            start_settings=_settings(start.get("settings")),
            start_capacity=_number(start.get("capacity")),
            chosen_settings=_settings(chosen.get("settings")),
            chosen_capacity=_number(chosen.get("capacity")),
            trials=trials,
            notes=notes,
        ),
        None,
    )


def _dirs(path: str) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
    except OSError:
        return []


def read_host(root: str, name: str) -> Host:
    """Every run of one host, oldest first, and its baseline."""
    folder = os.path.join(root, name)
    host = Host(name=name)
    stamps = [d for d in _dirs(folder) if STAMP.match(d)]
    for stamp in stamps:
        run = Run(stamp=stamp)
        for kind in RESULT_KINDS:
            path = os.path.join(folder, stamp, f"{kind}.json")
            if not os.path.exists(path):
                continue
            # Only the newest run's distributions are drawn: older runs are history, their samples not needed.
            result, error = read_result(path, kind, samples=stamp == stamps[-1])
            if error:
                run.notes.append(error)
            setattr(run, kind, result)
        if run.results or run.notes:
            host.runs.append(run)
    baseline_path = os.path.join(folder, BASELINE_FILE)
    if os.path.exists(baseline_path):
        host.baseline, error = read_result(baseline_path, "throughput", samples=False)
        if error:
            host.notes.append(error)
    return host


def read_tuning(root: str) -> tuple[dict[str, list[TuneRun]], list[str]]:
    """host -> tuning runs (oldest first) under <root>/tune/, and notes on what could not be read."""
    tune_root = os.path.join(root, TUNE_DIR)
    runs: dict[str, list[TuneRun]] = {}
    notes = []
    for host in _dirs(tune_root):
        for run_name in _dirs(os.path.join(tune_root, host)):
            path = os.path.join(tune_root, host, run_name, "trials.json")
            if not os.path.exists(path):
                continue
            data, error = read_json(path)
            tune, error = (None, error) if error else parse_trials(data, path, run_name)
            if tune is None:
                notes.append(str(error))
                continue
            notes.extend(tune.notes)
            runs.setdefault(host, []).append(tune)
    return runs, notes


def newest_fleet_rows(root: str) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of the newest fleet-<stamp>.json, and its stamp."""
    try:
        names = sorted(n for n in os.listdir(root) if FLEET_FILE.match(n))
    except OSError:
        return [], None
    if not names:
        return [], None
    data, _error = read_json(os.path.join(root, names[-1]))
    rows = (
        [r for r in data if isinstance(r, Mapping) and isinstance(r.get("host"), str)] if isinstance(data, list) else []
    )
    return [dict(r) for r in rows], FLEET_FILE.match(names[-1]).group(1)


def row_stamp(row: Mapping[str, Any], fallback: str | None) -> str | None:
    """The run a fleet table row belongs to: the last part of its `results` path."""
    results = row.get("results")
    if isinstance(results, str):
        stamp = os.path.basename(results.rstrip("/"))
        if STAMP.match(stamp):
            return stamp
    return fallback


def is_host_folder(path: str) -> bool:
    if os.path.exists(os.path.join(path, BASELINE_FILE)):
        return True
    return any(STAMP.match(d) for d in _dirs(path))


def read_fleet(root: str, rows: Sequence[Mapping[str, Any]] | None = None) -> Fleet:
    """Every host under root with its runs, baseline and tuning runs.

    rows are this verification's fleet table rows (the role's vllm_verify_summary of each host): their hosts are
    the current ones, and each row is its run's pass or fail. Without rows, the newest fleet-<stamp>.json gives
    the rows of its hosts' runs. A row whose run has no folder (a host that failed before any result was
    written) is a run with no numbers.
    """
    notes: list[str] = []
    hosts: dict[str, Host] = {}
    for name in _dirs(root):
        if name in NOT_HOSTS or name.startswith("."):
            continue
        if is_host_folder(os.path.join(root, name)):
            hosts[name] = read_host(root, name)
    given = rows is not None and len(rows) > 0
    fleet_rows, fleet_stamp = (list(rows or []), None) if given else newest_fleet_rows(root)
    for row in fleet_rows:
        name = str(row.get("host"))
        host = hosts.setdefault(name, Host(name=name))
        host.current = given
        stamp = row_stamp(row, fleet_stamp)
        run = next((r for r in host.runs if r.stamp == stamp), None)
        if run is None and stamp is not None and (not host.runs or stamp > host.runs[-1].stamp):
            run = Run(stamp=stamp)
            host.runs.append(run)
        elif run is None and stamp is None:
            run = host.runs[-1] if host.runs else Run(stamp="")
            if not host.runs:
                host.runs.append(run)
        if run is not None:
            run.row = dict(row)
    tuning, tune_notes = read_tuning(root)
    notes.extend(tune_notes)
    for name, runs in tuning.items():
        hosts.setdefault(name, Host(name=name)).tuning = runs
    for host in hosts.values():
        notes.extend(n for run in host.runs for n in run.notes)
        notes.extend(host.notes)
    return Fleet(root=root, hosts=sorted(hosts.values(), key=lambda h: natural_key(h.name)), notes=notes)


def natural_key(name: str) -> list:
    """node-2 before node-10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


# ------------------------------------------------------------------ hardware, classes, stragglers


def hardware(context: Mapping[str, Any], row: Mapping[str, Any] | None = None) -> str:
    """'8 x NVIDIA H100 80GB HBM3' or 'CPU (2 vCPU)', as the fleet table says it."""
    count = _number(context.get("gpu_count"))
    if count and count > 0:
        return f"{int(count)} x {context.get('gpu_model') or 'GPU'}"
    if context:
        vcpus = context.get("vcpus")
        return f"CPU ({vcpus if vcpus not in (None, '') else '?'} vCPU)"
    if row and row.get("accelerator"):
        return str(row["accelerator"]).strip()
    return "?"


def cpu_text(context: Mapping[str, Any], row: Mapping[str, Any] | None = None) -> str:
    if context.get("cpu_model") or context.get("cpu_isa_level"):
        return f"{context.get('cpu_model') or '?'}, {context.get('cpu_isa_level') or '?'}"
    if row and row.get("cpu"):
        return str(row["cpu"]).strip()
    return "?"


def settings_of(flags: Any) -> tuple[str, ...]:
    """The flags in force that change performance, in order: address, port and served name left out."""
    if not isinstance(flags, list):
        return ()
    kept: list[str] = []
    skip_value = False
    for token in (str(f) for f in flags):
        if skip_value:
            skip_value = False
            if not token.startswith("-"):
                continue
        name = token.split("=", 1)[0]
        if name in IGNORED_FLAGS:
            skip_value = "=" not in token
            continue
        kept.append(token)
    return tuple(kept)


def class_key(host: Host) -> tuple | None:
    """What makes two hosts peers, from the newest throughput run; None without numbers to compare."""
    run = host.latest
    result = run.throughput if run is not None else None
    if result is None or not result.has_numbers:
        return None
    context = result.context
    if not context:
        # Written before results held their context: the hardware is unknown, so the host has no peers.
        return ("unknown", host.name)
    count = _number(context.get("gpu_count")) or 0
    if count > 0:
        machine = ("gpu", str(context.get("gpu_model")), int(count))
    else:
        machine = ("cpu", str(context.get("cpu_model")), str(context.get("vcpus")))
    workload = tuple((name, str(result.workload.get(name))) for name in WORKLOAD_FIELDS)
    return (
        machine,
        str(context.get("driver_version")),
        str(context.get("vllm_variant")),
        str(context.get("vllm_version") or result.server_version),
        str(result.workload.get("model") or result.model),
        settings_of(context.get("flags")),
        workload,
    )


def class_label(key: tuple) -> str:
    if key[0] == "unknown":
        return "hardware unknown (a result written before results recorded what they ran on)"
    machine, driver, variant, version, model = key[:5]
    if machine[0] == "gpu":
        hw = f"{machine[2]} x {machine[1]}, driver {driver}"
    else:
        hw = f"CPU {machine[1]} ({machine[2]} vCPU)"
    return f"{hw}, vLLM {version} ({variant}), model {model}"


def median_of(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def peer_classes(fleet: Fleet, metrics: Iterable[str], tolerance_pct: float) -> None:
    """Group the hosts into classes and set each host's deviation from its class's median, stragglers flagged."""
    metrics = tuple(metrics)
    fleet.tolerance_pct = tolerance_pct
    fleet.peer_metrics = metrics
    groups: dict[tuple, list[Host]] = {}
    for host in fleet.hosts:
        key = class_key(host)
        if key is not None:
            groups.setdefault(key, []).append(host)
    fleet.classes = []
    for index, (key, members) in enumerate(sorted(groups.items(), key=lambda kv: natural_key(kv[1][0].name)), 1):
        medians = {}
        for metric in metrics:
            values = [v for h in members if (v := h.latest.throughput.metric(metric)) is not None]
            if len(values) >= 2:
                medians[metric] = median_of(values)
        peer_class = PeerClass(
            key=key,
            index=index,
            label=class_label(key),
            settings=" ".join(key[5]) if key[0] != "unknown" else "",
            hosts=[h.name for h in members],
            medians=medians,
            known=key[0] != "unknown",
        )
        fleet.classes.append(peer_class)
        for host in members:
            host.peer_class = peer_class
            host.peers = {}
            if len(members) < 2:
                continue
            for metric, median in medians.items():
                value = host.latest.throughput.metric(metric)
                if value is None or median == 0:
                    continue
                change = (value - median) / median * 100.0
                worse = -change if higher_is_better(metric) else change
                host.peers[metric] = Peer(
                    metric, value, median, round(change, 2), round(worse, 2), worse > tolerance_pct
                )


def fail_stragglers(fleet: Fleet) -> None:
    """A straggler among the current hosts fails: a failure naming the host, the metric, its value, the median."""
    for host in fleet.hosts:
        host.straggler_failures = (
            [peer.failure(host.name, fleet.tolerance_pct) for peer in host.stragglers] if host.current else []
        )


def worst_peer(host: Host) -> Peer | None:
    """The metric on which the host is furthest behind its class's median (or least ahead)."""
    if not host.peers:
        return None
    return max(host.peers.values(), key=lambda p: p.worse_pct)


def peer_text(host: Host, tolerance: float) -> str:
    """The fleet table's peer deviation cell."""
    if host.peer_class is None:
        return "no numbers to compare"
    if not host.peer_class.known:
        return "no peers (hardware unknown)"
    if len(host.peer_class.hosts) < 2:
        return "no peers (class of one)"
    if host.stragglers:
        return "STRAGGLER: " + ", ".join(
            p.brief() + f" than class median {number_text(p.median)}" for p in host.stragglers
        )
    worst = worst_peer(host)
    if worst is None:
        return "-"
    return f"{worst.brief()} (within {tolerance:g}% of class median)"


# ------------------------------------------------------------------ rows, tables and text


def change_text(host: Host) -> str:
    """The fleet table's change vs baseline cell."""
    run = host.latest
    tp = run.throughput if run else None
    if host.baseline_recorded():
        if host.baseline is not None and host.baseline.sessions > 1:
            return f"session {host.baseline.sessions} of the baseline recorded"
        return "baseline recorded"
    if run is not None and run.row is not None and run.row.get("change_vs_baseline_text") and not (tp and tp.changes):
        return str(run.row["change_vs_baseline_text"])
    if tp is not None and tp.changes:
        return ", ".join(c.brief() for c in shown_changes(tp)) or "-"
    if host.baseline is None:
        return "no baseline"
    return "not compared"


def host_row(host: Host, tolerance: float) -> dict[str, Any]:
    """The fleet JSON's row: the role's summary where given (its keys kept), else the same keys from the files."""
    run = host.latest
    tp = run.throughput if run else None
    lat = run.latency if run else None
    context = host.context()
    row: dict[str, Any]
    if run is not None and run.row is not None:
        row = dict(run.row)
    else:
        row = {
            "host": host.name,
            "accelerator": hardware(context),
            "cpu": cpu_text(context),
            "cpu_isa_level": context.get("cpu_isa_level"),
            "version": context.get("vllm_version") or (tp.server_version if tp else None),
            "request_throughput": _rounded(tp.metric("request_throughput")) if tp else None,
            "total_token_throughput": _rounded(tp.metric("total_token_throughput")) if tp else None,
            "p99_ttft_ms": _rounded(tp.metric("p99_ttft_ms")) if tp else None,
            "median_tpot_ms": _rounded(tp.metric("median_tpot_ms")) if tp else None,
            "latency_median_e2e_ms": _rounded(lat.metric("median_e2e_ms")) if lat else None,
            "change_vs_baseline": {m: c.change_pct for m, c in tp.changes.items()} if tp else {},
            "change_vs_baseline_text": tp.verdict_brief if tp else "",
            "context_changes": tp.context_changes if tp else [],
            "baseline_recorded": host.baseline_recorded(),
            "failures": run.failures() if run else [],
            "passed": run.passed() if run else False,
            "results": os.path.dirname(run.results[0].path) if run and run.results else None,
        }
    capacity, source = host.capacity()
    row.update(
        {
            "run": run.stamp if run else None,
            "peer_class": host.peer_class.index if host.peer_class else None,
            "peer_class_label": host.peer_class.label if host.peer_class else None,
            "peers": [h for h in host.peer_class.hosts if h != host.name] if host.peer_class else [],
            "peer_deviation": {
                m: {
                    "value": p.value,
                    "class_median": round(p.median, 4),
                    "change_pct": p.change_pct,
                    "worse_pct": p.worse_pct,
                    "straggler": p.straggler,
                }
                for m, p in host.peers.items()
            },
            "peer_deviation_text": peer_text(host, tolerance),
            "straggler": bool(host.stragglers),
            "capacity": capacity,
            "capacity_source": source or None,
        }
    )
    if host.straggler_failures:
        row["failures"] = [*[str(f) for f in row.get("failures") or []], *host.straggler_failures]
        row["passed"] = False
    return row


def _rounded(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


def result_text(host: Host) -> str:
    """'PASS', 'FAIL', with ', not judged (too noisy)' and ', straggler' where they apply."""
    text = "PASS" if host.passed() else "FAIL"
    if host.latest is not None and host.latest.too_noisy():
        text += ", not judged (too noisy)"
    return f"{text}, straggler" if host.stragglers else text


def markdown_table(fleet: Fleet, hosts: Sequence[Host]) -> str:
    """The fleet table as today, with the peer deviation and capacity columns."""
    lines = [
        "| Host | Accelerator | CPU, instruction set | vLLM | req/s | tok/s | p99 TTFT ms | median TPOT ms "
        "| change vs baseline | peer deviation | capacity in SLO req/s | Result |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for host in hosts:
        run = host.latest
        tp = run.throughput if run else None
        row = run.row if run and run.row else {}
        context = host.context()
        capacity, _source = host.capacity()
        cells = [
            host.name,
            hardware(context, row),
            cpu_text(context, row),
            str(context.get("vllm_version") or row.get("version") or (tp.server_version if tp else None) or "-"),
            *[number_text(tp.metric(m) if tp else None) for m in TABLE_METRICS],
            change_text(host),
            peer_text(host, fleet.tolerance_pct),
            number_text(capacity),
            result_text(host),
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or "-"


def history_points(host: Host, metric: str) -> list[tuple[datetime, float, bool]]:
    """(time, value, passed) of a throughput metric over every stored run that measured it, oldest first."""
    points = []
    for run in host.runs:
        when = run.when
        tp = run.throughput
        value = tp.metric(metric) if tp is not None else None
        if when is not None and value is not None:
            points.append((when, value, run.passed()))
    return points


def drift_text(host: Host, metric: str) -> str | None:
    points = history_points(host, metric)
    if len(points) < 2:
        return None
    first, last = points[0][1], points[-1][1]
    if first == 0:
        return None
    signed, word = change_words((last - first) / first * 100.0, higher_is_better(metric))
    return f"{label(metric)} {number_text(first)} → {number_text(last)} ({signed} {word})"


def latency_text(result: Result) -> str:
    parts = []
    for key, name in LATENCIES:
        values = [result.metric(f"{stat}_{key}_ms") for stat in ("mean", "median", "std", "min", "max")]
        if all(v is not None for v in values):
            mean, med, std, low, high = values
            parts.append(
                f"{name} mean {number_text(mean)}, median {number_text(med)}, std {number_text(std)}, "
                f"min {number_text(low)}, max {number_text(high)}"
            )
    return "; ".join(parts) + " (ms)" if parts else "no numbers"


def tuning_text(tune: TuneRun) -> str:
    failed = sum(1 for t in tune.trials if t.status != "ok")
    chosen = ", ".join(f"{k}={v}" for k, v in tune.chosen_settings.items()) or "none"
    start = number_text(tune.start_capacity)
    return (
        f"tuning {tune.run}: {len(tune.trials)} trials ({failed} failed) over {', '.join(tune.knobs) or 'no knobs'}; "
        f"chosen {chosen}: capacity {number_text(tune.chosen_capacity)} req/s (start {start})"
    )


def shown_changes(result: Result) -> list[Change]:
    """The changes the fleet table shows, in its order."""
    return [result.changes[m] for m in CHANGE_METRICS if m in result.changes]


def slower_than_baseline(host: Host) -> list[Change]:
    """The shown metrics that got worse against the baseline, beyond the rounds' noise."""
    run = host.latest
    tp = run.throughput if run else None
    if tp is None or host.baseline_recorded():
        return []
    return [c for c in shown_changes(tp) if c.better is False and c.significant is not False]


def text_lines(fleet: Fleet, report_path: str | None = None) -> list[str]:
    """The report as concise, labelled lines for the terminal."""
    hosts = fleet.hosts
    passed = sum(1 for h in hosts if h.passed())
    where = f"; {report_path}" if report_path else ""
    lines = [
        f"Fleet report: {len(hosts)} hosts, {passed} PASS, {len(hosts) - passed} FAIL, "
        f"{sum(1 for h in hosts if h.stragglers)} stragglers (peer tolerance {fleet.tolerance_pct:g}%){where}"
    ]
    stragglers = [
        f"{h.name} (" + ", ".join(f"{p.brief()} than class median {number_text(p.median)}" for p in h.stragglers) + ")"
        for h in hosts
        if h.stragglers
    ]
    lines.append(
        f"Slower than their peers (worse than the class median by more than {fleet.tolerance_pct:g}%): "
        + ("; ".join(stragglers) if stragglers else "none")
    )
    slower = [
        f"{h.name} ({', '.join(c.brief() for c in slower_than_baseline(h))})" for h in hosts if slower_than_baseline(h)
    ]
    lines.append("Slower than they were (against their baseline): " + ("; ".join(slower) if slower else "none"))
    carry = []
    for host in hosts:
        capacity, source = host.capacity()
        if capacity is not None:
            carry.append(f"{host.name} {number_text(capacity)} req/s within the SLO ({source})")
    lines.append(
        "What each can carry: " + ("; ".join(carry) if carry else "no capacity measured (no capacity or tuning run)")
    )
    alone = [h.name for h in hosts if h.peer_class is not None and len(h.peer_class.hosts) < 2]
    if alone:
        lines.append("No peers (class of one or hardware unknown): " + ", ".join(alone))
    for host in hosts:
        lines.extend(host_lines(host, fleet.tolerance_pct))
    return lines


def host_lines(host: Host, tolerance: float) -> list[str]:
    run = host.latest
    tp = run.throughput if run else None
    context = host.context()
    row = run.row if run and run.row else {}
    numbers = ", ".join(
        f"{label(m)} {number_text(tp.metric(m))}{' ' + unit(m) if unit(m) not in ('req/s', 'tok/s') else ''}"
        for m in TABLE_METRICS
        if tp is not None and tp.metric(m) is not None
    )
    capacity, source = host.capacity()
    head = (
        f"{host.name}: {result_text(host)}; {hardware(context, row)}; "
        f"vLLM {context.get('vllm_version') or row.get('version') or '?'}; "
        f"run {run.stamp if run else 'none'}; {numbers or 'no numbers'}; baseline: {change_text(host)}; "
        f"peers: {peer_text(host, tolerance)}"
        + (f"; capacity {number_text(capacity)} req/s ({source})" if capacity is not None else "")
    )
    lines = [head]
    failures = host.failures()
    if failures and not host.passed():
        lines.append(f"  {host.name} failures: " + " | ".join(failures))
    if run is not None and run.too_noisy():
        lines.append(f"  {host.name} not judged, too noisy: " + " | ".join(run.too_noisy()))
    lat = run.latency if run else None
    if lat is not None and lat.has_numbers:
        lines.append(f"  {host.name} latency run ({lat.completed} requests): {latency_text(lat)}")
    drifts = [d for m in HISTORY_METRICS if (d := drift_text(host, m))]
    if drifts:
        runs = [r for r in host.runs if r.when]
        span = f"{runs[0].when:%Y-%m-%d} to {runs[-1].when:%Y-%m-%d}" if runs else ""
        lines.append(f"  {host.name} history ({len(host.runs)} runs, {span}): " + ", ".join(drifts))
    if host.tuning:
        lines.append(f"  {host.name} {tuning_text(host.tuning[-1])}")
    return lines


def build(
    root: str,
    rows: Sequence[Mapping[str, Any]] | None,
    metrics: Iterable[str],
    tolerance_pct: float,
    fail_on_straggler: bool,
) -> Fleet:
    """Read the results folder and judge the peers: the fleet the report shows."""
    fleet = read_fleet(root, rows)
    peer_classes(fleet, metrics, tolerance_pct)
    if fail_on_straggler:
        fail_stragglers(fleet)
    return fleet
