# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report as one self-contained HTML page: tables, inline SVG charts, no script, nothing fetched.

Runs on the controller only (module vllm_fleet_report). Every value that reaches the page (host names, flags,
failure messages, knob values) goes through `esc`; the charts come from module_utils/vllm_fleet_charts.py.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ansible.module_utils.vllm_fleet_charts import (
    Chart,
    cdf_chart,
    history_chart,
    load_chart,
    peer_chart,
    tuning_chart,
)
from ansible.module_utils.vllm_fleet_results import (
    HISTORY_METRICS,
    LATENCIES,
    TABLE_METRICS,
    Change,
    Fleet,
    Host,
    Peer,
    Result,
    change_text,
    change_words,
    cpu_text,
    hardware,
    higher_is_better,
    label,
    number_text,
    peer_text,
    shown_changes,
    slower_than_baseline,
    unit,
    worst_peer,
)

STYLE = """
:root { --good: #1a7f37; --bad: #c62828; --muted: #666; --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0 auto;
       max-width: 1320px; padding: 16px 24px 48px; color: #1f2328; line-height: 1.4; font-size: 14px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta, .caption, .muted { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 7px; vertical-align: top; text-align: left; }
th { background: var(--bg); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.num.wrap, #fleet-table th { white-space: normal; }
.better { color: var(--good); } .worse { color: var(--bad); } .unchanged { color: var(--muted); }
.noise { opacity: 0.75; font-style: italic; }
.strong { font-weight: 700; }
.chip { display: inline-block; white-space: nowrap; margin: 0 6px 1px 0; }
#fleet-table .chip { display: block; margin: 0; }
#fleet-table { width: 100%; } #fleet-table td { font-size: 12px; } #fleet-table td:nth-child(2) { min-width: 190px; }
.small { color: var(--muted); font-size: 11px; } a.host { white-space: nowrap; font-weight: 600; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-weight: 700; font-size: 12px; color: #fff; }
.pass { background: var(--good); } .fail { background: var(--bad); } .straggler { background: #8a4b00; }
.noisy { background: #6e7781; }
.answers { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
.answer { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; background: var(--bg); }
.answer h3 { margin-top: 0; } .answer ul { margin: 0; padding-left: 18px; }
figure.chart { margin: 8px 0 14px; } figure.chart svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; }
.legend { font-size: 12px; margin: 0 0 2px 40px; } .key { margin-right: 14px; white-space: nowrap; }
section.host { border-top: 2px solid var(--line); margin-top: 24px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; font-size: 13px; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; word-break: break-word; }
code { font-size: 12px; background: var(--bg); padding: 0 3px; }
nav a { margin-right: 10px; white-space: nowrap; }
details summary { cursor: pointer; color: #0550ae; }
tr.chosen td { background: #f3e8ff; } tr.failed td { color: var(--muted); }
pre { background: var(--bg); padding: 8px; overflow-x: auto; font-size: 12px; }
@media print { details { display: block; } }
"""


def esc(value: Any) -> str:
    """Text made safe for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def slug(index: int, name: str) -> str:
    """An element id for a host: its position, then its name's letters and digits (ids must be unique)."""
    return f"host-{index}-" + (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40] or "x")


@dataclass
class DrawnChart:
    chart: Chart
    svg: str


def change_span(
    text: str, change_pct: float, higher_better: bool, strong: bool = True, noise: bool = False, title: str = ""
) -> str:
    """A change with its sign and better/worse, by colour and by word."""
    _signed, word = change_words(change_pct, higher_better)
    classes = ["chip", word]
    if strong:
        classes.append("strong")
    if noise:
        classes.append("noise")
    tip = f' title="{esc(title)}"' if title else ""
    return f'<span class="{" ".join(classes)}"{tip}>{esc(text)}</span>'


def change_chip(change: Change, compact: bool = False) -> str:
    """A change against the baseline; compact (the table) leaves '(within noise)' to the italics and the tooltip."""
    text = change.brief()
    if compact:
        signed, word = change_words(change.change_pct, change.higher_is_better)
        text = f"{label(change.metric)} {signed} {word}"
    return change_span(
        text,
        change.change_pct,
        change.higher_is_better,
        strong=change.significant is not False,
        noise=change.significant is False,
        title=f"{label(change.metric)}: {change.text}",
    )


