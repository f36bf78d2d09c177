"""The fleet's variables against the roles' argument specs: unknown names and wrong types, one line each.

Ansible ignores a variable that no role reads, so `vllm_gpu_memory_utilisation: 0.8` changes nothing and
says nothing; and when a type is wrong, a role's own argument validation prints its whole spec. These
functions check every variable under a prefix the roles own (`vllm_`, `ray_cluster_`, ...) before any
role starts: a name that no spec declares is refused with the closest declared name, and a value is
refused exactly when Ansible's role validation would refuse it (the same type converters, the same
choices check), with a line that names the variable, the value and what is valid.

Ansible's own variables (`ansible_host`, `inventory_hostname`, `groups`, ...), internal ones
(`__vllm_...`, `_vllm_...`, `__ray_cluster_...`) and every other prefix are never looked at.

Standard library and ansible.module_utils only, Python 3.10+: module vllm_variables runs it.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.module_utils.common.parameters import DEFAULT_TYPE_VALIDATORS
from ansible.module_utils.parsing.convert_bool import BOOLEANS_FALSE, BOOLEANS_TRUE

# The escape hatch: names (or fnmatch patterns) under our prefixes that belong to the user.
OWN_VARIABLES = "vllm_fleet_own_variables"
# A suggestion is made only when the part after the prefix is at least this similar.
SUGGESTION_CUTOFF = 0.6
# Hosts named in one line at most; more are counted.
HOSTS_SHOWN = 4
VALUE_CHARS = 60

_VALID_BY_TYPE = {
    "int": "must be a whole number",
    "float": "must be a number",
    "bool": "must be true or false (yes/no, on/off and 1/0 work too)",
    "list": "must be a list",
    "dict": "must be a mapping",
    "bytes": "must be a size in bytes, e.g. 4G",
    "bits": "must be a size in bits, e.g. 1Mb",
    "json": "must be JSON text or a list or mapping",
    "jsonarg": "must be JSON text or a list or mapping",
}
_PLURAL_BY_TYPE = {
    "str": "strings",
    "path": "paths",
    "int": "whole numbers",
    "float": "numbers",
    "bool": "booleans",
    "list": "lists",
    "dict": "mappings",
}
_EXAMPLE_BY_TYPE = {"list": "e.g. [one, two]", "dict": "e.g. {NAME: value}"}
# ansible-doc markup in descriptions: C(text), V(text), O(name), ... read as their text.
_DOC_MARKUP = re.compile(r"\b[BCIOVRM]\(([^()]*)\)")


def owned_prefixes(role_names: Iterable[str]) -> tuple[str, ...]:
    """The variable prefixes the roles own, shortest first: role vllm owns vllm_, so vllm_install adds none."""
    prefixes: list[str] = []
    for name in sorted(set(role_names), key=lambda n: (len(n), n)):
        prefix = f"{name}_"
        if not any(prefix.startswith(p) for p in prefixes):
            prefixes.append(prefix)
    return tuple(prefixes)


def owned_prefix(name: str, prefixes: Iterable[str]) -> str | None:
    """The prefix of ours that name starts with (the longest), or None for anyone else's variable."""
    matches = [p for p in prefixes if name.startswith(p)]
    return max(matches, key=len) if matches else None


def declared_options(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Name -> the distinct option specs declaring it, from {source: {name: option}} (e.g. 'roles/vllm main').

    A name declared alike by several entry points (a YAML anchor) is checked once.
    """
    declared: dict[str, list[dict[str, Any]]] = {}
    for source in sorted(specs):
        for name, option in (specs[source] or {}).items():
            option = dict(option or {})
            seen = declared.setdefault(name, [])
            shape = _shape(option)
            if all(_shape(other) != shape for other in seen):
                seen.append(option)
    return declared


def _shape(option: Mapping[str, Any]) -> tuple:
    return (option.get("type", "str"), option.get("elements"), repr(option.get("choices")), option.get("default"))


def closest_name(name: str, declared: Iterable[str], prefixes: Iterable[str]) -> str | None:
    """The declared name most like name, comparing what follows each one's prefix; None if none is close.

    Ties go to a name under the same prefix, then to the one most like the whole name.
    """
    prefixes = tuple(prefixes)
    own_prefix = owned_prefix(name, prefixes)

    def tail(n: str) -> str:
        prefix = owned_prefix(n, prefixes)
        return n[len(prefix) :] if prefix else n

    wanted = tail(name)
    best, best_score = None, None
    for candidate in sorted(declared):
        ratio = difflib.SequenceMatcher(None, wanted, tail(candidate)).ratio()
        if ratio < SUGGESTION_CUTOFF:
            continue
        same_prefix = owned_prefix(candidate, prefixes) == own_prefix
        score = (ratio, same_prefix, difflib.SequenceMatcher(None, name, candidate).ratio())
        if best_score is None or score > best_score:
            best, best_score = candidate, score
    return best


def is_own(name: str, own: Iterable[str]) -> bool:
    """Whether the user listed name in vllm_fleet_own_variables (exact names or fnmatch patterns)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in own)


