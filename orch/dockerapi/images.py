"""docker.sock's image routes: list (docker's filters), pull and import (/images/create), push,
save and load (archives streamed through a file on the node, never held in memory), tag,
remove, prune, commit. Pull and push are the agent's own transfers (routes_registry), with
the client's X-Registry-Auth; their progress is already docker's JSON, and an error at the end
is rewritten into docker's {"errorDetail", "error"}.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import tempfile

import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from orch.dockerapi.common import answer, boolean, decoded, forward, json_query, node_of
from orch.errors import InvalidArgument, NotImplementedHere, from_kind
from orch.node.agent import routes_build, routes_images, routes_registry
from orch.node.runtime import imageconfig, reference

CHUNK = 1 << 16


# -- list ---------------------------------------------------------------------------------------------
async def list_(request: Request):
    node = node_of(request)
    filters = json_query(request, "filters", "GET /images/json", {}) or {}
    filters = {k: (list(v) if isinstance(v, (list, dict)) else [v]) for k, v in filters.items()}
    unknown = set(filters) - {"dangling", "reference", "label", "before", "since"}
    if unknown:
        raise InvalidArgument(f"invalid filter '{sorted(unknown)[0]}'")
    # ?all=1 lists intermediate images too; orch keeps none (a build's steps are cache
    # entries, not images), so it lists the same.
    images = await trio.to_thread.run_sync(node.images.list)
    used: dict[str, int] = {}
    for rec in node.records.values():
        used[rec["Image"]] = used.get(rec["Image"], 0) + 1
    by_ref = {ref: im for im in images for ref in im.repo_tags}
    bounds = {}
    for key in ("before", "since"):
        for ref in filters.get(key, []):
            bounds[key] = _created(by_ref.get(ref) or await trio.to_thread.run_sync(node.images.resolve, ref))
    rows = []
    for im in images:
        if not _image_matches(im, filters, bounds):
            continue
        row = imageconfig.summary_json(im)
        row.update(Containers=used.get(im.id, 0), SharedSize=-1, VirtualSize=im.size)
        if not row["RepoTags"] and not row["RepoDigests"]:
            row.update(RepoTags=["<none>:<none>"], RepoDigests=["<none>@<none>"])  # dockerd's dangling image
        rows.append(row)
    rows.sort(key=lambda r: r["Created"], reverse=True)
    return answer(rows)


def _created(image) -> float:
    return imageconfig.parse_time(image.created)


def _image_matches(im, filters: dict, bounds: dict) -> bool:
    dangling = filters.get("dangling")
    if dangling:
        want = dangling[0].lower() in ("1", "true")
        if want != (not im.repo_tags):
            return False
    refs = filters.get("reference")
    if refs:
        names = [reference.familiar(t) for t in im.repo_tags]
        ok = False
        for pattern in refs:
            for name in names:
                repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
                if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(repo, pattern):
                    ok = True
        if not ok:
            return False
    labels = (im.config.get("config") or {}).get("Labels") or {}
    for want in filters.get("label", []):
        key, sep, value = want.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    created = _created(im)
    if "before" in bounds and not created < bounds["before"]:
        return False
    if "since" in bounds and not created > bounds["since"]:
        return False
    return True


# -- pull, import, push --------------------------------------------------------------------------------
def registry_auth(request: Request) -> dict | None:
    """X-Registry-Auth: base64url of {"username", "password", ...}, as the docker client sends
    it; None for none (or an empty one: "e30=")."""
    header = request.headers.get("x-registry-auth")
    if not header:
        return None
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        value = json.loads(raw or b"{}")
    except (ValueError, TypeError):
        raise InvalidArgument("X-Registry-Auth is not base64 of a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidArgument("X-Registry-Auth is not base64 of a JSON object")
    if value.get("identitytoken") or value.get("registrytoken"):
        raise InvalidArgument("X-Registry-Auth: identity and registry tokens are not supported; log in with a user name and password")
    if not value.get("username"):
        return None
    return {"username": value["username"], "password": value.get("password") or ""}


async def _docker_errors(response: StreamingResponse, ref: str | None = None) -> StreamingResponse:
    """The agent's progress stream with its error line in docker's shape. A pull's last line
    names the image ({"status": REF}) for `orch pull` to print; dockerd sends none (the
    docker client prints the name itself), so it is left out.

    A pull (`ref` given) that fails before it has the image's manifest is an HTTP error, as
    dockerd's: dockerd says "Pulling from" once it has the manifest, and docker-py's
    `images.pull` reads only the status (an error in the stream would pass as a pull, and a
    stale local image would be used). orch's pull says "Pulling from" first, so that line is
    held until the next one shows whether the registry answered."""
    source = response.body_iterator.__aiter__()
    names = {ref, str(reference.parse(ref))} if ref else set()
    buf = b""
    first: list[bytes] = []
    while ref is not None:
        while b"\n" not in buf:
            try:
                chunk = await source.__anext__()
            except StopAsyncIteration:
                break
            buf += chunk if isinstance(chunk, bytes) else chunk.encode()
        line, sep, rest = buf.partition(b"\n")
        if not sep:
            break  # the stream ended: what is left is answered as it is
        buf = rest
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict) and "error" in event:
            await source.aclose()
            raise from_kind(event.get("kind", "error"), event["error"])
        first.append(line)
        if not (isinstance(event, dict) and set(event) == {"status"} and "Pulling from " in str(event["status"])):
            break

    async def lines():
        nonlocal buf
        for line in first:
            out = _docker_line(line, names)
            if out:
                yield out
        async for chunk in source:
            buf += chunk if isinstance(chunk, bytes) else chunk.encode()
            *done, buf = buf.split(b"\n")
            for line in done:
                out = _docker_line(line, names)
                if out:
                    yield out
        if buf.strip():
            yield _docker_line(buf, names)

    return StreamingResponse(lines(), media_type="application/json")


def _docker_line(line: bytes, names: set) -> bytes:
    try:
        event = json.loads(line)
    except ValueError:
        return line + b"\n"
    if isinstance(event, dict) and "error" in event:
        event = {"errorDetail": {"message": event["error"]}, "error": event["error"]}
    elif isinstance(event, dict) and set(event) == {"status"} and event["status"] in names:
        return b""
    return json.dumps(event).encode() + b"\r\n"


def _has_tag(name: str) -> bool:
    return "@" in name or ":" in name.rsplit("/", 1)[-1]


def _with_tag(name: str, tag: str | None) -> str:
    if not tag:
        return name
    return f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"


async def create(request: Request):
    """POST /images/create: ?fromImage (pull) or ?fromSrc=- (import the body's tar)."""
    if request.query_params.get("fromImage"):
        ref = _with_tag(request.query_params["fromImage"], request.query_params.get("tag"))
        if not _has_tag(ref):
            raise InvalidArgument(f"pulling every tag of {ref} is not supported by orch; name a tag (the client's -a)")
        if request.query_params.get("platform") not in (None, "", "linux/amd64", "linux"):
            raise InvalidArgument(f"platform {request.query_params['platform']!r}: orch runs linux/amd64 images")
        body = {"ref": ref, "auth": registry_auth(request)}
        return await _docker_errors(await forward(routes_registry.pull_image, request, body=body), ref)
    source = request.query_params.get("fromSrc")
    if source is None:
        raise InvalidArgument("POST /images/create: give fromImage (pull) or fromSrc=- (import)")
    if source != "-":
        raise InvalidArgument(f"import from {source!r}: orch imports the tar sent in the request (fromSrc=-), not from a URL")
    repo, tag = request.query_params.get("repo") or "", request.query_params.get("tag") or ""
    ref = _with_tag(repo, tag or ("" if _has_tag(repo) else "latest")) if repo else None
    changes = request.query_params.getlist("changes")
    node = node_of(request)
    async with received(node, request) as path:
        image = decoded(await forward(routes_images.import_image, request,
                                      body={"source": str(path), "ref": ref, "changes": changes or None,
                                            "message": request.query_params.get("message") or None}))
    return Response(json.dumps({"status": image["id"]}) + "\r\n", media_type="application/json")


async def push(request: Request):
    name = request.path_params["ref"]
    ref = _with_tag(name, request.query_params.get("tag"))
    body = {"ref": ref, "auth": registry_auth(request)}
    return await _docker_errors(await forward(routes_registry.push_image, request, body=body))


# -- save, load -----------------------------------------------------------------------------------------
class received:
    """The request's body in a file under ORCH_ROOT/tmp, streamed there as it comes (never
    whole in memory); removed on exit."""

    def __init__(self, node, request: Request):
        self.node, self.request = node, request

    async def __aenter__(self):
        tmp = self.node.root / "tmp"
        tmp.mkdir(mode=0o700, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="docker-body-", dir=tmp)
        self.path = name
        try:
            async with trio.wrap_file(os.fdopen(fd, "wb")) as f:
                async for chunk in self.request.stream():
                    if chunk:
                        await f.write(chunk)
        except BaseException:
            # A body that stopped coming, passed its bound or lost its client: __aexit__ is
            # not called for a failed __aenter__, so what came of it is removed here.
            os.unlink(self.path)
            raise
        return self.path

    async def __aexit__(self, *exc):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


async def load(request: Request):
    """An archive that cannot be loaded is an error in the answer's stream, as dockerd's
    (docker-py raises ImageLoadError from it), not an HTTP error."""
    from orch.errors import UserError

    node = node_of(request)
    async with received(node, request) as path:
        try:
            lines = decoded(await forward(routes_images.load_images, request, body={"path": path}))["lines"]
        except UserError as err:
            return Response(json.dumps({"errorDetail": {"message": str(err)}, "error": str(err)}) + "\n",
                            media_type="application/json")
    out = "".join(json.dumps({"stream": line + "\n"}) + "\n" for line in lines)
    return Response(out, media_type="application/json")


async def save(request: Request):
    names = request.query_params.getlist("names")
    if not names:
        raise InvalidArgument("GET /images/get: give at least one image (names=...)")
    return await _save(request, names)


async def save_one(request: Request):
    return await _save(request, [request.path_params["ref"]])


async def _save(request: Request, refs: list[str]):
    """The archive is written to a file on the node, then streamed from it and removed."""
    node = node_of(request)
    tmp = node.root / "tmp"
    tmp.mkdir(mode=0o700, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="docker-save-", suffix=".tar", dir=tmp)
    os.close(fd)
    try:
        await forward(routes_images.save_images, request, body={"refs": refs, "path": path, "format": "docker"})
        f = open(path, "rb")
    finally:
        os.unlink(path)  # the open file stays readable until it is closed

    async def body():
        try:
            while True:
                chunk = await trio.to_thread.run_sync(f.read, CHUNK * 16)
                if not chunk:
                    return
                yield chunk
        finally:
            f.close()

    return StreamingResponse(body(), media_type="application/x-tar")


# -- tag, remove, prune, search, commit --------------------------------------------------------------
async def tag(request: Request):
    repo = request.query_params.get("repo") or ""
    if not repo:
        raise InvalidArgument("POST /images/{name}/tag: give repo (and tag)")
    target = _with_tag(repo, request.query_params.get("tag") or ("" if _has_tag(repo) else "latest"))
    await forward(routes_images.tag_image, request, body={"source": request.path_params["ref"], "target": target})
    return Response(status_code=201)


def _lines_to_docker(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        kind, _, value = line.partition(": ")
        out.append({kind: value})
    return out


async def remove(request: Request):
    query = {"force": "1" if boolean(request, "force") else "0"}
    lines = decoded(await forward(routes_images.remove_image, request, query=query))["lines"]
    return answer(_lines_to_docker(lines))


async def prune(request: Request):
    node = node_of(request)
    filters = json_query(request, "filters", "POST /images/prune", {}) or {}
    dangling = filters.get("dangling") or ["true"]
    if isinstance(dangling, dict):
        dangling = [k for k, v in dangling.items() if v]
    all_images = str(dangling[0]).lower() in ("0", "false")
    lines, freed = await trio.to_thread.run_sync(lambda: node.images.prune(all_images=all_images, in_use=node.image_in_use))
    deleted = _lines_to_docker(lines)
    return answer({"ImagesDeleted": deleted or None, "SpaceReclaimed": freed})


async def search(request: Request):
    raise NotImplementedHere("orch does not search registries (GET /images/search); look the image up on its registry")


async def commit(request: Request):
    """POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=, the body a Config
    (docker's overrides) that orch takes through `changes` only."""
    container = request.query_params.get("container")
    if not container:
        raise InvalidArgument("POST /commit: give the container (?container=)")
    repo, tag_ = request.query_params.get("repo") or "", request.query_params.get("tag") or ""
    body = {"repo": _with_tag(repo, tag_ or ("" if _has_tag(repo) else "latest")) if repo else None, "comment": request.query_params.get("comment") or "",
            "author": request.query_params.get("author") or "", "changes": request.query_params.getlist("changes"),
            "pause": boolean(request, "pause", True)}
    config = await request.body()
    if config.strip() and json.loads(config) not in ({}, None):
        overrides = json.loads(config)
        body["changes"] += _config_changes(overrides)
    result = decoded(await forward(routes_build.commit, request, body=body, path_params={"ref": container}))
    return answer({"Id": result["Id"]}, 201)


def _config_changes(config: dict) -> list[str]:
    """docker-py's commit(conf=...): the Config keys orch's --change instructions can say."""
    out = []
    if config.get("Cmd"):
        out.append("CMD " + json.dumps(config["Cmd"]))
    if config.get("Entrypoint"):
        out.append("ENTRYPOINT " + json.dumps(config["Entrypoint"]))
    for env in config.get("Env") or []:
        out.append("ENV " + env.replace("=", " ", 1) if "=" in env else "ENV " + env)
    for key, value in (config.get("Labels") or {}).items():
        out.append(f"LABEL {json.dumps(key)}={json.dumps(value)}")
    if config.get("User"):
        out.append("USER " + config["User"])
    if config.get("WorkingDir"):
        out.append("WORKDIR " + config["WorkingDir"])
    for port in config.get("ExposedPorts") or {}:
        out.append("EXPOSE " + port)
    for volume in config.get("Volumes") or {}:
        out.append("VOLUME " + json.dumps([volume]))
    return out
