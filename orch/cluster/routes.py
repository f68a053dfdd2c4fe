"""The cluster's API on the node agent: docker's swarm paths (/swarm, /nodes, /services,
/tasks) speaking the Docker Engine API's JSON, and orch's /stacks (CLUSTER-API.md).

Every handler works through the node's cluster member (`await node.cluster_member()`, an
orch.cluster.node.ClusterNode): membership (init, join, leave, join tokens, settings) on the
member itself, the cluster's desired state through its `Control`, which only a manager has.
Errors are orch's `{"kind", "message"}` (the agent's handler writes them), in docker's words
where docker has them: "This node is not a swarm manager. ..." (503).

orch.cluster costs a few hundred milliseconds of imports (pydantic builds its records), which
an agent that is in no cluster never pays: this module imports only starlette at load time,
and each handler imports what it needs when it first runs.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orch.errors import InvalidArgument, NotFound, Unavailable

# A request body larger than this is refused before it is parsed (a stack with its secrets and
# configs fits; etcd refuses a request over 10 MiB by default anyway).
MAX_BODY = 8 << 20

NOT_A_MANAGER_WORKER = ("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
                        "Please run this command on a manager node or promote the current node to a manager.")


# -- helpers ------------------------------------------------------------------------------------


async def _member(request):
    return await request.app.state.node.cluster_member()


async def _control(request):
    """The manager's Control, or docker's one-line refusal on a worker or outside a swarm."""
    member = await _member(request)
    state = getattr(member, "state", None)
    if state is not None and state.role == "worker":
        raise Unavailable(NOT_A_MANAGER_WORKER)
    return member.require_manager()


async def _body(request) -> object:
    """The JSON body, bounded by MAX_BODY; one line if it is not JSON."""
    import json

    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise InvalidArgument(f"{request.method} {request.url.path}: the request body is larger than "
                                  f"{MAX_BODY >> 20} MiB")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as err:
        raise InvalidArgument(f"{request.method} {request.url.path}: the body is not JSON ({err})") from None


def _flag(request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise InvalidArgument(f"query parameter {name}={value!r} is not a boolean (true or false)")


def _version(request) -> int | None:
    value = request.query_params.get("version")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"query parameter version={value!r} is not an integer (the object's Version.Index)") from None


def _registry_auth(request) -> tuple[str, str] | None:
    """X-Registry-Auth (`--with-registry-auth`): docker's base64url JSON credentials."""
    import base64
    import json

    header = request.headers.get("x-registry-auth")
    if not header:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        raise InvalidArgument("X-Registry-Auth is not base64-encoded JSON credentials") from None
    if not isinstance(value, dict) or not value:
        return None
    if "identitytoken" in value and "password" not in value:
        raise InvalidArgument("X-Registry-Auth: identity tokens are not supported; log in with a user name and password")
    username, password = value.get("username"), value.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidArgument("X-Registry-Auth: username and password must be strings")
    return username, password


def _json(value, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status)


# -- the swarm ------------------------------------------------------------------------------------


async def swarm_init(request):
    from orch.cluster import dockerswarm as ds

    req = ds.init_request_from_json(await _body(request))
    member = await _member(request)
    node_id = await member.init(advertise_addr=req.advertise_addr, listen_addr=req.listen_addr,
                                etcd_endpoints=list(req.etcd_endpoints), settings=req.settings)
    if req.availability != "active":
        control = member.require_manager()
        stored = await control.node(node_id)
        await control.update_node(node_id, None, stored.record.spec.model_copy(update={"availability": req.availability}))
    return _json(node_id)


async def swarm_join(request):
    from orch.cluster import dockerswarm as ds

    req = ds.join_request_from_json(await _body(request))
    if req.availability != "active":
        raise InvalidArgument("SwarmJoinRequest.Availability: a node joins active; set its availability on a manager "
                              "afterwards (orch node update --availability)")
    member = await _member(request)
    errors = []
    for remote in req.remote_addrs:
        try:
            await member.join(remote=remote, token=req.join_token, advertise_addr=req.advertise_addr,
                              listen_addr=req.listen_addr)
            return Response(status_code=200)
        except Unavailable as err:  # that manager did not answer: try the next one
            errors.append(str(err))
    raise Unavailable("; ".join(errors))


async def swarm_leave(request):
    member = await _member(request)
    await member.leave(force=_flag(request, "force"))
    return Response(status_code=200)