def peer_chip(peer: Peer, tolerance: float, with_median: bool = False) -> str:
    text = peer.brief() + (f" than class median {number_text(peer.median)}" if with_median else "")
    tip = (
        f"{label(peer.metric)} {number_text(peer.value)} against the class median {number_text(peer.median)}; "
        f"a straggler beyond {tolerance:g}% worse"
    )
    return change_span(
        text, peer.change_pct, higher_is_better(peer.metric), strong=peer.straggler, noise=not peer.straggler, title=tip
    )


def badge(host: Host) -> str:
    out = '<span class="badge pass">PASS</span>' if host.passed() else '<span class="badge fail">FAIL</span>'
    if host.latest is not None and host.latest.too_noisy():
        out += ' <span class="badge noisy" title="too noisy to judge against the baseline">NOT JUDGED</span>'
    if host.stragglers:
        out += ' <span class="badge straggler">STRAGGLER</span>'
    return out


def change_cell(host: Host) -> str:
    run = host.latest
    tp = run.throughput if run else None
    if host.baseline_recorded() or tp is None or not tp.changes:
        return esc(change_text(host))
    return "".join(change_chip(c, compact=True) for c in shown_changes(tp))


def peer_cell(host: Host, tolerance: float) -> str:
    if not host.peers:
        return esc(peer_text(host, tolerance))
    if host.stragglers:
        return "".join(peer_chip(p, tolerance) for p in host.stragglers)
    worst = worst_peer(host)
    return f'<span class="muted">within {tolerance:g}%; furthest: </span>' + peer_chip(worst, tolerance)


