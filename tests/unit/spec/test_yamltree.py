"""The YAML reader: positions, the YAML 1.2 scalars compose reads, anchors and merge keys."""

import pytest

from orch.spec import Mark, StackError
from orch.spec.yamltree import Map, Seq, parse_yaml


def parse(text: str):
    return parse_yaml(text, "f.yml")[0]


@pytest.mark.parametrize(
    "text, value",
    [
        ("8080:80", "8080:80"),  # YAML 1.1 would read base 60: 483680
        ("yes", "yes"),
        ("on", "on"),
        ("No", "No"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("", None),
        ("42", 42),
        ("-7", -7),
        ("0440", 0o440),  # Go's ParseInt(s, 0, 64): a leading 0 is octal, as file modes are written
        ("0o17", 15),
        ("0x1F", 31),
        ("1_000", 1000),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("2001-12-14", "2001-12-14"),  # no timestamps
        ("'0440'", "0440"),
        ("!!str 42", "42"),
        ("!!int '42'", 42),
        ("1:30", "1:30"),
        ("0b_", "0b_"),  # an int to YAML 1.1's resolver, no number to Go: a string, not a crash
        ("0x_", "0x_"),
    ],
)
def test_scalars_are_read_as_compose_reads_them(text, value):
    assert parse(f"k: {text}\n")["k"] == value


def test_every_key_and_value_knows_its_position():
    tree = parse("services:\n  web:\n    ports:\n      - '80'\n      - 81\n")
    web = tree["services"]["web"]
    assert isinstance(web, Map) and isinstance(web["ports"], Seq)
    assert web.key_marks["ports"] == Mark("f.yml", 3, 5)
    assert web["ports"].marks == [Mark("f.yml", 4, 9), Mark("f.yml", 5, 9)]
    assert tree["services"].marks["web"] == Mark("f.yml", 3, 5)


def test_anchors_aliases_and_merge_keys():
    tree = parse(
        "x-base: &base {image: busybox, environment: {A: '1'}}\n"
        "services:\n"
        "  a:\n    <<: *base\n    image: own\n"
        "  b:\n    <<: [*base, {user: root}]\n"
        "  c: *base\n"
    )
    services = tree["services"]
    assert services["a"] == {"image": "own", "environment": {"A": "1"}}
    assert services["b"] == {"image": "busybox", "environment": {"A": "1"}, "user": "root"}
    assert services["c"] == {"image": "busybox", "environment": {"A": "1"}}
    # Aliased values are separate objects, so merging one service never changes another.
    assert services["a"]["environment"] is not services["c"]["environment"]


def test_reset_and_override_tags_are_recorded_on_the_parent():
    tree = parse("a: !reset []\nb: !override {x: 1}\nc: !reset null\nd: plain\n")
    assert tree == {"a": [], "b": {"x": 1}, "c": None, "d": "plain"}
    assert tree.tags == {"a": "!reset", "b": "!override", "c": "!reset"}


def test_several_documents_are_read_in_order():
    docs = parse_yaml("a: 1\n---\nb: 2\n", "f.yml")
    assert docs == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize(
    "text, message",
    [
        ("? [a]\n: 1\n", "f.yml:1:3: a mapping key must be a plain string, not a list or mapping"),
        ("~: 1\n", "f.yml:1:1: a mapping key must be a string, not '~'"),
        ("a: *nope\n", "f.yml:1:4: invalid YAML: found undefined alias 'nope'"),
        ("a: !!binary aGVsbG8=\n", "f.yml:1:4: unsupported YAML tag tag:yaml.org,2002:binary; only !reset and !override are known"),
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "f.yml: the YAML is nested too deeply"),
    ],
)
def test_problems(text, message):
    with pytest.raises(StackError) as info:
        parse_yaml(text, "f.yml")
    assert info.value.lines == [message]


def test_every_duplicate_key_is_reported():
    with pytest.raises(StackError) as info:
        parse_yaml("a: 1\nb: {x: 1, x: 2}\na: 3\n", "f.yml")
    assert info.value.lines == ["f.yml:2:11: duplicate key 'x' (first at line 2)", "f.yml:3:1: duplicate key 'a' (first at line 1)"]
