#!/usr/bin/python
"""Ansible module vllm_tune_plan: check a tune's settings before anything changes, and lay out its search."""

DOCUMENTATION = r"""
---
module: vllm_tune_plan
short_description: Check the search space, SLO and budget of a tune, and return its space and start (controller)
description:
  - Refuses, one line per problem naming the variable and what is valid, before anything on a host changes, an
    unknown knob in O(space) (with the closest knob), an empty or bad list of values, a knob the variant does not
    have, an SLO metric that does not exist, an attainment outside (0, 1], a trial or time budget of 0 or less, and
    a O(group) whose hosts (O(classes)) are of different hardware classes when one file is meant for all of them.
  - Returns the space with typed values in order (the variant's default space when O(space) is empty) and the
    start, the knobs' values in force (O(current)).
  - Runs on the controller; changes nothing.
version_added: "1.2.0"
author:
  - vllm-fleet maintainers
options:
  variant:
    description: The vLLM build, V(cpu) or V(cuda).
    type: str
    choices: [cpu, cuda]
    required: true
  space:
    description: Knob to the values to try (vllm_tune_space); empty for the variant's default space.
    type: dict
    default: {}
  current:
    description: The role variables in force, by knob (C(max_num_seqs), ...), for the start of the search.
    type: dict
    default: {}
  slo:
    description: The SLO, limits in milliseconds (C(ttft_ms), C(tpot_ms), C(e2e_ms) or C(e2el_ms)).
    type: dict
    required: true
  slo_attainment:
    description: The share of requests that must meet the SLO.
    type: raw
    required: true
  max_trials:
    description: Most trials.
    type: raw
    required: true
  time_budget:
    description: Seconds the search may take.
    type: raw
    required: true
  group:
    description: The inventory group one vars file is written for; empty for one host.
    type: str
    default: ""
  classes:
    description: The group's hosts to their hardware class (GPU model and count or CPU, driver, vLLM version).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
seealso:
  - module: vllm_tune_study
"""

EXAMPLES = r"""
- name: Check the tune's settings
  vllm_tune_plan:
    variant: cpu
    space: {max_num_seqs: [4, 8, 16, 32]}
    current: {max_num_seqs: 2}
    slo: {ttft_ms: 1000, tpot_ms: 100}
    slo_attainment: 0.9
    max_trials: 6
    time_budget: 1800
  delegate_to: localhost
"""

RETURN = r"""
space:
  description: Knob to its values, typed and in ascending order.
  returned: success
  type: dict
start_label:
  description: RV(start) as one line, C(knob=value) separated by spaces.
  returned: success
  type: str
slo_label:
  description: The SLO as one line, such as C(ttft_ms <= 1500, tpot_ms <= 150) (milliseconds).
  returned: success
  type: str
start:
  description: The start of the search, the knobs' values in force.
  returned: success
  type: dict
knobs:
  description: The knobs tuned, in order.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_tune import (
    DEFAULT_SPACES,
    budget_errors,
    class_errors,
    normalized_space,
    settings_text,
    slo_errors,
    space_errors,
    typed,
)


def start_value(knob: str, value):
    """The value in force, typed like the space's values; 0 (vLLM's default) and the like as they are."""
    try:
        return typed(knob, value)
    except ValueError:
        return value


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "variant": {"type": "str", "choices": ["cpu", "cuda"], "required": True},
            "space": {"type": "dict", "default": {}},
            "current": {"type": "dict", "default": {}},
            "slo": {"type": "dict", "required": True},
            "slo_attainment": {"type": "raw", "required": True},
            "max_trials": {"type": "raw", "required": True},
            "time_budget": {"type": "raw", "required": True},
            "group": {"type": "str", "default": ""},
            "classes": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    p = module.params
    space = p["space"] or DEFAULT_SPACES[p["variant"]]
    errors = space_errors(space, p["variant"])
    errors += slo_errors(p["slo"], p["slo_attainment"])
    errors += budget_errors(p["max_trials"], p["time_budget"])
    if p["group"]:
        errors += class_errors(p["group"], p["classes"])
    if errors:
        module.fail_json(msg="Invalid tune settings:\n" + "\n".join(f"- {e}" for e in errors), errors=errors)
    space = normalized_space(space)
    start = {knob: start_value(knob, p["current"].get(knob, 0)) for knob in space}
    module.exit_json(
        changed=False,
        space=space,
        start=start,
        start_label=settings_text(start),
        slo_label=", ".join(f"{metric} <= {limit}" for metric, limit in p["slo"].items()),
        knobs=list(space),
    )


if __name__ == "__main__":
    main()
