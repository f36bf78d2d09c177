"""The one quoting function for units and environment files (module_utils/vllm_systemd.py).

What each context writes is checked here against the rules; that systemd reads it back as meant is
checked with systemd's own parsers, for every ASCII character and a few Unicode ones, at the end.
"""

from __future__ import annotations

import pytest
from ansible.module_utils.vllm_systemd import (
    CONTEXTS,
    UnitValueError,
    env_file_line,
    exec_line,
    needs_no_quoting_in_env_file,
    quote,
)
from systemd_check import directive_keys, env_file_values, exec_argvs, verify_units

# Every character but NUL, each alone and with neighbours that change how systemd reads it.
CHARACTERS = [chr(c) for c in range(1, 128)] + [
    "\u00e9",
    "\u20ac",
    "\u2028",
    "\u2029",
    "\u0085",
    "\ufeff",
    "\U0001f600",
]
TRICKY = [
    "",
    " ",
    "a b",
    "\\",
    "\\\\",
    '"',
    "'",
    "%",
    "%%",
    "%n",
    "$",
    "$$",
    "$HOME",
    "${HOME}",
    ";",
    "\\;",
    "-x",
    "+x",
]
TRICKY += ["x\\", "\\\nx", "a\nExecStartPre=+/bin/sh", "#x", "[x]", "x=y", "\r\n", "\t", "é\u2028", "--api-key=x"]


class TestExecWords:
    def test_plain_words_stay_bare(self):
        for word in ("--port", "8000", "/opt/vllm/models/org--model", "org/model", "0.9", "--x=y,z", "a:b@c+d"):
            assert quote(word, "exec") == word

    def test_specifiers_and_variables_are_doubled(self):
        assert quote("100%", "exec") == "100%%"
        assert quote("$HOME", "exec") == '"$$HOME"'
        assert quote("${A}$$", "exec") == '"$${A}$$$$"'

    def test_quotes_backslashes_and_line_breaks_are_escaped_inside_double_quotes(self):
        assert quote('say "hi"', "exec") == '"say \\"hi\\""'
        assert quote("a\\b", "exec") == '"a\\\\b"'
        assert quote("a\nb", "exec") == '"a\\x0ab"'
        assert quote("a\u2028b", "exec") == '"a\\xe2\\x80\\xa8b"'
        assert quote("", "exec") == '""'

    def test_no_word_can_end_a_line_or_start_a_comment_or_separator(self):
        for word in TRICKY + CHARACTERS:
            written = quote(word, "exec")
            assert "\n" not in written and "\r" not in written
            assert written[-1] != "\\", f"{written!r} would continue onto the next line"
            assert written[0] not in "#;[", f"{written!r} would start a comment or a section"

    def test_the_executable_must_be_a_safe_path_so_no_prefix_applies(self):
        assert exec_line(["/opt/vllm/bin/python", "-m", "x y"]) == ["/opt/vllm/bin/python", "-m", '"x y"']
        for bad in ("+/bin/sh", "-/bin/sh", "python", "/opt/my vllm/python", ""):
            with pytest.raises(UnitValueError):
                exec_line([bad])


