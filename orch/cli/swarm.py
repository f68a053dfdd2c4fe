"""`orch swarm init|join|join-token|leave|update`, in docker's grammar and words, through the
agent's /swarm routes. The request bodies are docker's SwarmInitRequest and SwarmJoinRequest
(with orch's EtcdEndpoints for an etcd you already run)."""

from __future__ import annotations

from orch.api.args import Parser
from orch.errors import InvalidArgument


def _client():
    from orch.cli._agent import client

    return client()


def _duration(text: str, flag: str) -> int:
    from orch.cli.serviceopts import parse_duration

    return parse_duration(text, flag)


def _spec(a) -> dict:
    """The SwarmSpec fields the flags set (the rest keep their value, or swarm's default)."""
    spec: dict = {}
    if a.task_history_limit is not None:
        spec["Orchestration"] = {"TaskHistoryRetentionLimit": a.task_history_limit}
    if a.dispatcher_heartbeat is not None:
        spec["Dispatcher"] = {"HeartbeatPeriod": _duration(a.dispatcher_heartbeat, "--dispatcher-heartbeat")}
    return spec


def _join_command(client, node_id: str, *, worker: bool, manager: bool) -> None:
    """docker's printJoinCommand: the token and this manager's address."""
    node = client.call("GET", f"/nodes/{node_id}")
    swarm = client.call("GET", "/swarm")
    addr = (node.get("ManagerStatus") or {}).get("Addr")
    if not addr:
        return
    for on, role, token in ((worker, "worker", swarm["JoinTokens"]["Worker"]), (manager, "manager", swarm["JoinTokens"]["Manager"])):
        if on:
            print(f"To add a {role} to this swarm, run the following command:\n\n    orch swarm join --token {token} {addr}\n")


def init(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Initialize a swarm")
    p.add_argument("--advertise-addr", default="", help='advertised address (format: "<ip|interface>[:port]")')
    p.add_argument("--listen-addr", default="", help='listen address (format: "<ip|interface>[:port]"; default '
                                                     '0.0.0.0 on the advertised port, 2377)')
    p.add_argument("--etcd-endpoints", default="", metavar="URLS",
                   help="keep the cluster's state in this etcd (comma-separated https:// URLs) instead of an embedded member")
    p.add_argument("--default-addr-pool", action="append", default=[], metavar="CIDR",
                   help="default address pool in CIDR format (repeatable, or comma-separated)")
    p.add_argument("--default-addr-pool-mask-length", type=int, default=24, metavar="uint32",
                   help="default address pool subnet mask length")
    p.add_argument("--availability", default="active", choices=("active", "pause", "drain"))
    p.add_argument("--dispatcher-heartbeat", metavar="duration", help="dispatcher heartbeat period (default 5s)")
    p.add_argument("--task-history-limit", type=int, metavar="int", help="task history retention limit (default 5)")
    a = p.parse_args(argv)
    pools = [c.strip() for item in a.default_addr_pool for c in item.split(",") if c.strip()]
    for cidr in pools:
        import ipaddress

        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidArgument(f'invalid argument "{cidr}" for "--default-addr-pool" flag: not a CIDR such as 10.20.0.0/16') from None
    body = {"ListenAddr": a.listen_addr, "AdvertiseAddr": a.advertise_addr, "DefaultAddrPool": pools,
            "SubnetSize": a.default_addr_pool_mask_length, "Spec": _spec(a), "Availability": a.availability}
    endpoints = [u.strip() for u in a.etcd_endpoints.split(",") if u.strip()]
    if endpoints:
        body["EtcdEndpoints"] = endpoints
    client = _client()
    node_id = client.call("POST", "/swarm/init", body)
    print(f"Swarm initialized: current node ({node_id}) is now a manager.\n")
    _join_command(client, node_id, worker=True, manager=False)
    print("To add a manager to this swarm, run 'orch swarm join-token manager' and follow the instructions.\n")
    return 0


def join(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Join a swarm as a node and/or manager", usage=f"{prog} [OPTIONS] HOST:PORT")
    p.add_argument("--token", required=True, help="token for entry into the swarm")
    p.add_argument("--advertise-addr", default="", help='advertised address (format: "<ip|interface>[:port]")')
    p.add_argument("--listen-addr", default="", help='listen address (format: "<ip|interface>[:port]"; default '
                                                     '0.0.0.0 on the advertised port, 2377)')
    p.add_argument("remote", metavar="HOST:PORT")
    a = p.parse_args(argv)
    client = _client()
    client.call("POST", "/swarm/join", {"ListenAddr": a.listen_addr, "AdvertiseAddr": a.advertise_addr,
                                        "RemoteAddrs": [a.remote], "JoinToken": a.token})
    info = client.call("GET", "/swarm/local")
    print("This node joined a swarm as a manager." if info.get("ControlAvailable") else "This node joined a swarm as a worker.")
    return 0


def join_token(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Manage join tokens", usage=f"{prog} [OPTIONS] (worker|manager)")
    p.add_argument("-q", "--quiet", action="store_true", help="only display token")
    p.add_argument("--rotate", action="store_true", help="rotate join token")
    p.add_argument("role", choices=("worker", "manager"))
    a = p.parse_args(argv)
    worker, manager = a.role == "worker", a.role == "manager"
    client = _client()
    if a.rotate:
        swarm = client.call("GET", "/swarm")
        client.call("POST", f"/swarm/update?version={swarm['Version']['Index']}&rotateWorkerToken={str(worker).lower()}"
                            f"&rotateManagerToken={str(manager).lower()}&rotateManagerUnlockKey=false", swarm["Spec"])
        if not a.quiet:
            print(f"Successfully rotated {a.role} join token.\n")
    swarm = client.call("GET", "/swarm")
    if a.quiet:
        print(swarm["JoinTokens"]["Worker" if worker else "Manager"])
        return 0
    _join_command(client, client.call("GET", "/swarm/local")["NodeID"], worker=worker, manager=manager)
    return 0


def leave(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Leave the swarm")
    p.add_argument("-f", "--force", action="store_true", help="force this node to leave the swarm, ignoring warnings")
    a = p.parse_args(argv)
    _client().call("POST", "/swarm/leave" + ("?force=true" if a.force else ""))
    print("Node left the swarm.")
    return 0


def update(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Update the swarm")
    p.add_argument("--dispatcher-heartbeat", metavar="duration", help="dispatcher heartbeat period (default 5s)")
    p.add_argument("--task-history-limit", type=int, metavar="int", help="task history retention limit (default 5)")
    a = p.parse_args(argv)
    client = _client()
    swarm = client.call("GET", "/swarm")
    spec = swarm["Spec"]
    for key, value in _spec(a).items():
        spec[key] = {**(spec.get(key) or {}), **value}
    client.call("POST", f"/swarm/update?version={swarm['Version']['Index']}", spec)
    print("Swarm updated.")
    return 0


GROUP = {"init": init, "join": join, "join-token": join_token, "leave": leave, "update": update}


def main(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage the swarm\n\nCommands: init, join, join-token, leave, update")
        return 0 if argv else 2
    func = GROUP.get(argv[0])
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {argv[0]}'; run '{prog} --help' for the list")
    return func(f"{prog} {argv[0]}", argv[1:])
