#!/usr/bin/python
# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module vllm_fleet_report: the fleet's results folder as one HTML page, a fleet table and text."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_fleet_report
short_description: Build the fleet report (one offline HTML page), the fleet table and a text summary from the results
version_added: "1.3.0"
description:
  - Reads the results folder that verification fills (O(results_dir)) and answers three questions for the whole
    fleet, on one page and as text - which nodes are slower than their peers, which got slower than they were,
    and what each node can carry.
  - Writes C(report.html) and a dated copy C(report-<stamp>.html) into O(results_dir). The page is self-contained
    and opens offline - its charts are inline SVG drawn by matplotlib with text as text, and it has no script,
    no font and no link to anything outside itself.
  - 'The page has: the fleet table (host, hardware, vLLM version, req/s, tok/s, p99 TTFT, median TPOT, change
    against the baseline, peer deviation, capacity within the SLO, pass or fail; each change with its sign and
    marked better or worse by colour and word, for throughput higher being better and for latency lower); the peer
    classes; per host the latency distributions of the newest run as CDFs (TTFT, TPOT, ITL, E2E) with p50, p90 and
    p99 marked, the latency run''s mean, median, standard deviation, minimum and maximum, throughput and latency
    against load where a run has load steps, the history of its headline metrics over every stored run, and its
    tuning runs (the trials as a table, capacity against each knob''s values with the chosen settings marked).'
  - 'Peers: hosts of one hardware class - the same GPU model and count (or CPU model and vCPUs), driver, vLLM variant
    and version, model, settings (the flags in force, without C(--host), C(--port), C(--served-model-name)) and
    workload - compared on their newest throughput run. A host worse than its class''s median by more than
    O(peer_tolerance_pct) on one of O(peer_metrics) is a straggler: flagged on the page, in the table and the text,
    and with O(fail_on_straggler) a failed host of this run (RV(fleet) C(passed) false, a failure naming the host,
    the metric, its value and the class median). A class of one host has no peers, and the report says so; so has
    a host whose result predates the hardware context (result format 1.0).'
  - Reads every result format vllm_benchmark wrote - 1.0 (metrics only), 1.1 (with context), 2 (rounds, verdicts,
    workload) and 2 with per-request C(samples). A result without samples gets a CDF drawn through its stored
    percentiles, dashed and said so. A file that cannot be read is a note on the page, never a failure.
  - 'Results folder layout read: C(<host>/<YYYYmmddTHHMMSSZ>/latency.json), C(throughput.json) and C(capacity.json)
    (one verification run); C(<host>/baseline-throughput.json); C(tune/<host>/<run>/trials.json) (one tuning run);
    C(fleet-<stamp>.json) (a verification''s fleet table, whose newest one gives the pass or fail of hosts that
    failed before any result was written, when O(fleet) is not given). C(rolling/) and C(tune/) are not hosts.'
  - 'Load steps (the contract for capacity runs): a result file (C(capacity.json), or any result) may hold
    C(steps), a list of objects with C(load) (the load measured: requests in flight for vllm_benchmark''s
    C(mode=capacity), which writes it), C(goodput) or C(request_goodput) (req/s within the SLO),
    C(attainment) or C(slo_attainment) (the fraction within the SLO, 0 to 1), C(request_throughput) (req/s
    served), C(p50_ttft_ms), C(p99_ttft_ms), C(p50_tpot_ms), C(p99_tpot_ms); C(capacity), the goodput in req/s
    at the highest load carried within the SLO (null when none was); and C(capacity_load), that load. Throughput
    and latency are drawn against the load, the capacity and its load marked.'
  - 'Tuning runs (the contract for C(results/tune/<host>/<run>/trials.json), as role vllm_tune writes it): an
    object with C(host) (str), C(run) (str), C(knobs) (list of knob names), C(slo) (object, shown as is) and
    C(slo_attainment), C(start) and C(chosen) (each C({"settings": {knob: value} or null, "capacity": float or
    null})), C(trials) (list of C({"index": int, "settings": {knob: value}, "status": "ok" or "failed",
    "capacity": float or null, "reason": str or null, "details": {"capacity_load": number, "steps": [load steps
    as above]}}); C(steps) and C(capacity_load) may also be a trial''s own keys). Knob values may be numbers or
    text (drawn as categories). Other keys are ignored.'
  - 'Runs on the controller (C(delegate_to: localhost)) under the Python that runs Ansible there; needs matplotlib
    (C(requirements.txt)) and fails saying so when it is missing. The hosts need nothing.'
author:
  - vllm-fleet contributors