async def swarm_inspect(request):
    from orch.cluster import dockerswarm as ds

    control = await _control(request)
    member = await _member(request)
    cluster = await control.cluster()
    tokens = await member.join_tokens()
    return _json(ds.swarm_to_json(cluster.record, cluster.mod_revision, join_tokens=(tokens["Worker"], tokens["Manager"])))


async def swarm_update(request):
    from orch.cluster import dockerswarm as ds

    control = await _control(request)
    member = await _member(request)
    if _flag(request, "rotateManagerUnlockKey"):
        raise InvalidArgument("orch has no autolock and no unlock key to rotate")
    version = _version(request)
    body = await _body(request)
    cluster = await control.cluster()
    settings = ds.cluster_settings_from_spec(body, cluster.record.settings, name=cluster.record.name)
    if settings != cluster.record.settings or version is not None:
        await member.update_settings(version, settings)
    worker, manager = _flag(request, "rotateWorkerToken"), _flag(request, "rotateManagerToken")
    if worker or manager:
        await member.rotate_tokens(worker=worker, manager=manager)
    return Response(status_code=200)


async def swarm_local(request):
    """docker's SwarmInfo (the Swarm field of GET /info), with the cluster's counts and record
    on a manager."""
    from dataclasses import replace

    from orch.cluster import dockerswarm as ds
    from orch.errors import OrchError

    member = await _member(request)
    raw = member.local_info()
    info = ds.LocalInfo(node_id=raw.get("NodeID", ""), node_addr=raw.get("NodeAddr", ""),
                        local_node_state=raw.get("LocalNodeState", "inactive"),
                        control_available=bool(raw.get("ControlAvailable")), error=raw.get("Error", ""),
                        remote_managers=tuple((p.get("NodeID", ""), p.get("Addr", "")) for p in raw.get("RemoteManagers") or ()))
    control = getattr(member, "control", None)
    if info.control_available and control is not None:
        try:
            nodes = await control.nodes()
            cluster = await control.cluster()
        except OrchError as err:  # etcd out of reach: the node still says who it is
            info = replace(info, error=info.error or str(err))
        else:
            managers = [n for n in nodes if n.record.spec.role == "manager"]
            remotes = tuple(sorted((n.id, n.record.manager_status.addr) for n in managers if n.record.manager_status))
            info = replace(info, remote_managers=remotes or info.remote_managers, nodes=len(nodes), managers=len(managers),
                           cluster=(cluster.record, cluster.mod_revision))
    return _json(ds.swarm_info_to_json(info))


# -- nodes ---------------------------------------------------------------------------------------


async def nodes_list(request):
    from orch.cluster import apifilters as af
    from orch.cluster import dockerjson as dj

    f = af.parse_filters(request.query_params.get("filters"), af.NODE_KEYS)
    control = await _control(request)
    return _json([dj.node_to_json(n.record, n.mod_revision) for n in await control.nodes() if af.node_matches(f, n.record)])


async def node_inspect(request):
    from orch.cluster import dockerjson as dj

    control = await _control(request)
    stored = await control.node(request.path_params["id"])
    return _json(dj.node_to_json(stored.record, stored.mod_revision))


async def node_update(request):
    from orch.cluster import dockerjson as dj

    control = await _control(request)
    spec = dj.node_spec_from_json(await _body(request))
    await control.update_node(request.path_params["id"], _version(request), spec)
    return Response(status_code=200)


async def node_remove(request):
    control = await _control(request)
    await control.remove_node(request.path_params["id"], force=_flag(request, "force"))
    return Response(status_code=200)


# -- services ------------------------------------------------------------------------------------


async def _statuses(control, services) -> dict:
    """ServiceStatus per service id: running tasks and desired ones, counted on nodes that are
    not down (docker's rule)."""
    from orch.cluster import dockerjson as dj
    from orch.cluster.records import TaskState

    down = {n.id for n in await control.nodes() if n.record.status.state == "down"}
    running: dict[str, int] = {}
    desired_global: dict[str, int] = {}
    for t in await control.tasks():
        task = t.record
        if task.node_id in down or task.desired_state != TaskState.RUNNING:
            continue
        desired_global[task.service_id] = desired_global.get(task.service_id, 0) + 1
        if task.status.state == TaskState.RUNNING:
            running[task.service_id] = running.get(task.service_id, 0) + 1
    out = {}
    for s in services:
        spec = s.record.spec
        desired = spec.replicas if spec.mode == "replicated" else desired_global.get(s.id, 0)
        out[s.id] = dj.ServiceStatus(running=running.get(s.id, 0), desired=desired)
    return out


