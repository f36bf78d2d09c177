"""Read rendered units and environment files back the way systemd does, for the hostile-input tests.

- `directives(text)`: a unit's (section, key, value) in order, parsed as systemd 252's config_parse()
  does (src/shared/conf-parser.c): comment lines are skipped, also inside a continuation; a line that
  ends in an unescaped backslash continues on the next one, the backslash read as a space.
- `verify_units(...)`: `systemd-analyze verify` over many units at once, under a scratch root that holds
  stand-in executables; what it reported about each (unknown keys, bad quoting, names it does not accept).
- `exec_argvs(...)`: each unit's ExecStart= argv as systemd itself parsed it, read from the dump of
  `systemd --test` (the real manager code loads the units and runs nothing), `$$` made `$` as the
  command gets it.
- `env_file_values(...)`: an environment file parsed by systemd's own env-file parser, through
  systemd-environment-d-generator (the same parse_env_file_internal() as EnvironmentFile=).

Each of the last three returns None, and the caller skips saying why, when that systemd tool cannot run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")
ENV_GENERATOR = Path("/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator")
WHITESPACE = " \t\n\r"
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "s": " "}


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every assignment in a unit file, in order."""
    out: list[tuple[str, str, str]] = []
    section = ""
    continuation: str | None = None
    for line in text.split("\n"):
        stripped = line.lstrip(WHITESPACE)
        if stripped and stripped[0] in "#;":
            continue
        joined = line if continuation is None else continuation + line
        escaped = False
        for char in joined:
            escaped = False if escaped else char == "\\"
        if escaped:
            continuation = joined[:-1] + " "
            continue
        continuation = None
        joined = joined.strip(WHITESPACE)
        if not joined:
            continue
        if joined.startswith("["):
            assert joined.endswith("]"), f"bad section header {joined!r}"
            section = joined[1:-1]
            continue
        assert "=" in joined, f"line without '=': {joined!r}"
        key, value = joined.split("=", 1)
        out.append((section, key.strip(WHITESPACE), value.strip(WHITESPACE)))
    assert continuation is None, "the unit ends inside a continuation"
    return out


def directive_keys(text: str) -> list[tuple[str, str]]:
    return [(section, key) for section, key, _ in directives(text)]


def _decode_escapes(text: str) -> str:
    """Undo systemd's C escaping (cescape: \\n, \\\\, \\", octal \\NNN, \\xNN) as in a dump or generator output."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in ESCAPES:
            out += ESCAPES[nxt].encode()
            i += 2
        elif nxt == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif nxt in "01234567":
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
        else:
            out += nxt.encode("utf-8")
            i += 2
    return out.decode("utf-8")


def shell_words(text: str) -> list[str]:
    """Words of a command line as systemd prints one (quote_command_line: double quotes, C escapes)."""
    words = []
    # Words are separated by ASCII spaces only: str.split() would also cut at U+2028, which systemd prints raw.
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|([^ "]+)', text):
        words.append(_decode_escapes(match.group(1)) if match.group(1) is not None else match.group(2))
    return words


def _scratch_dir() -> Path:
    """A directory the unprivileged `systemd --test` can read (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="vllm-fleet-unit-"))
    path.chmod(0o755)
    return path


def _stand_in(root: Path, executable: str) -> None:
    target = root / executable.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("#!/bin/sh\nexit 0\n")
    target.chmod(0o755)


def verify_units(units: dict[str, str], executables: list[str]) -> dict[str, str] | None:
    """`systemd-analyze verify` over every unit at once: NAME -> what it reported about that unit ('' for
    nothing), or None without the tool.

    EXECUTABLES get a stand-in under the scratch root (verify refuses a command that does not exist).
    """
    tool = shutil.which("systemd-analyze")
    if not tool:
        return None
    root = _scratch_dir()
    try:
        unit_dir = root / "etc" / "systemd" / "system"
        unit_dir.mkdir(parents=True)
        for name, text in units.items():
            (unit_dir / name).write_text(text, encoding="utf-8")
        for executable in executables:
            _stand_in(root, executable)
        done = subprocess.run(
            [tool, "verify", "--man=no", "--recursive-errors=no", f"--root={root}"]
            + [f"/etc/systemd/system/{name}" for name in units],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    reports = dict.fromkeys(units, "")
    for line in (done.stdout + done.stderr).splitlines():
        owners = [name for name in units if re.search(rf"(^|/){re.escape(name)}(:|\s)", line)] or list(units)
        for name in owners:
            reports[name] += line + "\n"
    if done.returncode != 0 and not any(reports.values()):
        return dict.fromkeys(units, f"systemd-analyze verify exited {done.returncode}")
    return reports


def verify(unit_text: str, name: str, executables: list[str]) -> str | None:
    reports = verify_units({name: unit_text}, executables)
    return None if reports is None else reports[name]


def _unprivileged(argv: list[str]) -> list[str] | None:
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]


def exec_argvs(units: dict[str, str], stand_ins: tuple[str, ...] = ()) -> dict[str, list[str]] | None:
    """NAME -> ExecStart='s argv as systemd parsed it, `$$` made `$` as at exec, for every unit at once;
    None when `systemd --test` cannot run here. STAND_INS are units the others require (empty services)."""
    if not SYSTEMD.exists():
        return None
    root = _scratch_dir()
    try:
        for name, text in units.items():
            (root / name).write_text(text, encoding="utf-8")
        for name in stand_ins:
            (root / name).write_text("[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n")
        (root / "vllm-fleet-tests.target").write_text("[Unit]\nWants=" + " ".join(units) + "\n")
        for path in root.iterdir():
            path.chmod(0o644)
        argv = _unprivileged([str(SYSTEMD), "--test", "--system", "--unit=vllm-fleet-tests.target", "--no-pager"])
        if argv is None:
            return None
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(root), "SYSTEMD_UNIT_PATH": f"{root}:"},
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if done.returncode != 0:
        return None
    argvs = {}
    for name in units:
        section = done.stdout.split(f"\t-> Unit {name}:\n", 1)
        assert len(section) == 2, f"{name} is not in systemd's dump"
        body = section[1].split("\n\t-> Unit ", 1)[0]
        match = re.search(r"-> ExecStart:\n\t+Command Line: (.*)\n", body)
        assert match, f"no ExecStart in systemd's dump of {name}"
        words = shell_words(match.group(1))
        for word in words:
            assert "$" not in word.replace("$$", ""), f"a lone $ reached ExecStart of {name}: {word!r}"
        argvs[name] = [word.replace("$$", "$") for word in words]
    return argvs


def env_file_values(text: str) -> dict[str, str] | None:
    """KEY -> VALUE of an environment file as systemd's parser reads it; None without the generator.

    The generator also expands $NAME in values and drops empty ones (environment.d's rules): callers
    compare only values without a $ followed by a name, and non-empty ones.
    """
    if not ENV_GENERATOR.exists():
        return None
    home = Path(tempfile.mkdtemp(prefix="vllm-fleet-env-"))
    try:
        (home / "environment.d").mkdir()
        (home / "environment.d" / "50-test.conf").write_text(text, encoding="utf-8")
        done = subprocess.run(
            [str(ENV_GENERATOR)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"XDG_CONFIG_HOME": str(home), "HOME": str(home), "PATH": "/usr/bin:/bin"},
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if done.returncode != 0:
        return None
    values = {}
    for line in done.stdout.split("\n"):  # not splitlines(): values may hold U+2028, printed raw
        if not line:
            continue
        key, value = line.split("=", 1)
        words = shell_words(value) if value.startswith('"') else [value]
        values[key] = words[0] if words else ""
    return values
