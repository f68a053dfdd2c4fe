"""Small translations of docker.sock: image references from docker's query, X-Registry-Auth,
the classic builder's words for a failed RUN, BuildKit's refusal, a context's tar filter."""

import base64
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from starlette.requests import Request

from orch.dockerapi.build import _context_filter, docker_error, unpack
from orch.dockerapi.images import _has_tag, _with_tag, registry_auth
from orch.errors import InvalidArgument


@pytest.mark.parametrize("name, tag, ref", [
    ("busybox", "latest", "busybox:latest"), ("localhost:5000/bb", "v1", "localhost:5000/bb:v1"),
    ("bb", "sha256:" + "a" * 64, "bb@sha256:" + "a" * 64), ("bb:v2", None, "bb:v2"),
])
def test_references(name, tag, ref):
    assert _with_tag(name, tag) == ref


def test_has_tag_looks_past_a_registry_port():
    assert not _has_tag("localhost:5000/bb") and _has_tag("localhost:5000/bb:v1") and _has_tag("bb@sha256:" + "a" * 64)


def request_with(headers: dict) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                    "query_string": b""})


def test_registry_auth_header():
    value = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p", "serveraddress": "r"}).encode()).decode()
    assert registry_auth(request_with({"X-Registry-Auth": value.rstrip("=")})) == {"username": "u", "password": "p"}
    assert registry_auth(request_with({"X-Registry-Auth": "e30="})) is None  # {}: no credentials
    assert registry_auth(request_with({})) is None
    with pytest.raises(InvalidArgument):
        registry_auth(request_with({"X-Registry-Auth": "not base64 json"}))
    token = base64.b64encode(json.dumps({"identitytoken": "t"}).encode()).decode()
    with pytest.raises(InvalidArgument, match="identity"):
        registry_auth(request_with({"X-Registry-Auth": token}))


@pytest.mark.parametrize("orch, docker", [
    ("Dockerfile:2: step 2/2 RUN exit 1: exit code 1",
     "The command '/bin/sh -c exit 1' returned a non-zero code: 1 (Dockerfile:2, step 2/2)"),
    ('Dockerfile:3: step 3/4 RUN ["false", "x"]: exit code 1',
     "The command 'false x' returned a non-zero code: 1 (Dockerfile:3, step 3/4)"),
    ("Dockerfile:2: step 2/2 RUN " + "x" * 70 + "...: exit code 1", None),  # cut: orch's words stay
    ("Dockerfile:1: FROM nope: no such image: nope", None),
])
def test_run_failures_in_the_classic_builders_words(orch, docker):
    assert docker_error(orch) == (docker or orch)


def tar_of(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_a_context_keeps_modes_and_refuses_escapes(tmp_path):
    setuid = tarfile.TarInfo("bin/tool")
    setuid.mode, setuid.size = 0o4755, 2
    archive = tmp_path / "ctx.tar"
    archive.write_bytes(tar_of([(setuid, b"#!")]))
    unpack(str(archive), tmp_path / "ctx")
    assert (tmp_path / "ctx" / "bin" / "tool").stat().st_mode & 0o7777 == 0o4755  # as docker's COPY keeps them

    def member(name, kind=tarfile.REGTYPE, link=""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        return info, (b"" if kind == tarfile.REGTYPE else None)

    attacks = {
        "a path out": [member("../out")],
        "a hard link to a host file": [member("passwd", tarfile.LNKTYPE, "/etc/passwd")],
        "a file written through a symlink": [member("etc", tarfile.SYMTYPE, "/etc"), member("etc/orch-context-test")],
        "a device node": [member("dev", tarfile.CHRTYPE)],
    }
    for what, members in attacks.items():
        archive.write_bytes(tar_of(members))
        with pytest.raises(tarfile.TarError):
            unpack(str(archive), tmp_path / what.replace(" ", "-"))
    assert not (tmp_path / "out").exists() and not Path("/etc/orch-context-test").exists()
    # A symlink itself is fine, an absolute one too: the builder copies it as a link.
    archive.write_bytes(tar_of([member("ln", tarfile.SYMTYPE, "/etc/passwd")]))
    unpack(str(archive), tmp_path / "links")
    assert os.readlink(tmp_path / "links" / "ln") == "/etc/passwd"


def test_the_filter_refuses_device_nodes_by_name():
    node = tarfile.TarInfo("dev/sda")
    node.type = tarfile.BLKTYPE
    with pytest.raises(tarfile.SpecialFileError, match="special file"):
        _context_filter(node, "/tmp/x")
