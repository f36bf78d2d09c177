# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report's charts: what each one draws, as plain data, and its drawing as inline SVG by matplotlib.

Runs on the controller only (module vllm_fleet_report). The chart specs (`Chart`, `Panel`, `Series`) are built
by plain functions from the fleet (module_utils/vllm_fleet_results.py), so a test can check that a chart is
drawn from the right numbers; `SvgRenderer` draws them with matplotlib's Agg/SVG backends, which are imported
only when a chart is drawn. The SVG has its text as text (no embedded or downloaded font), no script, no link.

Drawing is the slow part of a report: figures are kept and their artists replaced, not rebuilt, per chart.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.vllm_fleet_results import (
    HISTORY_METRICS,
    LATENCIES,
    Fleet,
    Host,
    Result,
    TuneRun,
    higher_is_better,
    history_points,
    label,
    natural_key,
)

# Points a drawn CDF keeps at most (the result file keeps up to 5000 samples per metric).
CDF_POINTS = 200
# The percentiles a CDF marks: the result's own values, at these heights (which the y axis names).
MARKS = (("median", 0.5, "p50"), ("p90", 0.9, "p90"), ("p99", 0.99, "p99"))
MARK_LABEL = "p50, p90, p99"
MARK_LABELS = frozenset({MARK_LABEL})
COLORS = {
    "latency": "#1f77b4",
    "throughput": "#e07b00",
    "good": "#1a7f37",
    "bad": "#c62828",
    "neutral": "#555555",
    "chosen": "#6a1b9a",
    "start": "#00838f",
    "p99": "#c62828",
    "p50": "#1f77b4",
}
SERIES_COLORS = ("#1f77b4", "#e07b00", "#2e7d32", "#6a1b9a")


class ChartLibraryMissing(RuntimeError):
    """matplotlib cannot be imported by the Python that runs the report."""


@dataclass
class Series:
    label: str
    x: list[Any]
    y: list[float]
    style: str = "line"  # line | steps | points | dashed
    color: str = "#1f77b4"
    marker: str = ""


@dataclass
class Panel:
    title: str
    xlabel: str = ""
    ylabel: str = ""
    series: list[Series] = field(default_factory=list)
    hlines: list[tuple[float, str]] = field(default_factory=list)
    vlines: list[tuple[float, str]] = field(default_factory=list)
    xdates: bool = False
    categories: list[str] | None = None
    ylim: tuple[float | None, float | None] = (None, None)
    yticks: list[tuple[float, str]] | None = None


@dataclass
class Chart:
    id: str
    kind: str
    title: str
    panels: list[Panel]
    caption: str = ""
    sharey: bool = False

    def points(self) -> int:
        return sum(len(s.y) for p in self.panels for s in p.series)

    def legend(self) -> list[tuple[str, str, str, str]]:
        """(label, colour, style, marker) of each distinct series, the lines first, then the percentile marks.

        The page shows it under the chart (a legend drawn by matplotlib would cost as much as a panel).
        """
        seen: dict[str, tuple[str, str, str, str]] = {}
        for panel in self.panels:
            for series in panel.series:
                if series.label in MARK_LABELS:
                    seen.setdefault(
                        series.label, (series.label + " of each run", COLORS["neutral"], "points", series.marker)
                    )
                else:
                    seen.setdefault(series.label, (series.label, series.color, series.style, series.marker))
            for _y, text in panel.hlines:
                seen.setdefault(text, (text, COLORS["neutral"], "dashed", ""))
            for _x, text in panel.vlines:
                seen.setdefault(text, (text, COLORS["bad"] if self.kind == "peers" else COLORS["chosen"], "dashed", ""))
        return sorted(seen.values(), key=lambda entry: entry[2] == "points" and entry[1] == COLORS["neutral"])


def cdf_points(values: Sequence[float], most: int = CDF_POINTS) -> tuple[list[float], list[float]]:
    """(x, y) of the empirical CDF of sorted values: every value up to `most`, else evenly spaced order statistics.

    y is the fraction of values at or below x; the first point is (smallest, 0).
    """
    n = len(values)
    if n == 0:
        return [], []
    if n <= most:
        indices = list(range(n))
    else:
        step = (n - 1) / (most - 1)
        indices = sorted({round(k * step) for k in range(most)})
    xs = [values[0]] + [values[i] for i in indices]
    ys = [0.0] + [(i + 1) / n for i in indices]
    return xs, ys