def show_value(value: Any) -> str:
    """A value as the project's messages show it: Python's repr, null for None, cut to VALUE_CHARS."""
    text = "null" if value is None else repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


def _valid_text(option: Mapping[str, Any]) -> str:
    wanted = option.get("type", "str")
    text = _VALID_BY_TYPE.get(wanted, f"must be of type {wanted}")
    default = option.get("default")
    if wanted == "int" and isinstance(default, int) and not isinstance(default, bool):
        return f"{text}, e.g. {default}"
    if wanted == "float" and isinstance(default, (int, float)) and not isinstance(default, bool):
        return f"{text}, e.g. {default}"
    if wanted in _EXAMPLE_BY_TYPE:
        elements = option.get("elements")
        if wanted == "list" and elements:
            text = f"{text} of {_PLURAL_BY_TYPE.get(elements, elements + ' values')}"
        return f"{text}, {_EXAMPLE_BY_TYPE[wanted]}"
    return text


def _invalid(name: str, value: Any, valid: str, secret: bool) -> str:
    if secret:
        return f"{name} is invalid (its value is not shown): {valid}"
    return f"{name}={show_value(value)} is invalid: {valid}"


def value_problem(name: str, value: Any, option: Mapping[str, Any], secret: bool = False) -> str | None:
    """Why Ansible's role argument validation would refuse value for this option, or None if it accepts it.

    The same steps as ansible.module_utils.common.parameters (a null value passes when the option has no
    default; the type's own converter; elements; choices, with YAML's yes/no read back), one line.
    """
    if value is None and not option.get("required") and option.get("default") is None:
        return None
    wanted = option.get("type", "str")
    converter = DEFAULT_TYPE_VALIDATORS.get(wanted)
    if converter is None:
        return f"{name} cannot be checked: its spec has the unknown type {wanted!r}"
    try:
        converted = converter(value)
    except (TypeError, ValueError):
        return _invalid(name, value, _valid_text(option), secret)

    elements = option.get("elements")
    if elements:
        if not isinstance(converted, list):
            return _invalid(name, value, f"must be a list of {_PLURAL_BY_TYPE.get(elements, elements)}", secret)
        element_converter = DEFAULT_TYPE_VALIDATORS.get(elements)
        if element_converter is None:
            return f"{name} cannot be checked: its spec has the unknown elements type {elements!r}"
        items = []
        for index, item in enumerate(converted):
            try:
                items.append(element_converter(item))
            except (TypeError, ValueError):
                valid = _VALID_BY_TYPE.get(elements, f"must be of type {elements}")
                return _invalid(f"{name}[{index}]", item, valid, secret)
        converted = items

    choices = option.get("choices")
    if choices is not None:
        return _choice_problem(name, value, converted, list(choices), secret)
    return None


def _choice_problem(name: str, value: Any, converted: Any, choices: list, secret: bool) -> str | None:
    listed = ", ".join(str(c) for c in choices)
    if isinstance(converted, list):
        outside = [item for item in converted if item not in choices]
        if outside:
            return _invalid(name, value, f"each item must be one of: {listed} (not {show_value(outside)})", secret)
        return None
    if converted in choices:
        return None
    # As Ansible does: an unquoted yes/no that YAML made a boolean, then str made 'True'/'False', matches
    # the one choice that spells it.
    for spelled, booleans in (("True", BOOLEANS_TRUE), ("False", BOOLEANS_FALSE)):
        if converted == spelled and len(booleans.intersection(choices)) == 1:
            return None
    return _invalid(name, value, f"must be one of: {listed}", secret)


