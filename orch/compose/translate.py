"""From a stack's service to the agent's container create body, and compose's names and labels.

Pure: no I/O. The body is the agent's create request (orch.api.models.CreateRequest): docker's
HostConfig and Config names in snake case. What compose adds to every container is spelled here once: the name
`<project>-<service>-<n>`, the com.docker.compose.* labels that let `ps`, `down` and the next
`up` find the project's containers, and the DNS aliases (service name and container name) on
each network.
"""

from __future__ import annotations

from typing import Any

from orch.errors import InvalidArgument
from orch.scheduler.desired import _seconds

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
CONFIG_HASH = "com.docker.compose.config-hash"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
DEPENDS_ON = "com.docker.compose.depends_on"
NETWORK = "com.docker.compose.network"
VOLUME = "com.docker.compose.volume"
IMAGE = "com.docker.compose.image"


def container_name(project: str, service: str, number: int, explicit: str | None = None) -> str:
    """compose v2's `<project>-<service>-<n>`; `container_name:` wins for the first replica."""
    if explicit and number == 1:
        return explicit
    return f"{project}-{service}-{number}"


def project_filter(project: str, service: str | None = None) -> dict:
    labels = [f"{PROJECT}={project}"]
    if service:
        labels.append(f"{SERVICE}={service}")
    return {"label": labels}


def compute_labels(project, name: str, service, number: int, config_hash: str, *, oneoff: bool = False) -> dict[str, str]:
    labels = dict(service.labels or {})
    deps = ",".join(f"{d}:{c.condition}:{str(c.restart).lower()}" for d, c in (service.depends_on or {}).items())
    labels.update({
        PROJECT: project.name,
        SERVICE: name,
        NUMBER: str(number),
        ONEOFF: "True" if oneoff else "False",
        CONFIG_HASH: config_hash,
        WORKING_DIR: str(project.project_dir),
        DEPENDS_ON: deps,
    })
    files = [str(f) for f in getattr(project, "files", None) or ()]
    if files:
        labels[CONFIG_FILES] = ",".join(files)  # what `compose ls` shows (not in the config hash)
    return labels


def compute_environment(service, os_environ: dict[str, str]) -> list[str]:
    """KEY=VALUE lines; a key without a value takes the caller's environment, or is left out."""
    env = []
    for key, value in (service.environment or {}).items():
        if value is None:
            if key in os_environ:
                env.append(f"{key}={os_environ[key]}")
        else:
            env.append(f"{key}={value}")
    return env


def compute_healthcheck(check) -> dict | None:
    if check is None:
        return None
    if check.disable:
        return {"test": ["NONE"]}
    if not check.test:
        return None
    body = {"test": list(check.test)}
    for key in ("interval", "timeout", "start_period", "start_interval"):
        value = _seconds(getattr(check, key))
        if value is not None:
            body[key] = value
    if check.retries is not None:
        body["retries"] = check.retries
    return body


def compute_restart_policy(service) -> dict:
    """The agent's restart policy: deploy.restart_policy when given, else `restart:`."""
    policy = service.deploy.restart_policy if service.deploy else None
    if policy is not None:
        # Swarm's policy: a fixed delay between restarts, max_attempts for any condition, and
        # a window a restart must stay up to count as a success. on-failure keeps docker's
        # MaximumRetryCount; the other conditions carry max_attempts in a field of their own,
        # since docker's HostConfig refuses a retry count for `always`.
        name = {"none": "no", "on-failure": "on-failure", "any": "always", None: "always"}[policy.condition]
        body = {"name": name, "maximum_retry_count": (policy.max_attempts or 0) if name == "on-failure" else 0}
        if name != "no":
            if policy.max_attempts and name != "on-failure":
                body["max_attempts"] = policy.max_attempts
            for key in ("delay", "window"):
                value = _seconds(getattr(policy, key))
                if value is not None:
                    body[key] = value
        return body
    text = (service.restart or "no").strip()
    name, _, count = text.partition(":")
    return {"name": name, "maximum_retry_count": int(count) if count.isdigit() else 0}


