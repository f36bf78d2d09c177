"""vllm_ray_status gives `ray status` a deadline for the whole run, output included (issue 11 part 2).

The `ray` here is a stand-in script (no Ray cluster runs where CI runs): one that hangs, and one that exits at
once but leaves a child holding its output open, which makes a plain wait for the output hang too.
"""

from __future__ import annotations

import stat
import time

import pytest
from moduletest import REPO, run_module

MODULE = REPO / "library" / "vllm_ray_status.py"
EXPECTED = [{"name": "gpu-0", "address": "10.0.0.11", "devices": 8}]


def stand_in_ray(tmp_path, body: str):
    ray = tmp_path / "ray"
    ray.write_text(f"#!/bin/sh\n{body}\n")
    ray.chmod(ray.stat().st_mode | stat.S_IXUSR)
    return ray


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("hangs", "echo 'Connecting to 10.0.0.11:6379'\nexec sleep 120"),
        ("ignores SIGTERM", "trap '' TERM\necho 'Connecting'\nsleep 120"),
        ("leaves a child holding stdout", "sleep 120 &\necho 'Connecting'\nexit 0"),
    ],
)
def test_a_ray_status_that_does_not_finish_is_killed_at_the_timeout(tmp_path, name, body):
    ray = stand_in_ray(tmp_path, body)
    started = time.perf_counter()
    rc, result = run_module(
        MODULE, {"ray_bin": str(ray), "address": "10.0.0.11:6379", "expected": EXPECTED, "timeout": 1}, timeout=60
    )
    elapsed = time.perf_counter() - started
    assert rc == 0, result
    assert result["ready"] is False and result["missing"] == ["gpu-0"]
    assert "within 1 s" in result["message"] or "past 1 s" in result["message"], (name, result["message"])
    assert "killed" in result["message"], (name, result["message"])
    assert elapsed < 10, (name, elapsed)


def test_a_ray_that_cannot_be_run_is_reported(tmp_path):
    rc, result = run_module(
        MODULE, {"ray_bin": str(tmp_path / "no-ray"), "address": "10.0.0.11:6379", "expected": EXPECTED}
    )
    assert rc == 0 and result["ready"] is False and "could not be started" in result["message"]


def test_a_timeout_below_one_second_is_refused():
    rc, result = run_module(MODULE, {"ray_bin": "/bin/true", "address": "h:1", "expected": EXPECTED, "timeout": 0})
    assert rc == 1 and "timeout=0" in result["msg"]
