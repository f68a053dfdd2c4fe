"""The Go-template subset that `--format` takes, docker's tables and human units."""

import pytest

from orch.cli import format as fmt
from orch.errors import InvalidArgument

DATA = {
    "Id": "sha256:abc",
    "RootFS": {"Type": "layers", "Layers": ["sha256:1", "sha256:2"]},
    "Config": {"Cmd": ["sh", "-c", "echo"], "Entrypoint": None, "Labels": {"b": "2", "a": "1"}, "Tty": False},
    "State": {"Status": "running", "Pid": 42},
    "Name": "/web",
}

CASES = [
    ("{{.Id}}", "sha256:abc"),
    ("{{ .Id }}", "sha256:abc"),
    ("{{.State.Status}}", "running"),
    ("{{json .RootFS.Layers}}", '["sha256:1","sha256:2"]'),
    ("{{ json .RootFS.Layers }}", '["sha256:1","sha256:2"]'),
    ("{{json .Config}}", '{"Cmd":["sh","-c","echo"],"Entrypoint":null,"Labels":{"b":"2","a":"1"},"Tty":false}'),
    ("{{.Config.Cmd}}", "[sh -c echo]"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{.Config.Entrypoint}}", "<nil>"),
    ("{{.Config.Tty}}", "false"),
    ("{{.State.Pid}}", "42"),
    ("{{.Missing}}", "<no value>"),
    ('{{index .Config.Labels "a"}}', "1"),
    ("{{index .RootFS.Layers 1}}", "sha256:2"),
    ('{{join .Config.Cmd " "}}', "sh -c echo"),
    ("{{.State.Status | upper}}", "RUNNING"),
    ("{{upper .State.Status}}", "RUNNING"),
    ('{{lower (index .Config.Labels "b")}}', "2"),
    ("{{len .RootFS.Layers}}", "2"),
    ("{{range .RootFS.Layers}}[{{.}}]{{end}}", "[sha256:1][sha256:2]"),
    ("{{if .Config.Entrypoint}}yes{{else}}no{{end}}", "no"),
    ('{{if eq .State.Status "running"}}up{{end}}', "up"),
    ("{{with .State}}{{.Pid}}{{end}}", "42"),
    ('{{printf "%s=%d" .Name .State.Pid}}', "/web=42"),
    ("a {{- .Name -}} b", "a/webb"),
    ('{{split "a,b" ","}}', "[a b]"),
    ("plain text", "plain text"),
]


@pytest.mark.parametrize("template, expected", CASES)
def test_render(template, expected):
    assert fmt.render(template, DATA) == expected


@pytest.mark.parametrize("template", ["{{if .Id}}x", "{{end}}", "{{nosuch .Id}}", "{{.Id | }}", "{{(.Id}}"])
def test_bad_templates_are_one_line_errors(template):
    with pytest.raises(InvalidArgument) as err:
        fmt.render(template, DATA)
    assert "\n" not in str(err.value)


def test_table_prefix_prints_headers_and_aligns_like_tabwriter():
    rows = [{"Repository": "busybox", "Tag": "latest", "ID": "0123456789ab"}, {"Repository": "debian", "Tag": "bookworm", "ID": "ba9876543210"}]
    lines = fmt.render_rows(r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}", rows, {"ID": "IMAGE ID"})
    assert lines == [
        "REPOSITORY   TAG        IMAGE ID",
        "busybox      latest     0123456789ab",
        "debian       bookworm   ba9876543210",
    ]


def test_rows_without_table_have_no_header_and_default_headers_split_camel_case():
    assert fmt.render_rows("{{.Name}}", [{"Name": "a"}, {"Name": "b"}]) == ["a", "b"]
    assert fmt.render_rows("table {{.CreatedSince}}", []) == ["CREATED SINCE"]


@pytest.mark.parametrize("size, text", [(0, "0B"), (999, "999B"), (1000, "1kB"), (4261376, "4.26MB"), (124_000_000, "124MB"), (1_234_567_890, "1.23GB")])
def test_human_size(size, text):
    assert fmt.human_size(size) == text


@pytest.mark.parametrize("seconds, text", [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"), (119, "About a minute"),
    (600, "10 minutes"), (3600, "About an hour"), (3 * 3600, "3 hours"), (47 * 3600, "47 hours"), (3 * 86400, "3 days"),
    (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_duration(seconds, text):
    from orch.api.times import human_duration

    assert human_duration(seconds) == text
