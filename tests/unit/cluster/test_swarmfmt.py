"""docker's human forms for the cluster's lists (orch/cli/swarmfmt.py), with docker/cli's own
test cases where it has them (service/formatter_test.go, node testdata)."""

import pytest

from orch.cli import swarmfmt as fmt


def _port(proto, target, published, mode="ingress"):
    return {"Protocol": proto, "TargetPort": target, "PublishedPort": published, "PublishMode": mode}


def test_ports_are_grouped_as_dockers_service_context_ports():
    # TestServiceContext_Ports in docker/cli, the same ports in the same order.
    ports = [_port("tcp", 80, 81), _port("tcp", 80, 80), _port("tcp", 95, 95), _port("tcp", 90, 90), _port("tcp", 91, 91),
             _port("tcp", 92, 92), _port("tcp", 93, 93), _port("tcp", 94, 94), _port("udp", 95, 95), _port("udp", 90, 90),
             _port("udp", 96, 96), _port("udp", 91, 91), _port("udp", 92, 92), _port("udp", 93, 93), _port("udp", 94, 94),
             _port("tcp", 60, 60), _port("tcp", 61, 61), _port("tcp", 61, 62), _port("sctp", 97, 97), _port("sctp", 98, 98)]
    assert fmt.service_ports(ports) == ("*:97-98->97-98/sctp, *:60-61->60-61/tcp, *:62->61/tcp, *:80-81->80/tcp, "
                                        "*:90-95->90-95/tcp, *:90-96->90-96/udp")
    assert fmt.service_ports([_port("tcp", 80, 8080, "host")]) == ""  # host-mode ports are the tasks' own


@pytest.mark.parametrize("ns, text", [(0, "0s"), (5_000_000_000, "5s"), (60_000_000_000, "1m0s"), (90_500_000_000, "1m30.5s"),
                                      (3_723_000_000_000, "1h2m3s"), (500_000_000, "500ms"), (1_500, "1.5µs"), (7, "7ns")])
def test_go_durations(ns, text):
    assert fmt.go_duration(ns) == text


@pytest.mark.parametrize("size, text", [(20 << 20, "20MiB"), (4 << 30, "4GiB"), (2_000_000_000, "1.863GiB"), (512, "512B")])
def test_bytes_sizes(size, text):
    assert fmt.bytes_size(size) == text


def test_names_sort_naturally_and_states_print_as_docker_does():
    assert sorted(["web10", "web2", "api", "web1"], key=fmt.natural_key) == ["api", "web1", "web2", "web10"]
    assert (fmt.pretty("running"), fmt.pretty("READY"), fmt.pretty(""), fmt.pretty("x")) == ("Running", "Ready", "", "x")
    assert fmt.ellipsis("0123456789", 5) == "0123…" and fmt.ellipsis("abc", 5) == "abc"
    assert fmt.familiar_image("docker.io/library/nginx:1.25@sha256:" + "a" * 64) == "nginx:1.25"
    assert fmt.familiar_image("nginx@sha256:" + "a" * 64) == "nginx@sha256:" + "a" * 64
    assert fmt.familiar_image("localhost:5000/app:1") == "localhost:5000/app:1"
    assert fmt.ago("2023-11-14T22:13:20Z", 1_700_000_000 + 150) == "2 minutes ago"
    assert fmt.ago("0001-01-01T00:00:00Z", 1_700_000_000) == "53 years ago"


def test_node_pretty_matches_dockers_golden_layout():
    # node-inspect-pretty.manager-leader.golden in docker/cli (its plugins are not orch's).
    node = {"ID": "nodeID", "CreatedAt": "2009-11-10T23:00:00Z",
            "Spec": {"Name": "defaultNodeName", "Role": "manager", "Availability": "active", "Labels": {}},
            "Description": {"Hostname": "defaultNodeHostname", "Platform": {"OS": "linux", "Architecture": "x86_64"},
                            "Resources": {"MemoryBytes": 20 << 20}, "Engine": {"EngineVersion": "1.13.0",
                                                                               "Labels": {"engine": "label"}}},
            "Status": {"State": "ready", "Addr": "127.0.0.1"},
            "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": "127.0.0.1"}}
    assert fmt.node_pretty(node) == "\n".join([
        "ID:\t\t\tnodeID", "Name:\t\t\tdefaultNodeName", "Hostname:              \tdefaultNodeHostname",
        "Joined at:             \t2009-11-10 23:00:00 +0000 utc", "Status:", " State:\t\t\tReady",
        " Availability:         \tActive", " Address:\t\t127.0.0.1", "Manager Status:", " Address:\t\t127.0.0.1",
        " Raft Status:\t\tReachable", " Leader:\t\tYes", "Platform:", " Operating System:\tlinux", " Architecture:\t\tx86_64",
        "Resources:", " CPUs:\t\t\t0", " Memory:\t\t20MiB", "Engine Version:\t\t1.13.0", "Engine Labels:", " - engine=label"])


def test_list_formats():
    assert fmt.list_format(None, default=fmt.SERVICE_TABLE, quiet=False) == fmt.SERVICE_TABLE
    assert fmt.list_format("table", default=fmt.SERVICE_TABLE, quiet=True) == "{{.ID}}"
    assert fmt.list_format("json", default=fmt.SERVICE_TABLE, quiet=False) == "{{json .}}"
    assert fmt.list_format("{{.Name}}", default=fmt.SERVICE_TABLE, quiet=True) == "{{.Name}}"
