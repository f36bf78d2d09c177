# Copyright: vllm-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every value that reaches a systemd unit or an environment file goes through `quote()`, or is refused.

systemd parses more than it seems to (systemd.syntax(7), systemd.unit(5), systemd.service(5),
systemd.exec(5); each rule below was checked with systemd 252's own parser, see
tests/unit/test_hostile_render.py):

- A unit file is read line by line. A line that ends in an unescaped backslash continues on the next
  one; a line that starts with `#` or `;` is a comment, also inside such a continuation.
- `%x` specifiers are expanded in directive values (`%%` is a literal `%`), not in comments.
- ExecStart= splits its value into words: double or single quotes, C escapes (`\\n`, `\\"`, `\\\\`,
  `\\xNN`, ...), and `$NAME` / `${NAME}` expanded when the command runs (`$$` is a literal `$`). Prefixes
  such as `+` (run as root, outside the sandbox) or `-` only count on the first word, unquoted.
- Environment= takes words with the same quotes and escapes, but expands no `$`.
- WorkingDirectory=, ReadWritePaths=, EnvironmentFile=, User=, Group= and Description= unescape nothing,
  so a value that needs escaping cannot be written there at all: such paths and names are refused.
- An EnvironmentFile= file holds KEY=VALUE lines; a double-quoted value may span lines and keeps every
  character except that a backslash escapes one of `\\ " ` $`. NUL, U+FEFF and Unicode noncharacters
  cannot be carried.

`quote(value, context)` writes VALUE for one CONTEXT (the keys of CONTEXTS) or raises UnitValueError,
whose `valid` says what would be accepted. The modules vllm_config and vllm_multinode_layout return
every value their templates place already through it; templates only place strings. Standard library
only, Python 3.10+.
"""

from __future__ import annotations

import re
from typing import Any

# A word that needs no quotes in ExecStart= or Environment= once % (and $) are doubled.
BARE_WORD_RE = re.compile(r"[A-Za-z0-9_./:=,@+%-]+")
# systemd's strict user and group name rule (valid_user_group_name without VALID_USER_RELAX).
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,30}")
PATH_COMPONENT_RE = re.compile(r"[A-Za-z0-9._+@-]+")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters an EnvironmentFile= double-quoted value escapes with a backslash (SHELL_NEED_ESCAPE).
ENV_FILE_ESCAPED = '\\"`$'

PATH_VALID = (
    "must be an absolute, normalized path such as /opt/vllm: components of letters, digits and . _ + @ -, "
    "no '.' or '..', no trailing slash (no spaces, quotes, % or $, which the unit's path directives "
    "cannot escape)"
)
NAME_VALID = (
    "must be a user or group name systemd accepts: a letter or _, then letters, digits, _ or -, at most 31 characters"
)
ENV_KEY_VALID = "must be an environment variable name: a letter or _, then letters, digits or _"


class UnitValueError(ValueError):
    """VALUE cannot be written in the context asked for; `valid` says what can."""

    def __init__(self, valid: str):
        super().__init__(valid)
        self.valid = valid


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise UnitValueError("must not hold a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnitValueError("must be valid UTF-8 text") from exc


def _is_plain(char: str) -> bool:
    """A character written as itself: printable, and not one that some reader takes for a line break."""
    return char.isprintable() and char not in "\x85\u2028\u2029"


def _hex_bytes(char: str) -> str:
    return "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8"))


def _word(text: str, dollar: bool) -> str:
    """One word of ExecStart= (dollar: `$` doubled) or Environment= (not expanded there)."""
    text = text.replace("%", "%%")
    if dollar:
        text = text.replace("$", "$$")
    if text and BARE_WORD_RE.fullmatch(text):
        return text
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif _is_plain(char):
            out.append(char)
        else:
            # systemd's C unescaping turns \xNN into that byte, so a character's UTF-8 bytes give it back.
            out.append(_hex_bytes(char))
    return '"' + "".join(out) + '"'


