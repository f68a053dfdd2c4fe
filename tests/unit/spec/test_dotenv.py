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
        parse_env_text("1A=1\nOK=1\nB='open\nC=${\n", "x.env")
    assert info.value.lines == [
        "x.env:1:1: invalid line '1A=1'; write KEY=VALUE",
        "x.env:3:1: B: unterminated single quote",
        "x.env:4:1: C: invalid interpolation format in '${'; write a literal $ as $$",
    ]
