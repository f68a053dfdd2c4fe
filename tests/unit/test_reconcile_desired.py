"""The adapter from a loaded stack to the reconciler's desired state, with stand-in models.

The stand-ins have the attributes orch.spec's normalized Service has; the adapter reads
nothing else, so the real models plug in without a change here.
"""

from dataclasses import dataclass, field, replace

import pytest

from orch.errors import InvalidArgument, NotFound
from orch.scheduler.desired import compute_config_hash, compute_restart_policy, desired_from_project
from orch.scheduler.model import Dependency, RestartPolicy, UpdateConfig


@dataclass
class DependsOn:
    condition: str = "service_started"
    restart: bool = False
    required: bool = True


@dataclass
class RestartPolicyModel:
    condition: str | None = None
    delay: object = None
    max_attempts: int | None = None
    window: object = None


@dataclass
class UpdateConfigModel:
    parallelism: int | None = None
    delay: object = None
    order: str | None = None
    failure_action: str | None = None
    monitor: object = None


@dataclass
class Deploy:
    replicas: int | None = None
    update_config: UpdateConfigModel | None = None
    restart_policy: RestartPolicyModel | None = None


@dataclass
class Healthcheck:
    test: list[str] | None = None
    interval: float = 30.0
    disable: bool = False


@dataclass
class Service:
    image: str = "web:latest"
    environment: dict = field(default_factory=dict)
    depends_on: dict = field(default_factory=dict)
    deploy: Deploy | None = None
    restart: str | None = None
    scale: int | None = None
    healthcheck: Healthcheck | None = None
    build: object = None
    links: list[str] | None = None
    network_mode: str | None = None
    volumes_from: list[str] | None = None


@dataclass
class Project:
    name: str
    services: dict


def desired(**services):
    ids = {name: "sha256:img-" + name for name in services}
    return desired_from_project(Project("shop", services), image_ids=ids)


def test_a_plain_service():
    svc = desired(web=Service()).services["web"]
    assert (svc.name, svc.replicas, svc.depends_on, svc.restart, svc.healthcheck) == ("web", 1, {}, RestartPolicy("no"), False)
    assert svc.update == UpdateConfig(parallelism=0)  # compose: all at once when there is no update_config.
    assert len(svc.config_hash) == 64


def test_fields_are_carried_over():
    deploy = Deploy(
        replicas=3,
        update_config=UpdateConfigModel(parallelism=2, delay="10s", order="start-first", failure_action="rollback", monitor="1m30s"),
        restart_policy=RestartPolicyModel(condition="on-failure", delay="500ms", max_attempts=4, window=20),
    )
    svc = desired(
        web=Service(deploy=deploy, depends_on={"db": DependsOn("service_healthy", restart=True, required=False)},
                    healthcheck=Healthcheck(["CMD", "true"]))
    ).services["web"]
    assert svc.replicas == 3
    assert svc.depends_on == {"db": Dependency("service_healthy", required=False, restart=True)}
    assert svc.update == UpdateConfig(2, 10.0, "start-first", "rollback", 90.0)
    assert svc.restart == RestartPolicy("on-failure", 4, 0.5, 20.0)
    assert svc.healthcheck


@pytest.mark.parametrize(
    "restart, expected",
    [("no", RestartPolicy("no")), (None, RestartPolicy("no")), ("always", RestartPolicy("always")),
     ("unless-stopped", RestartPolicy("unless-stopped")), ("on-failure", RestartPolicy("on-failure")),
     ("on-failure:5", RestartPolicy("on-failure", 5))],
)
def test_restart_strings(restart, expected):
    assert compute_restart_policy("web", restart, None) == expected


def test_deploy_restart_policy_wins_and_maps_conditions():
    assert compute_restart_policy("web", "no", RestartPolicyModel()) == RestartPolicy("always")
    assert compute_restart_policy("web", "always", RestartPolicyModel("none")).mode == "no"


@pytest.mark.parametrize(
    "restart, policy, message",
    [("sometimes", None, "service web: restart must be no, always, unless-stopped or on-failure[:N], not 'sometimes'"),
     (None, RestartPolicyModel("never"), "service web: deploy.restart_policy.condition must be none, on-failure or any, not 'never'"),
     (None, RestartPolicyModel(delay="5 parsecs"), "'5 parsecs' is not a duration; write it like 10s, 1m30s or 500ms")],
)
def test_bad_restart_settings(restart, policy, message):
    with pytest.raises(InvalidArgument, match="^" + message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)") + "$"):
        compute_restart_policy("web", restart, policy)


def test_scale_and_healthcheck_none():
    svc = desired(web=Service(scale=2, healthcheck=Healthcheck(["NONE"]))).services["web"]
    assert (svc.replicas, svc.healthcheck) == (2, False)
    assert desired(web=Service(healthcheck=Healthcheck(["CMD", "x"], disable=True))).services["web"].healthcheck is False


def test_the_hash_follows_the_container_config_and_the_image():
    base = Service(environment={"A": "1"})
    h = compute_config_hash(base, "sha256:1")
    assert compute_config_hash(replace(base), "sha256:1") == h  # Stable.
    assert compute_config_hash(replace(base, environment={"A": "2"}), "sha256:1") != h
    assert compute_config_hash(base, "sha256:2") != h
    # What does not change a container does not change the hash.
    assert compute_config_hash(replace(base, scale=5, depends_on={"db": DependsOn()}, build="."), "sha256:1") == h
    assert compute_config_hash(replace(base, deploy=Deploy(replicas=3, update_config=UpdateConfigModel(2))), "sha256:1") == \
        compute_config_hash(replace(base, deploy=Deploy()), "sha256:1")


def test_the_hash_reads_pydantic_models():
    import pydantic

    class Model(pydantic.BaseModel):
        image: str
        environment: dict[str, str] = {}
        scale: int | None = None

    a = compute_config_hash(Model(image="x", environment={"A": "1"}), "i")
    assert a == compute_config_hash(Model(image="x", environment={"A": "1"}, scale=3), "i")
    assert a != compute_config_hash(Model(image="x", environment={"A": "2"}), "i")


def test_a_service_without_an_image_id():
    with pytest.raises(NotFound, match="^service web of stack shop has no resolved image; pull or build it first$"):
        desired_from_project(Project("shop", {"web": Service()}), image_ids={})


def test_links_network_mode_and_volumes_from_order_like_depends_on():
    # network_mode also restarts web after vpn restarts: vpn's namespace is new at each start.
    svc = desired(
        web=Service(links=["db:database"], network_mode="service:vpn", volumes_from=["data:ro", "container:abc"],
                    depends_on={"cache": DependsOn("service_healthy")}),
    ).services["web"]
    assert svc.depends_on == {
        "db": Dependency(), "vpn": Dependency(restart=True), "data": Dependency(), "cache": Dependency("service_healthy"),
    }
    assert desired(web=Service(depends_on=["db"])).services["web"].depends_on == {"db": Dependency()}