def _visible(text: str) -> str:
    """TEXT on one line: backslashes doubled, every other non-printable character as \\xNN."""
    return "".join("\\\\" if c == "\\" else c if _is_plain(c) else _hex_bytes(c) for c in text)


def _exec(text: str) -> str:
    return _word(text, dollar=True)


def _environment(text: str) -> str:
    if "=" not in text or not ENV_KEY_RE.fullmatch(text.split("=", 1)[0]):
        raise UnitValueError("must be KEY=VALUE with an environment variable name as KEY")
    return _word(text, dollar=False)


def _text(text: str) -> str:
    return _visible(text).replace("%", "%%")


def _comment(text: str) -> str:
    return _visible(text)


def _path(text: str) -> str:
    parts = text.split("/")
    if (
        not text.startswith("/")
        or text == "/"
        or not all(PATH_COMPONENT_RE.fullmatch(p) and p not in (".", "..") for p in parts[1:])
    ):
        raise UnitValueError(PATH_VALID)
    return text


def _name(text: str) -> str:
    if not NAME_RE.fullmatch(text):
        raise UnitValueError(NAME_VALID)
    return text


def _env_key(text: str) -> str:
    if not ENV_KEY_RE.fullmatch(text):
        raise UnitValueError(ENV_KEY_VALID)
    return text


def _env_file(text: str) -> str:
    bad = [c for c in text if c == "\ufeff" or 0xFDD0 <= ord(c) <= 0xFDEF or (ord(c) & 0xFFFE) == 0xFFFE]
    if bad:
        raise UnitValueError("must not hold U+FEFF or a Unicode noncharacter, which an environment file cannot carry")
    return '"' + "".join("\\" + c if c in ENV_FILE_ESCAPED else c for c in text) + '"'


CONTEXTS = {
    # An argument of ExecStart= (any text: quoted and escaped as needed).
    "exec": _exec,
    # One KEY=VALUE word of Environment=.
    "environment": _environment,
    # Free text of a directive that unescapes nothing, e.g. Description= (kept on one line).
    "text": _text,
    # The text of a `#` comment line (kept on one line).
    "comment": _comment,
    # WorkingDirectory=, ReadWritePaths=, EnvironmentFile=, and an ExecStart= executable: refused unless safe.
    "path": _path,
    # User=, Group=: refused unless a strict user name.
    "name": _name,
    # The KEY of an environment file line: refused unless a variable name.
    "env_key": _env_key,
    # The VALUE of an environment file line, double-quoted.
    "env_file": _env_file,
}


def quote(value: Any, context: str) -> str:
    """VALUE written for CONTEXT (a key of CONTEXTS); raises UnitValueError when it cannot be."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UnitValueError(f"must be a string, not {type(value).__name__}")
    text = str(value)
    _check_text(text)
    return CONTEXTS[context](text)


def env_file_line(key: Any, value: Any) -> str:
    """One KEY="VALUE" line of an EnvironmentFile= file; raises UnitValueError."""
    return f"{quote(key, 'env_key')}={quote(value, 'env_file')}"


def exec_line(argv: list[Any]) -> list[str]:
    """The words of an ExecStart= command: the executable must be a safe absolute path, so no prefix applies."""
    if not argv:
        raise UnitValueError("must name a command")
    return [quote(argv[0], "path")] + [quote(arg, "exec") for arg in argv[1:]]


def needs_no_quoting_in_env_file(value: str) -> bool:
    """Whether VALUE placed between double quotes in an environment file, unescaped, reads back as itself.

    For a secret that this project's modules must not return (an API key): it is refused unless this is
    true, so the template may place it raw. Control characters are refused too: no client could send one.
    """
    try:
        return quote(value, "env_file") == f'"{value}"' and all(_is_plain(c) for c in value)
    except UnitValueError:
        return False
