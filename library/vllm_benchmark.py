#!/usr/bin/python
# Copyright: contributors to vllm-fleet
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module vllm_benchmark: load-test a vLLM server's OpenAI-compatible API and check the numbers."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_benchmark
short_description: Benchmark a vLLM server (throughput or latency) and check the results
version_added: "1.0.0"
description:
  - Sends streaming requests to the OpenAI-compatible API of a vLLM server (C(/v1/completions) or
    C(/v1/chat/completions)) and measures, per request, time to first token (TTFT), time per output token
    (TPOT), inter-token latency (ITL) and end-to-end latency (E2E), with the definitions of
    C(vllm bench serve) so that the numbers compare.
  - TTFT is the time to the first streamed event carrying a token; ITL every gap between such events; E2E the
    time to the last one; TPOT is (E2E - TTFT) / (output tokens - 1). Output tokens come from the server's
    C(usage) (requested with C(stream_options.include_usage)); fixed output lengths use C(ignore_eos).
  - In C(throughput) mode it sends O(num_prompts) requests at O(request_rate) (Poisson arrivals) with at most
    O(max_concurrency) in flight; in C(latency) mode it sends O(num_requests) requests one at a time.
  - Every failed request is counted with its reason; O(timeout) bounds each request and O(total_timeout) the
    whole run, so a dead or stalling server ends the task in bounded time. Both are deadlines for the whole
    exchange, not per read, so they hold against a server that sends one byte at a time.
  - What the server sends is checked before it counts. A response that is not HTTP, an event that is not JSON
    (or nested too deeply to read), C(choices) that is not a list of objects, a C(usage) that is not an object
    or whose token counts are not integers of at least 0, a stream of token events reporting 0 output tokens,
    or more output tokens than the request allows (C(max_tokens) x C(n)) make that request a failure with a
    reason, never a pass; the module never ends in a traceback.
  - Optionally checks O(thresholds) and compares with a O(baseline) result, and writes the result as JSON to
    O(result_path) atomically.
  - Runs on the host it is delegated to, with the standard library only; any load it sends goes to O(url).
author:
  - vllm-fleet contributors
