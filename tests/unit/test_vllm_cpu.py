"""The CPU facts, the AMX decision and the AMX permission hook (module_utils/vllm_cpu.py and its two modules)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ansible.module_utils import vllm_cpu
from moduletest import REPO, run_module

CPUINFO = REPO / "tests" / "data" / "cpuinfo"
ZEN4 = CPUINFO / "amd-epyc-zen4-avx512-kvm.txt"
ZEN3 = CPUINFO / "amd-epyc-zen3-avx2.txt"
SPR = CPUINFO / "intel-xeon-sapphire-rapids-amx-kvm.txt"


@pytest.mark.parametrize(
    ("path", "level", "isa", "amx", "model"),
    [
        (ZEN3, "AVX2", ["avx2"], False, "AMD EPYC 7763 64-Core Processor"),
        (ZEN4, "AVX-512 BF16", ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"], False, "AMD EPYC"),
        (
            SPR,
            "AMX",
            ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"],
            True,
            "Intel(R) Xeon(R) Platinum 8480+",
        ),
    ],
)
def test_cpu_facts_of_each_kind(path, level, isa, amx, model):
    facts = vllm_cpu.cpu_facts(path.read_text(), 2)
    assert facts == {
        "model": model,
        "vendor": "AuthenticAMD" if "AMD" in model else "GenuineIntel",
        "vcpus": 2,
        "isa": isa,
        "isa_level": level,
        "amx": amx,
    }


def test_isa_level_without_avx2_is_base_and_avx512_without_bf16_is_avx512():
    assert vllm_cpu.isa_level({"sse4_2"}) == "base"
    assert vllm_cpu.isa_level({"avx2", "avx512f"}) == "AVX-512"
    # AMX needs both the tiles and their bf16 instructions.
    assert vllm_cpu.isa_level({"avx512f", "avx512_bf16", "amx_tile"}) == "AVX-512 BF16"


def test_cpuinfo_reads_only_the_first_entry_and_refuses_empty_text():
    text = "processor : 0\nflags : avx2\n\nprocessor : 1\nflags : avx2 avx512f\n"
    assert vllm_cpu.cpu_flags(vllm_cpu.cpuinfo_fields(text)) == {"avx2"}
    with pytest.raises(vllm_cpu.CpuInfoError):
        vllm_cpu.cpu_facts("\n\n", 1)


@pytest.mark.parametrize(
    ("variant", "version", "amx", "mode", "install", "says"),
    [
        ("cpu", "0.32.0", True, "auto", True, "SIGILL"),
        ("cpu", "0.32.0", False, "auto", False, "no AMX"),
        ("cuda", "0.32.0", True, "auto", False, "cuda build"),
        ("cpu", "0.32.0", True, "never", False, "never"),
        ("cpu", "0.32.0", False, "always", True, "always"),
        ("cpu", "0.33.0.post1", True, "auto", True, "SIGILL"),
    ],
)
def test_amx_hook_decision(variant, version, amx, mode, install, says):
    decided, reason = vllm_cpu.amx_hook_decision(variant, version, amx, mode)
    assert decided is install
    assert says in reason


def test_amx_hook_goes_away_from_the_release_that_fixes_it(monkeypatch):
    monkeypatch.setattr(vllm_cpu, "AMX_PERMISSION_FIXED_IN", "0.40.0")
    assert vllm_cpu.amx_hook_decision("cpu", "0.39.2", True)[0] is True
    installed, reason = vllm_cpu.amx_hook_decision("cpu", "0.40.0", True)
    assert installed is False
    assert "asks for AMX permission itself" in reason


def test_amx_hook_decision_refuses_a_version_that_is_not_one():
    with pytest.raises(ValueError, match="not a vLLM release"):
        vllm_cpu.amx_hook_decision("cpu", "latest", True)


def fake_venv(root: Path) -> Path:
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    return site


def test_cpu_facts_module_on_captures(tmp_path):
    rc, result = run_module("library/vllm_cpu_facts.py", {"cpuinfo_path": str(SPR)})
    assert rc == 0, result
    assert result["ansible_facts"]["vllm_cpu"]["isa_level"] == "AMX"
    assert result["changed"] is False
    rc, result = run_module("library/vllm_cpu_facts.py", {"cpuinfo_path": str(tmp_path / "missing")})
    assert rc == 1
    assert "cannot read" in result["msg"] and "missing" in result["msg"]


def test_amx_module_installs_on_amx_and_is_idempotent(tmp_path):
    site = fake_venv(tmp_path)
    args = {"venv": str(tmp_path), "variant": "cpu", "version": "0.32.0", "cpuinfo_path": str(SPR)}
    rc, result = run_module("library/vllm_amx_permission.py", args)
    assert rc == 0, result
    assert result["changed"] is True and result["installed"] is True
    assert (site / "vllm_fleet_amx.pth").read_text() == "import vllm_fleet_amx\n"
    assert (site / "vllm_fleet_amx.pth").stat().st_mode & 0o777 == 0o644
    compile((site / "vllm_fleet_amx.py").read_text(), "vllm_fleet_amx.py", "exec")
    rc, again = run_module("library/vllm_amx_permission.py", args)
    assert rc == 0 and again["changed"] is False


def test_amx_module_removes_the_hook_where_it_is_not_needed(tmp_path):
    site = fake_venv(tmp_path)
    (site / "vllm_fleet_amx.pth").write_text("import vllm_fleet_amx\n")
    (site / "vllm_fleet_amx.py").write_text("STATUS = 'old'\n")
    args = {"venv": str(tmp_path), "variant": "cpu", "version": "0.32.0", "cpuinfo_path": str(ZEN4)}
    rc, check = run_module("library/vllm_amx_permission.py", {**args, "_ansible_check_mode": True})
    assert rc == 0 and check["changed"] is True and (site / "vllm_fleet_amx.pth").exists()
    rc, result = run_module("library/vllm_amx_permission.py", args)
    assert rc == 0 and result["changed"] is True and result["installed"] is False
    assert not (site / "vllm_fleet_amx.pth").exists() and not (site / "vllm_fleet_amx.py").exists()
    assert "no AMX" in result["reason"]


def test_amx_module_on_a_folder_that_is_no_venv(tmp_path):
    args = {"venv": str(tmp_path), "variant": "cpu", "version": "0.32.0", "cpuinfo_path": str(SPR)}
    rc, result = run_module("library/vllm_amx_permission.py", args)
    assert rc == 1
    assert "site-packages" in result["msg"] and "Traceback" not in result["msg"]


def host_has_amx() -> bool:
    return "amx_tile" in vllm_cpu.cpu_flags(vllm_cpu.cpuinfo_fields(Path("/proc/cpuinfo").read_text()))


def test_the_hook_runs_in_spawned_processes_of_the_venv(tmp_path):
    """What vLLM's CPU workers are: multiprocessing spawn children of the venv's python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    rc, result = run_module(
        "library/vllm_amx_permission.py",
        {"venv": str(venv), "variant": "cpu", "version": "0.32.0", "mode": "always"},
    )
    assert rc == 0 and result["installed"] is True, result
    script = textwrap.dedent(
        """
        import json, multiprocessing as mp, sys

        def child(queue):
            loaded_at_start = "vllm_fleet_amx" in sys.modules
            status = sys.modules["vllm_fleet_amx"].STATUS if loaded_at_start else None
            queue.put(json.dumps([loaded_at_start, status]))

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            worker = ctx.Process(target=child, args=(queue,))
            worker.start()
            print(queue.get(timeout=60))
            worker.join(60)
        """
    )
    # -c would not do: spawn children re-import __main__ from a file.
    (tmp_path / "spawn_check.py").write_text(script)
    out = subprocess.run(
        [str(venv / "bin" / "python"), str(tmp_path / "spawn_check.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # The spawned child had the hook loaded before any code of ours ran: site.py ran the .pth.
    loaded_at_start, status = json.loads(out.stdout.strip())
    assert loaded_at_start is True, out.stderr
    if host_has_amx():
        assert status == "granted"
    else:
        assert status.startswith("refused: "), status


def test_without_the_hook_a_spawned_process_has_no_amx_permission(tmp_path):
    """The control: the same child in a venv without the hook never ran it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print('vllm_fleet_amx' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "False"
