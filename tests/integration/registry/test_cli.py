"""The CLI's pull and push end to end, through a node's agent (which owns the image store):
plain lines when stdout is not a terminal, docker's wording, the user's credentials sent along."""

import io
import re

import pytest

from orch.cli import registry as cli
from orch.errors import InvalidArgument, NotFound, UserError
from orch.node.runtime.images import ImageStore
from tests.integration.agent.conftest import node  # noqa: F401 (a node with its agent, for the CLI)

from .conftest import PASSWORD, USER, make_image

pytestmark = pytest.mark.privileged


@pytest.fixture
def as_client(node, monkeypatch):  # noqa: F811
    """This process as a CLI of `node`: the commands find its agent's sockets."""
    monkeypatch.setenv("ORCH_ROOT", str(node.root))
    monkeypatch.setenv("ORCH_RUN", str(node.run_dir))
    return ImageStore(node.root)


def test_push_and_pull_print_dockers_lines(registry_server, as_client, capsys):
    reg = registry_server()
    store = as_client
    ref = f"{reg.host}/cli/app:v1"
    image = make_image(store, ref, [{"a": b"1\n"}, {"b": b"2\n"}])

    assert cli.push("orch", [ref]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"The push refers to repository [{reg.host}/cli/app]"
    assert sum(1 for line in out if re.fullmatch(r"[0-9a-f]{12}: Pushed", line)) == 2
    assert re.fullmatch(r"v1: digest: sha256:[0-9a-f]{64} size: \d+", out[-1])
    assert cli.push("orch", ["-q", ref]) == 0
    assert capsys.readouterr().out == out[-1].split()[2] + "\n"  # the digest alone

    store.remove(image.id, force=True)  # the tag and the RepoDigest the push recorded
    assert cli.pull("orch", [ref]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "v1: Pulling from cli/app"
    assert sum(1 for line in out if re.fullmatch(r"[0-9a-f]{12}: Pull complete", line)) == 2
    assert out[-2] == f"Status: Downloaded newer image for {ref}" and out[-1] == ref
    assert store.resolve(ref).id == image.id

    assert cli.pull("orch", ["-q", ref]) == 0
    assert capsys.readouterr().out == ref + "\n"
    store.remove(image.id, force=True)


def test_the_users_credentials_travel_with_the_request(registry_server, as_client, monkeypatch, capsys):
    """The agent has no credentials of its own here: what `orch login` stored for this user
    is what pulls and pushes."""
    reg = registry_server(auth=True)
    store = as_client
    ref = f"{reg.host}/private/app:v1"
    image = make_image(store, ref, [{"x": b"secret layer\n"}])
    with pytest.raises(UserError, match=rf"registry {reg.host} wants a user name and password: run 'orch login {reg.host}'"):
        cli.push("orch", ["-q", ref])
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.login("orch", ["-u", USER, "--password-stdin", reg.host]) == 0
    assert cli.push("orch", ["-q", ref]) == 0
    store.remove(image.id, force=True)
    assert cli.pull("orch", ["-q", ref]) == 0
    assert store.resolve(ref).id == image.id
    store.remove(image.id, force=True)
    capsys.readouterr()


def test_cli_misuse_is_one_line(registry_server, as_client):
    with pytest.raises(InvalidArgument, match="orch pull: --platform linux/arm64: orch runs linux/amd64 images only"):
        cli.pull("orch", ["--platform", "linux/arm64", "x"])
    with pytest.raises(InvalidArgument, match=r"the following arguments are required: NAME\[:TAG\]; see .orch push --help."):
        cli.push("orch", [])
    with pytest.raises(NotFound, match="no such image: localhost:5999/none:v1"):
        cli.push("orch", ["localhost:5999/none:v1"])
    with pytest.raises(InvalidArgument, match="orch login: --password-stdin needs --username"):
        cli.login("orch", ["--password-stdin", "localhost:5999"])