options:
  url:
    description:
      - Base URL of the vLLM server, without C(/v1).
      - Credentials in it (C(user:password@)) are not sent (vLLM takes O(api_key)); the password is taken out of
        everything the module returns or writes.
    type: str
    default: http://127.0.0.1:8000
  model:
    description:
      - Model name to request (the server's C(--served-model-name)).
      - When omitted, the first model listed by C(GET /v1/models) is used.
    type: str
  api_key:
    description:
      - API key, sent in an C(Authorization) header as a bearer token (the server's C(--api-key) or
        C(VLLM_API_KEY)).
      - Falls back to the environment variable C(VLLM_API_KEY) of the host the module runs on.
      - Taken out of everything the module returns or writes, a server's error bodies included (replaced by
        V(<redacted>)), as are bearer tokens and C(hf_...) tokens wherever they appear.
    type: str
  endpoint:
    description: Which API to drive.
    type: str
    choices: [completions, chat]
    default: completions
  mode:
    description:
      - C(throughput) sends O(num_prompts) requests concurrently; C(latency) sends O(num_requests) one at a time.
      - C(capacity) finds the capacity within the SLO O(goodput), the most requests in flight at which at least
        O(slo_attainment) of the requests meet every limit, by doubling the load from 1 up to O(max_concurrency)
        until attainment drops below the target, then bisecting, in at most O(capacity_steps) steps
        (module_utils/vllm_bench_capacity.py). The load is concurrency, not a request rate, so a server is never
        measured with a queue that only grows. It returns RV(capacity) (the goodput at that load, requests/s),
        RV(capacity_load) and RV(steps).
    type: str
    choices: [throughput, latency, capacity]
    default: throughput
  num_prompts:
    description: Number of measured requests in C(throughput) mode.
    type: int
    default: 100
  max_concurrency:
    description:
      - Most requests in flight at once in C(throughput) mode, one keep-alive connection each.
      - Unlimited when omitted (as in C(vllm bench serve)), capped at 1024 connections.
    type: int
  request_rate:
    description:
      - Requests per second, arriving as a Poisson process, or C(inf) to send them all at once
        (bounded by O(max_concurrency)).
    type: str
    default: inf
  num_requests:
    description: Number of measured requests in C(latency) mode.
    type: int
    default: 10
  warmup_requests:
    description: Requests sent before each round and not counted.
    type: int
    default: 0
  goodput:
    description:
      - Per-request SLO limits in milliseconds, C(ttft_ms), C(tpot_ms), C(e2e_ms) (or vLLM's C(e2el_ms)), as
        C(vllm bench serve --goodput) takes them. A request counts only when it meets every limit.
      - RV(metrics) then has C(request_goodput) (requests/s that met the SLO), C(slo_attainment) (their share of the
        requests sent; a failed request meets none) and C(slo_misses) (per limit); thresholds may use the first two.
      - Required with O(mode=capacity).
    type: dict
    default: {}
  slo_attainment:
    description: With O(mode=capacity), the share of requests that must meet the SLO for a load to be carried.
    type: float
    default: 0.9
  capacity_steps:
    description: With O(mode=capacity), the most loads measured, ramp and bisection together.
    type: int
    default: 8
  capacity_requests_per_load:
    description: With O(mode=capacity), the requests a step sends per request in flight.
    type: int
    default: 4
  capacity_min_requests:
    description: With O(mode=capacity), the requests a step sends at least.
    type: int
    default: 16
  rounds:
    description:
      - Measured rounds of the same workload (O(num_prompts) or O(num_requests) each, new prompts each time),
        each preceded by O(warmup_requests) warm-up requests.
      - Every headline metric gets one value per round (RV(round_metrics)), summarized as the mean with its
        confidence interval, the spread and the coefficient of variation (RV(round_summary)); RV(metrics) pools
        the requests of all rounds.
      - A verdict against a O(baseline) needs at least 2 rounds on both sides.
    type: int
    default: 1
  confidence:
    description: Confidence level of the intervals and verdicts, between 0 and 1.
    type: float
    default: 0.95
  detect_pct:
    description:
      - The change, in percent, that the rounds must be able to tell from noise. A judged metric whose interval is
        wider than that is "too noisy to judge", saying to run more rounds or requests, in a warning, in
        RV(too_noisy) and in the summary; with O(fail_when_too_noisy=true) the task fails too.
    type: float
    default: 10
  fail_when_too_noisy:
    description: Fail when a judged metric is too noisy to judge (see O(detect_pct)), instead of warning.
    type: bool
    default: false
  judged_metrics:
    description:
      - The headline metrics whose verdict decides pass or fail; the others get a verdict shown only.
      - Defaults to request_throughput, total_token_throughput, median_ttft_ms and median_tpot_ms in
        C(throughput) mode, median_e2e_ms, median_ttft_ms and median_tpot_ms in C(latency) mode; an empty list
        judges none (verdicts shown only).
    type: list
    elements: str
  dataset:
    description:
      - Where prompts come from.
      - C(random) builds prompts of exactly O(input_len) tokens with the model's own tokenizer through the
        server's C(/tokenize) and C(/detokenize) when they answer, else of O(input_len) random words
        (RV(prompt_source) says which).
      - C(sonnet) samples lines of Shakespeare's sonnets (shipped with the module) up to about O(input_len) tokens.
      - C(sharegpt) uses the first turn of the conversations in the ShareGPT-format JSON file O(dataset_path).
    type: str
    choices: [random, sonnet, sharegpt]
    default: random
  dataset_path:
    description: ShareGPT-format JSON file on the host the module runs on; required with O(dataset=sharegpt).
    type: path
  input_len:
    description: Prompt length in tokens for C(random) and C(sonnet).
    type: int
    default: 128
  output_len:
    description:
      - Output tokens per request (C(max_tokens)).
      - Defaults to 128; with C(sharegpt) the default is the length of each conversation's reply.
    type: int
  ignore_eos:
    description: Ask the server to ignore end-of-sequence so every request produces exactly O(output_len) tokens.
    type: bool
    default: true
  temperature:
    description: Sampling temperature sent with each request; the server's default when omitted.
    type: float
  extra_body:
    description: Extra JSON fields merged into every request body.
    type: dict
  seed:
    description: Seed of the prompt sampling and of the Poisson arrivals, so runs are repeatable.
    type: int
    default: 0
  timeout:
    description:
      - Seconds one request may take in all (name resolution, connection, TLS, sending, the head and the whole
        body), however slowly the server sends; a longer one counts as failed (C(timeout)).
      - Also bounds each call before the load (C(/version), C(/v1/models), C(/tokenize), C(/detokenize)).
    type: float
    default: 60
  total_timeout:
    description:
      - Seconds the whole task may take (preparation, warm-up and measured requests). Requests still running
        then count as failed (C(total_timeout)), unsent ones as C(not_sent), and the task fails. A server that
        stalls the preparation makes the task fail once this time is up.
    type: float
    default: 600
  result_path:
    description:
      - File to write the result to as JSON (parameters without the API key, module and server versions, host
        name, metrics, failures, checks). Written to a temporary file and renamed, never half-written, with mode
        C(0600) (it may hold what the server said).
      - The file also holds the measured requests' latencies, which the task's result leaves out.
        C(samples) has C(ttft_ms), C(tpot_ms), C(e2e_ms) (one value per completed request, all rounds pooled) and
        C(itl_ms) (every gap between streamed tokens), each sorted, in milliseconds, at most 5000 values (beyond
        that, evenly spaced order statistics, the smallest and largest kept); C(sample_counts) has how many each
        had before. The fleet report (module vllm_fleet_report) draws their distributions.
    type: path
  thresholds:
    description:
      - 'Metric name to condition, for example C(request_throughput: ">=300"), C(p99_ttft_ms: "<=500"),
        C(failed: "==0"). Operators C(>=), C(<=), C(==), C(!=), C(>), C(<). Quote conditions in YAML.'
      - The task fails listing every unmet threshold with measured and required values. Metric names are the
        keys of RV(metrics).
    type: dict
    default: {}
  baseline:
    description:
      - An earlier result file of this module to compare with.
      - With O(rounds) of 2 or more the baseline must hold its rounds (files this module writes with rounds do),
        and a verdict needs O(baseline_sessions) sessions in it, runs at different times, each with its rounds
        (a result file is one session; O(baseline_update_path) adds one). Every headline metric then gets a
        verdict (RV(verdicts)), the prediction interval of this run's mean among the sessions' means, on the log
        scale, by Student's t with sessions - 1 degrees of freedom (module_utils/vllm_verdict.py says why not a
        test on rounds). A baseline whose workload (RV(workload)) differs is refused as not comparable, naming
        the field, before any load; one without rounds is refused, saying how to record one.
      - With O(rounds=1), single values are compared (RV(baseline_comparison)), also against a
        C(vllm bench serve --save-result) file; one sample each, so noise can flip that comparison.
    type: path
  baseline_sessions:
    description:
      - The sessions a baseline must hold before this run is judged against it, at least 2. With fewer, RV(verdicts)
        is empty and RV(baseline_status) says how many there are.
      - More sessions narrow the interval (the t quantile falls from 4.30 at 3 sessions to 2.78 at 5).
    type: int
    default: 3
  baseline_update_path:
    description:
      - Where to write the baseline with this run added as its newest session, when this run passed and either no
        O(baseline) was given (a new baseline of one session) or the baseline holds fewer than
        O(baseline_sessions) sessions and this run's O(context) is the baseline's. Nothing is written when the
        baseline is complete, or when what the run ran on changed (RV(baseline_status) says which).
      - RV(baseline_status.written) tells whether it was written.
    type: path
  max_regression_pct:
    description:
      - The allowed regression, in percent, in each metric's own direction (lower throughput, higher latency).
      - With rounds, a judged metric fails only when its verdict is "slower" and the whole confidence interval of
        the change lies beyond this, so noise can neither invent nor hide a failure. With O(rounds=1), a headline
        metric worse than the baseline's single value by more than this fails. Requires O(baseline).
    type: float
  validate_certs:
    description: Verify the server's TLS certificate for C(https) URLs.
    type: bool
    default: true
  context:
    description:
      - What the numbers were measured on, recorded as is in the result file under C(context) and returned as
        RV(context), for example the host's CPU and its instruction-set level, its GPUs, the driver and the vLLM
        flags in force. A figure means little without it.
    type: dict
    default: {}
notes:
  - Check mode reports what would run and sends nothing.
  - Redirects are never followed, so the API key is never sent to another server. A C(3xx) answer to
    C(GET /v1/models) fails the task saying where it points; one to a measured request counts as a failure
    (C(http_302), ...).
  - Measure from a host other than the server's, or mind that the client shares its CPU; RV(client_cpu_s) shows
    what the client used.
  - C(changed) is true when O(result_path) was written.
