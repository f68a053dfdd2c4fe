"""docker login, push and pull through orch's docker.sock and through a private dockerd, against
one local docker-registry with htpasswd auth (tests/integration/registry's fixture): the
client's credentials travel as X-Registry-Auth, the progress as docker's JSON."""

import re

import pytest

from tests.integration.registry.conftest import PASSWORD, USER, registry_server  # noqa: F401  (a fixture)

pytestmark = pytest.mark.privileged


def test_login_push_pull_with_the_docker_cli(both, registry_server):  # noqa: F811
    reg = registry_server(auth=True)
    for engine in both:
        repo = f"{reg.host}/dockerapi/{engine.name}"
        login = engine.docker("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD + "\n")
        assert "Login Succeeded" in login.stdout
        bad = engine.docker("login", "-u", USER, "--password-stdin", reg.host, input="wrong\n", check=False)
        assert bad.returncode == 1, engine.name
        engine.docker("tag", "busybox", f"{repo}:v1")
        push = engine.docker("push", f"{repo}:v1").stdout
        assert f"The push refers to repository [{repo}]" in push and re.search(r"v1: digest: sha256:[0-9a-f]{64} size: \d+", push), push
        engine.docker("rmi", f"{repo}:v1")
        pull = engine.docker("pull", f"{repo}:v1").stdout
        lines = pull.splitlines()
        assert lines[0] == "v1: Pulling from dockerapi/" + engine.name and re.match(r"Digest: sha256:[0-9a-f]{64}$", lines[-3]), pull
        assert lines[-1] == f"{repo}:v1", pull  # the name once, as the client prints it
        assert engine.docker("run", "--rm", f"{repo}:v1", "echo", "pulled").stdout == "pulled\n"
        engine.docker("rmi", f"{repo}:v1")
        engine.docker("logout", reg.host)
        denied = engine.docker("pull", f"{repo}:v1", check=False)
        assert denied.returncode == 1, (engine.name, denied.stdout)
