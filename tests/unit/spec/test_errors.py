"""Every problem of a stack file is one line with file, line, column and key path, and all of
them are reported at once."""

from pathlib import Path

import pytest

from orch.spec import StackError, load_project

DATA = Path(__file__).parents[2] / "data" / "compose"


def test_a_file_with_many_mistakes_gets_all_of_them_back():
    path = DATA / "mistakes" / "compose.yaml"
    with pytest.raises(StackError) as info:
        load_project([path], environ={})
    f = str(path)
    assert info.value.lines == [
        f"{f}:5:5: services.web.prots: unknown key 'prots' in services.web; did you mean 'ports'?",
        f"{f}:10:9: services.api.ports[0]: invalid container port 'http'; expected a number or a range like 3000-3005",
        f"{f}:11:18: services.api.depends_on.databse: depends on undefined service 'databse'",
        f"{f}:16:17: services.db.healthcheck.interval: invalid duration '5 minutes'; write it like '10s', '1m30s' or '500ms'",
        f"{f}:18:12: services.cache.image: required variable REDIS_VERSION is missing a value: set REDIS_VERSION in .env",
        f"{f}:19:14: services.cache.restart: invalid restart policy 'sometimes'; use no, always, on-failure[:N] or unless-stopped",
        f"{f}:23:9: services.worker.volumes[0]: undefined volume 'jobs'; did you mean 'job'?",
        f"{f}:25:17: services.worker.deploy.replicas: expected an integer, got 'two'",
        f"{f}:28:19: services.worker.deploy.resources.limits.memory: invalid size '2 gigs'; write it like '512m', '1g', '1024k' or '100b'",
        f"{f}:29:16: services.worker.networks.backend: undefined network 'backend'; declare it under the top-level 'networks:'",
    ]
    # str() is the same lines, one per line, so the CLI prints them as they are.
    assert str(info.value).splitlines() == info.value.lines


ERRORS = [
    # (file text, expected lines with 'compose.yaml' for the file)
    ("services:\n  web:\n    image: x\n    image: y\n", ["compose.yaml:4:5: duplicate key 'image' (first at line 3)"]),
    ("services:\n  web: [\n", ["compose.yaml:3:1: invalid YAML: while parsing a flow node, expected the node content, but found '<stream end>'"]),
    ("services:\n\tweb: {}\n", ["compose.yaml:2:1: invalid YAML: while scanning for the next token, found character '\\t' that cannot start any token"]),
    ("- a\n- b\n", ["compose.yaml:1:1: the top level of a stack file must be a mapping (services:, networks:, ...)"]),
    ("", ["compose.yaml: empty stack file; it needs at least a 'services' section"]),
    ("# only a comment\n", ["compose.yaml: empty stack file; it needs at least a 'services' section"]),
    ("services: {web: {image: !weird x}}\n", ["compose.yaml:1:25: unsupported YAML tag !weird; only !reset and !override are known"]),
    ("services: {web: {image: x}}\nservice: {}\n", ["compose.yaml:2:1: service: unknown key 'service' in the top level; did you mean 'services'?"]),
    ("services: [web]\n", ["compose.yaml:1:11: services: expected a mapping of service names to services"]),
    ("services:\n  web:\n", ["compose.yaml:2:3: services.web: has neither an image nor a build context; add 'image:' or 'build:'"]),
    ("services:\n  web: {image: x}\n  'bad name!': {image: x}\n", ["compose.yaml:3:3: services['bad name!']: invalid service name; use letters, digits, '.', '_' and '-'"]),
    ("services:\n  web: {image: x, network_mode: host, networks: [n]}\nnetworks: {n: {}}\n", ["compose.yaml:2:33: services.web.network_mode: network_mode and networks cannot be used together; keep one"]),
    ("services:\n  web: {image: x, network_mode: 'service:db'}\n", ["compose.yaml:2:33: services.web.network_mode: shares the network of undefined service 'db'"]),
    ("services:\n  web: {image: x, volumes_from: [db], links: ['dbx:alias']}\n  db: {image: x}\n", ["compose.yaml:2:47: services.web.links[0]: links to undefined service 'dbx'; did you mean 'db'?"]),
    ("services:\n  web: {image: x, depends_on: [web]}\n", ["compose.yaml:2:32: services.web.depends_on.web: a service cannot depend on itself"]),
    ("services:\n  web: {image: x, secrets: [s]}\n", ["compose.yaml:2:29: services.web.secrets[0]: undefined secret 's'; declare it under the top-level 'secrets:'"]),
    ("services:\n  web: {image: '${A:-x'}\n", ["compose.yaml:2:16: services.web.image: invalid interpolation format in '${A:-x'; write a literal $ as $$"]),
    ("services:\n  web:\n    image: x\n    env_file: missing.env\n", ["compose.yaml:4:15: services.web.env_file[0]: env file not found: missing.env"]),
    ("services:\n  web: {image: x, healthcheck: {test: [CMD], intervall: 1s}}\n", ["compose.yaml:2:46: services.web.healthcheck.intervall: unknown key 'intervall' in services.web.healthcheck; did you mean 'interval'?"]),
    ("a: &a [*a]\n", ["compose.yaml:1:4: an alias refers to the value that contains it"]),
]


