"""Interpolation cases from compose-spec 12-interpolation.md and compose-go's template tests."""

import pytest

from orch.spec.interpolate import InterpolationError, substitute

ENV = {"FOO": "first", "BAR": "", "NUM": "3", "NESTED": "${FOO}", "JSON": '{"json":2}'}

CASES = [
    # plain variables
    ("$FOO", "first"),
    ("${FOO}", "first"),
    ("pre-$FOO-post", "pre-first-post"),
    ("${FOO}bar", "firstbar"),
    ("$FOO$NUM", "first3"),
    ("$UNSET", ""),
    ("${UNSET}", ""),
    # escapes and plain dollars
    ("$$FOO", "$FOO"),
    ("$${FOO}", "${FOO}"),
    ("$$$FOO", "$first"),
    ("a $ b", "a $ b"),
    ("cost: 5$", "cost: 5$"),
    ("$1", "$1"),
    ("$-", "$-"),
    ("$}", "$}"),
    ("$", "$"),
    # defaults: ':-' for unset or empty, '-' for unset only
    ("${UNSET:-default}", "default"),
    ("${UNSET-default}", "default"),
    ("${BAR:-default}", "default"),
    ("${BAR-default}", ""),
    ("${FOO:-default}", "first"),
    ("${FOO-default}", "first"),
    ("${UNSET:-}", ""),
    ("${UNSET:-a b c}", "a b c"),
    ("${UNSET:-http://x:80/}", "http://x:80/"),
    # alternatives: ':+' for set and not empty, '+' for set
    ("${FOO:+alt}", "alt"),
    ("${FOO+alt}", "alt"),
    ("${BAR:+alt}", ""),
    ("${BAR+alt}", "alt"),
    ("${UNSET:+alt}", ""),
    ("${UNSET+alt}", ""),
    # required, satisfied
    ("${FOO:?err}", "first"),
    ("${FOO?err}", "first"),
    ("${BAR?err}", ""),
    # nesting
    ("${UNSET:-${FOO}}", "first"),
    ("${UNSET:-${UNSET2:-deep}}", "deep"),
    ("${UNSET:-$FOO}", "first"),
    ("${UNSET:-${BAR:-x}-${FOO}}", "x-first"),
    ("${FOO:+${NUM}x}", "3x"),
    ("${UNSET:-$${FOO}}", "${FOO}"),
    ("${UNSET:-a}}", "a}"),
    # from compose-go's template tests
    ("ok ${BAR:-/non:-alphanumeric}", "ok /non:-alphanumeric"),
    ("${A:+${A},}B", "B"),
    ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
    (":?ok ${BAR:-defaultValue}", ":?ok defaultValue"),
    ("ok ${UNSET_VAR-${FOO} ${FOO}}", "ok first first"),
    ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
    ("${UNSET_VAR-myerror?msg}", "myerror?msg"),
    ("${UNSET_VAR?bar-baz}".replace("UNSET_VAR", "FOO"), "first"),
    ('ok ${missing:-{"json":1}}', 'ok {"json":1}'),
    ('ok ${missing-{"json":1}}', 'ok {"json":1}'),
    ('ok ${JSON:-{"json":1}}', 'ok {"json":2}'),
    ('ok ${JSON-{"json":1}}', 'ok {"json":2}'),
    ("ok ${SUBDOMAIN:-redis}.${FOO:?}", "ok redis.first"),
    # values are not re-interpolated
    ("$NESTED", "${FOO}"),
    # lower-case and underscore names
    ("${_x_1:-ok}", "ok"),
]


@pytest.mark.parametrize("template, expected", CASES)
def test_substitute(template, expected):
    assert substitute(template, ENV.get) == expected


@pytest.mark.parametrize("template", ["${", "${}", "${ }", "${ foo}", "${foo }", "${foo!}", "${FOO:-", "${1abc}", "${FOO:x}"])
def test_invalid_templates(template):
    with pytest.raises(InterpolationError, match="invalid interpolation format"):
        substitute(template, ENV.get)


@pytest.mark.parametrize(
    "template, message",
    [
        ("${UNSET:?must be set}", "required variable UNSET is missing a value: must be set"),
        ("${UNSET?must be set}", "required variable UNSET is missing a value: must be set"),
        ("${BAR:?empty is not enough}", "required variable BAR is missing a value: empty is not enough"),
        ("${UNSET:?}", "required variable UNSET is missing a value"),
        ("${UNSET:?need $FOO}", "required variable UNSET is missing a value: need first"),
    ],
)
def test_required_variables(template, message):
    with pytest.raises(InterpolationError) as info:
        substitute(template, ENV.get)
    assert str(info.value) == message


def test_unset_names_are_collected_for_one_warning_each():
    unset: set[str] = set()
    substitute("$A ${B} ${C:-x} ${FOO} ${D:-$E}", ENV.get, unset)
    assert unset == {"A", "B", "E"}


def test_interpolation_in_a_stack_uses_env_then_env_file_then_dotenv(load, project_dir):
    files = {
        "compose.yaml": """
            services:
              web:
                image: "busybox:${TAG}"
                labels: {a: "${A}", b: "${B}", c: "${C:-none}", escaped: "$$HOME"}
                environment: ["FROM_LIST=${B}"]
        """,
        ".env": "TAG=from-dotenv\nA=dotenv-a\nB=dotenv-b\n",
        "other.env": "TAG=from-env-file\n",
    }
    project = load(files, environ={"A": "os-a"})
    web = project.services["web"]
    assert web.image == "busybox:from-dotenv"
    assert web.labels == {"a": "os-a", "b": "dotenv-b", "c": "none", "escaped": "$HOME"}
    assert web.environment == {"FROM_LIST": "dotenv-b"}
    # --env-file replaces the project's .env, as in compose; the OS environment still wins.
    project = load(files, environ={"A": "os-a"}, env_files=[project_dir / "other.env"])
    assert project.services["web"].image == "busybox:from-env-file"
    assert project.services["web"].labels["a"] == "os-a"
    assert project.services["web"].labels["b"] == ""


def test_keys_are_not_interpolated(load):
    project = load({"compose.yaml": 'services:\n  web:\n    image: x\n    labels:\n      "$KEY": v\n'}, environ={"KEY": "k"})
    assert project.services["web"].labels == {"$KEY": "v"}


def test_unset_variable_warns_once(load):
    project = load({"compose.yaml": "services:\n  web:\n    image: ${IMG}x\n    hostname: ${IMG}\n"})
    assert project.warnings == ['the "IMG" variable is not set; defaulting to a blank string']


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TEMPLATE_TEXT = st.text(alphabet=st.sampled_from(list("${}:-+?_ABCxyz01 ")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(TEMPLATE_TEXT)
def test_substitute_returns_text_or_an_interpolation_error(text):
    try:
        assert isinstance(substitute(text, ENV.get), str)
    except InterpolationError as err:
        assert str(err) and "\n" not in str(err)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_escaped_text_comes_back_unchanged(text):
    # `$$` is a literal `$`, so escaping every `$` makes any text a template of itself.
    assert substitute(text.replace("$", "$$"), ENV.get) == text
