"""nvidia-smi parsing, and vllm_gpu_facts run end to end against the captured-output stand-in.

The captures in tests/data/nvidia-smi/ come from real machines (sources in each
file's header and in the README there); scripts/nvidia-smi-standin replays them
because no GPU exists where these tests run.
"""

import os
import subprocess
from pathlib import Path

import pytest
from ansible.module_utils.vllm_gpu import (
    GPU_QUERY_FIELDS,
    accelerator_facts,
    csv_rows,
    cuda_version_from_banner,
    driver_version_from_banner,
    driver_version_from_csv,
    enabled_or_none,
    fields_without_optional,
    gpus_from_csv,
    is_driver_failure,
    mib_or_none,
    query_args,
    value_or_none,
)
from moduletest import REPO, run_module

STANDIN = REPO / "scripts" / "nvidia-smi-standin"
CAPTURES = REPO / "tests" / "data" / "nvidia-smi"
MODULE = REPO / "library" / "vllm_gpu_facts.py"
TABLE_FIELDS = ["index", "name", "memory.total", "memory.used", "driver_version", "persistence_mode"]
FULL_FIELDS = fields_without_optional(GPU_QUERY_FIELDS)

# case: (fields the capture holds, gpu count, name, total MiB, used MiB per GPU, driver, CUDA, persistence)
CASES = {
    "h100-80gb-x1": (TABLE_FIELDS, 1, "NVIDIA H100 80GB HBM3", 81559, [0], "535.247.01", "12.2", True),
    "h100-80gb-x8": (FULL_FIELDS, 8, "NVIDIA H100 80GB HBM3", 81559, [1] * 8, "565.57.01", "12.7", True),
    "a10g-24gb-x4": (TABLE_FIELDS, 4, "NVIDIA A10G", 23028, [11755, 2, 2, 2], "515.65.01", "11.7", True),
    "l40s-48gb-x2": (TABLE_FIELDS, 2, "NVIDIA L40S", 46068, [1, 1], "560.35.03", "12.6", True),
    "l40s-48gb-x1": (FULL_FIELDS, 1, "NVIDIA L40S", 46068, [1], "550.127.05", "12.4", True),
    "a100-40gb-gpu0-31gb-used": (TABLE_FIELDS, 1, "NVIDIA A100-PCIE-40GB", 40960, [31956], "580.126.20", "13.0", False),
}


