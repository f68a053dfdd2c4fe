"""From a loaded stack (orch.spec's Project) to the reconciler's DesiredState.

The adapter reads the normalized service models by attribute only, so the reconciler does not
import orch.spec and its tests use small stand-in objects. Durations may come as seconds or as
compose duration strings ("1m30s").

The config hash is what decides that a service must be recreated: the SHA-256 of the canonical
JSON of its normalized configuration and the id of the image it resolved to. As in compose
(`pkg/compose/hash.go`), it leaves out what does not change a container: the replica count,
depends_on, build, pull_policy, profiles, and how updates roll out, so `--scale` or a new
update_config does not recreate anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any, Mapping

from orch.errors import InvalidArgument, NotFound
from orch.scheduler.model import Dependency, DesiredService, DesiredState, RestartPolicy, UpdateConfig

_NOT_HASHED = ("build", "pull_policy", "scale", "depends_on", "profiles", "name")
_DEPLOY_NOT_HASHED = ("replicas", "update_config", "rollback_config")
_CONDITIONS = {"none": "no", "on-failure": "on-failure", "any": "always"}


def desired_from_project(project: Any, *, image_ids: Mapping[str, str]) -> DesiredState:
    """The desired state of `project`; `image_ids` maps each service to its resolved image id."""
    services = {}
    for name, service in project.services.items():
        image_id = image_ids.get(name)
        if image_id is None:
            raise NotFound(f"service {name} of stack {project.name} has no resolved image; pull or build it first")
        services[name] = desired_service(name, service, image_id=image_id)
    return DesiredState(project.name, services)


def desired_service(name: str, service: Any, *, image_id: str) -> DesiredService:
    deploy = getattr(service, "deploy", None)
    return DesiredService(
        name=name,
        config_hash=compute_config_hash(service, image_id),
        replicas=_replicas(service, deploy),
        depends_on=_depends_on(service),
        restart=compute_restart_policy(name, getattr(service, "restart", None), getattr(deploy, "restart_policy", None)),
        update=_update_config(getattr(deploy, "update_config", None)),
        healthcheck=_has_healthcheck(getattr(service, "healthcheck", None)),
        network_of=_network_of(service),
        container_name=getattr(service, "container_name", None) or None,
    )


def _network_of(service: Any) -> str | None:
    mode = getattr(service, "network_mode", None)
    if isinstance(mode, str) and mode.startswith("service:"):
        return mode.removeprefix("service:")
    return None


def compute_config_hash(service: Any, image_id: str) -> str:
    data = _plain(service)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in _NOT_HASHED}
        if isinstance(data.get("deploy"), dict):
            data["deploy"] = {k: v for k, v in data["deploy"].items() if k not in _DEPLOY_NOT_HASHED}
    text = json.dumps({"service": data, "image": image_id}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def compute_restart_policy(name: str, restart: str | None, policy: Any) -> RestartPolicy:
    """`restart:` in docker's words, overridden by deploy.restart_policy when the stack has one."""
    if policy is not None:
        condition = getattr(policy, "condition", None) or "any"
        if condition not in _CONDITIONS:
            raise InvalidArgument(f"service {name}: deploy.restart_policy.condition must be none, on-failure or any, not {condition!r}")
        return RestartPolicy(
            mode=_CONDITIONS[condition],
            max_attempts=getattr(policy, "max_attempts", None) or 0,
            delay=_seconds(getattr(policy, "delay", None)),
            window=_seconds(getattr(policy, "window", None)),
        )
    text = (restart or "no").strip()
    if text in ("no", "always", "unless-stopped", "on-failure"):
        return RestartPolicy(mode=text)
    match = re.fullmatch(r"on-failure:(\d+)", text)
    if match:
        return RestartPolicy(mode="on-failure", max_attempts=int(match.group(1)))
    raise InvalidArgument(f"service {name}: restart must be no, always, unless-stopped or on-failure[:N], not {text!r}")


def _replicas(service: Any, deploy: Any) -> int:
    replicas = getattr(deploy, "replicas", None)
    if replicas is None:
        replicas = getattr(service, "scale", None)
    return 1 if replicas is None else int(replicas)


def _depends_on(service: Any) -> dict[str, Dependency]:
    """depends_on, plus the services that links, network_mode and volumes_from name.

    Those need the other service's container to exist, so they order like service_started,
    as in compose (and in orch.scheduler.graph). network_mode also restarts: a container that
    shares another's network namespace is left in a dead one when that other restarts (its
    namespace is made anew at each start), so it restarts after it, as `restart: true` does.
    """
    implied: dict[str, Dependency] = {}
    for link in getattr(service, "links", None) or ():
        implied[str(link).split(":")[0]] = Dependency()
    network_of = _network_of(service)
    if network_of is not None:
        implied[network_of] = Dependency()
    for source in getattr(service, "volumes_from", None) or ():
        if not str(source).startswith("container:"):
            implied[str(source).split(":")[0]] = Dependency()
    deps = getattr(service, "depends_on", None) or {}
    if not isinstance(deps, Mapping):  # The short form, a list of names.
        merged = implied | {name: Dependency() for name in deps}
    else:
        merged = implied | {
            name: Dependency(
                condition=getattr(d, "condition", None) or "service_started",
                required=getattr(d, "required", True) is not False,
                restart=bool(getattr(d, "restart", False)),
            )
            for name, d in deps.items()
        }
    if network_of is not None:
        merged[network_of] = dataclasses.replace(merged[network_of], restart=True)
    return merged


def _update_config(config: Any) -> UpdateConfig:
    if config is None:
        # No update_config: replace every changed replica at once, as docker compose does.
        return UpdateConfig(parallelism=0)
    parallelism = getattr(config, "parallelism", None)
    return UpdateConfig(
        parallelism=1 if parallelism is None else int(parallelism),
        delay=_seconds(getattr(config, "delay", None)) or 0.0,
        order=getattr(config, "order", None) or "stop-first",
        failure_action=getattr(config, "failure_action", None) or "pause",
        monitor=_seconds(getattr(config, "monitor", None)) or 0.0,
        max_failure_ratio=float(getattr(config, "max_failure_ratio", None) or 0.0),
    )


def _has_healthcheck(check: Any) -> bool:
    if check is None or getattr(check, "disable", False):
        return False
    test = getattr(check, "test", None)
    if isinstance(test, (list, tuple)) and test[:1] == ["NONE"]:
        return False
    return test is not None


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: Any) -> float | None:
    """Seconds from a number, a timedelta, or a compose duration such as "1m30s" or "500ms"."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(value))
    if not parts or "".join(n + u for n, u in parts) != str(value):
        raise InvalidArgument(f"{value!r} is not a duration; write it like 10s, 1m30s or 500ms")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a model: pydantic models, dataclasses, mappings and sequences."""
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "__dict__"):
        return _plain({k: v for k, v in vars(value).items() if not k.startswith("_")})
    return str(value)
