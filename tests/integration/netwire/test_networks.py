"""Networks through the CLI on real bridges, veths, namespaces, nftables and the embedded DNS.

Servers are busybox httpd (TCP) and a Python UDP echo (the host's /usr mounted read-only:
busybox's nc has no UDP); clients are busybox nc/wget/nslookup in other containers, or the test
itself on the host's loopback and address. No packet leaves the machine: the "outside" is a
namespace the test makes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import textwrap
import urllib.request

import pytest

from tests.integration.netwire.conftest import HOST_PYTHON, free_port, host_address, nft_table

pytestmark = pytest.mark.privileged


def httpd(node, name, *flags, text=None):
    """A detached busybox httpd answering `text` (default: its name) on port 80."""
    script = f"mkdir -p /www && echo {text or name} > /www/index.html && exec httpd -f -p 80 -h /www"
    node.ok("run", "-d", "--name", name, *flags, "busybox", "sh", "-c", script)


def fetch(url: str, timeout=3) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode().strip()


def client(node, network, script, *flags) -> str:
    return node.ok("run", "--rm", "--network", network, *flags, "busybox", "sh", "-c", script).strip()


# A TCP "GET" with nc: busybox wget crashes on a refused or timed-out connection.
def nc_get(host, port=80, wait=2):
    return (f"out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w {wait} {host} {port}); "
            'if [ -n "$out" ]; then echo "$out" | tail -1; else echo FAILED; fi')


def test_names_round_robin_and_isolation(node):
    node.ok("network", "create", "front")
    node.ok("network", "create", "back")
    httpd(node, "web1", "--network", "front", "--network-alias", "web")
    httpd(node, "web2", "--network", "front", "--network-alias", "web")
    # By name, from a neighbour on the same network.
    assert client(node, "front", "wget -qO- http://web1/; wget -qO- http://web2/") == "web1\nweb2"
    # The shared alias: every lookup rotates the answers, so successive requests alternate.
    seen = client(node, "front", "for i in 1 2 3 4; do wget -qO- http://web/; done").split()
    assert sorted(set(seen)) == ["web1", "web2"] and seen[0] != seen[1], seen
    # The short id is a name too, as in docker.
    short = node.inspect("web1")["Id"][:12]
    assert client(node, "front", f"wget -qO- http://{short}/") == "web1"
    # Another network: the names do not resolve, and the address is not reachable.
    address = node.inspect("web1")["NetworkSettings"]["Networks"]["front"]["IPAddress"]
    out = client(node, "back", "nslookup web1 2>&1; " + nc_get(address))
    assert "NXDOMAIN" in out and out.splitlines()[-1] == "FAILED", out
    # inspect and network inspect show where the container is.
    front = json.loads(node.ok("network", "inspect", "front"))[0]
    assert sorted(c["Name"] for c in front["Containers"].values()) == ["web1", "web2"]
    assert front["IPAM"]["Config"][0]["Gateway"] == node.inspect("web1")["NetworkSettings"]["Networks"]["front"]["Gateway"]


def test_published_ports_loopback_host_address_and_hairpin(node):
    p1, p2 = free_port(), free_port()
    httpd(node, "pub", "-p", f"127.0.0.1:{p1}:80", "-p", f"{p2}:80")
    host = host_address()
    assert fetch(f"http://127.0.0.1:{p1}/") == "pub"
    assert fetch(f"http://127.0.0.1:{p2}/") == "pub"
    assert fetch(f"http://{host}:{p2}/") == "pub"
    # The 127.0.0.1-only port is not on the host's other addresses.
    with pytest.raises(OSError):
        fetch(f"http://{host}:{p1}/", timeout=1)
    # From another container, through the host's address (hairpin through the default bridge).
    assert client(node, "bridge", nc_get(host, p2)) == "pub"
    assert node.ok("port", "pub").splitlines() == [f"80/tcp -> 0.0.0.0:{p2}", f"80/tcp -> 127.0.0.1:{p1}"]
    assert node.ok("port", "pub", "80").split() == [f"0.0.0.0:{p2}", f"127.0.0.1:{p1}"]
    ports = node.ok("ps", "--format", "{{.Names}} {{.Ports}}").splitlines()
    assert f"pub 0.0.0.0:{p2}->80/tcp, 127.0.0.1:{p1}->80/tcp" in ports
    # -p CONTAINER: a free host port chosen by the kernel, shown by `port`.
    httpd(node, "anyport", "-p", "80")
    chosen = node.ok("port", "anyport", "80/tcp").strip().rsplit(":", 1)[1]
    assert fetch(f"http://127.0.0.1:{chosen}/") == "anyport"
    # Stopping releases the ports (docker shows none for a stopped container); start publishes again.
    node.ok("stop", "-t", "0", "pub")
    table = nft_table(node.prefix) or ""
    assert f"dport {p1} " not in table and f"dport {p2} " not in table and f"dport {chosen} " in table
    node.ok("start", "pub")
    assert fetch(f"http://127.0.0.1:{p1}/") == "pub"


UDP_ECHO = textwrap.dedent("""
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 5300))
    while True:
        data, peer = s.recvfrom(512)
        s.sendto(b"echo " + data, peer)
