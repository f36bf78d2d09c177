#!/usr/bin/python
"""Ansible module vllm_tune_study: the tuning search's memory (an Optuna study in SQLite) and its next step."""

DOCUMENTATION = r"""
---
module: vllm_tune_study
short_description: Ask the next settings to try, record a trial, or report a tune (controller)
description:
  - The search of playbooks/tune.yml (role vllm_tune) keeps its trials in an Optuna study stored in SQLite at
    O(path), so a tune that was stopped resumes where it was when run again with the same O(path).
  - O(action=ask) returns the next settings to try, or RV(done) with why. O(strategy=coordinate) starts with
    O(start) (the settings in force) and then tries the untried neighbours (one step in one knob) of the best
    settings so far, until none is better (module_utils/vllm_tune.py). O(strategy=grid) tries every point of the
    space, as an exhaustive sweep does. Either stops at O(max_trials) or past O(deadline).
  - O(action=tell) records a trial's outcome (its capacity within the SLO, or that it failed and why).
  - O(action=report) returns every trial, the start and the best.
  - Runs on the controller and needs the controller venv's optuna (requirements.txt).
version_added: "1.2.0"
author:
  - vllm-fleet maintainers
options:
  path:
    description: The study's SQLite file; made when missing.
    type: path
    required: true
  action:
    description: V(ask), V(tell) or V(report).
    type: str
    choices: [ask, tell, report]
    required: true
  space:
    description: Knob to its values, as module vllm_tune_plan returns them (typed, in order).
    type: dict
    default: {}
  start:
    description: The settings in force when the tune began (knob to value).
    type: dict
    default: {}
  strategy:
    description: V(coordinate) (coordinate descent from O(start)) or V(grid) (every point).
    type: str
    choices: [coordinate, grid]
    default: coordinate
  max_trials:
    description: Most trials, the start's included.
    type: int
    default: 8
  deadline:
    description: Seconds since 1970 after which no trial is asked; none when 0.
    type: float
    default: 0
  number:
    description: The trial to record (RV(number) of the ask).
    type: int
  status:
    description: How the trial ended.
    type: str
    choices: [ok, failed]
  capacity:
    description: The trial's capacity within the SLO (requests/s), for V(ok).
    type: float
  reason:
    description: Why the trial failed, the first line of its failure.
    type: str
    default: ""
  details:
    description: What else to keep with the trial (the capacity run's steps, the load it reached).
    type: dict
    default: {}
attributes:
  check_mode:
    support: none
notes:
  - Never touches a host.
seealso:
  - module: vllm_tune_plan
  - module: vllm_benchmark
"""

EXAMPLES = r"""
- name: Ask what to try next
  vllm_tune_study:
    path: results/tune/gpu-node-1/20261203T170000Z/study.db
    action: ask
    space: {max_num_seqs: [8, 16, 32, 64]}
    start: {max_num_seqs: 16}
    max_trials: 8
  delegate_to: localhost
  register: _trial

- name: Record that it served 12.5 requests/s within the SLO
  vllm_tune_study:
    path: results/tune/gpu-node-1/20261203T170000Z/study.db
    action: tell
    number: "{{ _trial.number }}"
    status: ok
    capacity: 12.5
  delegate_to: localhost
"""

RETURN = r"""
done:
  description: For V(ask), whether the search is over (RV(why) says why); no settings then.
  returned: action=ask
  type: bool
why:
  description: Why the search is over, or why these settings are tried.
  returned: action=ask
  type: str
number:
  description: The trial's number, for the V(tell).
  returned: action=ask and not done
  type: int
settings:
  description: The settings to try (knob to value).
  returned: action=ask and not done
  type: dict
label:
  description: RV(settings) as one line, C(knob=value) separated by spaces.
  returned: action=ask and not done
  type: str
  sample: max_num_seqs=32 cpu_kvcache_space_gb=1
variables:
  description: The role variables that put RV(settings) in force.
  returned: action=ask and not done
  type: dict
trials:
  description: For V(report), every trial in order, C(index), C(settings), C(label), C(variables) (the role
    variables that put them in force), C(status), C(capacity), C(reason), C(details), C(seconds) (from the ask
    to the tell, that is putting the settings in force and measuring them).
  returned: action=report
  type: list
  elements: dict
best:
  description: For V(report), the trial with the highest capacity; null when none served.
  returned: action=report
  type: dict
"""

import math
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vllm_tune import (
    best_trial,
    next_coordinate,
    next_grid,
    role_variables,
    settings_text,
)

INTERRUPTED = "interrupted before it was recorded"


def open_study(module: AnsibleModule, path: str):
    try:
        import optuna  # the controller venv's (requirements.txt)
    except ImportError:
        module.fail_json(msg="vllm_tune_study needs optuna on the controller: make venv (requirements.txt)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="vllm-fleet-tune", storage=f"sqlite:///{path}", load_if_exists=True, direction="maximize"
    )
    return optuna, study