options:
  results_dir:
    description: The results folder (role vllm_verify's C(vllm_verify_results_dir)).
    type: path
    required: true
  fleet:
    description:
      - This verification's fleet table rows (role vllm_verify's C(vllm_verify_summary) of each host). Their
        hosts are this run's; each row decides its host's pass or fail, and the rows come back enriched in
        RV(fleet).
      - Without it the newest C(fleet-<stamp>.json) in O(results_dir) gives the rows, and RV(fleet) has every host.
    type: list
    elements: dict
    default: []
  peer_tolerance_pct:
    description: How much worse than its class's median, in percent, a host's metric may be before it is a straggler.
    type: float
    default: 10
  peer_metrics:
    description: The throughput run's metrics peers are compared on (keys of vllm_benchmark's C(metrics)).
    type: list
    elements: str
    default: [request_throughput, total_token_throughput, median_ttft_ms, median_tpot_ms]
  fail_on_straggler:
    description:
      - A straggler among the hosts of O(fleet) is a failed host (RV(fleet) C(passed) false, its failure in
        C(failures) and RV(straggler_failures)). Hosts known only from earlier runs are flagged, never failed.
    type: bool
    default: false
  stamp:
    description:
      - The dated copy's stamp, C(YYYYmmddTHHMMSSZ) (the fleet table's, so the two match); now when omitted.
    type: str
  title:
    description: The page's title.
    type: str
    default: vLLM fleet report
notes:
  - Check mode reads the results and returns the table and the text, drawing and writing nothing.
  - C(changed) is true when the page was written.
  - Drawing is spread over up to 4 processes when there are many charts; 50 hosts of 20 runs each take a few
    seconds on 2 cores.
seealso:
  - module: vllm_benchmark
    description: Writes the result files this module reads.
"""

EXAMPLES = r"""
- name: Build the fleet report from the results folder alone
  vllm_fleet_report:
    results_dir: "{{ playbook_dir }}/../results"
  delegate_to: localhost
  register: _vllm_report

- name: Print it as text
  ansible.builtin.debug:
    msg: "{{ _vllm_report.text }}"

- name: After a verification, with its rows, failing stragglers
  vllm_fleet_report:
    results_dir: "{{ vllm_verify_results_dir }}"
    fleet: "{{ rows }}"
    peer_tolerance_pct: 10
    fail_on_straggler: true
    stamp: "20260301T120000Z"
  delegate_to: localhost
"""

RETURN = r"""
report:
  description: The page written (C(results_dir/report.html)); null in check mode or when there are no results.
  returned: always
  type: str
report_copy:
  description: Its dated copy, C(results_dir/report-<stamp>.html); null when none was written.
  returned: always
  type: str
fleet:
  description:
    - A row per host of O(fleet) (every host when O(fleet) is empty), with the keys of the role's summary
      (host, accelerator, cpu, version, request_throughput, total_token_throughput, p99_ttft_ms, median_tpot_ms,
      change_vs_baseline, change_vs_baseline_text, baseline_recorded, failures, passed, results, ...) and
      C(run), C(peer_class), C(peer_class_label), C(peers), C(peer_deviation) (per metric C(value),
      C(class_median), C(change_pct), C(worse_pct), C(straggler)), C(peer_deviation_text), C(straggler),
      C(capacity) and C(capacity_source).
  returned: always
  type: list
  elements: dict
markdown:
  description: The fleet table of RV(fleet) as Markdown, with the peer deviation and capacity columns.
  returned: always
  type: str
text:
  description:
    - The report as labelled lines for the terminal - the counts, the stragglers, the hosts slower than their
      baseline, the capacities, then per host its line and its latency, history and tuning lines.
  returned: always
  type: list
  elements: str
stragglers:
  description: Every straggler - C(host), C(metric), C(value), C(class_median), C(change_pct), C(text).
  returned: always
  type: list
  elements: dict
straggler_failures:
  description: With O(fail_on_straggler), one line per straggler of O(fleet), naming the host, metric, value and
    class median; empty otherwise.
  returned: always
  type: list
  elements: str
  sample: ["node-3: request_throughput 80.10 req/s is 15.7% below its class median 95.00 req/s (worse by more than
    the peer tolerance of 10%)"]
classes:
  description: The peer classes - C(index), C(label), C(settings), C(hosts), C(medians).
  returned: always
  type: list
  elements: dict
charts:
  description: How many charts the page has.
  returned: always
  type: int
build_s:
  description: Seconds the report took to build (reading, drawing, writing).
  returned: always
  type: float
notes:
  description: Files that could not be read, and parts of them left out.
  returned: always
  type: list
  elements: str