""")

UDP_ASK = "import socket,sys; s=socket.socket(2,2); s.settimeout(3); s.sendto(b'ping',(sys.argv[1],int(sys.argv[2]))); print(s.recv(100).decode())"


def test_published_udp_port(node):
    port = free_port(socket.SOCK_DGRAM)
    node.ok("run", "-d", "--name", "udp", "-p", f"{port}:5300/udp", *HOST_PYTHON, "busybox", "/usr/bin/python3", "-c", UDP_ECHO)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        for _ in range(50):  # the server may not be bound yet: ask again until it answers
            s.sendto(b"ping", ("127.0.0.1", port))
            try:
                assert s.recv(100) == b"echo ping"
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the UDP server never answered")
    out = node.ok("run", "--rm", *HOST_PYTHON, "busybox", "/usr/bin/python3", "-c", UDP_ASK, host_address(), str(port))
    assert out.strip() == "echo ping"


def test_port_taken_is_a_clear_error_before_anything_is_made(node):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        err = node.fails("run", "-d", "--name", "clash", "-p", f"{port}:80", "busybox", "sleep", "9")
    assert err.count("\n") == 1 and f"0.0.0.0:{port}/tcp is already in use" in err, err
    assert "clash" not in node.ok("ps", "-a", "--format", "{{.Names}}").split()
    assert node.leftovers() == []
    # Bad values are one-line errors too.
    assert "invalid port" in node.fails("run", "--rm", "-p", "99999:80", "busybox", "true")
    assert "network nosuch not found" in node.fails("run", "--rm", "--network", "nosuch", "busybox", "true")


def test_internal_network_has_no_egress(node, outside):
    node.ok("network", "create", "--internal", "sealed")
    node.ok("network", "create", "open")
    assert client(node, "open", nc_get(outside.address, 7100)) == f"outside {outside.host_address}"
    assert client(node, "sealed", nc_get(outside.address, 7100)) == "FAILED"
    # Published ports make no sense on an internal network: refused, not silently dropped.
    assert "internal" in node.fails("run", "--rm", "--network", "sealed", "-p", "80", "busybox", "true")


def test_connect_disconnect_and_rm_of_a_network(node):
    node.ok("network", "create", "--subnet", "10.231.7.0/24", "-o", "com.docker.network.driver.mtu=1400", "--label", "team=j", "blue")
    node.ok("network", "create", "red")
    httpd(node, "svc", "--network", "blue", "--ip", "10.231.7.50")
    out = client(node, "blue", "ip -o addr show eth0; cat /sys/class/net/eth0/mtu; wget -qO- http://svc/")
    assert "10.231.7." in out and out.splitlines()[-2:] == ["1400", "svc"], out
    assert node.inspect("svc")["NetworkSettings"]["Networks"]["blue"]["IPAddress"] == "10.231.7.50"
    assert client(node, "red", "nslookup svc >/dev/null 2>&1 && echo found || echo missing") == "missing"
    node.ok("network", "connect", "--alias", "api", "red", "svc")
    assert client(node, "red", "wget -qO- http://api/") == "svc"
    assert set(node.inspect("svc")["NetworkSettings"]["Networks"]) == {"blue", "red"}
    # A running container's /etc/hosts follows its addresses.
    hosts = node.ok("exec", "svc", "cat", "/etc/hosts")
    assert hosts.count(node.inspect("svc")["Config"]["Hostname"]) == 2
    err = node.fails("network", "rm", "red")
    assert err.count("\n") == 1 and "svc" in err and "active endpoints" in err
    node.ok("network", "disconnect", "red", "svc")
    assert client(node, "red", "nslookup api >/dev/null 2>&1 && echo found || echo missing") == "missing"
    bridge = node.bridges()["red"]
    node.ok("network", "rm", "red")
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    assert bridge not in (nft_table(node.prefix) or "")
    labels = json.loads(node.ok("network", "inspect", "blue"))[0]["Labels"]
    assert labels == {"team": "j"}
    assert node.ok("network", "ls", "--filter", "label=team=j", "--format", "{{.Name}}").split() == ["blue"]
    # prune removes unused networks, never the default bridge.
    node.ok("network", "create", "unused")
    assert node.ok("network", "prune", "-f").split() == ["Deleted", "Networks:", "unused"]
    assert "bridge" in node.ok("network", "ls", "--format", "{{.Name}}").split()


def test_network_modes_none_host_and_container(node):
    assert node.ok("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").split() == ["lo"]
    assert "UP" in node.ok("run", "--rm", "--network", "none", "busybox", "ip", "link", "show", "lo")
    httpd(node, "base", "--network-alias", "b")
    base_ip = node.inspect("base")["NetworkSettings"]["IPAddress"]
    # container:NAME shares base's namespace: same address, and base's server on localhost.
    out = node.ok("run", "--rm", "--network", "container:base", "busybox", "sh", "-c",
                  "ip -o -4 addr show eth0; wget -qO- http://127.0.0.1/").strip()
    assert base_ip in out and out.endswith("base"), out
    host_links = set(os.listdir("/sys/class/net"))
    inside = set(node.ok("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net").split())
    assert len(inside & host_links) >= len(host_links) - 5  # other tests may add or remove links meanwhile
    err = node.fails("run", "--rm", "--network", "none", "-p", "80", "busybox", "true")
    assert "network mode 'none'" in err
    # --dns and --add-host land in the container's files.
    out = node.ok("run", "--rm", "--dns", "192.0.2.53", "--add-host", "db.local:192.0.2.9", "busybox", "sh", "-c",
                  "cat /etc/resolv.conf /etc/hosts")
    assert "192.0.2.9\tdb.local" in out and "nameserver" in out


def test_unexpected_death_and_agent_restart(node):
    node.ok("network", "create", "life")
    port = free_port()
    httpd(node, "keep", "--network", "life", "-p", f"127.0.0.1:{port}:80")
    httpd(node, "doomed", "--network", "life")
    doomed = node.inspect("doomed")
    # kill -9 of the container's process: the agent sees the exit and releases its network.
    os.kill(doomed["State"]["Pid"], signal.SIGKILL)
    node.wait_for(lambda: not os.path.exists(node.run_dir / "netns" / doomed["Id"]), what="doomed's namespace to go")
    # kill -9 of the agent: the next command starts a new one, which restores DNS and ports.
    old = node.agent_pid()
    os.kill(old, signal.SIGKILL)
    node.wait_for(lambda: not os.path.exists(f"/proc/{old}/status") or "Z" in open(f"/proc/{old}/status").read().split("State:")[1][:4],
                  what="the old agent to die")
    assert fetch(f"http://127.0.0.1:{port}/") == "keep"  # the kernel's rules outlive the agent
    assert "doomed" in node.ok("ps", "-a", "--format", "{{.Names}}")
    assert node.agent_pid() != old
    assert client(node, "life", "wget -qO- http://keep/") == "keep"
    assert fetch(f"http://127.0.0.1:{port}/") == "keep"
    # The new agent holds the port again: a second publish of it is refused.
    assert "already in use" in node.fails("run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
    node.ok("start", "doomed")
    assert client(node, "life", "wget -qO- http://doomed/") == "doomed"


def test_publish_all_exposed_ports(node):
    from orch.node.runtime.images import ImageStore

    node.ok("run", "--name", "exposer", "busybox", "sh", "-c", "mkdir /www && echo exposed > /www/index.html")
    store = ImageStore(node.root)
    store.commit(node.inspect("exposer")["Id"], store.resolve("busybox"), "exposing",
                 changes={"ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Cmd": ["httpd", "-f", "-p", "80", "-h", "/www"]})
    node.ok("rm", "exposer")
    node.ok("run", "-d", "--name", "all", "-P", "exposing")
    lines = node.ok("port", "all").splitlines()
    assert [line.split(" -> ")[0] for line in lines] == ["53/udp", "80/tcp"], lines
    port = lines[1].rsplit(":", 1)[1]
    assert fetch(f"http://127.0.0.1:{port}/") == "exposed"
    assert node.inspect("all")["HostConfig"]["PublishAllPorts"] is True


def test_a_drained_container_stays_unnamed_across_an_agent_restart(node):
    from orch.client import Client

    node.ok("network", "create", "pool")
    httpd(node, "r1", "--network", "pool", "--network-alias", "svc")
    httpd(node, "r2", "--network", "pool", "--network-alias", "svc")
    r1 = node.inspect("r1")["Id"]
    Client(str(node.run_dir / "orch.sock")).call("POST", f"/containers/{r1}/drain")
    assert node.net_state()["hidden"] == [r1]
    lookup = "nslookup r1 2>&1 | tail -2; for i in 1 2 3 4; do wget -qO- http://svc/; done"
    out = client(node, "pool", lookup)
    assert "NXDOMAIN" in out and out.split()[-4:] == ["r2"] * 4, out
    # kill -9 of the agent: the next command's agent restores the drain from the state.
    old = node.agent_pid()
    os.kill(old, signal.SIGKILL)
    node.wait_for(lambda: not os.path.exists(f"/proc/{old}/status") or "Z" in open(f"/proc/{old}/status").read().split("State:")[1][:4],
                  what="the old agent to die")
    out = client(node, "pool", lookup)
    assert node.agent_pid() != old
    assert "NXDOMAIN" in out and out.split()[-4:] == ["r2"] * 4, out
    Client(str(node.run_dir / "orch.sock")).call("POST", f"/containers/{r1}/drain?undo=1")
    assert client(node, "pool", "wget -qO- http://r1/") == "r1"
    # Drained again, then removed: nothing of it stays in the state.
    Client(str(node.run_dir / "orch.sock")).call("POST", f"/containers/{r1}/drain")
    node.ok("rm", "-f", "r1")
    # A release is written by the agent's reaper a moment later (REAP_AFTER).
    node.wait_for(lambda: node.net_state()["hidden"] == [], what="the removed container's drain to be forgotten")


def test_the_node_counts_connections_to_a_container_and_drains_it_when_they_end(node):
    import threading

    from orch.client import Client

    api = Client(str(node.run_dir / "orch.sock"))
    port = free_port()
    node.ok("network", "create", "conns")
    # Echo servers: `nc -ll -e cat` holds each connection until its client closes it.
    node.ok("run", "-d", "--name", "srv", "--network", "conns", "-p", f"127.0.0.1:{port}:7000", "busybox",
            "nc", "-ll", "-p", "7000", "-e", "cat")
    node.ok("run", "-d", "--name", "other", "--network", "conns", "busybox", "nc", "-ll", "-p", "7000", "-e", "cat")
    address = {name: node.inspect(name)["NetworkSettings"]["Networks"]["conns"]["IPAddress"] for name in ("srv", "other")}
    # Held: a neighbour's connection and the host's through the published port. Not srv's: its
    # own connection to `other`, and one inside its namespace (as a healthcheck's).
    node.ok("run", "-d", "--name", "cli", "--network", "conns", "busybox", "sh", "-c", "sleep 1000 | nc srv 7000")
    node.ok("exec", "-d", "srv", "sh", "-c", "sleep 1000 | nc other 7000")
    node.ok("exec", "-d", "srv", "sh", "-c", "sleep 1000 | nc 127.0.0.1 7000")
    address["cli"] = node.inspect("cli")["NetworkSettings"]["Networks"]["conns"]["IPAddress"]
    host = socket.create_connection(("127.0.0.1", port), timeout=5)
    host.sendall(b"x")
    assert host.recv(1) == b"x"

    def open_clients(name):
        answer = api.call("GET", f"/containers/{name}/connections")
        assert answer["Visible"], answer
        return sorted((c["Client"], c["Port"]) for c in answer["Connections"] if c["Open"])

    node.wait_for(lambda: open_clients("srv") == sorted([(address["cli"], 7000), ("127.0.0.1", 7000)]),
                  what="srv's two clients to be seen")
    node.wait_for(lambda: open_clients("other") == [(address["srv"], 7000)], what="other's one client to be seen")
    host.close()
    node.wait_for(lambda: open_clients("srv") == [(address["cli"], 7000)], what="the host's connection to end")

    # The drain: srv leaves DNS, waits while cli holds its connection, and lets go once it ends.
    events, waiting = [], threading.Event()

    def drain():
        buf = b""
        for chunk in api.stream("POST", "/containers/srv/drain?wait=1&t=60"):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in filter(None, lines):
                events.append(json.loads(line))
                if events[-1]["Status"] == "waiting":
                    waiting.set()

    drainer = threading.Thread(target=drain)
    drainer.start()
    try:
        assert waiting.wait(30), events
        assert node.inspect("srv")["Id"] in node.net_state()["hidden"]
        assert events == [{"Status": "waiting", "Open": 1}]
        node.ok("rm", "-f", "cli")
    finally:
        drainer.join(90)
    last = events[-1]
    assert (last["Status"], last["Reason"], last["Open"]) == ("drained", "idle", 0), events
    assert last["Waited"] < 30, events
