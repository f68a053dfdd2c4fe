"""`--with-registry-auth`: a service whose image is in a private registry runs on a node that
has no credentials of its own, because the deployer's travel with the task (sealed at rest
with the managers' key, opened only inside the node's TLS session); without them that node
cannot pull, and the task says why."""

import json
import subprocess

import pytest

from tests.integration.cluster.lab_fixture import containers, open_lab, tasks, wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.tools("/usr/bin/etcd", "docker-registry", "htpasswd",
                                                         package="etcd-server docker-registry apache2-utils")]
USER, PASSWORD = "deployer", "not-on-the-workers"
ADDR = "10.213.0.1:5000"  # h1's underlay address (Lab's first host), port 5000


@pytest.fixture(scope="module")
def lab():
    yield from open_lab(2, "orchra", env={"ORCH_INSECURE_REGISTRIES": ADDR})


@pytest.fixture(scope="module")
def registry(lab):
    h1 = lab.hosts[0]
    assert f"{h1.addr}:5000" == ADDR
    base = h1.base / "registry"
    (base / "storage").mkdir(parents=True)
    htpasswd = subprocess.run(["htpasswd", "-Bbn", "-C", "4", USER, PASSWORD], check=True, capture_output=True, text=True).stdout
    (base / "htpasswd").write_text(htpasswd)
    (base / "config.yml").write_text(json.dumps({
        "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(base / "storage")}},
        "http": {"addr": ADDR}, "auth": {"htpasswd": {"realm": "orch-lab", "path": str(base / "htpasswd")}}}))
    proc = h1.popen(["docker-registry", "serve", str(base / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(h1.argv(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{ADDR}/v2/"]),
                                        capture_output=True, text=True).stdout == "401", 15, "the registry")
        yield ADDR
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_private_image_runs_on_a_node_without_credentials_only_with_registry_auth(lab, registry):
    h1, h2 = lab.hosts
    h1.orch("login", "-u", USER, "--password-stdin", registry, input=PASSWORD + "\n")
    image = f"{registry}/private/bb:1"
    h1.orch("tag", "busybox:latest", image)
    h1.orch("push", image)
    h1.orch("swarm", "init", "--advertise-addr", h1.addr)
    token = h1.orch("swarm", "join-token", "-q", "worker").stdout.strip()
    h2.orch("swarm", "join", "--token", token, f"{h1.addr}:2377")
    h1.orch("node", "update", "--availability", "drain", "h1")  # every task on h2, which has no login

    h1.orch("service", "create", "--name", "without", "-d", image, "sleep", "100000")
    rejected = wait_for(lambda: [t for t in tasks(h1, "service", "ps", "without") if t["CurrentState"].startswith("Rejected")],
                        60, "the task rejected for want of credentials")
    assert "wants a user name and password" in rejected[0]["Error"]
    h1.orch("service", "rm", "without")

    h1.orch("service", "create", "--name", "with", "--with-registry-auth", "-d", image, "sleep", "100000")
    wait_for(lambda: any(c["Names"].startswith("with.") for c in containers(h2)), 60, "the task running on h2")
    # What the cluster stores is sealed: the password is not in the service as any API shows it.
    assert PASSWORD not in h1.orch("service", "inspect", "with").stdout
    assert not (h2.base / "auth.json").exists()  # h2 never logged in