def summary_cdf(result: Result, key: str) -> tuple[list[float], list[float]]:
    """A coarse CDF from the percentiles a result holds, for results written without samples."""
    known = [
        ("min", 0.0),
        ("p10", 0.10),
        ("p25", 0.25),
        ("median", 0.5),
        ("p75", 0.75),
        ("p90", 0.9),
        ("p99", 0.99),
        ("max", 1.0),
    ]
    points = [(v, q) for stat, q in known if (v := result.metric(f"{stat}_{key}_ms")) is not None]
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


def run_label(result: Result) -> str:
    if result.kind == "latency":
        return "latency run (one request at a time)"
    concurrency = result.workload.get("max_concurrency")
    return f"throughput run ({concurrency} at a time)" if concurrency else "throughput run"


def cdf_chart(chart_id: str, host: Host) -> Chart | None:
    """TTFT, TPOT, ITL and E2E of the newest run as CDFs, p50/p90/p99 marked from the result's own metrics."""
    run = host.latest
    results = [r for r in (run.latency, run.throughput) if r is not None and r.has_numbers] if run else []
    if not results:
        return None
    panels = []
    coarse = False
    for key, name in LATENCIES:
        panel = Panel(
            title=f"{name} (ms)",
            xlabel="ms",
            ylim=(0.0, 1.02),
            yticks=[(0.0, "0"), *((q, name) for _stat, q, name in MARKS)],
        )
        for result in results:
            color = COLORS[result.kind]
            if key in result.samples:
                xs, ys = cdf_points(result.samples[key])
                panel.series.append(Series(run_label(result), xs, ys, "steps", color))
            else:
                xs, ys = summary_cdf(result, key)
                if not xs:
                    continue
                coarse = True
                panel.series.append(Series(run_label(result) + ", from percentiles", xs, ys, "dashed", color))
            marks = [(value, q) for stat, q, _name in MARKS if (value := result.metric(f"{stat}_{key}_ms")) is not None]
            if marks:
                panel.series.append(
                    Series(MARK_LABEL, [m[0] for m in marks], [m[1] for m in marks], "points", color, "o")
                )
        panels.append(panel)
    caption = (
        "Latency distributions of the newest run: the fraction of requests at or below each latency. Circles: "
        "the run's p50, p90 and p99, at the heights the y axis names."
    )
    if coarse:
        caption += " Dashed: drawn through the stored percentiles only (the result holds no per-request samples)."
    return Chart(chart_id, "cdf", f"{host.name}: latency distributions", panels, caption, sharey=True)


def load_chart(
    chart_id: str, title: str, steps: Sequence[Any], capacity: float | None, capacity_load: float | None = None
) -> Chart | None:
    """Throughput and latency against the load, from capacity or sweep steps.

    The capacity (req/s within the SLO) is a horizontal line on the goodput panel; the load it was reached at a
    vertical line on every panel.
    """
    if not steps:
        return None
    xlabel = "load (requests in flight)" if any(s.in_flight for s in steps) else "load"
    through = Panel(title="Goodput against load", xlabel=xlabel, ylabel="req/s", ylim=(0.0, None))
    for name, text, color, style in (
        ("served", "served (all requests)", COLORS["neutral"], "dashed"),
        ("goodput", "goodput (within the SLO)", COLORS["good"], "line"),
    ):
        pairs = [(s.get("load"), s.get(name)) for s in steps if s.get(name) is not None]
        if pairs:
            through.series.append(Series(text, [p[0] for p in pairs], [p[1] for p in pairs], style, color, "o"))
    attainment = Panel(
        title="SLO attainment against load", xlabel=xlabel, ylabel="fraction within the SLO", ylim=(0.0, 1.02)
    )
    att = [(s.get("load"), s.get("attainment")) for s in steps if s.get("attainment") is not None]
    if att:
        attainment.series.append(
            Series("attainment", [a[0] for a in att], [a[1] for a in att], "line", COLORS["good"], "o")
        )
    latency = Panel(title="Latency against load", xlabel=xlabel, ylabel="ms", ylim=(0.0, None))
    for name, text, color, style in (
        ("p50_ttft_ms", "p50 TTFT", COLORS["latency"], "line"),
        ("p99_ttft_ms", "p99 TTFT", COLORS["latency"], "dashed"),
        ("p50_tpot_ms", "p50 TPOT", COLORS["throughput"], "line"),
        ("p99_tpot_ms", "p99 TPOT", COLORS["throughput"], "dashed"),
    ):
        pairs = [(s.get("load"), s.get(name)) for s in steps if s.get(name) is not None]
        if pairs:
            latency.series.append(Series(text, [p[0] for p in pairs], [p[1] for p in pairs], style, color, "o"))
    panels = [p for p in (through, attainment, latency) if p.series]
    if not panels:
        return None
    notes = []
    if capacity is not None and through.series:
        through.hlines.append((capacity, f"capacity {capacity:.2f} req/s"))
        notes.append("dashed horizontal: the capacity within the SLO")
    if capacity_load is not None:
        for panel in panels:
            panel.vlines.append((capacity_load, f"the load it was reached at ({capacity_load:g})"))
        notes.append("vertical: the load it was reached at")
    return Chart(chart_id, "load", title, panels, ("Lines: " + "; ".join(notes) + ".") if notes else "")