def fleet_table(fleet: Fleet, ids: dict[str, str]) -> str:
    head = [
        "Host",
        "Hardware",
        "vLLM",
        "req/s",
        "tok/s",
        "p99 TTFT ms",
        "median TPOT ms",
        "Change vs baseline",
        "Peer deviation",
        "Capacity in SLO req/s",
        "Result",
    ]
    numeric = {3, 4, 5, 6, 9}
    rows = []
    for host in fleet.hosts:
        run = host.latest
        tp = run.throughput if run else None
        row = run.row if run and run.row else {}
        context = host.context()
        capacity, source = host.capacity()
        version = context.get("vllm_version") or row.get("version") or (tp.server_version if tp else None) or "-"
        when = run.when if run else None
        cells = [
            f'<a class="host" href="#{ids[host.name]}">{esc(host.name)}</a><br><span class="small">'
            f"{esc(f'{when:%Y-%m-%d %H:%M} UTC' if when else 'no run')}</span>",
            f'{esc(hardware(context, row))}<br><span class="small">{esc(cpu_text(context, row))}'
            + (f", driver {esc(context.get('driver_version'))}" if context.get("driver_version") else "")
            + "</span>",
            esc(version),
            *[esc(number_text(tp.metric(m) if tp else None)) for m in TABLE_METRICS],
            change_cell(host),
            peer_cell(host, fleet.tolerance_pct),
            esc(number_text(capacity)) + (f'<br><span class="small">{esc(source)}</span>' if source else ""),
            badge(host),
        ]
        tds = "".join(
            (f'<td class="num wrap">{c}</td>' if i == 9 else f'<td class="num">{c}</td>')
            if i in numeric
            else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        rows.append(f'<tr data-host="{esc(host.name)}">{tds}</tr>')
    ths = "".join(
        f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>" for i, h in enumerate(head)
    )
    return f'<table id="fleet-table"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def answers(fleet: Fleet, ids: dict[str, str]) -> str:
    def link(host: Host) -> str:
        return f'<a href="#{ids[host.name]}">{esc(host.name)}</a>'

    stragglers = [
        f"<li>{link(h)}: "
        + "".join(peer_chip(p, fleet.tolerance_pct, with_median=True) for p in h.stragglers)
        + "</li>"
        for h in fleet.hosts
        if h.stragglers
    ]
    alone = [h for h in fleet.hosts if h.peer_class is not None and len(h.peer_class.hosts) < 2]
    peers_note = (
        f'<p class="muted">No peers to compare with (class of one or hardware unknown): '
        f"{', '.join(link(h) for h in alone)}</p>"
        if alone
        else ""
    )
    slower = [
        f"<li>{link(h)}: " + "".join(change_chip(c) for c in slower_than_baseline(h)) + "</li>"
        for h in fleet.hosts
        if slower_than_baseline(h)
    ]
    carry, measured = [], []
    for host in fleet.hosts:
        capacity, source = host.capacity()
        tp = host.latest.throughput if host.latest else None
        if capacity is not None:
            carry.append(
                f"<li>{link(host)}: <b>{esc(number_text(capacity))} req/s</b> within the SLO "
                f'<span class="muted">({esc(source)})</span></li>'
            )
        elif tp is not None and tp.metric("request_throughput") is not None:
            measured.append(f"{link(host)} {esc(number_text(tp.metric('request_throughput')))}")
    if measured:
        carry.append(
            f'<li><span class="muted">No capacity run; the throughput run served (req/s):</span> '
            f"{', '.join(measured)}</li>"
        )
    none = "<li>none</li>"
    return (
        '<div class="answers">'
        f'<div class="answer" id="answer-peers"><h3>Slower than their peers</h3><p class="muted">Worse than their '
        f"class median by more than {fleet.tolerance_pct:g}%</p><ul>{''.join(stragglers) or none}</ul>"
        f"{peers_note}</div>"
        f'<div class="answer" id="answer-baseline"><h3>Slower than they were</h3><p class="muted">Against each '
        f"host's baseline</p><ul>{''.join(slower) or none}</ul></div>"
        f'<div class="answer" id="answer-capacity"><h3>What each can carry</h3><p class="muted">Capacity within the '
        f"SLO where measured</p><ul>{''.join(carry) or none}</ul></div>"
        "</div>"
    )


def classes_table(fleet: Fleet, ids: dict[str, str]) -> str:
    metrics = fleet.peer_metrics
    head = "".join(f'<th class="num">{esc(label(m))} (class median)</th>' for m in metrics)
    rows = []
    for peer_class in fleet.classes:
        members = ", ".join(f'<a href="#{ids[h]}">{esc(h)}</a>' for h in peer_class.hosts)
        if not peer_class.known:
            note = "no peers: the hardware is unknown"
        elif len(peer_class.hosts) < 2:
            note = "no peers: a class of one host"
        else:
            note = f"{len(peer_class.hosts)} peers"
        medians = "".join(f'<td class="num">{esc(number_text(peer_class.medians.get(m)))}</td>' for m in metrics)
        settings = f"<br><code>{esc(peer_class.settings)}</code>" if peer_class.settings else ""
        rows.append(
            f"<tr><td>{peer_class.index}</td><td>{esc(peer_class.label)}{settings}</td><td>{members}</td>"
            f"<td>{esc(note)}</td>{medians}</tr>"
        )
    if not rows:
        return '<p class="muted">No host has numbers to compare.</p>'
    return (
        f'<table id="classes-table"><thead><tr><th>Class</th><th>Hardware, software, settings</th><th>Hosts</th>'
        f"<th>Peers</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def stats_table(result: Result, title: str) -> str:
    stats = ("mean", "median", "std", "min", "max", "p90", "p99")
    head = "".join(f'<th class="num">{esc(s)}</th>' for s in stats)
    rows = []
    for key, name in LATENCIES:
        cells = "".join(f'<td class="num">{esc(number_text(result.metric(f"{s}_{key}_ms")))}</td>' for s in stats)
        rows.append(f"<tr><th>{esc(name)} ms</th>{cells}</tr>")
    count = f"{result.completed} requests" + (f" over {result.rounds} rounds" if result.rounds > 1 else "")
    return (
        f'<table class="stats" data-kind="{esc(result.kind)}"><caption class="muted">{esc(title)}: {esc(count)}'
        f"</caption><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


SWATCH = {"line": "\u2501\u2501", "steps": "\u2501\u2501", "dashed": "\u254d\u254d", "barh": "\u2588"}
MARKER = {"o": "\u25cb", "s": "\u25a1", "^": "\u25b3", "D": "\u25c6", "*": "\u2605", "x": "\u2715"}


def legend(chart: Chart) -> str:
    keys = []
    for text, colour, style, marker in chart.legend():
        hollow = chart.kind == "cdf"  # the CDFs' percentile marks are open circles, other points filled
        sign = (
            (MARKER.get(marker, "\u25cf") if hollow or marker != "o" else "\u25cf")
            if style == "points"
            else (SWATCH.get(style, "\u2501\u2501"))
        )
        keys.append(f'<span class="key"><span style="color:{esc(colour)}">{sign}</span> {esc(text)}</span>')
    return f'<div class="legend">{"".join(keys)}</div>' if keys else ""


def figure(drawn: DrawnChart | None) -> str:
    if drawn is None:
        return ""
    chart = drawn.chart
    return (
        f'<figure class="chart" id="{esc(chart.id)}" data-kind="{esc(chart.kind)}" data-points="{chart.points()}">'
        f"<figcaption><b>{esc(chart.title)}</b></figcaption>{drawn.svg}{legend(chart)}"
        f"<figcaption>{esc(chart.caption)}</figcaption></figure>"
    )


def history_table(host: Host) -> str:
    head = "".join(f'<th class="num">{esc(label(m))}</th>' for m in HISTORY_METRICS)
    rows = []
    for run in reversed(host.runs):
        tp = run.throughput
        cells = "".join(
            f'<td class="num">{esc(number_text(tp.metric(m) if tp else None))}</td>' for m in HISTORY_METRICS
        )
        fmt = ", ".join(sorted({r.fmt for r in run.results})) or "-"
        state = "PASS" if run.passed() else "FAIL"
        rows.append(f"<tr><td>{esc(run.stamp)}</td>{cells}<td>{state}</td><td>{esc(fmt)}</td></tr>")
    return (
        f'<details><summary>All {len(host.runs)} runs</summary><table class="history"><thead><tr><th>Run</th>'
        f"{head}<th>Result</th><th>Result format</th></tr></thead><tbody>{''.join(rows)}</tbody></table></details>"
    )


def tuning_section(host: Host, tune_charts: Sequence[DrawnChart | None]) -> str:
    parts = []
    for tune, drawn in zip(reversed(host.tuning), reversed(tune_charts), strict=True):
        knobs = tune.knobs
        head = "".join(f"<th>{esc(k)}</th>" for k in knobs)
        rows = []
        for trial in tune.trials:
            chosen = trial.status == "ok" and trial.settings == tune.chosen_settings
            classes = "chosen" if chosen else "failed" if trial.status != "ok" else ""
            cells = "".join(f"<td>{esc(trial.settings.get(k, '-'))}</td>" for k in knobs)
            mark = " (chosen)" if chosen else ""
            rows.append(
                f'<tr class="{classes}"><td class="num">{trial.index}</td>{cells}<td>{esc(trial.status)}{mark}'
                f'</td><td class="num">{esc(number_text(trial.capacity))}</td><td>{esc(trial.reason or "")}'
                "</td></tr>"
            )
        slo = ", ".join(f"{k} {v}" for k, v in tune.slo.items()) or "-"
        start = ", ".join(f"{k}={v}" for k, v in tune.start_settings.items()) or "-"
        chosen = ", ".join(f"{k}={v}" for k, v in tune.chosen_settings.items()) or "-"
        gain = ""
        if tune.start_capacity and tune.chosen_capacity is not None:
            pct = (tune.chosen_capacity - tune.start_capacity) / tune.start_capacity * 100.0
            signed, _word = change_words(pct, True)
            gain = " " + change_span(f"{signed} {_word} than the start", pct, True)
        parts.append(
            f'<h3>Tuning run {esc(tune.run)}</h3><dl class="facts"><dt>SLO</dt><dd>{esc(slo)}</dd>'
            f"<dt>Start</dt><dd>{esc(start)}: capacity {esc(number_text(tune.start_capacity))} req/s</dd>"
            f"<dt>Chosen</dt><dd><b>{esc(chosen)}</b>: capacity {esc(number_text(tune.chosen_capacity))} req/s{gain}"
            f"</dd></dl>{figure(drawn)}"
            f'<table class="trials"><thead><tr><th class="num">Trial</th>{head}<th>Status</th>'
            f'<th class="num">Capacity (req/s)</th><th>Reason</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        )
    return "".join(parts)


def host_section(fleet: Fleet, host: Host, host_id: str, charts: dict[str, Any]) -> str:
    run = host.latest
    tp = run.throughput if run else None
    lat = run.latency if run else None
    context = host.context()
    row = run.row if run and run.row else {}
    flags = context.get("flags")
    facts = [
        ("Hardware", hardware(context, row)),
        ("CPU", cpu_text(context, row)),
        ("Driver", context.get("driver_version") or "-"),
        ("vLLM", f"{context.get('vllm_version') or row.get('version') or '-'} ({context.get('vllm_variant') or '?'})"),
        ("Model", (tp.workload.get("model") or tp.model) if tp else "-"),
        (
            "Run",
            f"{run.stamp} ({', '.join(sorted({r.fmt for r in run.results})) or 'no result files'})" if run else "-",
        ),
        ("Baseline", change_text(host)),
    ]
    if tp is not None and tp.context_changes:
        facts.append(("Since the baseline", ", ".join(tp.context_changes)))
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    if isinstance(flags, list) and flags:
        dl += f"<dt>Flags</dt><dd><code>{esc(' '.join(str(f) for f in flags))}</code></dd>"
    out = [
        f'<section class="host" id="{host_id}" data-host="{esc(host.name)}"><h2>{esc(host.name)} {badge(host)}</h2>',
        f'<dl class="facts">{dl}</dl>',
    ]
    failures = host.failures()
    if failures and not host.passed():
        out.append("<h3>Failures</h3><ul>" + "".join(f"<li>{esc(f)}</li>" for f in failures) + "</ul>")
    if run is not None and run.too_noisy():
        out.append(
            "<h3>Not judged: too noisy</h3><ul>" + "".join(f"<li>{esc(t)}</li>" for t in run.too_noisy()) + "</ul>"
        )
    out.append("<h3>Peers</h3>")
    if host.peers:
        prow = "".join(
            f'<tr><td>{esc(label(p.metric))}</td><td class="num">{esc(number_text(p.value))}</td>'
            f'<td class="num">{esc(number_text(p.median))}</td><td>{peer_chip(p, fleet.tolerance_pct)}</td></tr>'
            for p in host.peers.values()
        )
        others = ", ".join(h for h in host.peer_class.hosts if h != host.name)
        out.append(
            f'<p>Class {host.peer_class.index}, with {esc(others)}.</p><table class="peers"><thead><tr>'
            f'<th>Metric</th><th class="num">Value</th><th class="num">Class median</th><th>Deviation</th></tr>'
            f"</thead><tbody>{prow}</tbody></table>"
        )
    else:
        out.append(f"<p>{esc(peer_text(host, fleet.tolerance_pct))}</p>")
    out.append("<h3>Latency</h3>")
    tables = [stats_table(r, t) for r, t in ((lat, "Latency run"), (tp, "Throughput run")) if r and r.has_numbers]
    out.append("".join(tables) or '<p class="muted">No numbers in this run.</p>')
    out.append(figure(charts.get("cdf")))
    if charts.get("load") is not None:
        out.append("<h3>Throughput and latency against load</h3>" + figure(charts["load"]))
    out.append("<h3>History</h3>")
    out.append(figure(charts.get("history")) or '<p class="muted">No stored run with numbers.</p>')
    if host.runs:
        out.append(history_table(host))
    if host.tuning:
        out.append("<h3>Tuning</h3>" + tuning_section(host, charts.get("tuning", [])))
    out.append("</section>")
    return "".join(out)


def host_charts(host: Host, host_id: str) -> dict[str, Any]:
    """Every chart of one host's section, as specs (not drawn yet)."""
    run = host.latest
    capacity, _source = host.capacity()
    source = run.step_source() if run else None
    charts: dict[str, Any] = {
        "cdf": cdf_chart(f"{host_id}-cdf", host),
        "history": history_chart(f"{host_id}-history", host),
        "load": load_chart(
            f"{host_id}-load", f"{host.name}: run {run.stamp}", source.steps, source.capacity, source.capacity_load
        )
        if source is not None
        else None,
        "tuning": [tuning_chart(f"{host_id}-tune-{i}", host, t) for i, t in enumerate(host.tuning)],
    }
    if charts["load"] is None and host.tuning:
        tune = host.tuning[-1]
        trial = tune.chosen_trial()
        if trial is not None and trial.steps:
            charts["load"] = load_chart(
                f"{host_id}-load",
                f"{host.name}: chosen trial of tuning run {tune.run}",
                trial.steps,
                trial.capacity if trial.capacity is not None else capacity,
                trial.capacity_load,
            )
    return charts


def all_charts(fleet: Fleet, ids: dict[str, str]) -> tuple[Chart | None, dict[str, dict[str, Any]]]:
    per_host = {host.name: host_charts(host, ids[host.name]) for host in fleet.hosts}
    return peer_chart("fleet-peers", fleet), per_host


def chart_list(peers: Chart | None, per_host: dict[str, dict[str, Any]]) -> list[Chart]:
    charts = [peers] if peers is not None else []
    for entry in per_host.values():
        for key in ("cdf", "load", "history"):
            if entry.get(key) is not None:
                charts.append(entry[key])
        charts.extend(c for c in entry.get("tuning", []) if c is not None)
    return charts


def page(
    fleet: Fleet,
    generated: str,
    text: Sequence[str],
    draw: Callable[[Sequence[Chart]], dict[str, str]],
    title: str = "vLLM fleet report",
) -> tuple[str, list[Chart]]:
    """(the page, the charts on it); draw turns charts into their SVG by chart id."""
    ids = {host.name: slug(i, host.name) for i, host in enumerate(fleet.hosts, 1)}
    peers, per_host = all_charts(fleet, ids)
    charts = chart_list(peers, per_host)
    svgs = draw(charts)

    def drawn(chart: Chart | None) -> DrawnChart | None:
        return DrawnChart(chart, svgs[chart.id]) if chart is not None else None

    sections = []
    for host in fleet.hosts:
        entry = per_host[host.name]
        drawn_entry = {
            "cdf": drawn(entry["cdf"]),
            "history": drawn(entry["history"]),
            "load": drawn(entry["load"]),
            "tuning": [drawn(c) for c in entry["tuning"]],
        }
        sections.append(host_section(fleet, host, ids[host.name], drawn_entry))
    passed = sum(1 for h in fleet.hosts if h.passed())
    current = sum(1 for h in fleet.hosts if h.current)
    scope = f"{current} verified in this run, the others from their newest stored run; " if current else ""
    nav = "".join(f'<a href="#{ids[h.name]}">{esc(h.name)}</a>' for h in fleet.hosts)
    notes = "".join(f"<li>{esc(n)}</li>" for n in fleet.notes)
    body = [
        f'<header><h1>{esc(title)}</h1><p class="meta">Generated {esc(generated)} from <code>{esc(fleet.root)}</code>'
        f": {len(fleet.hosts)} hosts ({esc(scope)}{passed} pass, {len(fleet.hosts) - passed} fail). "
        f"Peer tolerance {fleet.tolerance_pct:g}% on {esc(', '.join(label(m) for m in fleet.peer_metrics))}.</p>"
        f"<nav>{nav}</nav></header>",
        answers(fleet, ids),
        f'<section id="fleet"><h2>Fleet</h2>{fleet_table(fleet, ids)}<p class="caption">Changes carry their sign and '
        "say better or worse: for throughput higher is better, for latency lower. Italic: within the rounds' noise. "
        "Peer deviation: the host against its class's median.</p></section>",
        f'<section id="peers"><h2>Peer classes</h2>{classes_table(fleet, ids)}{figure(drawn(peers))}</section>',
        *sections,
    ]
    if notes:
        body.append(f'<section id="notes"><h2>Notes</h2><ul>{notes}</ul></section>')
    body.append(
        '<section id="text"><h2>As text</h2><details><summary>The terminal summary</summary><pre>'
        + esc("\n".join(text))
        + "</pre></details></section>"
    )
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{esc(title)}, {esc(generated)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return document, charts


__all__ = ["esc", "page", "slug", "unit"]
