"""The cluster's records as the Docker Engine API's swarm JSON: docker's own examples (moby's
api/swagger.yaml), bodies the docker CLI 28 sent (data/dockercli, see its README), round trips
both ways, and a table of refusals that must name the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from orch.cluster import dockerjson as dj
from orch.cluster import dockerswarm as ds
from orch.cluster import jsonread as jr
from orch.cluster import records as r
from orch.cluster.stackspec import translate_stack
from orch.errors import InvalidArgument
from orch.spec import load_project

DATA = Path(__file__).parent / "data" / "dockercli"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "stacks"


def body(name: str) -> dict:
    return json.loads((DATA / name).read_text())


# -- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("0001-01-01T00:00:00Z", 0.0),
    ("2016-08-18T10:44:24Z", 1471517064.0),
    ("2016-08-18T10:44:24.5Z", 1471517064.5),
    ("2016-08-18T12:44:24.25+02:00", 1471517064.25),
    ("2017-08-09T07:09:37.632105588Z", 1502262577.632105588),
])
def test_times_parse_as_go_writes_them(text, seconds):
    assert jr.parse_time(text, "T") == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("seconds, text", [
    (0.0, "0001-01-01T00:00:00Z"),
    (1471517064.0, "2016-08-18T10:44:24Z"),
    (1471517064.5, "2016-08-18T10:44:24.5Z"),
    (1471517064.25, "2016-08-18T10:44:24.25Z"),
])
def test_times_format_as_go_marshals_them(seconds, text):
    assert jr.format_time(seconds) == text


@pytest.mark.parametrize("seconds", [1.5, 1700000000.123456, 1733443200.987654321, 1465333651.1718927, 86400.000001])
def test_a_time_survives_a_round_trip_exactly(seconds):
    assert jr.parse_time(jr.format_time(seconds), "T") == seconds


@pytest.mark.parametrize("text", ["yesterday", "2016-08-18 10:44:24", "2016-13-01T00:00:00Z", 5])
def test_a_bad_time_is_one_line_naming_the_field(text):
    with pytest.raises(InvalidArgument, match=r"^Task\.CreatedAt: "):
        jr.parse_time(text, "Task.CreatedAt")


def test_durations_are_nanoseconds():
    assert jr.to_ns(5.0) == 5_000_000_000 and jr.to_ns(0.001) == 1_000_000 and jr.to_ns(None) == 0
    assert jr.from_ns(15_000_000_000) == 15.0


# -- docker's examples (api/swagger.yaml) --------------------------------------------------------

SWAGGER_SERVICE_CREATE = {
    "Name": "web",
    "TaskTemplate": {
        "ContainerSpec": {
            "Image": "nginx:alpine",
            "Mounts": [{"ReadOnly": True, "Source": "web-data", "Target": "/usr/share/nginx/html", "Type": "volume",
                        "VolumeOptions": {"DriverConfig": {}, "Labels": {"com.example.something": "something-value"}}}],
            "Hosts": ["10.10.10.10 host1", "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789 host2"],
            "User": "33",
            "DNSConfig": {"Nameservers": ["8.8.8.8"], "Search": ["example.org"], "Options": ["timeout:3"]},
            "Secrets": [{"File": {"Name": "www.example.org.key", "UID": "33", "GID": "33", "Mode": 384},
                         "SecretID": "fpjqlhnwb19zds35k8wn80lq9", "SecretName": "example_org_domain_key"}],
            "OomScoreAdj": 0,
        },
        "LogDriver": {"Name": "json-file", "Options": {"max-file": "3", "max-size": "10M"}},
        "Placement": {},
        "Resources": {"Limits": {"MemoryBytes": 104857600}, "Reservations": {}},
        "RestartPolicy": {"Condition": "on-failure", "Delay": 10000000000, "MaxAttempts": 10},
    },
    "Mode": {"Replicated": {"Replicas": 4}},
    "UpdateConfig": {"Parallelism": 2, "Delay": 1000000000, "FailureAction": "pause", "Monitor": 15000000000,
                     "MaxFailureRatio": 0.15},
    "RollbackConfig": {"Parallelism": 1, "Delay": 1000000000, "FailureAction": "pause", "Monitor": 15000000000,
                       "MaxFailureRatio": 0.15},
    "EndpointSpec": {"Ports": [{"Protocol": "tcp", "PublishedPort": 8080, "TargetPort": 80}]},
    "Labels": {"foo": "bar"},
}

SWAGGER_SERVICE_UPDATE = {
    "Name": "top",
    "TaskTemplate": {
        "ContainerSpec": {"Image": "busybox", "Args": ["top"], "OomScoreAdj": 0},
        "Resources": {"Limits": {}, "Reservations": {}},
        "RestartPolicy": {"Condition": "any", "MaxAttempts": 0},
        "Placement": {},
        "ForceUpdate": 0,
    },
    "Mode": {"Replicated": {"Replicas": 1}},
    "UpdateConfig": {"Parallelism": 2, "Delay": 1000000000, "FailureAction": "pause", "Monitor": 15000000000,
                     "MaxFailureRatio": 0.15},
    "RollbackConfig": {"Parallelism": 1, "Delay": 1000000000, "FailureAction": "pause", "Monitor": 15000000000,
                       "MaxFailureRatio": 0.15},
    "EndpointSpec": {"Mode": "vip"},
}

SWAGGER_SERVICE = {
    "ID": "9mnpnzenvg8p8tdbtq4wvbkcz",
    "Version": {"Index": 19},
    "CreatedAt": "2016-06-07T21:05:51.880065305Z",
    "UpdatedAt": "2016-06-07T21:07:29.962229872Z",
    "Spec": {
        "Name": "hopeful_cori",
        "TaskTemplate": {
            "ContainerSpec": {"Image": "redis"},
            "Resources": {"Limits": {}, "Reservations": {}},
            "RestartPolicy": {"Condition": "any", "MaxAttempts": 0},
            "Placement": {},
            "ForceUpdate": 0,
        },
        "Mode": {"Replicated": {"Replicas": 1}},
        "UpdateConfig": {"Parallelism": 1, "Delay": 1000000000, "FailureAction": "pause", "Monitor": 15000000000,
                         "MaxFailureRatio": 0.15},
        "RollbackConfig": {"Parallelism": 1, "Delay": 1000000000, "FailureAction": "pause", "Monitor": 15000000000,
                           "MaxFailureRatio": 0.15},
        "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 6379, "PublishedPort": 30001}]},
    },
    "Endpoint": {
        "Spec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 6379, "PublishedPort": 30001}]},
        "Ports": [{"Protocol": "tcp", "TargetPort": 6379, "PublishedPort": 30001}],
        "VirtualIPs": [{"NetworkID": "4qvuz4ko70xaltuqbt8956gd1", "Addr": "10.255.0.2/16"},
                       {"NetworkID": "4qvuz4ko70xaltuqbt8956gd1", "Addr": "10.255.0.3/16"}],
    },
}

_INGRESS = {
    "ID": "4qvuz4ko70xaltuqbt8956gd1",
    "Version": {"Index": 18},
    "CreatedAt": "2016-06-07T20:31:11.912919752Z",
    "UpdatedAt": "2016-06-07T21:07:29.955277358Z",
    "Spec": {"Name": "ingress", "Labels": {"com.docker.swarm.internal": "true"}, "DriverConfiguration": {},
             "IPAMOptions": {"Driver": {}, "Configs": [{"Subnet": "10.255.0.0/16", "Gateway": "10.255.0.1"}]}},
    "DriverState": {"Name": "overlay", "Options": {"com.docker.network.driver.overlay.vxlanid_list": "256"}},
    "IPAMOptions": {"Driver": {"Name": "default"}, "Configs": [{"Subnet": "10.255.0.0/16", "Gateway": "10.255.0.1"}]},
}

SWAGGER_TASKS = [
    {
        "ID": "0kzzo1i0y4jz6027t0k7aezc7", "Version": {"Index": 71},
        "CreatedAt": "2016-06-07T21:07:31.171892745Z", "UpdatedAt": "2016-06-07T21:07:31.376370513Z",
        "Spec": {"ContainerSpec": {"Image": "redis"}, "Resources": {"Limits": {}, "Reservations": {}},
                 "RestartPolicy": {"Condition": "any", "MaxAttempts": 0}, "Placement": {}},
        "ServiceID": "9mnpnzenvg8p8tdbtq4wvbkcz", "Slot": 1, "NodeID": "60gvrl6tm78dmak4yl7srz94v",
        "Status": {"Timestamp": "2016-06-07T21:07:31.290032978Z", "State": "running", "Message": "started",
                   "ContainerStatus": {"ContainerID": "e5d62702a1b48d01c3e02ca1e0212a250801fa8d67caca0b6f35919ebc12f035",
                                       "PID": 677}},
        "DesiredState": "running",
        "NetworksAttachments": [{"Network": _INGRESS, "Addresses": ["10.255.0.10/16"]}],
    },
    {
        "ID": "1yljwbmlr8er2waf8orvqpwms", "Version": {"Index": 30},
        "CreatedAt": "2016-06-07T21:07:30.019104782Z", "UpdatedAt": "2016-06-07T21:07:30.231958098Z",
        "Name": "hopeful_cori",
        "Spec": {"ContainerSpec": {"Image": "redis"}, "Resources": {"Limits": {}, "Reservations": {}},
                 "RestartPolicy": {"Condition": "any", "MaxAttempts": 0}, "Placement": {}},
        "ServiceID": "9mnpnzenvg8p8tdbtq4wvbkcz", "Slot": 1, "NodeID": "60gvrl6tm78dmak4yl7srz94v",
        "Status": {"Timestamp": "2016-06-07T21:07:30.202183143Z", "State": "shutdown", "Message": "shutdown",
                   "ContainerStatus": {"ContainerID": "1cf8d63d18e79668b0004a4be4c6ee58cddfad2dae29506d8781581d0688a213"}},
        "DesiredState": "shutdown",
        "NetworksAttachments": [{"Network": _INGRESS, "Addresses": ["10.255.0.5/16"]}],
    },
]


def test_swagger_service_create_example():
    spec = dj.service_spec_from_json(SWAGGER_SERVICE_CREATE)
    assert (spec.name, spec.labels, spec.mode, spec.replicas) == ("web", {"foo": "bar"}, "replicated", 4)
    c = spec.task_template.container_spec
    assert (c.image, c.user) == ("nginx:alpine", "33")
    (mount,) = c.mounts
    assert (mount.type, mount.source, mount.target, mount.read_only) == ("volume", "web-data", "/usr/share/nginx/html", True)
    assert mount.volume_options.labels == {"com.example.something": "something-value"}
    assert mount.volume_options.driver_config is None  # DriverConfig: {} is the default driver
    assert c.hosts == ["10.10.10.10 host1", "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789 host2"]
    assert c.dns_config == r.DNSConfig(nameservers=["8.8.8.8"], search=["example.org"], options=["timeout:3"])
    (secret,) = c.secrets
    assert (secret.secret_id, secret.secret_name) == ("fpjqlhnwb19zds35k8wn80lq9", "example_org_domain_key")
    assert secret.file == r.FileTarget(name="www.example.org.key", uid="33", gid="33", mode=0o600)
    t = spec.task_template
    assert t.log_driver == r.Driver(name="json-file", options={"max-file": "3", "max-size": "10M"})
    assert t.resources.limits.memory_bytes == 104857600
    assert t.restart_policy == r.RestartPolicy(condition="on-failure", delay=10.0, max_attempts=10, window=0.0)
    u = spec.update_config
    assert (u.parallelism, u.delay, u.failure_action, u.monitor, u.max_failure_ratio, u.order) == (2, 1.0, "pause", 15.0, 0.15,
                                                                                                   "stop-first")
    assert spec.rollback_config.parallelism == 1
    (port,) = spec.endpoint_spec.ports
    assert (port.protocol, port.published_port, port.target_port, port.publish_mode) == ("tcp", 8080, 80, "ingress")


def test_swagger_service_update_example():
    spec = dj.service_spec_from_json(SWAGGER_SERVICE_UPDATE)
    assert spec.task_template.container_spec.args == ["top"] and spec.replicas == 1
    assert spec.task_template.restart_policy == r.RestartPolicy(condition="any")  # swarm's 5 s delay


def test_swagger_service_example():
    service = dj.service_from_json(SWAGGER_SERVICE)
    assert service.id == "9mnpnzenvg8p8tdbtq4wvbkcz" and service.spec.name == "hopeful_cori"
    assert service.created_at == pytest.approx(1465333551.880065305, abs=1e-6)
    assert [(v.network_id, v.addr) for v in service.endpoint.virtual_ips][1] == ("4qvuz4ko70xaltuqbt8956gd1", "10.255.0.3/16")
    again = dj.service_to_json(service, 19)
    # A daemon of today spells out PublishMode, which the (older) example leaves to its default.
    port = {"Protocol": "tcp", "TargetPort": 6379, "PublishedPort": 30001, "PublishMode": "ingress"}
    assert again["Version"] == {"Index": 19}
    assert again["Endpoint"] == {**SWAGGER_SERVICE["Endpoint"], "Spec": {"Mode": "vip", "Ports": [port]}, "Ports": [port]}
    assert again["Spec"]["Mode"] == {"Replicated": {"Replicas": 1}}
    assert again["CreatedAt"].startswith("2016-06-07T21:05:51.880065")
    assert dj.service_from_json(again) == service


def test_swagger_task_list_example():
    first, second = (dj.task_from_json(t) for t in SWAGGER_TASKS)
    assert (first.id, first.slot, first.node_id, first.service_id) == ("0kzzo1i0y4jz6027t0k7aezc7", 1,
                                                                        "60gvrl6tm78dmak4yl7srz94v", "9mnpnzenvg8p8tdbtq4wvbkcz")
    assert first.status.state == r.TaskState.RUNNING and first.status.message == "started"
    assert first.status.container_status.pid == 677
    assert [(n.network_id, n.addresses) for n in first.networks] == [("4qvuz4ko70xaltuqbt8956gd1", ["10.255.0.10/16"])]
    assert second.desired_state == r.TaskState.SHUTDOWN and second.status.state == r.TaskState.SHUTDOWN
    out = dj.task_to_json(first, 71)
    assert out["Status"]["ContainerStatus"] == {"ContainerID": SWAGGER_TASKS[0]["Status"]["ContainerStatus"]["ContainerID"],
                                                "PID": 677, "ExitCode": 0}
    assert out["NetworksAttachments"] == [{"Network": {"ID": "4qvuz4ko70xaltuqbt8956gd1"}, "Addresses": ["10.255.0.10/16"]}]
    assert dj.task_from_json(out) == first


def test_swagger_task_example_with_generic_resources_is_refused_by_name():
    task = copy.deepcopy(SWAGGER_TASKS[0])
    task["AssignedGenericResources"] = [{"DiscreteResourceSpec": {"Kind": "SSD", "Value": 3}}]
    with pytest.raises(InvalidArgument, match=r"^Task\.AssignedGenericResources: orch does not support"):
        dj.task_from_json(task)


def test_swagger_node_spec_example():
    spec = dj.node_spec_from_json({"Availability": "active", "Name": "node-name", "Role": "manager", "Labels": {"foo": "bar"}})
    assert spec == r.NodeSpec(name="node-name", labels={"foo": "bar"}, role="manager", availability="active")
    assert dj.node_spec_to_json(spec) == {"Name": "node-name", "Labels": {"foo": "bar"}, "Role": "manager",
                                          "Availability": "active"}


def test_swagger_swarm_init_example():
    req = ds.init_request_from_json({
        "ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "192.168.1.1:2377", "DataPathPort": 4789,
        "DefaultAddrPool": ["10.10.0.0/8", "20.20.0.0/8"], "SubnetSize": 24, "ForceNewCluster": False,
        "Spec": {"Orchestration": {}, "Raft": {}, "Dispatcher": {}, "CAConfig": {}, "EncryptionConfig": {"AutoLockManagers": False}},
    })
    assert (req.listen_addr, req.advertise_addr, req.default_addr_pool, req.subnet_size) == (
        "0.0.0.0:2377", "192.168.1.1:2377", ("10.10.0.0/8", "20.20.0.0/8"), 24)
    assert req.settings.default_addr_pool == ["10.10.0.0/8", "20.20.0.0/8"]
    assert (req.settings.heartbeat_period, req.settings.task_history_limit) == (5.0, 5)  # swarm's defaults


def test_swagger_swarm_join_example_names_what_orch_does_not_take():
    example = {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "192.168.1.1:2377", "DataPathAddr": "192.168.1.1",
               "RemoteAddrs": ["node1:2377"],
               "JoinToken": "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-7p73s1dx5in4tatdymyhg9hu2"}
    with pytest.raises(InvalidArgument, match=r"^SwarmJoinRequest\.DataPathAddr: orch does not support"):
        ds.join_request_from_json(example)
    del example["DataPathAddr"]
    req = ds.join_request_from_json(example)
    assert req.remote_addrs == ("node1:2377",) and req.join_token.startswith("SWMTKN-1-3pu6")
    assert ds.join_request_from_json(ds.join_request_to_json(req)) == req


def test_swarm_info_example():
    info = ds.LocalInfo(node_id="k67qz4598weg5unwwffg6z1m1", node_addr="10.0.0.46", local_node_state="active",
                        control_available=True,
                        remote_managers=(("71izy0goik036k48jg985xnds", "10.0.0.158:2377"),
                                         ("k67qz4598weg5unwwffg6z1m1", "10.0.0.46:2377")),
                        nodes=4, managers=3, cluster=(r.Cluster(id="abajmipo7b4xz5ip2nrla6b11", created_at=1471517064.0), 12))
    out = ds.swarm_info_to_json(info)
    assert out["RemoteManagers"][0] == {"NodeID": "71izy0goik036k48jg985xnds", "Addr": "10.0.0.158:2377"}
    assert (out["Nodes"], out["Managers"], out["Cluster"]["ID"], out["Cluster"]["Version"]) == (
        4, 3, "abajmipo7b4xz5ip2nrla6b11", {"Index": 12})
    assert "JoinTokens" not in out["Cluster"]  # GET /info leaves them out
    assert ds.swarm_info_from_json(out) == info
    inactive = ds.swarm_info_to_json(ds.LocalInfo())
    assert inactive == {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False, "Error": "",
                        "RemoteManagers": None}


# -- what the docker CLI sends ------------------------------------------------------------------


def test_docker_cli_minimal_create():
    spec = dj.service_spec_from_json({**body("service-create-minimal.json"), "Name": "top"})
    c = spec.task_template.container_spec
    assert (c.image, c.args, c.init, c.dns_config) == ("busybox:latest", ["top"], False, None)
    assert spec.replicas == 1 and spec.mode == "replicated"  # Replicated: {} is one replica


def test_docker_cli_create_without_a_name_is_refused():
    with pytest.raises(InvalidArgument, match=r"^ServiceSpec\.Name: required"):
        dj.service_spec_from_json(body("service-create-minimal.json"))


def test_docker_cli_full_create():
    spec = dj.service_spec_from_json(body("service-create-full.json"))
    t, c = spec.task_template, spec.task_template.container_spec
    assert (spec.name, spec.labels, spec.replicas) == ("web", {"svc": "x"}, 3)
    assert (c.image, c.labels, c.command, c.args) == ("nginx:1.25", {"c": "y"}, ["/bin/sh", "-c"], ["echo", "hi"])
    assert (c.hostname, c.env, c.dir, c.user, c.init, c.tty, c.read_only) == ("h1", ["A=1", "B=2"], "/app", "1000:1000", True,
                                                                              True, True)
    assert (c.stop_signal, c.stop_grace_period) == ("SIGINT", 20.0)
    assert [(m.type, m.source, m.target, m.read_only) for m in c.mounts] == [
        ("volume", "data", "/data", True), ("tmpfs", "", "/tmp", False), ("bind", "/srv", "/srv", False)]
    assert c.mounts[1].tmpfs_options.size_bytes == 1 << 20
    assert c.healthcheck == r.HealthConfig(test=["CMD-SHELL", "wget -q -O- localhost"], interval=5.0, timeout=1.0, retries=2,
                                           start_period=3.0)
    assert (c.hosts, c.dns_config.nameservers, c.sysctls) == (["10.0.0.1 foo"], ["1.1.1.1"], {"net.core.somaxconn": "1024"})
    assert (c.cap_add, c.cap_drop, c.ulimits) == (["CAP_NET_ADMIN"], ["CAP_CHOWN"], [r.Ulimit(name="nofile", soft=1024, hard=2048)])
    assert t.resources == r.ResourceRequirements(limits=r.Limits(nano_cpus=500_000_000, memory_bytes=64 << 20, pids=100),
                                                 reservations=r.Resources(nano_cpus=250_000_000, memory_bytes=32 << 20))
    assert t.restart_policy == r.RestartPolicy(condition="on-failure", delay=2.0, max_attempts=4, window=30.0)
    assert t.placement == r.Placement(constraints=["node.role==worker"], preferences=[r.PlacementPreference(spread="node.labels.dc")],
                                      max_replicas=2)
    assert [n.target for n in t.networks] == ["frontid0123"]
    assert t.log_driver == r.Driver(name="json-file", options={"max-size": "10m"})
    assert spec.update_config == r.UpdateConfig(parallelism=2, delay=10.0, failure_action="rollback", monitor=3.0,
                                                max_failure_ratio=0.2, order="start-first")
    assert spec.rollback_config == r.UpdateConfig(parallelism=0, delay=1.0)
    assert [(p.protocol, p.target_port, p.published_port, p.publish_mode) for p in spec.endpoint_spec.ports] == [
        ("tcp", 80, 8080, "ingress"), ("udp", 53, 53, "host")]
    # What orch writes back is what the CLI sent, but for the defaults it spells out.
    out = dj.service_spec_to_json(spec)
    sent = body("service-create-full.json")
    assert out["TaskTemplate"]["ContainerSpec"] == sent["TaskTemplate"]["ContainerSpec"]
    for key in ("Name", "Labels", "Mode", "UpdateConfig", "EndpointSpec"):
        assert out[key] == sent[key], key
    for key in ("Resources", "RestartPolicy", "Placement", "Networks", "LogDriver", "ForceUpdate"):
        assert out["TaskTemplate"][key] == sent["TaskTemplate"][key], key


def test_docker_cli_global_and_no_healthcheck_bodies():
    g = dj.service_spec_from_json(body("service-create-global.json"))
    assert g.mode == "global" and "replicas" not in g.model_fields_set
    assert dj.service_spec_to_json(g)["Mode"] == {"Global": {}}
    s2 = dj.service_spec_from_json(body("service-create-restart-nohealth.json"))
    assert s2.task_template.container_spec.healthcheck == r.HealthConfig(test=["NONE"])
    assert s2.task_template.restart_policy == r.RestartPolicy(condition="none", delay=5.0)
    assert s2.update_config.delay == 60.0


def test_docker_cli_swarm_init_and_join():
    req = ds.init_request_from_json(body("swarm-init.json"))
    assert (req.advertise_addr, req.listen_addr, req.default_addr_pool) == ("10.0.0.5", "0.0.0.0:2377", ("10.20.0.0/16",))
    assert (req.settings.heartbeat_period, req.settings.task_history_limit) == (7.0, 3)
    assert req.availability == "active" and req.etcd_endpoints == ()
    assert ds.init_request_from_json(ds.init_request_to_json(req)) == req
    join = ds.join_request_from_json(body("swarm-join.json"))
    assert (join.remote_addrs, join.join_token) == (("10.0.0.5:2377",), "SWMTKN-1-aaa-bbb")


def test_orch_init_request_carries_etcd_endpoints():
    req = ds.init_request_from_json({**body("swarm-init.json"), "EtcdEndpoints": ["https://10.0.0.9:2379"]})
    assert req.etcd_endpoints == ("https://10.0.0.9:2379",)


def test_docker_cli_node_update():
    spec = dj.node_spec_from_json(body("node-update.json"))
    assert spec == r.NodeSpec(labels={"a": "b"}, role="worker", availability="drain")


# -- round trips ---------------------------------------------------------------------------------


def _stack(name: str):
    return translate_stack(load_project([EXAMPLES / name / "compose.yaml"], project_name=name, environ={}), environ={},
                           read_file=lambda path: b"x")


@pytest.mark.parametrize("example", ["hello", "replicated", "webapp"])
def test_stack_service_specs_round_trip(example):
    for spec in _stack(example).services:
        out = dj.service_spec_to_json(spec)
        again = dj.service_spec_from_json(json.loads(json.dumps(out)))
        if spec.mode == "global":
            spec = spec.model_copy(update={"replicas": again.replicas})
        assert again == spec
        assert dj.service_spec_to_json(again) == out


def test_replicated_example_carries_depends_on_as_orchs_extension():
    (app, proxy) = _stack("replicated").services
    out = dj.service_spec_to_json(proxy)
    assert out["DependsOn"] == {"replicated_app": {"Condition": "service_healthy", "Required": True}}
    assert "DependsOn" not in dj.service_spec_to_json(app)


@pytest.mark.parametrize("example", ["hello", "replicated", "webapp"])
def test_stack_deploy_body_round_trips(example):
    stack = _stack(example)
    out = ds.stack_deploy_to_json(stack, prune=True)
    again, prune, _auths = ds.stack_deploy_from_json(json.loads(json.dumps(out)))
    assert prune is True
    assert again.namespace == stack.namespace and again.networks == stack.networks
    assert (again.secrets, again.configs) == (stack.secrets, stack.configs)
    assert (again.external_networks, again.external_secrets, again.external_configs) == (
        stack.external_networks, stack.external_secrets, stack.external_configs)
    assert [dj.service_spec_to_json(s) for s in again.services] == out["Services"]


def _node(**kw) -> r.Node:
    return r.Node(
        id="24ifsmvkjbyhk", created_at=1471517064.496525, updated_at=1502262577.632105,
        spec=r.NodeSpec(name="", labels={"zone": "a"}, role="manager", availability="active"),
        description=r.NodeDescription(hostname="bf3067039e47", resources=r.Resources(nano_cpus=4_000_000_000,
                                                                                     memory_bytes=8272408576),
                                      engine_version="orch 0.1", engine_labels={"foo": "bar"}),
        status=r.NodeStatus(state="ready", addr="172.17.0.2"),
        manager_status=r.ManagerStatus(addr="10.0.0.46:2377", reachability="reachable", leader=True), **kw)


def test_node_json_follows_docker():
    out = dj.node_to_json(_node(), 373531)
    assert out == {
        "ID": "24ifsmvkjbyhk", "Version": {"Index": 373531},
        "CreatedAt": "2016-08-18T10:44:24.496525Z", "UpdatedAt": "2017-08-09T07:09:37.632105Z",
        "Spec": {"Labels": {"zone": "a"}, "Role": "manager", "Availability": "active"},
        "Description": {"Hostname": "bf3067039e47", "Platform": {"Architecture": "x86_64", "OS": "linux"},
                        "Resources": {"NanoCPUs": 4000000000, "MemoryBytes": 8272408576},
                        "Engine": {"EngineVersion": "orch 0.1", "Labels": {"foo": "bar"}}, "TLSInfo": {}},
        "Status": {"State": "ready", "Addr": "172.17.0.2"},
        "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": "10.0.0.46:2377"},
    }
    assert dj.node_from_json(out) == _node()
    worker = _node().model_copy(update={"manager_status": None, "spec": r.NodeSpec()})
    out = dj.node_to_json(worker, 3)
    assert "ManagerStatus" not in out and out["Spec"] == {"Labels": {}, "Role": "worker", "Availability": "active"}
    assert dj.node_from_json(out) == worker


def test_task_round_trip_with_every_docker_field():
    spec = _stack("replicated").services[0].task_template
    task = r.Task(
        id="0kzzo1i0y4jz6027t0k7aezc7", created_at=1465333651.171892, updated_at=1465333651.376370,
        service_id="9mnpnzenvg8p8tdbtq4wvbkcz", slot=2, node_id="60gvrl6tm78dmak4yl7srz94v", spec=spec,
        desired_state=r.TaskState.RUNNING,
        status=r.TaskStatus(state=r.TaskState.RUNNING, timestamp=1465333651.290032, message="started", err="",
                            container_status=r.ContainerStatus(container_id="e5d6", pid=677),
                            port_status=r.PortStatus(ports=[r.PortConfig(target_port=80, published_port=30000,
                                                                         publish_mode="host")]),
                            health="healthy"),
        networks=[r.NetworkAttachment(network_id="4qvu", addresses=["10.255.0.10/16"])])
    out = dj.task_to_json(task, 71)
    assert out["Status"]["Health"] == "healthy" and out["Slot"] == 2 and out["DesiredState"] == "running"
    assert out["Status"]["PortStatus"] == {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 30000,
                                                      "PublishMode": "host"}]}
    assert dj.task_from_json(json.loads(json.dumps(out))) == task


def test_service_round_trip_with_previous_spec_and_update_status():
    app, proxy = _stack("replicated").services
    service = r.Service(id="x1", created_at=10.5, updated_at=20.25, spec=proxy, spec_version=2, previous_spec=app,
                        update_status=r.UpdateStatus(state="rollback_completed", started_at=15.0, completed_at=19.5,
                                                     message="rollback completed"))
    out = dj.service_to_json(service, 44, status=dj.ServiceStatus(running=2, desired=3))
    assert out["ServiceStatus"] == {"RunningTasks": 2, "DesiredTasks": 3, "CompletedTasks": 0}
    assert out["UpdateStatus"] == {"State": "rollback_completed", "StartedAt": "1970-01-01T00:00:15Z",
                                   "CompletedAt": "1970-01-01T00:00:19.5Z", "Message": "rollback completed"}
    assert out["Endpoint"]["Ports"] == [{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 8081, "PublishMode": "ingress"}]
    again = dj.service_from_json(json.loads(json.dumps(out)))
    # spec_version is orch's bookkeeping and not in docker's JSON; allocated ports are read back.
    assert again == service.model_copy(update={"spec_version": 1, "endpoint": again.endpoint})


def test_swarm_round_trip_and_update():
    cluster = r.Cluster(id="abajmipo7b4xz5ip2nrla6b11", created_at=1471517064.5, ca_certificate="-----BEGIN CERTIFICATE-----\n",
                        settings=r.ClusterSettings(heartbeat_period=7.0, task_history_limit=3, default_addr_pool=["10.20.0.0/16"]))
    out = ds.swarm_to_json(cluster, 7, join_tokens=("SWMTKN-1-a-w", "SWMTKN-1-a-m"))
    assert out["Spec"]["Dispatcher"] == {"HeartbeatPeriod": 7_000_000_000}
    assert out["Spec"]["Orchestration"] == {"TaskHistoryRetentionLimit": 3}
    assert out["JoinTokens"] == {"Worker": "SWMTKN-1-a-w", "Manager": "SWMTKN-1-a-m"}
    assert (out["DefaultAddrPool"], out["SubnetSize"], out["TLSInfo"]) == (["10.20.0.0/16"], 24,
                                                                           {"TrustRoot": "-----BEGIN CERTIFICATE-----\n"})
    again, tokens = ds.swarm_from_json(json.loads(json.dumps(out)))
    assert again == cluster and tokens == ("SWMTKN-1-a-w", "SWMTKN-1-a-m")
    # `docker swarm update --task-history-limit 9` sends back the spec it read, changed.
    spec = copy.deepcopy(out["Spec"])
    spec["Orchestration"]["TaskHistoryRetentionLimit"] = 9
    settings = ds.cluster_settings_from_spec(spec, cluster.settings)
    assert settings == cluster.settings.model_copy(update={"task_history_limit": 9})
    assert ds.cluster_settings_from_spec({}, cluster.settings) == cluster.settings


# -- refusals ---------------------------------------------------------------------------------------


def _set(data: dict, path: str, value):
    *parents, last = path.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


_DELETE = object()
_C = "TaskTemplate.ContainerSpec"


@pytest.mark.parametrize("path, value, message", [
    ("Foo", 1, r"ServiceSpec\.Foo: unknown field"),
    (f"{_C}.image", "x", rf"ServiceSpec\.{_C}\.image: unknown field"),
    (f"{_C}.Groups", ["wheel"], rf"ServiceSpec\.{_C}\.Groups: orch does not support this field"),
    (f"{_C}.Privileges", {"NoNewPrivileges": True}, rf"ServiceSpec\.{_C}\.Privileges: orch does not support"),
    (f"{_C}.OomScoreAdj", 500, rf"ServiceSpec\.{_C}\.OomScoreAdj: orch does not support"),
    (f"{_C}.Isolation", "hyperv", rf"ServiceSpec\.{_C}\.Isolation: isolation 'hyperv' is Windows-only"),
    (f"{_C}.Image", "", rf"ServiceSpec\.{_C}\.Image: required"),
    (f"{_C}.Mounts", [{"Type": "npipe", "Source": "x", "Target": "/x"}], r"Mounts\[0\]\.Type: mounts of type npipe"),
    (f"{_C}.Mounts", [{"Type": "bind", "Source": "/x", "Target": "/x", "BindOptions": {"Propagation": "rshared"}}],
     r"Mounts\[0\]\.BindOptions: orch does not support"),
    (f"{_C}.Mounts", [{"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"Options": [["noexec"]]}}],
     r"Mounts\[0\]\.TmpfsOptions\.Options: orch does not support"),
    (f"{_C}.Mounts", [{"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "a"}}],
     r"Mounts\[0\]\.VolumeOptions\.Subpath: orch does not support"),
    (f"{_C}.Mounts", [{"Type": "volume", "Source": "v"}], r"Mounts\[0\]\.Target: required"),
    (f"{_C}.Configs", [{"ConfigName": "c", "Runtime": {"x": 1}}], r"Configs\[0\]\.Runtime: orch does not support"),
    (f"{_C}.Secrets", [{"SecretName": "s"}], r"Secrets\[0\]\.File: required"),
    (f"{_C}.StopGracePeriod", -1, rf"{_C}\.StopGracePeriod: must be 0 or more"),
    (f"{_C}.Env", "A=1", rf"{_C}\.Env: expected a list of strings, got a string"),
    ("TaskTemplate.PluginSpec", {"Name": "x"}, r"TaskTemplate\.PluginSpec: orch runs containers only"),
    ("TaskTemplate.Runtime", "plugin", r"TaskTemplate\.Runtime: orch runs containers only"),
    ("TaskTemplate.Resources.SwapBytes", 1024, r"Resources\.SwapBytes: orch does not support"),
    ("TaskTemplate.Resources.Reservations.GenericResources", [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 1}}],
     r"Reservations\.GenericResources: orch does not support"),
    ("TaskTemplate.Networks", [{"Target": "n", "DriverOpts": {"a": "b"}}], r"Networks\[0\]\.DriverOpts: orch does not support"),
    ("TaskTemplate.Placement.Preferences", [{"Pack": {}}], r"Preferences\[0\]: only Spread preferences exist"),
    ("TaskTemplate.RestartPolicy.Condition", "always", r"RestartPolicy\.Condition: 'always' is not one of none, on-failure, any"),
    ("Mode", {"ReplicatedJob": {"MaxConcurrent": 1}}, r"ServiceSpec\.Mode\.ReplicatedJob: job services are not supported"),
    ("Mode", {"Replicated": {"Replicas": 1}, "Global": {}}, r"ServiceSpec\.Mode: give either Replicated or Global"),
    ("Mode.Replicated.Replicas", "3", r"Mode\.Replicated\.Replicas: expected an integer, got a string"),
    ("Mode.Replicated.Replicas", -1, r"Mode\.Replicated\.Replicas: must be 0 or more"),
    ("UpdateConfig.MaxFailureRatio", 1.5, r"UpdateConfig\.MaxFailureRatio: must be between 0 and 1"),
    ("UpdateConfig.Order", "random", r"UpdateConfig\.Order: 'random' is not one of stop-first, start-first"),
    ("RollbackConfig.FailureAction", "rollback", r"RollbackConfig\.FailureAction: 'rollback' is not one of pause, continue"),
    ("EndpointSpec.Ports", [{"TargetPort": 80, "PublishedPort": 70000}], r"Ports\[0\]\.PublishedPort: 70000 is not a port"),
    ("EndpointSpec.Ports", [{"PublishedPort": 80}], r"Ports\[0\]\.TargetPort: required"),
    ("EndpointSpec", {"Mode": "dnsrr", "Ports": [{"TargetPort": 80, "PublishedPort": 80}]}, r"a dnsrr service cannot publish"),
    ("Networks", [{"Target": "x"}], r"ServiceSpec\.Networks: deprecated since API v1\.44"),
    ("DependsOn", {"db": {"Condition": "healthy"}}, r"DependsOn\.db\.Condition: 'healthy' is not one of"),
    ("TaskTemplate", _DELETE, r"ServiceSpec\.TaskTemplate: required"),
])
def test_refusals_name_the_field(path, value, message):
    data = body("service-create-full.json")
    _set(data, path, value)
    with pytest.raises(InvalidArgument) as err:
        dj.service_spec_from_json(data)
    assert "\n" not in str(err.value)
    assert __import__("re").search(message, str(err.value)), str(err.value)


@pytest.mark.parametrize("path, value", [
    (f"{_C}.Groups", []), (f"{_C}.Privileges", None), (f"{_C}.Privileges", {"CredentialSpec": None, "SELinuxContext": None,
                                                                           "NoNewPrivileges": False}),
    (f"{_C}.OomScoreAdj", 0), (f"{_C}.Isolation", "default"), (f"{_C}.DNSConfig", {}),
    ("TaskTemplate.Runtime", "container"), ("TaskTemplate.Resources.SwapBytes", None), ("Networks", []),
    ("Mode.ReplicatedJob", None),
])
def test_zero_values_of_unsupported_fields_are_accepted(path, value):
    data = body("service-create-full.json")
    _set(data, path, value)
    assert dj.service_spec_from_json(data).name == "web"


@pytest.mark.parametrize("fn, data, message", [
    (dj.node_spec_from_json, {"Labels": {}, "Availability": "active"}, r"^NodeSpec\.Role: required"),
    (dj.node_spec_from_json, {"Role": "boss", "Availability": "active"}, r"^NodeSpec\.Role: 'boss' is not one of worker, manager"),
    (dj.node_spec_from_json, {"Role": "worker", "Availability": "off"}, r"^NodeSpec\.Availability: 'off' is not one of"),
    (dj.node_spec_from_json, [], r"^NodeSpec: expected a JSON object, got a list"),
    (ds.init_request_from_json, {"AutoLockManagers": True}, r"^SwarmInitRequest\.AutoLockManagers: orch does not support"),
    (ds.init_request_from_json, {"ForceNewCluster": True}, r"^SwarmInitRequest\.ForceNewCluster: orch does not support"),
    (ds.init_request_from_json, {"Spec": {"Raft": {"SnapshotInterval": 10000}}},
     r"^SwarmInitRequest\.Spec\.Raft\.SnapshotInterval: orch does not support this field \(orch keeps its state in etcd"),
    (ds.init_request_from_json, {"Spec": {"Dispatcher": {"HeartbeatPeriod": 1000}}},
     r"^SwarmInitRequest\.Spec\.Dispatcher\.HeartbeatPeriod: 1000 ns is too short"),
    (ds.init_request_from_json, {"Spec": {"Labels": {"a": "b"}}}, r"^SwarmInitRequest\.Spec\.Labels: orch does not support swarm labels"),
    (ds.init_request_from_json, {"SubnetSize": 31}, r"^SwarmInitRequest\.SubnetSize: must be between 1 and 29"),
    (ds.join_request_from_json, {"RemoteAddrs": ["m:2377"]}, r"^SwarmJoinRequest\.JoinToken: required"),
    (ds.join_request_from_json, {"JoinToken": "t"}, r"^SwarmJoinRequest\.RemoteAddrs: required"),
    (ds.stack_deploy_from_json, {"Name": "-x"}, r"^StackDeploy\.Name: '-x' is not a stack name"),
    (ds.stack_deploy_from_json, {"Name": "s", "Networks": [{"Name": "n", "Driver": "bridge"}]},
     r"^StackDeploy\.Networks\[0\]\.Driver: a stack's networks are overlay networks"),
    (ds.stack_deploy_from_json, {"Name": "s", "Secrets": [{"Name": "n", "Data": "%%%"}]}, r"^StackDeploy\.Secrets\[0\]\.Data: not base64"),
])
def test_other_refusals(fn, data, message):
    with pytest.raises(InvalidArgument, match=message):
        fn(data)


def test_exit_code_counts_only_once_a_task_has_stopped():
    failed = dict(SWAGGER_TASKS[1], Status={"Timestamp": "2016-06-07T21:07:30Z", "State": "failed", "Err": "task: non-zero exit (2)",
                                            "ContainerStatus": {"ContainerID": "1cf8", "PID": 0, "ExitCode": 2}})
    task = dj.task_from_json(failed)
    assert task.status.container_status.exit_code == 2 and task.status.err == "task: non-zero exit (2)"
    assert dj.task_from_json(dj.task_to_json(task, 30)) == task
    running = dj.task_from_json(SWAGGER_TASKS[0])
    assert running.status.container_status.exit_code is None  # Go's 0 before the container exits