def compute_mounts(project, service) -> list[dict]:
    """volumes:, tmpfs:, secrets: and configs: as the agent's mounts."""
    mounts = []
    for v in service.volumes or ():
        if v.type == "volume":
            source = ""
            if v.source:
                declared = project.volumes.get(v.source)
                source = declared.name if declared is not None and declared.name else v.source
            mounts.append({"type": "volume", "source": source, "target": v.target, "read_only": bool(v.read_only),
                           "nocopy": bool(v.volume and v.volume.nocopy)})
        elif v.type == "bind":
            mounts.append({"type": "bind", "source": v.source or "", "target": v.target, "read_only": bool(v.read_only)})
        elif v.type == "tmpfs":
            size = v.tmpfs.size if v.tmpfs else None
            mounts.append({"type": "tmpfs", "source": "", "target": v.target, "read_only": False, "tmpfs_size": size})
        else:
            raise InvalidArgument(f"service volumes of type {v.type!r} are not supported by orch; use volume, bind or tmpfs")
    for target in service.tmpfs or ():
        mounts.append({"type": "tmpfs", "source": "", "target": target.split(":")[0], "read_only": False, "tmpfs_size": None})
    for kind, declared, default_dir in (("secrets", project.secrets, "/run/secrets/"), ("configs", project.configs, "/")):
        for ref in getattr(service, kind) or ():
            resource = declared.get(ref.source)
            if resource is None or not getattr(resource, "file", None):
                raise InvalidArgument(f"{kind[:-1]} {ref.source!r} of service needs a `file:` in the stack's top-level {kind}")
            target = ref.target or ref.source
            if not target.startswith("/"):
                target = default_dir + target
            mounts.append({"type": "bind", "source": str(resource.file), "target": target, "read_only": True})
    return mounts


def compute_networks(project, name: str, service, cname: str, network_container: str | None = None) -> tuple[str, list[dict]]:
    """(network_mode, networks): the primary network first, each with the DNS aliases
    compose gives (the service name and the container name, plus the service's own).

    network_mode: service:X becomes docker's container:<id of X's container>, as compose
    resolves it; the executor gives the container (`network_container`)."""
    mode = service.network_mode
    if mode:
        if mode.startswith("service:"):
            if not network_container:
                other = mode.removeprefix("service:")
                raise InvalidArgument(f"service {name}: network_mode {mode} needs a container of service {other}; "
                                      f"start {other} first (orch compose up {other})")
            return f"container:{network_container}", []
        return mode, []
    entries = []
    for key, options in (service.networks or {"default": None}).items():
        declared = project.networks.get(key)
        net_name = declared.name if declared is not None and declared.name else f"{project.name}_{key}"
        aliases = [name, cname] + list((options.aliases if options else None) or [])
        address = getattr(options, "ipv4_address", None) if options else None
        entries.append({"name": net_name, "aliases": aliases, "ipv4_address": address})
    return entries[0]["name"], entries


def compute_ports(service) -> list[dict]:
    ports = []
    for p in service.ports or ():
        ports.append({"host_ip": p.host_ip or "", "host_port": p.published or "", "container_port": str(p.target),
                      "protocol": p.protocol})
    return ports


def compute_security(name: str, service, project_dir: str | None = None) -> dict:
    """cap_add, cap_drop, read_only, privileged, sysctls (list or map), ulimits (a number
    or {soft, hard}) and security_opt as the agent's fields, checked with the node's rules so a mistake names
    the service and key before anything is created."""
    from orch.node.runtime import security

    body: dict[str, Any] = {}
    where = f"service {name}"
    if service.privileged:
        raise InvalidArgument(f"{where}: privileged: true is not supported by orch (it would hand the container the host's "
                              "devices and every capability); grant only what it needs with cap_add")
    add, drop = security.compute_cap_add_drop(service.cap_add or (), service.cap_drop or (),
                                              add_where=f"{where}: cap_add", drop_where=f"{where}: cap_drop")
    if add:
        body["cap_add"] = list(add)
    if drop:
        body["cap_drop"] = list(drop)
    if service.read_only:
        body["read_only"] = True
    if service.sysctls:
        sysctls = {}
        for key, value in service.sysctls.items():
            if value is None:
                raise InvalidArgument(f"{where}: sysctls.{key} has no value; write {key}=VALUE")
            sysctls[key] = str(value)
        # network_mode: host shares the host's network namespace; the agent would refuse too,
        # but here the message can name the service.
        security.check_sysctls(sysctls, namespaces=("ipc",), own_netns=service.network_mode != "host", where=f"{where}: sysctls")
        body["sysctls"] = sysctls
    if service.ulimits:
        body["ulimits"] = [dict(zip(("name", "soft", "hard"), security.check_ulimit(key, int(u.soft), int(u.hard), f"{where}: ulimits")))
                           for key, u in service.ulimits.items()]
    if service.security_opt:
        # A seccomp profile file is read here, relative to the project's directory, and sent
        # inline, as docker's CLI sends it.
        options = security.parse_security_opts(service.security_opt, where=f"{where}: security_opt",
                                               read_file=lambda path: security.read_profile_file(path, project_dir))
        body["security_opt"] = options.to_opts()
    return body


