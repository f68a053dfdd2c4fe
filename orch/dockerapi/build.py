"""POST /build: docker's classic builder protocol (the body a tar of the context, the answer a
stream of JSON messages), onto orch's builds (orch.node.agent.building.stream_build, which
already speaks docker's stream: {"stream": "Step 1/3 : ..."}, {"aux": {"ID"}}).

The context is streamed to a file under ORCH_ROOT/tmp as it comes, unpacked beside it into a
directory no other user can reach (paths that would leave it, links to outside, and device
nodes are refused), built, and removed, whatever the build's end.

A BuildKit request (`version=2`, or the /session the docker CLI opens for BuildKit) is refused
in one line that says what to do: orch's builder is docker's classic one, which the CLI uses
with DOCKER_BUILDKIT=0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import trio
from starlette.requests import Request
from starlette.responses import StreamingResponse

from orch.dockerapi.common import boolean, json_query, node_of
from orch.dockerapi.images import received
from orch.errors import InvalidArgument, NotImplementedHere

BUILDKIT = ("orch builds with docker's classic builder, not BuildKit: build with DOCKER_BUILDKIT=0 "
            "(docker build) or COMPOSE_DOCKER_CLI_BUILD=0 (docker-compose)")


async def session(request: Request):
    raise InvalidArgument(BUILDKIT)


def _request(request: Request, context: Path) -> dict:
    q = request.query_params
    dockerfile = q.get("dockerfile") or "Dockerfile"
    target = (context / dockerfile).resolve()
    if not target.is_relative_to(context.resolve()):
        raise InvalidArgument(f"the Dockerfile {dockerfile!r} is outside the build context")
    network = q.get("networkmode") or "default"
    if network not in ("default", "bridge", "none", "host"):
        raise InvalidArgument(f"network mode {network!r} for RUN is not supported: use default, none or host")
    if network == "host":
        raise InvalidArgument("RUN on the host's network is an entitlement orch grants only to `orch build --allow network.host`")
    build_args = json_query(request, "buildargs", "POST /build", {}) or {}
    labels = json_query(request, "labels", "POST /build", {}) or {}
    if q.get("platform") not in (None, "", "linux/amd64", "linux"):
        raise InvalidArgument(f"platform {q['platform']!r}: orch builds linux/amd64 images")
    for unsupported in ("cachefrom", "outputs", "extrahosts", "squash"):
        value = q.get(unsupported)
        if value and value not in ("[]", "null", "0", "false"):
            raise InvalidArgument(f"build option {unsupported} is not supported by orch's builder")
    return {"context": str(context), "dockerfile": str(target), "tags": q.getlist("t"),
            "build_args": {k: v for k, v in build_args.items() if v is not None}, "target": q.get("target") or None,
            "no_cache": boolean(request, "nocache"), "labels": labels, "network": "default" if network == "bridge" else network}


def unpack(archive: str, into: Path) -> None:
    """The context tar (maybe compressed) into `into`, refusing what would leave it."""
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(into, filter=_context_filter)


def _context_filter(member: tarfile.TarInfo, dest: str):
    """tarfile's "tar" filter (no absolute names, nothing written outside the destination,
    through a symlink either), and no device nodes, and no hard link to a file outside it (the
    "tar" filter lets one through, and it would put a host file in the context). Symlinks stay
    as they are, absolute ones too: they are copied as links, the builder never follows one
    out of its context. Files keep their modes: docker's COPY keeps the context's, setuid
    bits included."""
    if member.isdev():
        raise tarfile.SpecialFileError(member)  # "NAME is a special file": a device node in a build context
    if member.islnk():
        root = os.path.realpath(dest)
        target = os.path.realpath(os.path.join(root, member.linkname))
        if os.path.commonpath([root, target]) != root:
            raise tarfile.LinkOutsideDestinationError(member, target)
    filtered = tarfile.tar_filter(member, dest)
    return filtered.replace(mode=member.mode, deep=False) if filtered is not None else None


async def build(request: Request):
    q = request.query_params
    if q.get("version") == "2" or request.headers.get("x-docker-buildkit"):
        raise InvalidArgument(BUILDKIT)
    if q.get("remote"):
        raise InvalidArgument("a remote build context (git or URL) is not supported: send the context as a tar")
    from orch.node.agent.building import stream_build

    node = node_of(request)
    tmp = node.root / "tmp"
    tmp.mkdir(mode=0o700, exist_ok=True)
    context = Path(tempfile.mkdtemp(prefix="docker-build-", dir=tmp))
    try:
        async with received(node, request) as archive:
            try:
                await trio.to_thread.run_sync(unpack, archive, context)
            except (tarfile.TarError, OSError) as err:
                raise InvalidArgument(f"the build context is not a readable tar: {err}") from None
        req = _request(request, context)
    except BaseException:
        shutil.rmtree(context, ignore_errors=True)
        raise
    quiet = boolean(request, "q")

    async def lines():
        try:
            async for message in stream_build(node, req):
                if "error" in message:
                    text = docker_error(message["error"])
                    yield json.dumps({"errorDetail": {"message": text}, "error": text}) + "\r\n"
                elif quiet and "stream" in message:
                    continue
                else:
                    yield json.dumps(message) + "\r\n"
        finally:
            await trio.to_thread.run_sync(lambda: shutil.rmtree(context, ignore_errors=True))

    return StreamingResponse(lines(), media_type="application/json")


_RUN_FAILED = re.compile(r"^(?P<where>Dockerfile:\d+): step (?P<step>\d+/\d+) RUN (?P<cmd>.*): exit code (?P<code>\d+)$")


def docker_error(text: str) -> str:
    """A RUN step that failed, in the classic builder's words (docker-py and scripts match
    them), with orch's place of it after: "The command '/bin/sh -c exit 1' returned a non-zero
    code: 1 (Dockerfile:2, step 2/2)". Other errors as orch says them."""
    m = _RUN_FAILED.match(text)
    if not m or m["cmd"].endswith("..."):
        return text
    cmd = m["cmd"].strip()
    if cmd.startswith("["):
        try:
            words = json.loads(cmd)
            cmd = " ".join(words) if isinstance(words, list) else cmd
        except ValueError:
            cmd = "/bin/sh -c " + cmd
    else:
        cmd = "/bin/sh -c " + cmd
    return f"The command '{cmd}' returned a non-zero code: {m['code']} ({m['where']}, step {m['step']})"


async def prune(request: Request):
    raise NotImplementedHere("orch's build cache is pruned with the images it made (docker image prune); "
                             "POST /build/prune is not supported")