def host_problems(
    variables: Mapping[str, Any],
    declared: Mapping[str, list[Mapping[str, Any]]],
    prefixes: Iterable[str],
    unresolved: Iterable[str] = (),
    required: Iterable[str] = (),
    secrets: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """(variable, line) for each problem of one host's variables, in name order.

    variables: every variable of the host by name (values already templated); only those under an owned
    prefix are looked at. unresolved: names whose value could not be templated yet (e.g. from facts not
    gathered): their names are checked, their values are left to the roles. required: names that must be
    set and not empty. secrets: names whose values are never shown.
    """
    prefixes = tuple(prefixes)
    unresolved = set(unresolved)
    secrets = set(secrets)
    ours = sorted(n for n in set(variables) | unresolved if owned_prefix(n, prefixes))
    problems: list[tuple[str, str]] = []

    own: list[str] = []
    if OWN_VARIABLES in variables and OWN_VARIABLES not in unresolved:
        raw_own = variables[OWN_VARIABLES]
        try:
            own = [str(item) for item in DEFAULT_TYPE_VALIDATORS["list"](raw_own or [])]
        except TypeError:
            own = []  # the type check below reports it

    for name in ours:
        if name not in declared:
            if not is_own(name, own):
                problems.append((name, unknown_line(name, declared, prefixes)))
            continue
        if name in unresolved:
            continue
        for option in declared[name]:
            problem = value_problem(name, variables[name], option, secret=name in secrets)
            if problem:
                problems.append((name, problem))
                break

    for name in sorted(set(required)):
        if name in unresolved:
            continue
        if name not in variables or variables[name] is None:
            problems.append((name, f"{name} is required, not set{_required_hint(name, declared)}"))
        elif variables[name] == "":
            problems.append((name, f"{name} is required, but set to ''{_required_hint(name, declared)}"))
    return problems


def unknown_line(name: str, declared: Iterable[str], prefixes: Iterable[str]) -> str:
    """The refusal of a name no spec declares, with the closest declared name."""
    suggestion = closest_name(name, declared, prefixes)
    if suggestion:
        return f"{name} is not a variable of any vllm-fleet role: did you mean {suggestion}?"
    return f"{name} is not a variable of any vllm-fleet role, and none is close (roles/*/meta/argument_specs.yml)"


def _required_hint(name: str, declared: Mapping[str, list[Mapping[str, Any]]]) -> str:
    options = declared.get(name) or [{}]
    description = options[0].get("description") or ""
    if isinstance(description, list):
        description = " ".join(str(d) for d in description)
    text = _DOC_MARKUP.sub(r"\1", " ".join(str(description).split()))
    text = text.replace(" Required.", "").removesuffix("Required.").strip()
    return f": {text}" if text else ""


def fleet_report(
    problems_by_host: Mapping[str, list[tuple[str, str]]],
    origins_by_host: Mapping[str, Mapping[str, str]] | None = None,
    hosts_checked: int | None = None,
) -> list[str]:
    """One line per problem for the whole fleet: a problem that several hosts share (group_vars, -e) is
    one line naming them; where the variable was set comes from origins_by_host[host][name].
    """
    origins_by_host = origins_by_host or {}
    if hosts_checked is None:
        hosts_checked = len(problems_by_host)
    merged: dict[tuple[str, str], list[str]] = {}
    order: list[tuple[str, str, str]] = []
    for host in sorted(problems_by_host):
        for name, line in problems_by_host[host]:
            origin = (origins_by_host.get(host) or {}).get(name, "")
            key = (line, origin)
            if key not in merged:
                merged[key] = []
                order.append((name, line, origin))
            merged[key].append(host)
    lines = []
    for _name, line, origin in sorted(order):
        where = []
        if origin:
            where.append("given with -e" if origin == "-e" else f"set in {origin}")
        hosts = merged[(line, origin)]
        if hosts_checked > 1:
            where.append(_hosts_text(hosts, hosts_checked))
        lines.append(f"- {line}" + (f" ({'; '.join(where)})" if where else ""))
    return lines


def _hosts_text(hosts: list[str], hosts_checked: int) -> str:
    if len(hosts) == hosts_checked:
        return "both hosts" if hosts_checked == 2 else f"all {hosts_checked} hosts"
    shown = ", ".join(hosts[:HOSTS_SHOWN])
    if len(hosts) > HOSTS_SHOWN:
        shown += f" and {len(hosts) - HOSTS_SHOWN} more"
    return f"host{'s' if len(hosts) > 1 else ''} {shown}"


def failure_message(lines: list[str], prefixes: Iterable[str], any_unknown: bool) -> str:
    """The whole refusal: a heading, the lines, and the escape hatch when a name was unknown."""
    text = ["Invalid vllm-fleet variables (nothing was changed):", *lines]
    if any_unknown:
        owned = " or ".join(f"{p}*" for p in prefixes)
        text.append(
            f"A variable of your own named {owned} is allowed once listed in {OWN_VARIABLES} "
            "(README: Variables are checked)."
        )
    return "\n".join(text)