@pytest.mark.parametrize("text, expected", ERRORS)
def test_error_lines(load_errors, project_dir, text, expected):
    lines = load_errors({"compose.yaml": text})
    assert lines == [line.replace("<dir>", str(project_dir)) for line in expected]


def test_env_file_errors_name_their_line(load_errors):
    lines = load_errors({"compose.yaml": "services: {web: {image: x, env_file: a.env}}\n", "a.env": "GOOD=1\nthis is not a variable\nB=\"unterminated\n"})
    assert lines == [
        "a.env:2:1: invalid line 'this is not a variable'; write KEY=VALUE",
        "a.env:3:1: B: unterminated double quote",
    ]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "stack file not found: {p}"),
        (lambda d: (d / "compose.yaml").mkdir(), "{p}: is a directory, not a stack file"),
        (lambda d: (d / "compose.yaml").write_bytes(b"services:\n  web: {image: \xff\xfe}\n"), "{p}: not a text file (invalid UTF-8 at byte 25)"),
        (lambda d: (d / "compose.yaml").write_bytes(b"\x00\x01\x02binary"), "{p}:1:1: invalid YAML: unacceptable character #x0000: special characters are not allowed"),
    ],
)
def test_unreadable_files(project_dir, setup, message):
    setup(project_dir)
    path = project_dir / "compose.yaml"
    with pytest.raises(StackError) as info:
        load_project([path], environ={})
    assert info.value.lines == [message.format(p=path)]


def test_an_alias_bomb_is_refused(load_errors):
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 8):
        text += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    lines = load_errors({"compose.yaml": text})
    assert len(lines) == 1 and "expands to more than" in lines[0]


def test_errors_in_several_files_are_all_reported(load_errors):
    lines = load_errors(
        {"compose.yaml": "services: {web: {image: x, prots: []}}\n", "b.yaml": "services: {web: {restart: never}}\n"},
        main=["compose.yaml", "b.yaml"],
    )
    assert lines == [
        "compose.yaml:1:28: services.web.prots: unknown key 'prots' in services.web; did you mean 'ports'?",
        "b.yaml:1:27: services.web.restart: invalid restart policy 'never'; use no, always, on-failure[:N] or unless-stopped",
    ]


def test_a_file_orch_may_not_read(project_dir, monkeypatch):
    # As root every file is readable, so the kernel's EACCES is played by a fake read.
    path = project_dir / "compose.yaml"
    path.write_text("services: {}\n")

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(StackError) as info:
        load_project([path], environ={})
    assert info.value.lines == [f"{path}: cannot read the stack file: permission denied"]


def test_a_missing_env_file_option_is_one_line(load_errors, project_dir):
    lines = load_errors({"compose.yaml": "services: {web: {image: x}}\n"}, env_files=[project_dir / "nope.env"])
    assert lines == ["env file not found: nope.env"]
