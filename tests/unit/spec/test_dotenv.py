import pytest

from orch.spec import StackError
from orch.spec.dotenv import parse_env_text

CASES = [
    ("A=1", {"A": "1"}),
    ("export A=1", {"A": "1"}),
    ("A = spaced value ", {"A": "spaced value"}),
    ("A=", {"A": ""}),
    ("A", {"A": None}),
    ("# comment\n\nA=1 # trailing comment", {"A": "1"}),
    ("A=no#comment", {"A": "no#comment"}),
    ("A='single $B # kept'", {"A": "single $B # kept"}),
    ('A="double\\nline \\"q\\""', {"A": 'double\nline "q"'}),
    ('A="multi\nline"', {"A": "multi\nline"}),
    ("B=2\nA=${B}x", {"B": "2", "A": "2x"}),
    ('B=2\nA="${B:-d} \\$B"', {"B": "2", "A": "2 $B"}),
    ("A=${OUTER}", {"A": "outer"}),
    ("A=${MISSING:-default}", {"A": "default"}),
    ("A=$$literal", {"A": "$literal"}),
    ("A.B-c=1", {"A.B-c": "1"}),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_parse(text, expected):
    assert parse_env_text(text, "x.env", {"OUTER": "outer"}.get) == expected


def test_all_bad_lines_are_reported():
    with pytest.raises(StackError) as info:
        parse_env_text("bad line here\nOK=1\nC=${\nB='open\n", "x.env")
    assert info.value.lines == [
        "x.env:1:1: invalid line 'bad line here'; write KEY=VALUE",
        "x.env:3:1: C: invalid interpolation format in '${'; write a literal $ as $$",
        "x.env:4:1: B: unterminated single quote",
    ]


# compose-go's dotenv fixtures (plain.env, quoted.env, unquoted.env, exported.env, equals.env).
FIXTURES = [
    ("OPTION_C= 3\nOPTION_D =4\nOPTION_E = 5\nOPTION_F = \nOPTION_H = my string # Inline comment", {"OPTION_C": "3", "OPTION_D": "4", "OPTION_E": "5", "OPTION_F": "", "OPTION_H": "my string"}),
    ("456 = ABC", {"456": "ABC"}),
    ("OPTION_C=''\nOPTION_D='\\n'\nOPTION_H=\"\\n\"", {"OPTION_C": "", "OPTION_D": "\\n", "OPTION_H": "\n"}),
    ("OPTION_I = \"echo 'asd'\" # Inline comment", {"OPTION_I": "echo 'asd'"}),
    ("OPTION_J = 'first line\nsecond line\nthird line\nand so on'", {"OPTION_J": "first line\nsecond line\nthird line\nand so on"}),
    ("OPTION_K='Let\\'s go!'", {"OPTION_K": "Let's go!"}),
    ("OPTION_D = then another one with an unquoted phrase special è char", {"OPTION_D": "then another one with an unquoted phrase special è char"}),
    ("export OPTION_B='\\n'", {"OPTION_B": "\\n"}),
    ("export OPTION_A='postgres://localhost:5432/database?sslmode=disable'", {"OPTION_A": "postgres://localhost:5432/database?sslmode=disable"}),
]


@pytest.mark.parametrize("text, expected", FIXTURES)
def test_compose_go_fixtures(text, expected):
    assert parse_env_text(text, "x.env") == expected
