"""Word expansion against buildkit's envVarTest table, plus the cases that table lacks."""

from pathlib import Path

import pytest

from orch.build.shell import ExpansionError, Lexer, process_word, process_words

DATA = Path(__file__).parents[2] / "data" / "buildkit"
# The environment buildkit's own test uses (frontend/dockerfile/shell/lex_test.go).
ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def env_var_cases():
    """(line number, source, expected) for every A (all) and U (unix) line. W lines are
    Windows-only (there `$pwd` is `$PWD`: names are case-insensitive) and do not apply."""
    cases = []
    for number, line in enumerate((DATA / "envVarTest").read_text().splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        platform, source, expected = (part.strip() for part in line.strip().split("|"))
        assert platform in ("A", "U", "W"), f"envVarTest:{number}: bad platform {platform!r}"
        if platform != "W":
            cases.append(pytest.param(source, expected, id=f"line{number}"))
    return cases


CASES = env_var_cases()


def test_the_table_is_all_there():
    assert len(CASES) == 228


@pytest.mark.parametrize("source, expected", CASES)
def test_env_var_table(source, expected):
    if expected == "error":
        with pytest.raises(ExpansionError):
            process_word(source, ENV)
    else:
        assert process_word(source, ENV) == expected


# (word, env, expected words) from buildkit's wordsTest, and a few of our own.
WORDS_CASES = [
    ("hello", {}, ["hello"]),
    ("hello${hi}bye", {}, ["hellobye"]),
    ("hello${hi}bye", {"hi": "hi"}, ["hellohibye"]),
    ("hello${space}bye", {"space": "abc  def"}, ["helloabc", "defbye"]),
    ('hello"${space}"bye', {"space": "abc  def"}, ["helloabc  defbye"]),
    ('hello "${space}"bye', {"space": "abc  def"}, ["hello", "abc  defbye"]),
    ("hello${leading}def", {"leading": "  ab c"}, ["hello", "ab", "cdef"]),
    ('hello"${leading}" def', {"leading": "  ab c"}, ["hello  ab c", "def"]),
    ("hello${trailing}d", {"trailing": "ab c   "}, ["helloab", "c", "d"]),
    ('hel"lo${trailing}"', {"trailing": "ab c   "}, ["helloab c   "]),
    ('hello" there  "', {}, ["hello there  "]),
    ("hello there     ", {}, ["hello", "there"]),
    ("hello\\ there", {}, ["hello there"]),
    ('hello\\" there', {}, ['hello"', "there"]),
    ('hello"\\\\there"', {}, ["hello\\there"]),
    ('hello"\\there"', {}, ["hello\\there"]),
    ("hello'\\\\there'", {}, ["hello\\\\there"]),
    ("hello'$there'", {}, ["hello$there"]),
]


@pytest.mark.parametrize("word, env, expected", WORDS_CASES)
def test_words(word, env, expected):
    assert process_words(word, env) == expected


# Substitutions newer than the envVarTest table (buildkit supports them since 0.13).
PATTERN_CASES = [
    ("${V#*/}", {"V": "a/b/c"}, "b/c"),
    ("${V##*/}", {"V": "a/b/c"}, "c"),
    ("${V%/*}", {"V": "a/b/c"}, "a/b"),
    ("${V%%/*}", {"V": "a/b/c"}, "a"),
    ("${V#x}", {"V": "abc"}, "abc"),
    ("${V%.tar.gz}", {"V": "app.tar.gz"}, "app"),
    ("${V#a?}", {"V": "abc"}, "c"),
    ("${V/b/X}", {"V": "abcabc"}, "aXcabc"),
    ("${V//b/X}", {"V": "abcabc"}, "aXcaXc"),
    ("${V//[/X}", {"V": "a[b["}, "aXbX"),
    ("${V/*c/X}", {"V": "abcabc"}, "X"),
    ("${V/\\//-}", {"V": "a/b"}, "a-b"),
    ("${V//b/$$}", {"V": "abab"}, "aa"),  # $$ is the (unset) shell PID, as in buildkit
    ("${U#*/}", {}, ""),
    ("${V:?must be set}", {"V": "ok"}, "ok"),
]


@pytest.mark.parametrize("word, env, expected", PATTERN_CASES)
def test_patterns(word, env, expected):
    assert process_word(word, env) == expected


# (word, env, message)
ERROR_CASES = [
    ("${V:#x}", {"V": "a"}, 'failed to process "${V:#x}": unsupported modifier (:#) in substitution'),
    ("${V:?must be set}", {}, 'failed to process "${V:?must be set}": V: must be set'),
    ("${V?}", {}, 'failed to process "${V?}": V: is not allowed to be unset'),
    ("${V:?}", {"V": ""}, 'failed to process "${V:?}": V: is not allowed to be empty'),
    ("${V/a", {"V": "a"}, "failed to process \"${V/a\": syntax error: missing '/' in ${}"),
    ("${V#\\x}", {"V": "a"}, "failed to process \"${V#\\\\x}\": invalid pattern (\\x) in substitution: invalid escape '\\x'"),
    ("${V", {}, "failed to process \"${V\": syntax error: missing '}'"),
    ("'open", {}, "failed to process \"'open\": unexpected end of statement while looking for matching single-quote"),
]


@pytest.mark.parametrize("word, env, message", ERROR_CASES)
def test_errors(word, env, message):
    with pytest.raises(ExpansionError) as err:
        process_word(word, env)
    assert str(err.value) == message


# The parser's knobs: raw quotes/escapes and unset variables left alone (heredoc detection).
def test_raw_lexer_keeps_the_source():
    lexer = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    assert lexer.process_words("cat <<'EOF' \"a b\" \\$x $UNSET ${U:-d} ${U:=z}", {}) == ["cat", "<<'EOF'", '"a b"', "\\$x", "$UNSET", "${U:-d}", "${U:=z}"]


def test_backtick_escape():
    assert process_word("a`$PWD`\\b", ENV, escape="`") == "a$PWD\\b"


def test_words_keep_text_before_a_nested_expansion():
    assert process_words("ab${X:-y z}c d", {}) == ["aby", "zc", "d"]