"""

import os
import re
import sys
import time
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_bench_checks import HEADLINE_METRICS
from ansible.module_utils.vllm_files import write_text_atomic
from ansible.module_utils.vllm_fleet_charts import ChartLibraryMissing, draw_all, load_matplotlib
from ansible.module_utils.vllm_fleet_html import page
from ansible.module_utils.vllm_fleet_results import (
    DEFAULT_PEER_METRICS,
    STAMP,
    Fleet,
    build,
    host_row,
    markdown_table,
    text_lines,
)


def argument_spec() -> dict[str, Any]:
    return {
        "results_dir": {"type": "path", "required": True},
        "fleet": {"type": "list", "elements": "dict", "default": []},
        "peer_tolerance_pct": {"type": "float", "default": 10},
        "peer_metrics": {"type": "list", "elements": "str", "default": list(DEFAULT_PEER_METRICS)},
        "fail_on_straggler": {"type": "bool", "default": False},
        "stamp": {"type": "str"},
        "title": {"type": "str", "default": "vLLM fleet report"},
    }


def parameter_errors(params: dict[str, Any]) -> list[str]:
    errors = []
    if not params["peer_tolerance_pct"] >= 0:
        errors.append(f"peer_tolerance_pct must be 0 or more, got {params['peer_tolerance_pct']}")
    known = HEADLINE_METRICS["throughput"]
    for name in params["peer_metrics"]:
        if name not in known:
            errors.append(f"peer_metrics: {name!r} is not a headline metric of a throughput run: {', '.join(known)}")
    if params["stamp"] is not None and not STAMP.match(params["stamp"]):
        errors.append(f"stamp must look like 20260301T120000Z (YYYYmmddTHHMMSSZ), got {params['stamp']!r}")
    for position, row in enumerate(params["fleet"], 1):
        if not isinstance(row.get("host"), str) or not row["host"]:
            errors.append(f"fleet: row {position} has no host name")
    return errors


def stragglers_of(fleet: Fleet) -> list[dict[str, Any]]:
    return [
        {
            "host": host.name,
            "metric": peer.metric,
            "value": peer.value,
            "class_median": round(peer.median, 4),
            "change_pct": peer.change_pct,
            "text": peer.failure(host.name, fleet.tolerance_pct),
        }
        for host in fleet.hosts
        for peer in host.stragglers
    ]


def classes_of(fleet: Fleet) -> list[dict[str, Any]]:
    return [
        {
            "index": c.index,
            "label": c.label,
            "settings": c.settings,
            "hosts": c.hosts,
            "medians": {m: round(v, 4) for m, v in c.medians.items()},
        }
        for c in fleet.classes
    ]


def matplotlib_missing_message(exc: Exception) -> str:
    return (
        f"vllm_fleet_report draws its charts with matplotlib, which {sys.executable} (the Python running this module "
        f"on the controller) cannot import: {exc}. Install the controller's requirements into it (make venv, or "
        "pip install -r requirements.txt), or run the playbook with the controller venv's ansible-playbook "
        "(.venv/bin/ansible-playbook), whose Python runs tasks delegated to localhost."
    )


def run(module: AnsibleModule) -> None:
    params = module.params
    started = time.perf_counter()
    errors = parameter_errors(params)
    if errors:
        module.fail_json(msg="; ".join(errors))
    root = params["results_dir"]
    rows = params["fleet"]
    empty = {
        "report": None,
        "report_copy": None,
        "stragglers": [],
        "straggler_failures": [],
        "classes": [],
        "charts": 0,
        "notes": [],
    }
    if not os.path.isdir(root) and not rows:
        module.exit_json(
            changed=False,
            fleet=[],
            markdown="",
            text=[f"No results under {root}: nothing to report"],
            build_s=round(time.perf_counter() - started, 3),
            **empty,
        )
    fleet = build(root, rows, params["peer_metrics"], params["peer_tolerance_pct"], params["fail_on_straggler"])
    stamp = params["stamp"] or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report = os.path.join(root, "report.html")
    copy = os.path.join(root, f"report-{stamp}.html")
    shown = [h for h in fleet.hosts if h.current] or fleet.hosts
    result = {
        "fleet": [host_row(h, fleet.tolerance_pct) for h in shown],
        "markdown": markdown_table(fleet, shown),
        "text": text_lines(fleet, None if module.check_mode else report),
        "stragglers": stragglers_of(fleet),
        "straggler_failures": [f for h in fleet.hosts for f in h.straggler_failures],
        "classes": classes_of(fleet),
        "notes": fleet.notes,
    }
    if module.check_mode:
        module.exit_json(
            changed=False,
            report=None,
            report_copy=None,
            charts=0,
            build_s=round(time.perf_counter() - started, 3),
            **result,
        )
    try:
        load_matplotlib()
    except ChartLibraryMissing as exc:
        module.fail_json(
            msg=matplotlib_missing_message(exc),
            report=None,
            report_copy=None,
            charts=0,
            build_s=round(time.perf_counter() - started, 3),
            **result,
        )
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document, charts = page(fleet, generated, result["text"], draw_all, params["title"])
    try:
        write_text_atomic(report, document, 0o644)
        write_text_atomic(copy, document, 0o644)
    except OSError as exc:
        module.fail_json(msg=f"cannot write the fleet report into {root!r}: {exc}", **result)
    module.exit_json(
        changed=True,
        report=report,
        report_copy=copy,
        charts=len(charts),
        build_s=round(time.perf_counter() - started, 3),
        **result,
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        run(module)
    except Exception as exc:  # the last guard: a message naming what failed, never a traceback
        detail = re.sub(r"\s+", " ", str(exc))[:500]
        module.fail_json(
            msg=f"vllm_fleet_report: unexpected {type(exc).__name__}: {detail} "
            "(a defect of the module: please report it with this message)"
        )


if __name__ == "__main__":
    main()