async def services_list(request):
    from orch.cluster import apifilters as af
    from orch.cluster import dockerjson as dj

    f = af.parse_filters(request.query_params.get("filters"), af.SERVICE_KEYS)
    control = await _control(request)
    services = [s for s in await control.services() if af.service_matches(f, s.record)]
    statuses = await _statuses(control, services) if _flag(request, "status") else {}
    return _json([dj.service_to_json(s.record, s.mod_revision, status=statuses.get(s.id)) for s in services])


async def service_create(request):
    from orch.cluster import dockerjson as dj

    control = await _control(request)
    auth = _registry_auth(request)
    spec = dj.service_spec_from_json(await _body(request))
    service_id = await control.create_service(spec, registry_auth=auth)
    return _json({"ID": service_id, "Warnings": None}, status=201)


async def service_inspect(request):
    from orch.cluster import dockerjson as dj

    _flag(request, "insertDefaults")  # orch's answers always carry the defaults
    control = await _control(request)
    stored = await control.service(request.path_params["id"])
    return _json(dj.service_to_json(stored.record, stored.mod_revision))


async def service_update(request):
    from orch.cluster import dockerjson as dj

    control = await _control(request)
    auth = _registry_auth(request)
    ref = request.path_params["id"]
    source = request.query_params.get("registryAuthFrom", "spec")
    if source not in ("spec", "previous-spec"):
        raise InvalidArgument(f"query parameter registryAuthFrom={source!r}: use spec or previous-spec")
    rollback = request.query_params.get("rollback", "")
    body = await _body(request)
    if rollback == "previous":
        # docker's server-side rollback: the spec sent along is ignored.
        await control.rollback_service(ref)
    elif rollback:
        raise InvalidArgument(f"query parameter rollback={rollback!r}: the only value is previous")
    else:
        await control.update_service(ref, _version(request), dj.service_spec_from_json(body), registry_auth=auth)
    return _json({"Warnings": None})


async def service_remove(request):
    control = await _control(request)
    await control.remove_service(request.path_params["id"])
    return Response(status_code=200)


async def service_logs(request):
    """JSON lines, one log entry each, with its task and node: {"task", "task_id", "node", "log",
    "stream", "time"}; with follow=1 the stream stays open as the tasks write."""
    import json

    from starlette.responses import StreamingResponse

    await _control(request)
    member = await _member(request)
    follow = _flag(request, "follow")
    tail = request.query_params.get("tail", "all")
    if tail != "all" and not tail.isdigit():
        raise InvalidArgument(f"query parameter tail={tail!r}: a number of lines, or all")
    since = request.query_params.get("since")
    try:
        since_value = float(since) if since not in (None, "", "0") else None
    except ValueError:
        raise InvalidArgument(f"query parameter since={since!r}: a UNIX time in seconds") from None
    lines = member.service_logs(request.path_params["id"], follow=follow, tail=None if tail == "all" else int(tail),
                                since=since_value)
    # The first line (or the error that there is none) before the response starts: a service
    # that does not exist is a 404, not an empty stream.
    try:
        first = await anext(lines)
    except StopAsyncIteration:
        first = None

    async def body():
        if first is None:
            return
        yield _entry(*first)
        async for item in lines:
            yield _entry(*item)

    def _entry(task_name, task_id, node, line):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {"log": line, "stream": "stdout", "time": ""}
        return json.dumps({"task": task_name, "task_id": task_id, "node": node, **entry}) + "\n"

    return StreamingResponse(body(), media_type="application/x-ndjson")


# -- tasks ---------------------------------------------------------------------------------------


async def _resolved(control, f: dict) -> dict:
    """`service` and `node` filters by name or id prefix -> ids, as docker's daemon resolves them."""
    out = dict(f)
    if "service" in f:
        out["service"] = [(await control.service(ref)).id for ref in f["service"]]
    if "node" in f:
        out["node"] = [(await control.node(ref)).id for ref in f["node"]]
    return out


async def tasks_list(request):
    from orch.cluster import apifilters as af
    from orch.cluster import dockerjson as dj

    f = af.parse_filters(request.query_params.get("filters"), af.TASK_KEYS)
    control = await _control(request)
    f = await _resolved(control, f)
    services = {s.id: s.record for s in await control.services()} if "_up-to-date" in f or "label" in f else {}
    tasks = [t for t in await control.tasks() if af.task_matches(f, t.record, service=services.get(t.record.service_id))]
    return _json([dj.task_to_json(t.record, t.mod_revision) for t in tasks])