seealso:
  - name: vLLM benchmark CLI
    description: C(vllm bench serve), whose metric definitions this module follows.
    link: https://docs.vllm.ai/en/latest/cli/bench/serve.html
"""

EXAMPLES = r"""
- name: Throughput run with pass/fail thresholds
  vllm_benchmark:
    url: http://127.0.0.1:8000
    model: tiny
    mode: throughput
    num_prompts: 100
    max_concurrency: 16
    input_len: 64
    output_len: 64
    result_path: /var/lib/vllm-bench/latest.json
    thresholds:
      failed: "==0"
      request_throughput: ">=10"
      p99_ttft_ms: "<=500"
  register: _vllm_bench

- name: Show the numbers
  ansible.builtin.debug:
    msg: "{{ _vllm_bench.summary_lines }}"

- name: Latency of single requests on the chat API, compared with last week's run
  vllm_benchmark:
    url: https://llm.example.com
    api_key: "{{ vllm_api_key }}"
    endpoint: chat
    mode: latency
    num_requests: 20
    warmup_requests: 2
    dataset: sonnet
    baseline: /var/lib/vllm-bench/last-week.json
    max_regression_pct: 10

- name: ShareGPT prompts at 5 requests/s
  vllm_benchmark:
    model: tiny
    dataset: sharegpt
    dataset_path: /opt/data/ShareGPT_V3_unfiltered_cleaned_split.json
    num_prompts: 200
    request_rate: "5"
    total_timeout: 300
"""

RETURN = r"""
metrics:
  description:
    - Measured values. Times in milliseconds; throughputs per second over the measured phase.
    - For each of C(ttft), C(tpot), C(itl), C(e2e) the keys C(mean_X_ms), C(median_X_ms), C(p90_X_ms),
      C(p99_X_ms), C(std_X_ms), C(min_X_ms), C(max_X_ms); in C(latency) mode also C(p10_e2e_ms), C(p25_e2e_ms),
      C(p75_e2e_ms).
  returned: when requests were sent
  type: dict
  sample:
    completed: 100
    failed: 0
    duration_s: 6.41
    request_throughput: 15.6
    output_throughput: 998.4
    total_token_throughput: 1996.8
    total_input_tokens: 6400
    total_output_tokens: 6400
    mean_ttft_ms: 85.1
    median_ttft_ms: 80.2
    p90_ttft_ms: 120.5
    p99_ttft_ms: 150.3
failures:
  description:
    - Failed requests by reason (C(http_500), C(timeout), C(broken_stream), C(bad_json), C(stream_error),
      C(no_tokens), C(connection_refused), C(connection_error), C(total_timeout), C(not_sent), ...).
    - What the server sent could not be right - C(bad_http) (not a valid HTTP response), C(bad_event)
      (C(choices) not a list of objects), C(bad_usage) (usage not an object, token counts not integers of at
      least 0, 0 output tokens for a stream of tokens, more than the request allows), C(event_too_large) (an
      event past 16 MiB); C(client_error) is an unforeseen error while reading one response.
  returned: when requests were sent
  type: dict
  sample: {"http_500": 3, "timeout": 1}
failure_samples:
  description: Up to three examples of each failure reason, with the request index and the detail.
  returned: when requests were sent
  type: list
  elements: dict
  sample: [{"request": 7, "reason": "http_500", "detail": "HTTP 500 Internal Server Error: ..."}]
summary_lines:
  description:
    - 'Plain-text summary. The first line names the run and its workload (C(Latency run: 10 requests, one at a
      time, 128 in / 64 out tokens (random))); the next two are exactly C(Throughput: X.XX requests/s) and
      C(Throughput: Y.YY tokens/s) (total tokens, prompt and output). With rounds, a line per headline metric
      with its mean ± interval and min…max follows, then the verdicts against the baseline.'
  returned: when requests were sent
  type: list
  elements: str
markdown:
  description: Markdown tables of the metrics (and of the baseline comparison when there is one).
  returned: when requests were sent
  type: str
result_path:
  description: Where the result JSON was written; null when O(result_path) was not given.
  returned: always
  type: str
threshold_failures:
  description: One line per unmet threshold, with measured and required values.
  returned: when requests were sent
  type: list
  elements: str
  sample: ["p99_ttft_ms: measured 612.30, required <=500"]
baseline_comparison:
  description:
    - Headline metric to C(baseline), C(current), C(change_pct) ((current - baseline) / baseline * 100),
      C(regressed) and C(higher_is_better). Empty without O(baseline).
  returned: when requests were sent
  type: dict
prompt_source:
  description: Where prompts came from, C(tokenizer), C(words), C(sonnet) or C(sharegpt).
  returned: when requests were sent
  type: str
server_version:
  description: The server's vLLM version from C(GET /version); null when it did not answer it.
  returned: when the server was reached
  type: str
  sample: 0.32.0
client_cpu_s:
  description: CPU seconds the benchmark client itself used while sending load (near the duration means the
    client, not the server, may be the limit).
  returned: when requests were sent
  type: float
model:
  description: The model requested.
  returned: when the server was reached
  type: str
plan:
  description: What the run would send (check mode) or sent.
  returned: always
  type: dict
context:
  description: O(context), as recorded in the result file.
  returned: when requests were sent
  type: dict
workload:
  description: What must be the same for two runs to compare (mode, endpoint, dataset, lengths, requests, concurrency,
    rate, ignore_eos, model); recorded in the result file.
  returned: when requests were sent
  type: dict
round_metrics:
  description: The headline metrics of each round, in order.
  returned: when requests were sent
  type: list
  elements: dict
round_summary:
  description: Per headline metric over the rounds, C(n), C(mean), C(std), C(cv_pct), C(ci_low) and C(ci_high) (the
    mean's interval, Student's t), C(median), C(min), C(max).
  returned: when requests were sent
  type: dict
verdicts:
  description:
    - Per headline metric, against the baseline's sessions, C(verdict) (V(faster), V(slower), V(no significant
      change) or V(too noisy)), C(change_pct) and its interval C(ci_low_pct)..C(ci_high_pct), C(p_value)
      (Student's t), C(detectable_pct), C(sessions), C(fails) and C(text), for example "slower by 14.8% (95% CI
      11.2% to 18.1%)".
    - Empty without a baseline with rounds, or while it holds fewer than O(baseline_sessions) sessions.
  returned: when requests were sent
  type: dict