def history(optuna, study) -> list[dict]:
    """The trials so far as plain records; a trial left running by a stopped tune is closed as interrupted."""
    records = []
    for trial in study.get_trials(deepcopy=False):
        state = trial.state
        if state == optuna.trial.TrialState.RUNNING:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            study.set_user_attr(f"interrupted-{trial.number}", True)
            continue
        if study.user_attrs.get(f"interrupted-{trial.number}"):
            continue
        settings = trial.user_attrs.get("settings", trial.params)
        records.append(
            {
                "index": len(records),
                "number": trial.number,
                "settings": settings,
                "label": settings_text(settings),
                "variables": role_variables(settings),
                "status": "ok" if state == optuna.trial.TrialState.COMPLETE else "failed",
                "capacity": trial.value if state == optuna.trial.TrialState.COMPLETE else None,
                "reason": trial.user_attrs.get("reason"),
                "details": trial.user_attrs.get("details", {}),
                # From the ask to the tell: putting the settings in force and measuring them.
                "seconds": (
                    round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)
                    if trial.datetime_start and trial.datetime_complete
                    else None
                ),
            }
        )
    return records


def distributions(optuna, space: dict, start: dict) -> dict:
    """One categorical distribution per knob: the space's values, and the start's where it is off the grid."""
    result = {}
    for knob, values in space.items():
        choices = list(values)
        if knob in start and start[knob] not in choices:
            choices.append(start[knob])
        result[knob] = optuna.distributions.CategoricalDistribution(choices)
    return result


def ask(module: AnsibleModule) -> None:
    p = module.params
    optuna, study = open_study(module, p["path"])
    done_so_far = history(optuna, study)
    if len(done_so_far) >= p["max_trials"]:
        module.exit_json(changed=False, done=True, why=f"vllm_tune_max_trials={p['max_trials']} trials done")
    if p["deadline"] and time.time() >= p["deadline"]:
        module.exit_json(changed=False, done=True, why="vllm_tune_time_budget spent")
    if p["strategy"] == "grid":
        candidate = next_grid(p["space"], done_so_far)
        why = "the next point of the grid"
    else:
        candidate = next_coordinate(p["space"], p["start"], done_so_far)
        why = "the settings in force" if candidate == p["start"] else "a neighbour of the best settings so far"
    if candidate is None:
        best = best_trial(done_so_far)
        module.exit_json(
            changed=False,
            done=True,
            why="converged: no neighbour of the best settings is better"
            + (f" ({settings_text(best['settings'])})" if best else ""),
        )
    study.enqueue_trial(candidate)
    trial = study.ask(distributions(optuna, p["space"], p["start"]))
    trial.set_user_attr("settings", candidate)
    module.exit_json(
        changed=True,
        done=False,
        why=why,
        number=trial.number,
        settings=candidate,
        label=settings_text(candidate),
        variables=role_variables(candidate),
        index=len(done_so_far),
    )


def tell(module: AnsibleModule) -> None:
    p = module.params
    if p["number"] is None or p["status"] is None:
        module.fail_json(msg="action=tell needs number and status")
    if p["status"] == "ok" and (p["capacity"] is None or not math.isfinite(p["capacity"]) or p["capacity"] < 0):
        module.fail_json(msg=f"status=ok needs capacity, a number of requests/s >= 0, got {p['capacity']!r}")
    optuna, study = open_study(module, p["path"])
    frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == p["number"]), None)
    if frozen is None:
        module.fail_json(msg=f"number={p['number']} is not a trial of the study at {p['path']}")
    if frozen.state != optuna.trial.TrialState.RUNNING:
        module.fail_json(msg=f"trial {p['number']} is recorded already ({frozen.state.name})")
    trial = optuna.trial.Trial(study, frozen._trial_id)
    if p["reason"]:
        trial.set_user_attr("reason", p["reason"][:2000])
    if p["details"]:
        trial.set_user_attr("details", p["details"])
    if p["status"] == "ok":
        study.tell(p["number"], p["capacity"])
    else:
        study.tell(p["number"], state=optuna.trial.TrialState.FAIL)
    module.exit_json(changed=True)


def report(module: AnsibleModule) -> None:
    optuna, study = open_study(module, module.params["path"])
    records = history(optuna, study)
    module.exit_json(changed=False, trials=records, best=best_trial(records))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "action": {"type": "str", "choices": ["ask", "tell", "report"], "required": True},
            "space": {"type": "dict", "default": {}},
            "start": {"type": "dict", "default": {}},
            "strategy": {"type": "str", "choices": ["coordinate", "grid"], "default": "coordinate"},
            "max_trials": {"type": "int", "default": 8},
            "deadline": {"type": "float", "default": 0},
            "number": {"type": "int"},
            "status": {"type": "str", "choices": ["ok", "failed"]},
            "capacity": {"type": "float"},
            "reason": {"type": "str", "default": ""},
            "details": {"type": "dict", "default": {}},
        },
        supports_check_mode=False,
    )
    try:
        {"ask": ask, "tell": tell, "report": report}[module.params["action"]](module)
    except Exception as exc:  # a module ends with a message, never a traceback
        action, path = module.params["action"], module.params["path"]
        module.fail_json(msg=f"vllm_tune_study {action} on {path}: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