async def task_inspect(request):
    from orch.cluster import dockerjson as dj

    control = await _control(request)
    ref = request.path_params["id"]
    tasks = await control.tasks()
    found = [t for t in tasks if t.id == ref] or [t for t in tasks if ref and t.id.startswith(ref)]
    if not found:
        raise NotFound(f"task {ref} not found")
    if len(found) > 1:
        raise InvalidArgument(f"task {ref} is ambiguous ({len(found)} matches); give more characters of its id")
    return _json(dj.task_to_json(found[0].record, found[0].mod_revision))


# -- stacks (orch's: docker's stack commands are client-side) ---------------------------------------


async def stack_deploy(request):
    from orch.cluster import dockerswarm as ds

    control = await _control(request)
    deployment, prune, auths = ds.stack_deploy_from_json(await _body(request))
    return _json({"Lines": await control.deploy_stack(deployment, prune=prune, registry_auth=auths)})


async def stacks_list(request):
    control = await _control(request)
    stacks = await control.stacks()
    return _json([{"Name": name, "Services": len(services)} for name, services in sorted(stacks.items())])


async def stack_remove(request):
    control = await _control(request)
    return _json({"Lines": await control.remove_stack(request.path_params["name"])})


# -- overlay networks (served under the agent's /networks: orch/node/agent/routes_networks.py) ---

def overlay_view(net) -> dict:
    """A cluster network record in docker's network inspect shape (scope swarm)."""
    config = [{"Subnet": s.subnet, "Gateway": s.gateway} for s in net.subnets] or \
             [{"Subnet": s.subnet, "Gateway": s.gateway} for s in net.spec.ipam]
    options = dict(net.spec.options)
    if net.vni:
        options["com.docker.network.driver.overlay.vxlanid_list"] = str(net.vni)
    return {"Name": net.spec.name, "Id": net.id, "Scope": "swarm", "Driver": "overlay", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config}, "Internal": net.spec.internal,
            "Attachable": net.spec.attachable, "Ingress": net.spec.ingress, "Containers": {}, "Options": options,
            "Labels": dict(net.spec.labels)}


async def create_overlay(request, req) -> str:
    """POST /networks/create with driver overlay: a cluster network, on a manager."""
    from orch.cluster import records as r

    control = await _control(request)
    ipam = [r.IPAMConfig(subnet=req.subnet or "", gateway=req.gateway or "")] if (req.subnet or req.gateway) else []
    spec = r.NetworkSpec(name=req.name, labels=req.labels, driver="overlay", options=req.options, internal=req.internal,
                         attachable=req.attachable, ingress=req.ingress, ipam=ipam)
    return await control.create_network(spec)


async def overlay_networks(request) -> list:
    """The cluster's networks when this node is a manager (else none)."""
    member = request.app.state.node.cluster
    if member is None or getattr(member, "control", None) is None:
        return []
    return [s.record for s in await member.control.networks()]


async def remove_overlay(request, ref: str) -> None:
    control = await _control(request)
    await control.remove_network(ref)


ROUTES = [
    Route("/swarm", swarm_inspect, methods=["GET"]),
    Route("/swarm/init", swarm_init, methods=["POST"]),
    Route("/swarm/join", swarm_join, methods=["POST"]),
    Route("/swarm/leave", swarm_leave, methods=["POST"]),
    Route("/swarm/update", swarm_update, methods=["POST"]),
    Route("/swarm/local", swarm_local, methods=["GET"]),
    Route("/nodes", nodes_list, methods=["GET"]),
    Route("/nodes/{id}", node_inspect, methods=["GET"]),
    Route("/nodes/{id}", node_remove, methods=["DELETE"]),
    Route("/nodes/{id}/update", node_update, methods=["POST"]),
    Route("/services", services_list, methods=["GET"]),
    Route("/services/create", service_create, methods=["POST"]),
    Route("/services/{id}", service_inspect, methods=["GET"]),
    Route("/services/{id}", service_remove, methods=["DELETE"]),
    Route("/services/{id}/update", service_update, methods=["POST"]),
    Route("/services/{id}/logs", service_logs, methods=["GET"]),
    Route("/tasks", tasks_list, methods=["GET"]),
    Route("/tasks/{id}", task_inspect, methods=["GET"]),
    Route("/stacks", stacks_list, methods=["GET"]),
    Route("/stacks/deploy", stack_deploy, methods=["POST"]),
    Route("/stacks/{name}", stack_remove, methods=["DELETE"]),
]
