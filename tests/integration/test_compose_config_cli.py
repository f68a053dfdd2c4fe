"""`orch compose config` as a user runs it: a subprocess, its output and exit code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data" / "compose"
HELLO = ROOT / "examples" / "stacks" / "hello" / "compose.yaml"


def orch(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    environ.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "orch", *args], capture_output=True, text=True, cwd=cwd or ROOT, env=environ,
                          timeout=60, input=input)


def test_config_prints_the_normalized_stack():
    result = orch("compose", "-f", str(HELLO), "config")
    assert result.returncode == 0, result.stderr
    stack = yaml.safe_load(result.stdout)
    assert stack["name"] == "hello"
    assert stack["services"]["web"]["ports"] == [{"target": 8080, "published": "8080", "protocol": "tcp", "mode": "ingress"}]
    assert stack["networks"] == {"default": {"name": "hello_default"}}


def test_options_may_follow_the_subcommand_and_json_is_available():
    result = orch("compose", "config", "-f", str(HELLO), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["services"]["web"]["healthcheck"]["interval"] == "5s"


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--services", "db\nmigrate\nnginx\nredis\nweb\nworker\n"),
        ("--volumes", "pgdata\nredisdata\nstatic\nmedia\n"),
        ("--networks", "default\n"),
        ("--profiles", "scheduler\n"),
        ("-q", ""),
    ],
)
def test_listing_options(option, expected):
    result = orch("compose", "-f", str(DATA / "realworld" / "django" / "compose.yaml"), "config", option)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (sorted(lines) if option == "--services" else lines) == expected.splitlines()


def test_profile_option_enables_services():
    result = orch("compose", "-f", str(DATA / "realworld" / "django" / "compose.yaml"), "--profile", "scheduler", "config", "--services")
    assert "beat" in result.stdout.split()


def test_unsupported_lists_the_keys_orch_does_not_act_on():
    result = orch("compose", "-f", str(DATA / "realworld" / "elk" / "compose.yaml"), "config", "--unsupported")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "services.elasticsearch.logging",
        "services.kibana.logging",
        "services.logstash.logging",
    ]


@pytest.mark.parametrize("stack", sorted((DATA / "realworld").glob("*/compose.yaml")) + [HELLO], ids=lambda p: p.parent.name)
def test_every_realworld_and_example_stack_passes_config_q(stack):
    result = orch("compose", "-f", str(stack), "config", "-q")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_file_with_mistakes_gets_every_mistake_one_line_each():
    path = DATA / "mistakes" / "compose.yaml"
    result = orch("compose", "-f", str(path), "config", "-q")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 10 and "Traceback" not in result.stderr
    assert lines[0] == f"orch: {path}:5:5: services.web.prots: unknown key 'prots' in services.web; did you mean 'ports'?"
    assert all(line.startswith(f"orch: {path}:") for line in lines)  # every line in one form


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "orch: stack file not found: {p}"),
        (lambda d: (d / "stack.yml").mkdir(), "orch: {p}: is a directory, not a stack file"),
        (lambda d: (d / "stack.yml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), "orch: {p}: not a text file (invalid UTF-8 at byte 0)"),
        (lambda d: (d / "stack.yml").write_text("services:\n  web: [\n"), "orch: {p}:3:1: invalid YAML: while parsing a flow node, expected the node content, but found '<stream end>'"),
    ],
)
def test_unusable_files_are_one_line_and_exit_1(tmp_path, make, message):
    make(tmp_path)
    path = tmp_path / "stack.yml"
    result = orch("compose", "-f", str(path), "config")
    assert (result.returncode, result.stderr.strip()) == (1, message.format(p=path))


def test_files_are_found_in_the_working_directory_with_env_and_override(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services:\n  web:\n    image: ${IMAGE}\n")
    (tmp_path / "docker-compose.override.yml").write_text("services:\n  web:\n    hostname: over\n")
    (tmp_path / ".env").write_text("IMAGE=busybox:1.36\n")
    result = orch("compose", "config", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    web = json.loads(result.stdout)["services"]["web"]
    assert (web["image"], web["hostname"]) == ("busybox:1.36", "over")
    assert json.loads(result.stdout)["name"] == tmp_path.name.lower().replace(".", "")


def test_env_file_and_project_name_options(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: ${IMAGE:-none}\n")
    (tmp_path / "vars.env").write_text("IMAGE=from-env-file\n")
    result = orch("compose", "--env-file", str(tmp_path / "vars.env"), "-p", "mine", "config", "--format", "json", cwd=tmp_path)
    stack = json.loads(result.stdout)
    assert (stack["name"], stack["services"]["web"]["image"]) == ("mine", "from-env-file")


def test_unset_variables_are_warned_about_on_stderr(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox${SUFFIX}\n")
    result = orch("compose", "config", "-q", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr == 'orch: warning: the "SUFFIX" variable is not set; defaulting to a blank string\n'


def test_unknown_and_unavailable_subcommands():
    result = orch("compose", "confgi")
    assert (result.returncode, result.stderr.strip()) == (2, "orch: unknown command 'orch compose confgi'; did you mean 'config'?")


def test_graph_of_the_webapp_example_shows_its_dependencies():
    webapp = HELLO.parents[1] / "webapp" / "compose.yaml"
    result = orch("compose", "-f", str(webapp), "graph")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flowchart")
    for name in ("web", "worker", "redis"):
        assert name in result.stdout
    assert "service_healthy" in result.stdout


def test_up_shortcut_takes_the_stack_file_as_a_plain_argument(monkeypatch):
    from orch.cli import compose
    from orch.cli.compose import split_global

    assert split_global(["-f", "a.yml", "--profile=x", "-pname", "config", "-q"]) == (["-f", "a.yml", "--profile=x", "-pname"], ["config", "-q"])
    assert split_global(["-fa.yml", "-p", "n", "up", "-d"]) == (["-fa.yml", "-p", "n"], ["up", "-d"])
    # What the shortcuts hand to `orch compose` (no stack is brought up here: the e2e tests do).
    seen = []
    monkeypatch.setattr(compose, "dispatch", lambda prog, target, argv: seen.append((prog, target, argv)) or 0)
    assert compose.up_shortcut("orch up", [str(HELLO), "-d", "web"]) == 0
    assert compose.down_shortcut("orch down", [str(HELLO), "-v"]) == 0
    assert compose.up_shortcut("orch up", ["-d"]) == 0  # no file: compose finds compose.yaml itself
    assert seen == [
        ("orch compose up", "orch.cli.compose_up:main", [f"--file={HELLO}", "-d", "web"]),
        ("orch compose down", "orch.cli.compose_up:down", [f"--file={HELLO}", "-v"]),
        ("orch compose up", "orch.cli.compose_up:main", ["-d"]),
    ]


def test_help_lists_the_subcommands():
    result = orch("compose", "--help")
    assert result.returncode == 0 and "config" in result.stdout and "graph" in result.stdout
    result = orch("compose", "config", "--help")
    assert result.returncode == 0 and "--unsupported" in result.stdout


@pytest.mark.parametrize("name", ["monitoring", "traefik", "django"])
def test_printed_yaml_is_a_stack_that_prints_the_same(tmp_path, capsys, monkeypatch, name):
    from orch.cli.compose_config import main

    stack = DATA / "realworld" / name
    monkeypatch.setenv("TAG", "dev")
    assert main("orch compose config", ["-f", str(stack / "compose.yaml")]) == 0
    first = capsys.readouterr().out
    (tmp_path / "out.yaml").write_text(first)
    assert main("orch compose config", ["-f", str(tmp_path / "out.yaml"), "--project-directory", str(stack)]) == 0
    assert capsys.readouterr().out == first


def test_stack_file_from_stdin(tmp_path):
    (tmp_path / "web.env").write_text("GREETING=hi\n")
    text = "services:\n  web:\n    image: busybox\n    env_file: web.env\n"
    result = orch("compose", "-f", "-", "config", "--format", "json", cwd=tmp_path, input=text)
    assert result.returncode == 0, result.stderr
    stack = json.loads(result.stdout)
    assert (stack["name"], stack["services"]["web"]["environment"]) == (tmp_path.name.lower().replace(".", ""), {"GREETING": "hi"})
    result = orch("compose", "-f", "-", "config", cwd=tmp_path, input="services:\n  web: {image: x, ports: [nope]}\n")
    assert result.returncode == 1 and result.stderr.startswith("orch: <stdin>:2:")


def test_config_found_from_a_subdirectory_with_the_multiple_files_warning(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox:${TAG}\n")
    (tmp_path / "docker-compose.yml").write_text("services: {other: {image: x}}\n")
    (tmp_path / ".env").write_text("TAG=1\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    result = orch("compose", "config", "--services", cwd=tmp_path / "a" / "b")
    assert (result.returncode, result.stdout) == (0, "web\n"), result.stderr
    assert result.stderr == (f"orch: warning: found multiple config files with supported names: {tmp_path}/compose.yaml, "
                             f"{tmp_path}/docker-compose.yml; using {tmp_path}/compose.yaml\n")


def test_config_names_a_dependency_cycle_and_up_stops_before_building_or_starting_an_agent(tmp_path):
    (tmp_path / "compose.yaml").write_text(
        "services:\n  api:\n    build: .\n    depends_on: [db]\n  db:\n    image: busybox\n    links: [api]\n")
    expected = f"orch: {tmp_path}/compose.yaml:4:18: services.api.depends_on.db: dependency cycle: api -> db -> api; remove one of these references\n"
    for command in (["config", "-q"], ["up", "-d"]):
        # ORCH_RUN points at a directory that does not exist: had `up` asked for an agent,
        # it would have started one there.
        result = orch("compose", *command, cwd=tmp_path, env={"ORCH_ROOT": str(tmp_path / "root"), "ORCH_RUN": str(tmp_path / "run")})
        assert (result.returncode, result.stderr) == (1, expected), command
    assert not (tmp_path / "run").exists() and not (tmp_path / "root").exists()


def test_a_missing_env_file_fails_config_and_up_of_its_service_only_before_an_agent(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: busybox\n  b:\n    image: busybox\n    env_file: gone.env\n")
    env = {"ORCH_ROOT": str(tmp_path / "root"), "ORCH_RUN": str(tmp_path / "run")}
    expected = f"orch: {tmp_path}/compose.yaml:6:15: services.b.env_file[0]: env file not found: {tmp_path}/gone.env\n"
    for command in (["config"], ["up", "-d", "b"], ["up", "-d"], ["run", "b"]):
        result = orch("compose", *command, cwd=tmp_path, env=env)
        assert (result.returncode, result.stderr) == (1, expected), command
    assert orch("compose", "config", "--services", cwd=tmp_path).returncode == 1
    assert not (tmp_path / "run").exists()
