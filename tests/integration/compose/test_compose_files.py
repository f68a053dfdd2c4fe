"""Compose's file rules with a node behind them: a missing env_file fails only the commands
that touch its service (compose's TestUnusedMissingEnvFile, with its fixture), `restart: ""`
is no policy, COMPOSE_* settings come from a .env, and the nested .env rule of compose's
TestNestedDotEnv holds for `run`. Fixtures: tests/data/compose/e2e (docker/compose, Apache-2.0)."""

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged

E2E = Path(__file__).parents[2] / "data" / "compose" / "e2e"


def test_unused_missing_env_file(node, stack):
    text = (E2E / "env_file" / "compose.yaml").read_text().replace("nginx:latest", "busybox:latest").replace("alpine", "busybox:latest")
    stack.write(text.replace("    image: busybox:latest\n", "    image: busybox:latest\n    command: [sleep, '1000']\n    init: true\n"))
    shutil.copy(E2E / "env_file" / "test.env", stack.dir / "test.env")
    stack.compose("up", "-d", "serviceA")
    # Runtime commands work with the missing env file.
    assert stack.compose("ps", "--format", "{{.Service}}").stdout.split() == ["serviceA"]
    stack.compose("logs")
    assert stack.compose("exec", "-T", "serviceA", "echo", "hello").stdout == "hello\n"
    stack.compose("scale", "serviceA=2")
    # But whatever starts serviceB fails, naming the file, before anything is made.
    for command in (("scale", "serviceB=1"), ("up", "-d"), ("up", "-d", "serviceB")):
        failed = stack.compose(*command, check=False)
        assert (failed.returncode, failed.stderr) == (1, f"orch: {stack.file}:13:9: services.serviceB.env_file[0]: env file not found: /doesnotexist/.env\n")
    assert sorted(stack.ids()) == [f"{stack.name}-serviceA-1", f"{stack.name}-serviceA-2"]
    # compose's TestRunEnvFile: the env file is read from the project directory.
    run = stack.compose("--profile", "test", "run", "--rm", "-T", "serviceC", "env")
    assert "FOO=BAR" in run.stdout.split()
    stack.compose("down")
    assert stack.ids() == {}


def test_empty_restart_is_no_policy_and_remove_orphans_from_dot_env(node, stack):
    stack.write("services:\n  a:\n    image: busybox:latest\n    command: [sleep, '1000']\n    init: true\n    restart: ${POLICY}\n"
                "  b:\n    image: busybox:latest\n    command: [sleep, '1000']\n    init: true\n    restart: ''\n")
    stack.compose("up", "-d")
    for service in ("a", "b"):
        policy = node.inspect(f"{stack.name}-{service}-1")["HostConfig"]["RestartPolicy"]
        assert policy["Name"] in ("", "no"), policy
    # b leaves the file; COMPOSE_REMOVE_ORPHANS in the project's .env removes its container.
    stack.write("services:\n  a:\n    image: busybox:latest\n    command: [sleep, '1000']\n    init: true\n")
    (stack.dir / ".env").write_text("COMPOSE_REMOVE_ORPHANS=true\n")
    stack.compose("up", "-d")
    assert list(stack.ids()) == [f"{stack.name}-a-1"]


def test_nested_dot_env_with_run(node, tmp_path):
    root = tmp_path / "nested"
    shutil.copytree(E2E / "nested", root)
    compose = root / "compose.yaml"
    compose.write_text(compose.read_text().replace("image: alpine", "image: busybox:latest"))
    try:
        assert node.orch("compose", "run", "--rm", "-T", "echo", cwd=root).stdout == "root win=root\n"
        assert node.orch("compose", "run", "--rm", "-T", "echo", cwd=root / "sub").stdout == "root sub win=sub\n"
    finally:
        node.orch("compose", "down", cwd=root, check=False)