def compute_create_body(project, name: str, service, *, number: int, config_hash: str, image: str,
                        os_environ: dict[str, str], oneoff: bool = False,
                        cname: str | None = None, command: list[str] | None = None,
                        network_container: str | None = None) -> dict:
    cname = cname or container_name(project.name, name, number, service.container_name)
    body: dict[str, Any] = {
        "image": image,
        "name": cname,
        "env": compute_environment(service, os_environ),
        "labels": compute_labels(project, name, service, number, config_hash, oneoff=oneoff),
        "tty": bool(service.tty),
        "open_stdin": bool(service.stdin_open),
        "init": bool(service.init),
        "restart_policy": {"name": "no", "maximum_retry_count": 0} if oneoff else compute_restart_policy(service),
    }
    cmd = command if command is not None else service.command
    if cmd is not None:
        body["cmd"] = list(cmd)
    if service.entrypoint is not None:
        body["entrypoint"] = list(service.entrypoint)
    for key, attr in (("hostname", "hostname"), ("workdir", "working_dir"), ("user", "user"), ("stop_signal", "stop_signal")):
        if getattr(service, attr):
            body[key] = getattr(service, attr)
    grace = _seconds(service.stop_grace_period)
    if grace is not None:
        body["stop_timeout"] = grace
    check = compute_healthcheck(service.healthcheck)
    if check is not None:
        body["healthcheck"] = check
    limits = service.deploy.resources.limits if service.deploy and service.deploy.resources else None
    if limits is not None:
        if limits.memory:
            body["memory"] = int(limits.memory)
        if limits.cpus:
            body["nano_cpus"] = int(float(limits.cpus) * 1e9)
        if limits.pids:
            body["pids_limit"] = int(limits.pids)
    body.update(compute_security(name, service, str(project.project_dir)))
    mounts = compute_mounts(project, service)
    ports = [] if oneoff else compute_ports(service)
    mode, networks = compute_networks(project, name, service, cname, network_container)
    body["network_mode"] = mode
    if networks:
        body["networks"] = networks
    if ports:
        body["ports"] = ports
    if mounts:
        body["mounts"] = mounts
    if service.dns:
        body["dns"] = list(service.dns)
    if service.extra_hosts:
        body["extra_hosts"] = [f"{h}:{ip}" for h, ips in service.extra_hosts.items() for ip in ips]
    return body


def compute_network_waves(services, selected, *, joiners: bool = True) -> list[list[str]]:
    """The order `restart` works in when services share network namespaces.

    A restart gives a container a new network namespace, and a service with `network_mode:
    service:X` that stays behind is left in X's dead one: it must restart after X. So the
    services go in waves, X before those that join it; with `joiners` (no --no-deps) the
    services that join a selected one are added, as compose restarts dependents.
    `services` maps names to models with `network_mode`; `selected` empty means all.
    """
    owner = {name: svc.network_mode.removeprefix("service:") for name, svc in services.items()
             if (svc.network_mode or "").startswith("service:")}
    chosen = set(selected or services)
    while joiners:
        more = {name for name, other in owner.items() if other in chosen} - chosen
        if not more:
            break
        chosen |= more
    waves: list[list[str]] = []
    placed: set[str] = set()
    while len(placed) < len(chosen):
        wave = sorted(n for n in chosen - placed if owner.get(n) not in chosen - placed)
        if not wave:  # a cycle, which the spec refuses; do not loop forever on it
            wave = sorted(chosen - placed)
        waves.append(wave)
        placed |= set(wave)
    return waves