capacity:
  description: With O(mode=capacity), the goodput (requests/s meeting the SLO) at the highest load carried; 0 when the
    SLO was missed at 1 request in flight.
  returned: mode=capacity
  type: float
capacity_load:
  description: With O(mode=capacity), that load, in requests in flight.
  returned: mode=capacity
  type: int
steps:
  description:
    - With O(mode=capacity), every load measured, in order, C(load), C(requests), C(request_goodput),
      C(slo_attainment), C(slo_misses), C(request_throughput), C(failed), C(p50_ttft_ms), C(p99_ttft_ms),
      C(p50_tpot_ms), C(p99_tpot_ms); the curve of throughput and latency against load.
  returned: mode=capacity
  type: list
  elements: dict
stopped:
  description: With O(mode=capacity), why the search stopped.
  returned: mode=capacity
  type: str
too_noisy:
  description: One message per judged metric too noisy to judge (see O(detect_pct)); empty when none.
  returned: when requests were sent
  type: list
  elements: str
verdict_brief:
  description: The verdicts on requests/s, tokens/s and median TTFT in one line, as the fleet table shows them; empty
    without verdicts.
  returned: when requests were sent
  type: str
baseline_status:
  description:
    - With O(baseline) or O(baseline_update_path), C(sessions) (in the baseline), C(needed) (O(baseline_sessions)),
      C(judged), C(add) (this run belongs in the baseline), C(written) (O(baseline_update_path) was written) and
      C(text), for example "not judged yet, the baseline holds 1 of the 3 sessions a verdict needs; this run is
      added as session 2".
  returned: when requests were sent
  type: dict
context_changes:
  description: What differs between the baseline's O(context) and this run's, such as "driver 550.54 → 580.95".
  returned: when compared with a baseline with rounds
  type: list
  elements: str
"""

import random
import socket
import time
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, NoReturn

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.vllm_bench_capacity import SloError, find_capacity, goodput, normalized_slo, step_requests
from ansible.module_utils.vllm_bench_checks import (
    HEADLINE_METRICS,
    baseline_comparison,
    baseline_metrics,
    regression_messages,
    threshold_errors,
    unmet_thresholds,
)
from ansible.module_utils.vllm_bench_datasets import (
    DEFAULT_OUTPUT_LEN,
    Prompt,
    endpoint_path,
    request_payload,
    sharegpt_prompts,
    sonnet_prompts,
    sonnet_words,
    tokenizer_prompts,
    word_prompts,
)
from ansible.module_utils.vllm_bench_engine import (
    JsonClient,
    Target,
    failure_summary,
    make_target,
    reject_impossible_counts,
    request_bytes,
    run_load,
    token_limit,
)
from ansible.module_utils.vllm_bench_report import (
    comparison_markdown,
    markdown_table,
    run_label,
    summary_lines,
    write_json_atomic,
)
from ansible.module_utils.vllm_bench_rounds import (
    DEFAULT_JUDGED,
    ROUNDS_FORMAT,
    BaselineError,
    baseline_status,
    brief,
    comparability_errors,
    context_diff,
    extended_baseline,
    read_baseline,
    round_lines,
    round_values,
    summaries,
    too_noisy,
    verdict_lines,
    verdict_problems,
    verdicts,
    workload_of,
)
from ansible.module_utils.vllm_bench_stats import benchmark_metrics, latency_samples
from ansible.module_utils.vllm_http import (
    public_url,
    redact,
    served_models,
    server_version,
    url_secrets,
)

MODULE_VERSION = "1.2.0"


class Step:
    """What the module is doing now, for the message of an error nobody foresaw."""

    def __init__(self, doing: str) -> None:
        self.doing = doing


def argument_spec() -> dict[str, Any]:
    """Return the module's argument spec."""
    return {
        "url": {"type": "str", "default": "http://127.0.0.1:8000"},
        "model": {"type": "str"},
        "api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["VLLM_API_KEY"])},
        "endpoint": {"type": "str", "choices": ["completions", "chat"], "default": "completions"},
        "mode": {"type": "str", "choices": ["throughput", "latency", "capacity"], "default": "throughput"},
        "goodput": {"type": "dict", "default": {}},
        "slo_attainment": {"type": "float", "default": 0.9},
        "capacity_steps": {"type": "int", "default": 8},
        "capacity_requests_per_load": {"type": "int", "default": 4},
        "capacity_min_requests": {"type": "int", "default": 16},
        "num_prompts": {"type": "int", "default": 100},
        "max_concurrency": {"type": "int"},
        "request_rate": {"type": "str", "default": "inf"},
        "num_requests": {"type": "int", "default": 10},
        "warmup_requests": {"type": "int", "default": 0},
        "rounds": {"type": "int", "default": 1},
        "confidence": {"type": "float", "default": 0.95},
        "detect_pct": {"type": "float", "default": 10},
        "judged_metrics": {"type": "list", "elements": "str"},
        "fail_when_too_noisy": {"type": "bool", "default": False},
        "dataset": {"type": "str", "choices": ["random", "sonnet", "sharegpt"], "default": "random"},
        "dataset_path": {"type": "path"},
        "input_len": {"type": "int", "default": 128},
        "output_len": {"type": "int"},
        "ignore_eos": {"type": "bool", "default": True},
        "temperature": {"type": "float"},
        "extra_body": {"type": "dict"},
        "seed": {"type": "int", "default": 0},
        "timeout": {"type": "float", "default": 60},
        "total_timeout": {"type": "float", "default": 600},
        "result_path": {"type": "path"},
        "thresholds": {"type": "dict", "default": {}},
        "baseline": {"type": "path"},
        "baseline_sessions": {"type": "int", "default": 3},
        "baseline_update_path": {"type": "path"},
        "max_regression_pct": {"type": "float"},
        "validate_certs": {"type": "bool", "default": True},
        "context": {"type": "dict", "default": {}},
    }


def request_rate_value(text: str) -> float:
    """Return the request rate as a float (inf allowed); raise ValueError when it is not a positive number."""
    value = float(str(text).strip())
    if not value > 0:
        raise ValueError
    return value


