"""Run one of our Ansible modules the way a host runs it: a separate python process.

`run_module(path, args)` executes `python library/X.py ARGS_FILE` (ARGS_FILE
holding {"ANSIBLE_MODULE_ARGS": args}) with the project's module_utils/
importable as `ansible.module_utils.<name>`, and returns the exit status and
the JSON result the module printed. The one place tests start a module.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE_UTILS = REPO / "module_utils"

# Run in the child: make module_utils/ part of ansible.module_utils, then run the module as __main__.
BOOTSTRAP = (
    "import runpy, sys\n"
    "import ansible.module_utils\n"
    "ansible.module_utils.__path__.append(sys.argv.pop(1))\n"
    "sys.argv.pop(0)\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_module(
    path: str | Path, args: dict, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, dict]:
    """Run a module file with `args`; return (exit status, the result dict it printed).

    `env` entries are added to (and override) this process's environment, e.g. a
    PATH that puts a stand-in nvidia-smi first. Raises AssertionError with the
    module's output when it printed no JSON.
    """
    module_path = Path(path) if Path(path).is_absolute() else REPO / path
    with tempfile.TemporaryDirectory(prefix="moduletest-") as tmp:
        args_file = Path(tmp) / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}), encoding="utf-8")
        completed = subprocess.run(
            [sys.executable, "-c", BOOTSTRAP, str(MODULE_UTILS), str(module_path), str(args_file)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=tmp,
            check=False,
        )
    return completed.returncode, result_from_stdout(completed.stdout, completed.stderr)


def result_from_stdout(stdout: str, stderr: str) -> dict:
    """The JSON object a module printed (the last line that parses as one)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"module printed no JSON result\nstdout:\n{stdout}\nstderr:\n{stderr}")