def standin(case: str, *args: str) -> subprocess.CompletedProcess:
    """Run the stand-in for a case."""
    return subprocess.run(
        [str(STANDIN), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NVIDIA_SMI_STANDIN": case},
        check=False,
    )


@pytest.fixture
def standin_path(tmp_path: Path) -> str:
    """A PATH whose first folder has the stand-in installed as `nvidia-smi`."""
    (tmp_path / "nvidia-smi").symlink_to(STANDIN)
    return f"{tmp_path}:/usr/bin:/bin"


# --- plain parsing ---------------------------------------------------------------------------------------------


def test_query_args_ask_bare_csv():
    assert query_args(["index", "name"]) == ["--query-gpu=index,name", "--format=csv,noheader,nounits"]
    assert "compute_cap" in GPU_QUERY_FIELDS
    assert "compute_cap" not in fields_without_optional(GPU_QUERY_FIELDS)


def test_values_nvidia_smi_marks_as_missing_are_none():
    assert value_or_none("[N/A]") is None
    assert value_or_none("[Not Supported]") is None
    assert value_or_none(" 9.0 ") == "9.0"
    assert mib_or_none("81559") == 81559
    assert mib_or_none("81559 MiB") == 81559
    assert mib_or_none("[N/A]") is None
    assert enabled_or_none("Enabled") is True
    assert enabled_or_none("Disabled") is False
    assert enabled_or_none("[N/A]") is None


def test_a_row_with_the_wrong_number_of_values_is_an_error_not_a_shift():
    with pytest.raises(ValueError, match="3 values where 2 were asked"):
        csv_rows("0, NVIDIA A10G, 23028\n", ["index", "name"])


def test_compute_cap_when_a_newer_driver_reports_it():
    gpus = gpus_from_csv("0, NVIDIA L40S, 8.9\n", ["index", "name", "compute_cap"])
    assert gpus[0]["compute_cap"] == "8.9"
    assert gpus[0]["uuid"] is None


def test_cuda_version_from_banner_and_from_query_mode():
    banner = "| NVIDIA-SMI 565.57.01              Driver Version: 565.57.01      CUDA Version: 12.7     |"
    assert cuda_version_from_banner(banner) == "12.7"
    assert driver_version_from_banner(banner) == "565.57.01"
    assert cuda_version_from_banner("CUDA Version                              : 12.6") == "12.6"
    assert cuda_version_from_banner("CUDA Version                              : Not Found") is None


def test_driver_failure_is_recognised():
    text = (CAPTURES / "driver-not-loaded.txt").read_text()
    assert is_driver_failure(text)
    assert not is_driver_failure("0, NVIDIA L40S, 46068")


def test_no_gpus_means_cpu():
    facts = accelerator_facts([], None, None)
    assert facts["accelerator"] == "cpu"
    assert facts["gpu_count"] == 0
    assert facts["gpus"] == []
    assert facts["memory_total_mib_min"] is None


# --- every captured machine, through the stand-in -------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_capture_parses(case):
    fields, count, name, total, used, driver, cuda, persistence = CASES[case]
    answer = standin(case, *query_args(fields))
    assert answer.returncode == 0, answer.stderr
    gpus = gpus_from_csv(answer.stdout, fields)
    facts = accelerator_facts(gpus, driver_version_from_csv(answer.stdout, fields), None)
    assert facts["gpu_count"] == count
    assert [gpu["index"] for gpu in gpus] == list(range(count))
    assert {gpu["name"] for gpu in gpus} == {name}
    assert facts["homogeneous"] is True
    assert facts["memory_total_mib_min"] == total
    assert [gpu["memory_used_mib"] for gpu in gpus] == used
    assert {gpu["persistence_mode"] for gpu in gpus} == {persistence}
    assert facts["driver_version"] == driver
    banner = standin(case)
    assert banner.returncode == 0
    assert cuda_version_from_banner(banner.stdout) == cuda
    assert driver_version_from_banner(banner.stdout) == driver


def test_the_a10g_host_with_a_process_on_gpu_0():
    fields = TABLE_FIELDS
    gpus = gpus_from_csv(standin("a10g-24gb-x4", *query_args(fields)).stdout, fields)
    assert gpus[0]["memory_used_mib"] == 11755
    assert gpus[0]["memory_total_mib"] - gpus[0]["memory_used_mib"] == 11273


def test_the_gpu_0_with_31_gib_taken():
    fields = TABLE_FIELDS
    gpus = gpus_from_csv(standin("a100-40gb-gpu0-31gb-used", *query_args(fields)).stdout, fields)
    assert gpus[0]["memory_used_mib"] == 31956
    # What is left for vLLM at most (the capture has no memory.free; the driver also reserves some).
    assert gpus[0]["memory_total_mib"] - gpus[0]["memory_used_mib"] == 9004


def test_full_captures_report_free_memory_and_uuids():
    fields = FULL_FIELDS
    gpus = gpus_from_csv(standin("h100-80gb-x8", *query_args(fields)).stdout, fields)
    assert all(gpu["memory_free_mib"] == 81106 for gpu in gpus)
    assert gpus[0]["uuid"] == "GPU-b42dd28e-ffdd-8720-1df0-98bd8cdc05b1"
    assert len({gpu["uuid"] for gpu in gpus}) == 8


# --- the stand-in refuses what it cannot answer ----------------------------------------------------------------


def test_standin_warns_on_stderr_first():
    answer = standin("h100-80gb-x8")
    assert answer.stderr.splitlines()[0].startswith("WARNING: this is nvidia-smi-standin")


@pytest.mark.parametrize(
    ("case", "args", "says"),
    [
        ("h100-80gb-x8", query_args(GPU_QUERY_FIELDS), "no captured value for: compute_cap"),
        ("a10g-24gb-x4", query_args(["uuid"]), "no captured value for: uuid"),
        ("h100-80gb-x8", ["-q"], "cannot answer"),
        ("h100-80gb-x8", ["--query-gpu=index", "--format=xml"], "cannot answer"),
        ("no-such-machine", [], "no capture selected or found"),
    ],
)
def test_standin_refuses_rather_than_invents(case, args, says):
    answer = standin(case, *args)
    assert answer.returncode == 2
    assert answer.stdout == ""
    assert says in answer.stderr


def test_standin_reads_the_case_from_a_file_when_installed(tmp_path):
    # /etc/nvidia-smi-standin cannot be written here; NVIDIA_SMI_STANDIN_DIR plus the env var covers the lookup.
    (tmp_path / "mine.txt").write_text((CAPTURES / "l40s-48gb-x1.txt").read_text())
    answer = subprocess.run(
        [str(STANDIN), "--query-gpu=name", "--format=csv"],
        capture_output=True,
        text=True,
        env={**os.environ, "NVIDIA_SMI_STANDIN": "mine", "NVIDIA_SMI_STANDIN_DIR": str(tmp_path)},
        check=False,
    )
    assert answer.stdout == "name\nNVIDIA L40S\n"


# --- the module, run as a host runs it --------------------------------------------------------------------------


def test_module_on_the_8x_h100_host(standin_path):
    rc, result = run_module(MODULE, {}, env={"PATH": standin_path, "NVIDIA_SMI_STANDIN": "h100-80gb-x8"})
    assert rc == 0, result
    facts = result["ansible_facts"]["vllm_accelerator"]
    assert result["changed"] is False
    assert facts["accelerator"] == "cuda"
    assert facts["gpu_count"] == 8
    assert facts["driver_version"] == "565.57.01"
    assert facts["cuda_version"] == "12.7"
    assert facts["memory_total_mib_min"] == 81559
    assert facts["memory_free_mib_min"] == 81106
    assert facts["homogeneous"] is True
    # The capture has no compute_cap: the module's retry without it is what made this work.
    assert facts["gpus"][7] == {
        "index": 7,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-33135771-a848-ece1-b61e-489e221d663c",
        "memory_total_mib": 81559,
        "memory_used_mib": 1,
        "memory_free_mib": 81106,
        "persistence_mode": True,
        "compute_cap": None,
    }


def test_module_on_the_l40s_host_with_an_explicit_path():
    rc, result = run_module(
        MODULE,
        {"nvidia_smi_path": str(STANDIN), "_ansible_check_mode": True},
        env={"NVIDIA_SMI_STANDIN": "l40s-48gb-x1"},
    )
    assert rc == 0, result
    facts = result["ansible_facts"]["vllm_accelerator"]
    assert facts["gpu_count"] == 1
    assert facts["gpus"][0]["name"] == "NVIDIA L40S"
    assert facts["memory_free_mib_min"] == 45589
    assert facts["cuda_version"] == "12.4"


def test_module_without_nvidia_smi_reports_a_cpu_host(tmp_path):
    rc, result = run_module(MODULE, {}, env={"PATH": str(tmp_path)})
    assert rc == 0, result
    facts = result["ansible_facts"]["vllm_accelerator"]
    assert facts["accelerator"] == "cpu"
    assert facts["gpu_count"] == 0
    assert facts["gpus"] == []
    assert facts["nvidia_smi_path"] is None


def test_module_fails_with_a_fix_when_the_driver_is_not_loaded(standin_path):
    rc, result = run_module(MODULE, {}, env={"PATH": standin_path, "NVIDIA_SMI_STANDIN": "driver-not-loaded"})
    assert rc != 0
    assert result["failed"] is True
    assert "couldn't communicate with the NVIDIA driver" in result["msg"]
    assert "modprobe nvidia" in result["msg"]
    assert "reboot" in result["msg"]
    assert "Traceback" not in result["msg"]


def test_module_can_report_a_broken_driver_without_failing(standin_path):
    rc, result = run_module(
        MODULE, {"fail_on_error": False}, env={"PATH": standin_path, "NVIDIA_SMI_STANDIN": "driver-not-loaded"}
    )
    assert rc == 0, result
    facts = result["ansible_facts"]["vllm_accelerator"]
    assert facts["accelerator"] == "cpu"
    assert "modprobe nvidia" in facts["nvidia_smi_error"]
    assert result["warnings"]


def test_module_fails_on_a_wrong_nvidia_smi_path(tmp_path):
    rc, result = run_module(MODULE, {"nvidia_smi_path": str(tmp_path / "nope")})
    assert rc != 0
    assert "is not an executable file" in result["msg"]


def test_module_estimates_free_memory_on_a_table_only_capture(standin_path):
    # Those captures lack uuid and memory.free; the stand-in refuses them, so the module falls
    # back to the minimal query and estimates free memory as total - used, and says so.
    rc, result = run_module(MODULE, {}, env={"PATH": standin_path, "NVIDIA_SMI_STANDIN": "a10g-24gb-x4"})
    assert rc == 0, result
    facts = result["ansible_facts"]["vllm_accelerator"]
    assert facts["gpu_count"] == 4
    assert facts["memory_free_estimated"] is True
    assert facts["memory_free_mib_min"] == facts["gpus"][0]["memory_total_mib"] - facts["gpus"][0]["memory_used_mib"]