def parameter_errors(params: dict[str, Any]) -> list[str]:
    """Return messages for every parameter value (or combination) that cannot work."""
    errors = []
    for name in ("num_prompts", "num_requests", "input_len"):
        if params[name] < 1:
            errors.append(f"{name} must be at least 1, got {params[name]}")
    for name in ("output_len", "max_concurrency"):
        if params[name] is not None and params[name] < 1:
            errors.append(f"{name} must be at least 1 when given, got {params[name]}")
    if params["warmup_requests"] < 0:
        errors.append(f"warmup_requests must be 0 or more, got {params['warmup_requests']}")
    for name in ("timeout", "total_timeout"):
        if not params[name] > 0:
            errors.append(f"{name} must be a positive number of seconds, got {params[name]}")
    try:
        request_rate_value(params["request_rate"])
    except ValueError:
        errors.append(f"request_rate must be a positive number of requests/s or 'inf', got {params['request_rate']!r}")
    if params["dataset"] == "sharegpt" and not params["dataset_path"]:
        errors.append("dataset=sharegpt needs dataset_path (a ShareGPT-format JSON file)")
    if params["max_regression_pct"] is not None:
        if not params["baseline"]:
            errors.append("max_regression_pct needs baseline (the path of an earlier result file)")
        if params["max_regression_pct"] < 0:
            errors.append(f"max_regression_pct must be 0 or more, got {params['max_regression_pct']}")
    if params["rounds"] < 1:
        errors.append(f"rounds must be at least 1, got {params['rounds']}")
    if params["baseline_sessions"] < 2:
        errors.append(
            f"baseline_sessions must be at least 2 (the spread between sessions cannot be known from one), got "
            f"{params['baseline_sessions']}"
        )
    if params["baseline_update_path"] and params["rounds"] < 2:
        errors.append(
            f"baseline_update_path needs rounds of 2 or more (a baseline session is a run of rounds), got "
            f"rounds={params['rounds']}"
        )
    if not 0 < params["confidence"] < 1:
        errors.append(f"confidence must be between 0 and 1 (e.g. 0.95), got {params['confidence']}")
    if not params["detect_pct"] > 0:
        errors.append(f"detect_pct must be a positive percentage, got {params['detect_pct']}")
    headline = HEADLINE_METRICS[metrics_mode(params)]
    for name in params["judged_metrics"] or []:
        if name not in headline:
            errors.append(
                f"judged_metrics: {name!r} is not a headline metric of mode {params['mode']}: {', '.join(headline)}"
            )
    try:
        limits = normalized_slo(params["goodput"] or {})
    except SloError as exc:
        errors.append(str(exc))
        limits = {}
    if params["mode"] == "capacity":
        if not limits:
            errors.append("mode=capacity needs goodput, the SLO limits in ms, e.g. {ttft_ms: 1000, tpot_ms: 100}")
        if not 0 < params["slo_attainment"] <= 1:
            errors.append(f"slo_attainment must be above 0 and at most 1 (e.g. 0.9), got {params['slo_attainment']}")
        for name in ("capacity_steps", "capacity_requests_per_load", "capacity_min_requests"):
            if params[name] < 1:
                errors.append(f"{name} must be at least 1, got {params[name]}")
        if params["baseline"]:
            errors.append("mode=capacity compares with no baseline: tune with playbooks/tune.yml instead")
    valid_metrics = list(benchmark_metrics([], 0.0, metrics_mode(params)).keys())
    if limits:
        valid_metrics += ["request_goodput", "slo_attainment"]
    errors.extend(threshold_errors(params["thresholds"] or {}, valid_metrics))
    return errors


def metrics_mode(params: dict[str, Any]) -> str:
    """The metrics a mode reports: a capacity run's steps are throughput runs."""
    return "throughput" if params["mode"] == "capacity" else params["mode"]


def run_plan(params: dict[str, Any]) -> dict[str, Any]:
    """Return what the run sends: counts, concurrency, rate, dataset and endpoint."""
    latency = params["mode"] == "latency"
    return {
        "url": public_url(params["url"]),
        "endpoint": endpoint_path(params["endpoint"]),
        "mode": params["mode"],
        "requests": params["num_requests"] if latency else params["num_prompts"],
        "warmup_requests": params["warmup_requests"],
        "rounds": params["rounds"],
        "max_concurrency": 1 if latency else params["max_concurrency"],
        "request_rate": "inf" if latency else params["request_rate"],
        "dataset": params["dataset"],
        "input_len": params["input_len"],
        "output_len": params["output_len"],
    }


def public_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Return the parameters to record in the result (no secret: no api_key, no password in the url)."""
    kept = {key: value for key, value in params.items() if key not in ("api_key", "context")}
    return {**kept, "url": public_url(params["url"])}


def judged(params: dict[str, Any]) -> list[str]:
    """The headline metrics whose verdicts decide pass or fail."""
    chosen = params["judged_metrics"]
    return list(DEFAULT_JUDGED[metrics_mode(params)] if chosen is None else chosen)


def known_secrets(params: dict[str, Any]) -> list[str]:
    """Return the secrets to take out of everything returned or written: the API key, the URL's password."""
    return [*([params["api_key"]] if params.get("api_key") else []), *url_secrets(params.get("url") or "")]


def server_facts(client: JsonClient, model: str | None) -> tuple[str | None, str]:
    """Return (server vLLM version or None, model).

    Raise HttpError (an OSError) when the server gives no usable answer, LookupError when model is not given and
    GET /v1/models does not list a usable one; each message names the call and the problem.
    """
    answer = client.request("GET", "/version")
    try:
        version = server_version(answer.json()) if answer.status == 200 else None
    except ValueError:
        version = None  # informative only: an odd /version does not stop a benchmark
    if model:
        return version, model
    answer = client.request("GET", "/v1/models")
    if answer.status != 200:
        detail = "check api_key" if answer.status == 401 else f"HTTP {answer.status_text()}"
        raise LookupError(f"model not given and GET /v1/models did not list any ({detail}); set model")
    try:
        models = served_models(answer.json())
    except ValueError as exc:
        raise LookupError(f"model not given and GET /v1/models is not a model list: {exc}; set model") from None
    if not models:
        raise LookupError("model not given and GET /v1/models lists no model; set model")
    return version, models[0]["id"]


