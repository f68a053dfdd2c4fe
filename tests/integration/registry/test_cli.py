"""The CLI functions end to end: plain lines when stdout is not a terminal, docker's wording."""

import re

import pytest

from orch.cli import registry as cli
from orch.errors import InvalidArgument, NotFound
from orch.node.runtime.images import ImageStore

from .conftest import make_image


def test_push_and_pull_print_dockers_lines(registry_server, tmp_path, monkeypatch, capsys):
    reg = registry_server()
    monkeypatch.setenv("ORCH_ROOT", str(tmp_path / "node"))
    store = ImageStore(tmp_path / "node")
    ref = f"{reg.host}/cli/app:v1"
    image = make_image(store, ref, [{"a": b"1\n"}, {"b": b"2\n"}])

    assert cli.push("orch", [ref]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"The push refers to repository [{reg.host}/cli/app]"
    assert sum(1 for line in out if re.fullmatch(r"[0-9a-f]{12}: Pushed", line)) == 2
    assert re.fullmatch(r"v1: digest: sha256:[0-9a-f]{64} size: \d+", out[-1])

    store.remove(image.id, force=True)  # the tag and the RepoDigest the push recorded
    assert cli.pull("orch", [ref]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "v1: Pulling from cli/app"
    assert sum(1 for line in out if re.fullmatch(r"[0-9a-f]{12}: Pull complete", line)) == 2
    assert out[-2] == f"Status: Downloaded newer image for {ref}" and out[-1] == ref
    assert store.resolve(ref).id == image.id

    assert cli.pull("orch", ["-q", ref]) == 0
    assert capsys.readouterr().out == ref + "\n"


def test_cli_misuse_is_one_line(registry_server, tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_ROOT", str(tmp_path / "node"))
    with pytest.raises(InvalidArgument, match="orch pull: --platform linux/arm64: orch runs linux/amd64 images only"):
        cli.pull("orch", ["--platform", "linux/arm64", "x"])
    with pytest.raises(InvalidArgument, match=r"the following arguments are required: NAME\[:TAG\]; see .orch push --help."):
        cli.push("orch", [])
    with pytest.raises(NotFound, match="no such image: localhost:5999/none:v1"):
        cli.push("orch", ["localhost:5999/none:v1"])
    with pytest.raises(InvalidArgument, match="orch login: --password-stdin needs --username"):
        cli.login("orch", ["--password-stdin", "localhost:5999"])