def history_chart(chart_id: str, host: Host) -> Chart | None:
    """Each headline metric over every stored run, as percent better (+) or worse (-) than the baseline.

    One scale for all four, up always better, so that a slow drift of any of them shows; without a baseline the
    reference is the host's first stored run. Failed runs are marked on the zero line. The values themselves are in
    the history table under the chart.
    """
    panel = Panel(title="", ylabel="% better (+) / worse (-)", xdates=True)
    reference_name = "the baseline" if host.baseline is not None else "the first stored run"
    values: list[float] = []
    failed: dict[Any, bool] = {}
    for number, metric in enumerate(HISTORY_METRICS):
        points = history_points(host, metric)
        base = host.baseline.metric(metric) if host.baseline is not None else None
        reference = base if base else (points[0][1] if points else None)
        if not points or not reference:
            continue
        better = [better_pct(p[1], reference, higher_is_better(metric)) for p in points]
        values.extend(better)
        panel.series.append(
            Series(label(metric), [p[0] for p in points], better, "line", SERIES_COLORS[number % 4], "o")
        )
        failed.update((p[0], True) for p in points if not p[2])
    if not panel.series:
        return None
    if failed:
        when = sorted(failed)
        panel.series.append(Series("failed run", when, [0.0] * len(when), "points", COLORS["bad"], "x"))
    panel.hlines.append((0.0, reference_name))
    panel.title = f"Against {reference_name}"
    reach = max(5.0, *(abs(v) * 1.15 for v in values))
    panel.ylim = (-reach, reach)
    caption = (
        f"Every stored run of {host.name} ({len(host.runs)}), oldest to newest: each metric in percent better (up) or "
        f"worse (down) than {reference_name} (for latency, lower is better, so a longer latency is drawn down); "
        "red x: a failed run. The values are in the table of all runs."
    )
    return Chart(chart_id, "history", f"{host.name}: history", [panel], caption)


def better_pct(value: float, reference: float, higher_better: bool) -> float:
    """How much better value is than reference, in percent: positive better, negative worse, whichever way is good."""
    change = (value - reference) / reference * 100.0
    return change if higher_better else -change


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def tuning_chart(chart_id: str, host: Host, tune: TuneRun) -> Chart | None:
    """Capacity against each knob's values over the trials, the chosen and the starting settings marked."""
    if not tune.trials:
        return None
    panels = []
    for knob in tune.knobs[:6]:
        values = [t.settings.get(knob) for t in tune.trials if knob in t.settings]
        if not values:
            continue
        numeric = _numeric(values)
        categories = None if numeric else sorted({str(v) for v in values}, key=natural_key)

        def position(value: Any, numeric: bool = numeric, categories: list[str] | None = categories) -> float:
            return float(value) if numeric else float(categories.index(str(value)))

        panel = Panel(title=knob, xlabel=knob, ylabel="capacity (req/s)", categories=categories, ylim=(0.0, None))
        ok = [t for t in tune.trials if knob in t.settings and t.status == "ok" and t.capacity is not None]
        failed = [t for t in tune.trials if knob in t.settings and (t.status != "ok" or t.capacity is None)]
        if ok:
            panel.series.append(
                Series(
                    "trial",
                    [position(t.settings[knob]) for t in ok],
                    [t.capacity for t in ok],
                    "points",
                    COLORS["latency"],
                    "o",
                )
            )
        if failed:
            panel.series.append(
                Series(
                    "failed trial (no capacity)",
                    [position(t.settings[knob]) for t in failed],
                    [0.0] * len(failed),
                    "points",
                    COLORS["bad"],
                    "x",
                )
            )
        if (
            knob in tune.start_settings
            and tune.start_capacity is not None
            and _fits(tune.start_settings[knob], numeric, categories)
        ):
            panel.series.append(
                Series(
                    "start",
                    [position(tune.start_settings[knob])],
                    [tune.start_capacity],
                    "points",
                    COLORS["start"],
                    "D",
                )
            )
        if (
            knob in tune.chosen_settings
            and tune.chosen_capacity is not None
            and _fits(tune.chosen_settings[knob], numeric, categories)
        ):
            panel.series.append(
                Series(
                    "chosen",
                    [position(tune.chosen_settings[knob])],
                    [tune.chosen_capacity],
                    "points",
                    COLORS["chosen"],
                    "*",
                )
            )
        panels.append(panel)
    if not panels:
        return None
    return Chart(
        chart_id,
        "tuning",
        f"{host.name}: tuning run {tune.run}",
        panels,
        "Each point is a trial's capacity within the SLO; star: the chosen settings; diamond: the start; "
        "x: a failed trial.",
        sharey=True,
    )