class TestOtherContexts:
    def test_environment_words_keep_dollar(self):
        assert quote("HOME=/var/lib/vllm", "environment") == "HOME=/var/lib/vllm"
        assert quote("K=a $b%", "environment") == '"K=a $b%%"'
        with pytest.raises(UnitValueError):
            quote("not an assignment", "environment")

    def test_text_and_comments_stay_on_one_line(self):
        assert quote("tiny (a%b)", "text") == "tiny (a%%b)"
        assert quote("a\nb\\", "text") == "a\\x0ab\\\\"
        assert quote("a%b\nc", "comment") == "a%b\\x0ac"
        assert quote("tab\there\u2028", "comment") == "tab\\x09here\\xe2\\x80\\xa8"

    @pytest.mark.parametrize(
        "path", ["/opt/vllm", "/var/lib/vllm", "/opt/vllm/venvs/vllm-cuda-0.32.0+cu128/bin/python"]
    )
    def test_safe_paths_pass_unchanged(self, path):
        assert quote(path, "path") == path

    @pytest.mark.parametrize(
        "path",
        ["opt/vllm", "/", "/opt/vllm/", "/opt//vllm", "/opt/../etc", "/opt/./x", "/opt/my vllm", "/opt/%h", "/$x"],
    )
    def test_unsafe_paths_are_refused_with_what_is_valid(self, path):
        with pytest.raises(UnitValueError, match="absolute, normalized path"):
            quote(path, "path")

    @pytest.mark.parametrize("name", ["vllm", "_svc", "svc-1", "A" * 31])
    def test_user_names(self, name):
        assert quote(name, "name") == name

    @pytest.mark.parametrize("name", ["", "1abc", "a b", "vllm\n", "root:x", "a" * 32, "ünï"])
    def test_bad_user_names(self, name):
        with pytest.raises(UnitValueError, match="user or group name"):
            quote(name, "name")

    def test_env_file_lines(self):
        assert env_file_line("HF_HUB_OFFLINE", "1") == 'HF_HUB_OFFLINE="1"'
        assert env_file_line("K", 'a"b\\c`d$e%\nf') == 'K="a\\"b\\\\c\\`d\\$e%\nf"'
        for key in ("1A", "A-B", "A B", "A\nB", ""):
            with pytest.raises(UnitValueError, match="environment variable name"):
                env_file_line(key, "x")
        for value in ("\ufeff", "\ufdd0", "\uffff"):
            with pytest.raises(UnitValueError, match="noncharacter"):
                env_file_line("K", value)

    def test_a_secret_passes_only_if_it_needs_no_escaping(self):
        assert needs_no_quoting_in_env_file("k3y-with spaces%and'single")
        for key in ('a"b', "a\\b", "a$b", "a`b", "a\nb", "a\tb", "\ufeff", "a\u2028"):
            assert not needs_no_quoting_in_env_file(key)

    @pytest.mark.parametrize("context", sorted(CONTEXTS))
    def test_nul_bool_containers_and_broken_unicode_are_refused_everywhere(self, context):
        for value in ("a\x00b", True, None, ["a"], {"a": 1}, "\udcff"):
            with pytest.raises(UnitValueError):
                quote(value, context)


def test_systemd_reads_every_character_back_from_execstart_and_environment():
    """One unit with a word per character and tricky string; one env file with a line per value."""
    words = CHARACTERS + TRICKY + [c + c for c in CHARACTERS]
    unit = "[Service]\nExecStart=" + " \\\n    ".join(exec_line(["/bin/true", *words])) + "\n"
    unit += "Environment=" + " ".join(quote(f"K{i}={w}", "environment") for i, w in enumerate(words)) + "\n"
    assert directive_keys(unit) == [("Service", "ExecStart"), ("Service", "Environment")]
    reports = verify_units({"chars.service": unit}, ["/bin/true"])
    if reports is None:
        pytest.skip("systemd-analyze is not installed")
    assert reports["chars.service"] == ""
    argvs = exec_argvs({"chars.service": unit})
    if argvs is None:
        pytest.skip("`systemd --test` cannot run here")
    assert argvs["chars.service"] == ["/bin/true", *words]
    # The generator drops empty values and expands $NAME (environment.d's rules); U+FEFF is refused.
    env_values = [w for w in words if w and "$" not in w and "\ufeff" not in w]
    text = "".join(env_file_line(f"K{i}", w) + "\n" for i, w in enumerate(env_values))
    values = env_file_values(text)
    if values is None:
        pytest.skip("systemd-environment-d-generator is not installed")
    for i, value in enumerate(env_values):
        assert values.get(f"K{i}") == value, f"K{i}: {value!r} read back as {values.get(f'K{i}')!r}"