def tokenizer_functions(client: JsonClient, model: str, deadline: float):
    """Return (tokenize, detokenize) callables over the server's /tokenize and /detokenize."""

    def tokenize(text: str) -> list[int]:
        _check_deadline(deadline)
        status, body = client.call("POST", "/tokenize", {"model": model, "prompt": text, "add_special_tokens": False})
        tokens = body.get("tokens") if status == 200 and isinstance(body, dict) else None
        if not isinstance(tokens, list) or not all(type(token) is int and token >= 0 for token in tokens):
            raise LookupError(f"/tokenize answered HTTP {status} without a list of token ids")
        return tokens

    def detokenize(tokens: list[int]) -> str:
        _check_deadline(deadline)
        status, body = client.call("POST", "/detokenize", {"model": model, "tokens": tokens})
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            raise LookupError(f"/detokenize answered HTTP {status} without a prompt string")
        return body["prompt"]

    return tokenize, detokenize


def _check_deadline(deadline: float) -> None:
    if time.perf_counter() > deadline:
        raise TimeoutError("total_timeout reached while preparing prompts")


def build_prompts(
    params: dict[str, Any], client: JsonClient, model: str, count: int, deadline: float
) -> tuple[list[Prompt], str]:
    """Return count prompts for the chosen dataset and where they came from (tokenizer|words|sonnet|sharegpt)."""
    rng = random.Random(params["seed"])
    output_len = params["output_len"]
    if params["dataset"] == "sharegpt":
        return sharegpt_prompts(params["dataset_path"], count, output_len, rng), "sharegpt"
    output_len = output_len or DEFAULT_OUTPUT_LEN
    tokenize, detokenize = tokenizer_functions(client, model, deadline)
    if params["dataset"] == "sonnet":
        try:
            sample = " ".join(sonnet_words())
            tokens_per_char = len(tokenize(sample)) / len(sample)
        except (OSError, LookupError):
            tokens_per_char = None
        return sonnet_prompts(count, params["input_len"], output_len, rng, tokens_per_char), "sonnet"
    try:
        return tokenizer_prompts(count, params["input_len"], output_len, rng, tokenize, detokenize), "tokenizer"
    except (OSError, LookupError, ValueError):
        return word_prompts(count, params["input_len"], output_len, random.Random(params["seed"])), "words"


def failure_messages(metrics: dict[str, Any], failures: dict[str, int], samples: list[dict], outcome: Any) -> list[str]:
    """Return why the run itself failed (every request failed, total_timeout reached); empty when it did not."""
    messages = []
    if metrics["completed"] == 0:
        first = samples[0]["detail"] if samples else "no detail"
        counts = ", ".join(f"{reason} x{count}" for reason, count in sorted(failures.items()))
        messages.append(f"all {metrics['failed']} requests failed ({counts}); first: {first}")
    if outcome.total_timeout_hit:
        messages.append(
            f"total_timeout reached: {metrics['completed']} completed, "
            f"{failures.get('total_timeout', 0)} still running, {failures.get('not_sent', 0)} not sent"
        )
    return messages


def fail(module: AnsibleModule, secrets: list[str], msg: str, **result: Any) -> NoReturn:
    """Fail the module with msg and result, every known secret taken out."""
    module.fail_json(**redact({"msg": msg, **result}, secrets))


def request_bodies(params: dict[str, Any], model: str, prompts: list) -> list[dict[str, Any]]:
    """The JSON body of each request, one per prompt."""
    return [
        request_payload(params["endpoint"], model, p, params["ignore_eos"], params["temperature"], params["extra_body"])
        for p in prompts
    ]


def settle(results: list, bodies: list[dict[str, Any]], prompts: list) -> None:
    """Check a run's results against what was asked, in place: a success that reports more output tokens than its
    request allowed is a failure (bad_usage); one without the server's prompt count takes the prompt's own."""
    reject_impossible_counts(results, [token_limit(body) for body in bodies])
    for prompt, result in zip(prompts, results, strict=True):
        if result.ok and result.prompt_tokens is None:
            result.prompt_tokens = prompt.prompt_len