def _fits(value: Any, numeric: bool, categories: list[str] | None) -> bool:
    if numeric:
        return _numeric([value])
    return categories is not None and str(value) in categories


def peer_chart(chart_id: str, fleet: Fleet) -> Chart | None:
    """Each host with peers: how far its first compared metric is behind (negative) or ahead of its class's median.

    A straggler on any of the compared metrics is drawn red.
    """
    if not fleet.peer_metrics:
        return None
    metric = fleet.peer_metrics[0]
    rows = [(h.name, -h.peers[metric].worse_pct, bool(h.stragglers)) for h in fleet.hosts if metric in h.peers]
    if not rows:
        return None
    panel = Panel(
        title=f"{label(metric)} against the class median",
        xlabel="percent better (+) or worse (-) than the class median",
        categories=[r[0] for r in rows],
    )
    good = [(i, r[1]) for i, r in enumerate(rows) if not r[2]]
    bad = [(i, r[1]) for i, r in enumerate(rows) if r[2]]
    if good:
        panel.series.append(
            Series("within the tolerance", [g[0] for g in good], [g[1] for g in good], "barh", COLORS["good"])
        )
    if bad:
        panel.series.append(Series("straggler", [b[0] for b in bad], [b[1] for b in bad], "barh", COLORS["bad"]))
    panel.vlines.append((-fleet.tolerance_pct, f"-{fleet.tolerance_pct:g}% tolerance"))
    return Chart(
        chart_id,
        "peers",
        "Which nodes are slower than their peers?",
        [panel],
        f"Red: a straggler, worse than its class median by more than {fleet.tolerance_pct:g}% on one of "
        f"{', '.join(label(m) for m in fleet.peer_metrics)} (its section says on which).",
    )


# ------------------------------------------------------------------ drawing


_XML_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_SIZE = re.compile(r'(<svg\b[^>]*?)\s+width="[^"]*"\s+height="[^"]*"')
# matplotlib's own group ids (axes_1, line2d_3, ...), the same in every SVG: ids must be unique in a page. Nothing
# refers to them; the ids that are referred to (clip paths, markers) are hashed with the chart's id.
_AUTO_ID = re.compile(r' id="[A-Za-z][\w.]*_\d+"')


def load_matplotlib() -> Any:
    """matplotlib with the Agg backend, set up for the report; ChartLibraryMissing when it cannot be imported."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        from matplotlib import dates, figure, ticker  # noqa: F401  (loaded here, used by SvgRenderer)
    except ImportError as exc:
        raise ChartLibraryMissing(str(exc)) from exc
    return matplotlib


class SvgRenderer:
    """Draws charts as SVG text; keeps one figure per chart shape and replaces its artists each time."""

    def __init__(self) -> None:
        self.mpl = load_matplotlib()
        self.figures: dict[tuple, Any] = {}
        self.style = {
            "svg.fonttype": "none",  # text stays text: no glyphs embedded, no font downloaded
            "axes.titley": 1.0,  # a fixed title position: the automatic one measures every tick label again
            "axes.titlepad": 4.0,
            "axes.titlesize": 10,
            "axes.labelsize": 8,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "legend.fontsize": 7,
            "font.family": "sans-serif",
            "path.simplify": False,  # draw every point the spec has
            "text.parse_math": False,  # a '$' in a host name is text, not TeX
            "axes.spines.top": False,
            "axes.spines.right": False,
        }

    def figure(self, chart: Chart) -> tuple[Any, list[Any]]:
        from matplotlib.figure import Figure

        columns = len(chart.panels)
        key = (chart.kind, columns, chart.sharey)
        if key not in self.figures:
            with self.mpl.rc_context(self.style):
                height = 2.3
                if chart.kind == "peers":
                    height = max(2.0, 0.22 * len(chart.panels[0].categories or []) + 1.0)
                width = 5.0 if chart.kind == "tuning" and columns == 1 else 10.0
                fig = Figure(figsize=(width, height))
                axes = fig.subplots(1, columns, sharey=chart.sharey, squeeze=False)[0]
                left = 0.25 if chart.kind == "peers" else 0.07 if width > 5.0 else 0.13
                fig.subplots_adjust(left=left, right=0.99, top=0.88, bottom=0.22, wspace=0.3)
                axes_width = width * (0.99 - left) / (columns + 0.3 * (columns - 1))  # inches
                for ax in axes:
                    grid = "x" if chart.kind == "peers" else "y"
                    ax.grid(True, axis=grid, alpha=0.3, linewidth=0.5)
                    ax.tick_params(axis=grid, which="both", length=0)  # the grid lines say where the ticks are
                    getattr(ax, f"{grid}axis").set_tick_params(tick1On=False)
                    # Fixed label places: placing them by the tick labels measures every tick label again.
                    ax.xaxis.set_label_coords(0.5, -0.2)
                    ax.yaxis.set_label_coords(-0.42 / axes_width, 0.5)  # 0.42 in left of the axis
            self.figures[key] = (fig, list(axes))
        return self.figures[key]

    def draw(self, chart: Chart) -> str:
        """The chart as an <svg> element (no XML prologue, no metadata), sized by its viewBox."""
        from matplotlib import dates, ticker

        with self.mpl.rc_context({**self.style, "svg.hashsalt": chart.id}):
            fig, axes = self.figure(chart)
            if chart.kind == "peers":
                height = max(2.0, 0.22 * len(chart.panels[0].categories or []) + 1.0)
                fig.set_size_inches(10.0, height)
                fig.subplots_adjust(bottom=min(0.45, 0.55 / height), top=1 - min(0.3, 0.35 / height))
            for ax, panel in zip(axes, chart.panels, strict=True):
                for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts]:
                    artist.remove()
                ax.set_xscale("linear")
                ax.set_title(panel.title, loc="left")
                ax.set_xlabel(panel.xlabel)
                ax.set_ylabel(panel.ylabel if ax is axes[0] or not chart.sharey else "")
                for number, series in enumerate(panel.series):
                    artist = self._plot(ax, series, chart.kind)
                    gid = f"{chart.id}-p{chart.panels.index(panel)}-s{number}"
                    if series.style == "barh":
                        for bar, patch in enumerate(artist.patches):
                            patch.set_gid(f"{gid}-b{bar}")
                    else:
                        artist.set_gid(gid)
                for y, _text in panel.hlines:
                    ax.axhline(y, color=COLORS["neutral"], linestyle="--", linewidth=0.8)
                for x, _text in panel.vlines:
                    ax.axvline(
                        x,
                        color=COLORS["bad"] if chart.kind == "peers" else COLORS["chosen"],
                        linestyle="--",
                        linewidth=0.8,
                    )
                self._axes_format(ax, panel, chart.kind, ticker, dates)
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        return self._inline(buffer.getvalue(), chart)

    def _plot(self, ax: Any, series: Series, kind: str) -> Any:
        if series.style == "barh":
            bars = ax.barh(series.x, series.y, color=series.color, height=0.6)
            return bars
        if series.style == "points":
            (line,) = ax.plot(
                series.x,
                series.y,
                linestyle="none",
                marker=series.marker or "o",
                color=series.color,
                markersize=9 if series.marker == "*" else 5,
                label=series.label,
                markerfacecolor="none" if kind == "cdf" else None,
            )
            return line
        style = {"line": "-", "steps": "-", "dashed": "--"}.get(series.style, "-")
        (line,) = ax.plot(
            series.x,
            series.y,
            linestyle=style,
            color=series.color,
            linewidth=1.2,
            marker=series.marker or None,
            markersize=3,
            label=series.label,
            drawstyle="steps-post" if series.style == "steps" else "default",
        )
        return line

    def _axes_format(self, ax: Any, panel: Panel, kind: str, ticker: Any, dates: Any) -> None:
        if kind == "peers":
            ax.yaxis.set_major_locator(ticker.FixedLocator(range(len(panel.categories or []))))
            ax.yaxis.set_major_formatter(ticker.FixedFormatter(panel.categories or []))
            ax.xaxis.set_major_locator(ticker.MaxNLocator(6))
            ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.relim()
            ax.autoscale_view()
            ax.set_ylim(len(panel.categories or []) - 0.5, -0.5)
            return
        if panel.xdates:
            locator = dates.AutoDateLocator(minticks=2, maxticks=5)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
        elif panel.categories is not None:
            ax.xaxis.set_major_locator(ticker.FixedLocator(range(len(panel.categories))))
            ax.xaxis.set_major_formatter(ticker.FixedFormatter(panel.categories))
        else:
            ax.xaxis.set_major_locator(ticker.MaxNLocator(4))
            ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        if panel.yticks is not None:
            ax.yaxis.set_major_locator(ticker.FixedLocator([t[0] for t in panel.yticks]))
            ax.yaxis.set_major_formatter(ticker.FixedFormatter([t[1] for t in panel.yticks]))
        else:
            ax.yaxis.set_major_locator(ticker.MaxNLocator(4))
            ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.relim()
        ax.autoscale_view()
        if panel.categories is not None:
            ax.set_xlim(-0.5, len(panel.categories) - 0.5)
        low, high = panel.ylim
        if low is not None or high is not None:
            current = ax.get_ylim()
            ax.set_ylim(low if low is not None else current[0], high if high is not None else current[1])

    @staticmethod
    def _inline(svg: str, chart: Chart) -> str:
        svg = _XML_PROLOGUE.sub("", svg, count=1)
        svg = _METADATA.sub("", svg, count=1)
        svg = _SIZE.sub(r"\1", svg, count=1)
        svg = _AUTO_ID.sub("", svg)
        return svg.replace("<svg ", f'<svg class="chart-svg" id="{chart.id}-svg" role="img" ', 1)


# ------------------------------------------------------------------ drawing many


# Below this many charts one process draws them all: a second one costs more than it saves.
PARALLEL_FROM = 24
MAX_PROCESSES = 4


def draw_all(charts: Sequence[Chart], processes: int | None = None) -> dict[str, str]:
    """Every chart's SVG by id; many charts are drawn by forked processes, this one among them.

    Before the fork this process creates a figure of each shape and draws one chart of each kind, so every child
    starts with matplotlib loaded, its fonts measured and its figures made; each child draws every n-th chart and
    sends back the SVG text over a pipe. A child that fails or dies fails the whole drawing, saying so.
    """
    renderer = SvgRenderer()
    count = min(processes or os.cpu_count() or 1, MAX_PROCESSES)
    if len(charts) < PARALLEL_FROM or count < 2:
        return {chart.id: renderer.draw(chart) for chart in charts}
    svgs: dict[str, str] = {}
    first_of_kind: dict[tuple, Chart] = {}
    for chart in charts:
        first_of_kind.setdefault((chart.kind, len(chart.panels), chart.sharey), chart)
    for chart in first_of_kind.values():
        svgs[chart.id] = renderer.draw(chart)
    rest = [chart for chart in charts if chart.id not in svgs]
    context = multiprocessing.get_context("fork")
    children = []
    for index in range(1, count):
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(target=_draw_into, args=(renderer, rest[index::count], writer), daemon=True)
        child.start()
        writer.close()
        children.append((child, reader))
    try:
        svgs.update((chart.id, renderer.draw(chart)) for chart in rest[0::count])
        for child, reader in children:
            try:
                status, payload = reader.recv()
            except EOFError:
                child.join(10)
                raise RuntimeError(f"a chart drawing process died (exit status {child.exitcode})") from None
            if status != "ok":
                raise RuntimeError(f"a chart drawing process failed: {payload}")
            svgs.update(payload)
    finally:
        for child, reader in children:
            reader.close()
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join(10)
    return svgs


def _draw_into(renderer: SvgRenderer, charts: Sequence[Chart], writer: Any) -> None:
    """In a forked child: draw the charts with the renderer it inherited and send back the SVG (or the error)."""
    try:
        writer.send(("ok", {chart.id: renderer.draw(chart) for chart in charts}))
    except Exception as exc:  # sent to the parent, which fails with it
        writer.send(("error", f"{type(exc).__name__}: {str(exc)[:500]}"))
    finally:
        writer.close()