def run_capacity(module, step, plan, target, client, model, server_version, deadline, secrets) -> NoReturn:
    """Find the capacity within the SLO (mode=capacity) and exit the module with it and every step."""
    params = module.params
    limits = normalized_slo(params["goodput"])
    path = endpoint_path(params["endpoint"])
    seed = [params["seed"]]

    def measure(load: int) -> dict[str, Any]:
        count = step_requests(load, params["capacity_requests_per_load"], params["capacity_min_requests"])
        step.doing = f"measuring {count} requests at {load} in flight at {plan['url']}"
        seed[0] += 1
        prompts, _ = build_prompts(
            {**params, "seed": seed[0]}, client, model, count + params["warmup_requests"], deadline
        )
        bodies = request_bodies(params, model, prompts)
        payloads = [request_bytes(target, path, body) for body in bodies]
        outcome = run_load(
            target,
            payloads[params["warmup_requests"] :],
            payloads[: params["warmup_requests"]],
            load,
            float("inf"),
            params["timeout"],
            max(deadline - time.perf_counter(), 0.001),
            seed[0],
        )
        warm = params["warmup_requests"]
        settle(outcome.results, bodies[warm : warm + len(outcome.results)], prompts[warm : warm + len(outcome.results)])
        measured = benchmark_metrics(outcome.results, outcome.duration_s, "throughput")
        good = goodput(outcome.results, outcome.duration_s, limits)
        return {
            "requests": count,
            "failed": measured["failed"],
            "request_throughput": round(measured["request_throughput"], 4),
            "request_goodput": round(good["request_goodput"], 4),
            "slo_attainment": round(good["slo_attainment"], 4),
            "slo_misses": good["slo_misses"],
            "p50_ttft_ms": round(measured["median_ttft_ms"], 3),
            "p99_ttft_ms": round(measured["p99_ttft_ms"], 3),
            "p50_tpot_ms": round(measured["median_tpot_ms"], 3),
            "p99_tpot_ms": round(measured["p99_tpot_ms"], 3),
        }

    try:
        found = find_capacity(
            measure,
            params["slo_attainment"],
            params["max_concurrency"] or 64,
            params["capacity_steps"],
            lambda: deadline - time.perf_counter(),
        )
    except (ValueError, TimeoutError, OSError) as exc:
        fail(module, secrets, f"capacity run against {plan['url']}: {exc}", plan=plan, result_path=None, model=model)
    slo_text = ", ".join(f"{k} <= {v:g}" for k, v in limits.items())
    lines = [
        f"Capacity run: {params['input_len']} in / {params['output_len'] or 'dataset'} out tokens "
        f"({params['dataset']}), SLO {slo_text} ms for {params['slo_attainment'] * 100:g}% of the requests",
        *(
            f"  {s['load']} in flight: goodput {s['request_goodput']:.2f} req/s, attainment "
            f"{s['slo_attainment'] * 100:.0f}%, p99 TTFT {s['p99_ttft_ms']:.0f} ms, p99 TPOT {s['p99_tpot_ms']:.1f} ms"
            for s in found["steps"]
        ),
        f"Capacity within the SLO: {found['capacity']:.2f} req/s at {found['capacity_load']} in flight "
        f"({found['stopped']})",
    ]
    result = redact(
        {
            "capacity": round(found["capacity"], 4),
            "capacity_load": found["capacity_load"],
            "capacity_attainment": found["capacity_attainment"],
            "steps": found["steps"],
            "stopped": found["stopped"],
            "summary_lines": lines,
            "server_version": server_version,
            "model": model,
            "plan": plan,
            "slo": limits,
            "context": params["context"] or {},
        },
        secrets,
    )
    result["result_path"] = None
    if params["result_path"]:
        record = {
            **result,
            "module_version": MODULE_VERSION,
            "parameters": public_parameters(params),
            "host": socket.gethostname(),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            write_json_atomic(params["result_path"], record)
        except OSError as exc:
            fail(module, secrets, f"cannot write result_path {params['result_path']!r}: {exc}", **result)
        result["result_path"] = params["result_path"]
    module.exit_json(changed=result["result_path"] is not None, msg=lines[-1], **result)


def read_baselines(params: dict[str, Any], errors: list[str]) -> tuple[dict | None, dict | None]:
    """(single-value baseline metrics, baseline with rounds): whichever the run compares with, or errors."""
    if not params["baseline"] or errors:
        return None, None
    if params["rounds"] >= 2:
        try:
            return None, read_baseline(params["baseline"])
        except BaselineError as exc:
            errors.append(str(exc))
            return None, None
    try:
        rounds_baseline = read_baseline(params["baseline"])
    except BaselineError:
        rounds_baseline = None
    if rounds_baseline is not None:
        errors.append(
            f"rounds={params['rounds']}: a verdict against baseline {params['baseline']!r}, which holds rounds, needs "
            "at least 2 rounds on each side; set rounds to 2 or more (verification uses 5)"
        )
        return None, None
    try:
        return baseline_metrics(params["baseline"]), None
    except ValueError as exc:
        errors.append(str(exc))
        return None, None


def measure_rounds(params, plan, target, payloads, deadline, step) -> tuple[list, list, float, float, int]:
    """Run every round: (all results, each round's outcome, total duration, client CPU, warm-up failures)."""
    per_round = plan["requests"] + params["warmup_requests"]
    results, by_round = [], []
    duration, cpu, warmup_failed = 0.0, 0.0, 0
    for index in range(params["rounds"]):
        step.doing = f"sending round {index + 1} of {params['rounds']} to {plan['url']}"
        chunk = payloads[index * per_round : (index + 1) * per_round]
        warmup, measured = chunk[: params["warmup_requests"]], chunk[params["warmup_requests"] :]
        outcome = run_load(
            target,
            measured,
            warmup,
            plan["max_concurrency"],
            request_rate_value(plan["request_rate"]),
            params["timeout"],
            max(deadline - time.perf_counter(), 0.001),
            params["seed"] + index,
        )
        by_round.append(outcome)
        results.extend(outcome.results)
        duration += outcome.duration_s
        cpu += outcome.client_cpu_s
        warmup_failed += outcome.warmup_failed
        if outcome.total_timeout_hit:
            break
    return results, by_round, duration, cpu, warmup_failed


def run(module: AnsibleModule, step: Step) -> None:
    """Run the benchmark the module's parameters describe and exit the module."""
    params = module.params
    started = time.perf_counter()
    deadline = started + params["total_timeout"]
    secrets = known_secrets(params)
    module.no_log_values.update(url_secrets(params["url"]))  # Ansible masks it too, wherever it appears
    plan = run_plan(params)
    errors = parameter_errors(params)
    step.doing = f"reading baseline {params['baseline']}"
    baseline, rounds_baseline = read_baselines(params, errors)
    if errors:
        fail(module, secrets, "; ".join(errors), plan=plan, result_path=None)
    if module.check_mode:
        module.exit_json(changed=False, msg="check mode: no request sent", plan=plan, result_path=None)

    try:
        target: Target = make_target(params["url"], params["api_key"], params["validate_certs"])
    except ValueError as exc:
        fail(module, secrets, str(exc), plan=plan, result_path=None)
    url = public_url(params["url"])
    step.doing = f"reading the server's version and models at {url}"
    client = JsonClient(target, params["timeout"], deadline)
    try:
        try:
            server_version, model = server_facts(client, params["model"])
        except (OSError, LookupError) as exc:
            fail(
                module,
                secrets,
                f"cannot use the vLLM server at {url}: {exc}. Is it running and reachable from "
                f"{socket.gethostname()}, and are url/api_key right?",
                plan=plan,
                result_path=None,
            )
        if params["mode"] == "capacity":
            run_capacity(module, step, plan, target, client, model, server_version, deadline, secrets)
        workload = workload_of(plan, model, params["ignore_eos"])
        if rounds_baseline is not None:
            not_comparable = comparability_errors(rounds_baseline, workload, params["baseline"])
            if not_comparable:
                fail(module, secrets, "; ".join(not_comparable), plan=plan, result_path=None, workload=workload)
        step.doing = f"building the prompts (dataset={params['dataset']})"
        count = (plan["requests"] + params["warmup_requests"]) * params["rounds"]
        try:
            prompts, prompt_source = build_prompts(params, client, model, count, deadline)
        except (ValueError, TimeoutError) as exc:
            fail(module, secrets, f"cannot build prompts: {exc}", plan=plan, result_path=None, model=model)
    finally:
        client.close()
    if time.perf_counter() >= deadline:
        fail(
            module,
            secrets,
            f"total_timeout={params['total_timeout']:g}s reached while preparing the prompts at {url} (the server's "
            "/tokenize and /detokenize answered too slowly); no load was sent",
            plan=plan,
            result_path=None,
            model=model,
        )

    path = endpoint_path(params["endpoint"])
    bodies = request_bodies(params, model, prompts)
    payloads = [request_bytes(target, path, body) for body in bodies]
    results, outcomes, duration, client_cpu, warmup_failed = measure_rounds(
        params, plan, target, payloads, deadline, step
    )

    step.doing = "computing the metrics"
    per_round = plan["requests"] + params["warmup_requests"]
    round_metrics = []
    for index, outcome in enumerate(outcomes):
        first = index * per_round + params["warmup_requests"]
        last = first + len(outcome.results)
        settle(outcome.results, bodies[first:last], prompts[first:last])
        measured = benchmark_metrics(outcome.results, outcome.duration_s, params["mode"])
        round_metrics.append(round_values(measured, params["mode"]))

    metrics = benchmark_metrics(results, duration, params["mode"])
    if params["goodput"]:
        slo = goodput(results, duration, normalized_slo(params["goodput"]))
        metrics.update(request_goodput=slo["request_goodput"], slo_attainment=slo["slo_attainment"])
        metrics["slo_misses"] = slo["slo_misses"]
    failures, samples = failure_summary(results)
    threshold_failures = unmet_thresholds(params["thresholds"] or {}, metrics)
    comparison = (
        baseline_comparison(baseline, metrics, params["mode"], params["max_regression_pct"]) if baseline else {}
    )
    regressions = regression_messages(comparison, params["max_regression_pct"]) if comparison else []
    round_summary = summaries(round_metrics, params["mode"], params["confidence"])
    round_verdicts: dict[str, Any] = {}
    changes: list[str] = []
    status: dict[str, Any] = {}
    if rounds_baseline is not None:
        changes = context_diff(rounds_baseline, params["context"] or {})
    if (rounds_baseline is not None or params["baseline_update_path"]) and len(round_metrics) >= 2:
        status = baseline_status(rounds_baseline, params["baseline_sessions"], changes)
    if status.get("judged"):
        round_verdicts = verdicts(
            rounds_baseline["sessions"],
            round_metrics,
            params["mode"],
            params["confidence"],
            params["max_regression_pct"],
            params["detect_pct"],
        )
    markdown = markdown_table(metrics, params["mode"])
    if comparison:
        markdown += "\n" + comparison_markdown(comparison)
    lines = [run_label(plan), *summary_lines(metrics, failures, params["mode"])]
    if params["rounds"] > 1:
        lines += round_lines(round_summary, params["rounds"])
    if round_verdicts:
        lines += verdict_lines(round_verdicts, judged(params), changes)
    elif status:
        lines.append(f"Baseline: {status['text']}")
    result: dict[str, Any] = {
        "metrics": metrics,
        "failures": failures,
        "failure_samples": samples,
        "summary_lines": lines,
        "markdown": markdown,
        "threshold_failures": threshold_failures,
        "baseline_comparison": comparison,
        "round_metrics": round_metrics,
        "round_summary": round_summary,
        "verdicts": round_verdicts,
        "verdict_brief": brief(round_verdicts),
        "context_changes": changes,
        "baseline_status": status,
        "prompt_source": prompt_source,
        "server_version": server_version,
        "model": model,
        "client_cpu_s": round(client_cpu, 3),
        "warmup_failed": warmup_failed,
        "plan": plan,
        "workload": workload,
        "context": params["context"] or {},
    }
    outcome_view = SimpleNamespace(total_timeout_hit=any(o.total_timeout_hit for o in outcomes))
    problems = failure_messages(metrics, failures, samples, outcome_view)
    if len(outcomes) < params["rounds"]:
        problems.append(f"only {len(outcomes)} of {params['rounds']} rounds ran before total_timeout")
    if threshold_failures:
        problems.append(f"{len(threshold_failures)} threshold(s) not met: " + "; ".join(threshold_failures))
    if regressions:
        problems.append(
            f"{len(regressions)} metric(s) regressed more than {params['max_regression_pct']:g}% against "
            f"{params['baseline']}: " + "; ".join(regressions)
        )
    problems += verdict_problems(round_verdicts, judged(params), params["max_regression_pct"])
    noisy = too_noisy(round_verdicts, judged(params))
    result["too_noisy"] = noisy
    if noisy and params["fail_when_too_noisy"]:
        problems.append("too noisy to judge: " + "; ".join(noisy))
    elif noisy:
        module.warn("Not judged, too noisy: " + "; ".join(noisy))
    result = redact(result, secrets)
    problems = redact(problems, secrets)
    result["result_path"] = None
    # Only a run that passed joins the baseline: a failed one measured something else.
    joins = bool(status.get("add") and params["baseline_update_path"] and not problems)
    if params["result_path"] or joins:
        samples, sample_counts = latency_samples(results)
        record = {
            **result,
            "samples": samples,
            "sample_counts": sample_counts,
            "rounds_format": ROUNDS_FORMAT,
            "rounds": round_metrics,
            "module_version": MODULE_VERSION,
            "parameters": public_parameters(params),
            "host": socket.gethostname(),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "passed": not problems,
            "problems": problems,
        }
        record = redact(record, secrets)
    if params["result_path"]:
        step.doing = f"writing result_path {params['result_path']}"
        try:
            write_json_atomic(params["result_path"], record)
        except OSError as exc:
            fail(module, secrets, f"cannot write result_path {params['result_path']!r}: {exc}", **result)
        result["result_path"] = params["result_path"]
    if joins:
        step.doing = f"writing baseline_update_path {params['baseline_update_path']}"
        try:
            # The baseline's earlier sessions come from a file: redacted as well.
            write_json_atomic(
                params["baseline_update_path"], redact(extended_baseline(rounds_baseline, record), secrets)
            )
        except OSError as exc:
            fail(
                module,
                secrets,
                f"cannot write baseline_update_path {params['baseline_update_path']!r}: {exc}",
                **result,
            )
    if status:
        result["baseline_status"] = redact({**status, "written": joins}, secrets)
    changed = result["result_path"] is not None or joins
    if problems:
        fail(module, secrets, "vllm_benchmark failed: " + " | ".join(problems), changed=changed, **result)
    module.exit_json(changed=changed, msg=lines[1] + "; " + lines[2], **result)


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("dataset", "sharegpt", ("dataset_path",))],
        required_by={"max_regression_pct": ("baseline",)},
    )
    step = Step("checking the options")
    try:
        run(module, step)
    except Exception as exc:  # the last guard: a message naming what failed, never a traceback
        fail(
            module,
            known_secrets(module.params),
            f"vllm_benchmark: unexpected {type(exc).__name__} while {step.doing}: {str(exc)[:500]} "
            "(a defect of the module: please report it with this message)",
        )


if __name__ == "__main__":
    main()
