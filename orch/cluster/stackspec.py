"""`orch stack deploy`: a loaded compose Project -> the cluster's service, network, secret and
config specs, by docker stack's rules.

The CLI loads the files with `orch.spec.load_project(files, project_name=STACK)`, so the stack
name is the project name, and network and volume names are already `STACK_KEY` (or the `name:`
given). Then, as `docker stack deploy` does:

- services are named `STACK_SERVICE`, carry `com.docker.stack.namespace=STACK` (service and
  container labels) and `com.docker.stack.image`, and join their networks with their short
  name as an alias; `deploy.labels` label the service, `labels` the containers;
- a stack's networks are overlay networks (a driver other than overlay is refused: it would be
  one node's); external networks, secrets and configs are referred to by name and must exist;
- secrets and configs are created as `STACK_KEY` from their `file:`, `environment:` or (configs)
  `content:`; a service mounts them at /run/secrets/NAME and /NAME unless it gives a target;
- a service with only `build:` is refused in one line: a cluster pulls images, it does not
  build them (build and push it, then name it in `image:`); with both, build is ignored;
- what swarm ignores and orch refuses, because ignoring it would change what runs:
  `privileged`, `network_mode`, `volumes_from`, `deploy.mode` jobs, published port ranges;
  a placement constraint or spread preference placement cannot read (swarm accepts an
  unknown attribute and then never places the task);
- what swarm ignores and orch honours: `depends_on` (with its conditions, across the cluster),
  and `restart:` when there is no `deploy.restart_policy` (as `orch up` reads it);
- what swarm and orch ignore, with a warning: `container_name`, `links`, `build` (beside an
  image), a port's `host_ip`, a network's `ipv4_address`, depends_on's `restart: true`.

Pure: the caller passes `read_file` (for secrets and configs from files) and `environ` (for
those from the environment); nothing else is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from orch.cluster.records import (
    ConfigReference,
    ConfigSpec,
    ContainerSpec,
    DNSConfig,
    EndpointSpec,
    FileTarget,
    HealthConfig,
    IPAMConfig,
    Limits,
    Mount,
    NetworkAttachmentConfig,
    NetworkSpec,
    Placement,
    PlacementPreference,
    PortConfig,
    ResourceRequirements,
    Resources,
    RestartPolicy,
    SecretReference,
    SecretSpec,
    ServiceDependency,
    ServiceSpec,
    TaskSpec,
    TmpfsOptions,
    Ulimit,
    UpdateConfig,
    VolumeOptions,
)
from orch.errors import InvalidArgument, UserError

NAMESPACE = "com.docker.stack.namespace"
IMAGE = "com.docker.stack.image"

_CONDITIONS = {"none": "none", "on-failure": "on-failure", "any": "any"}
_RESTART = {"no": "none", "always": "any", "unless-stopped": "any", "on-failure": "on-failure"}


@dataclass(frozen=True)
class StackDeployment:
    """What `stack deploy` creates or updates, and what must already exist."""

    namespace: str
    services: tuple[ServiceSpec, ...]
    networks: tuple[NetworkSpec, ...]
    secrets: tuple[SecretSpec, ...]
    configs: tuple[ConfigSpec, ...]
    external_networks: tuple[str, ...] = ()
    external_secrets: tuple[str, ...] = ()
    external_configs: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def translate_stack(
    project: Any,
    *,
    environ: Mapping[str, str] | None = None,
    read_file: Callable[[str], bytes] | None = None,
) -> StackDeployment:
    """The stack `project` as cluster specs; a problem is one InvalidArgument line."""
    return _Stack(project, os.environ if environ is None else environ, read_file or _read_file).translate()


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class _Stack:
    def __init__(self, project, environ, read_file):
        self.project = project
        self.ns = project.name
        self.environ = environ
        self.read_file = read_file
        self.warnings: list[str] = []
        self.used_networks: dict[str, None] = {}
        self.used_secrets: dict[str, None] = {}
        self.used_configs: dict[str, None] = {}

    def error(self, where: str, message: str) -> InvalidArgument:
        return InvalidArgument(f"stack {self.ns}: {where}: {message}")

    def translate(self) -> StackDeployment:
        project = self.project
        services = tuple(self.service(name, svc) for name, svc in sorted(project.services.items()))
        try:
            from orch.scheduler.graph import compute_graph

            compute_graph(project.services)
        except UserError as err:
            raise InvalidArgument(f"stack {self.ns}: {err}") from None
        networks, external_networks = [], []
        for key in self.used_networks:
            net = project.networks.get(key)
            if net is not None and net.external:
                external_networks.append(net.name or key)
            else:
                networks.append(self.network(key, net))
        secrets, external_secrets = self.files("secret", project.secrets, self.used_secrets, SecretSpec)
        configs, external_configs = self.files("config", project.configs, self.used_configs, ConfigSpec)
        return StackDeployment(
            self.ns, services, tuple(networks), tuple(secrets), tuple(configs), tuple(external_networks),
            tuple(external_secrets), tuple(external_configs), tuple(self.warnings),
        )

    # Services.

    def service(self, name: str, svc) -> ServiceSpec:
        where = f"service {name}"
        if svc.image is None:
            if svc.build is not None:
                raise self.error(where, "has only build: and a stack cannot build; build the image, push it to a registry "
                                        "(orch build -t REGISTRY/IMAGE . && orch push REGISTRY/IMAGE) and name it in image:")
            raise self.error(where, "has no image:")
        ignored = [key for key in ("build", "container_name", "links") if getattr(svc, key)]
        if ignored:
            self.warnings.append(f"{where}: ignoring what a stack does not support: {', '.join(ignored)}")
        if svc.privileged:
            raise self.error(where, "privileged: true is not supported (it would hand the container the host's devices "
                                    "and every capability); grant only what it needs with cap_add")
        if svc.network_mode is not None:
            raise self.error(where, f"network_mode: {svc.network_mode} is not supported in a stack; attach the service to "
                                    "networks instead")
        if svc.volumes_from:
            raise self.error(where, "volumes_from is not supported in a stack; mount the same named volume in both services")
        deploy = svc.deploy
        mode = (deploy.mode if deploy else None) or "replicated"
        if mode not in ("replicated", "global"):
            raise self.error(where, f"deploy.mode {mode} is not supported yet; use replicated or global")
        replicas = deploy.replicas if deploy and deploy.replicas is not None else (svc.scale if svc.scale is not None else 1)
        full = f"{self.ns}_{name}"
        labels = dict(deploy.labels or {}) if deploy else {}
        labels.update({NAMESPACE: self.ns, IMAGE: svc.image})
        endpoint_mode = (deploy.endpoint_mode if deploy else None) or "vip"
        if endpoint_mode not in ("vip", "dnsrr"):
            raise self.error(where, f"deploy.endpoint_mode must be vip or dnsrr, not {endpoint_mode!r}")
        depends = {}
        for dep, d in (svc.depends_on or {}).items():
            depends[f"{self.ns}_{dep}"] = ServiceDependency(condition=d.condition, required=d.required)
            if d.restart:
                self.warnings.append(f"{where}: depends_on.{dep}.restart is ignored in a stack")
        return ServiceSpec(
            name=full,
            labels=labels,
            task_template=self.task(name, svc),
            mode=mode,
            replicas=replicas if mode == "replicated" else 0,
            update_config=self.update_config(deploy.update_config if deploy else None),
            rollback_config=self.update_config(deploy.rollback_config if deploy else None),
            endpoint_spec=EndpointSpec(mode=endpoint_mode, ports=self.ports(where, svc)),
            depends_on=depends,
        )

    def task(self, name: str, svc) -> TaskSpec:
        deploy = svc.deploy
        resources = deploy.resources if deploy else None
        limits = resources.limits if resources else None
        reserve = resources.reservations if resources else None
        placement = deploy.placement if deploy else None
        self.check_placement(name, placement)
        return TaskSpec(
            container_spec=self.container(name, svc),
            resources=ResourceRequirements(
                limits=Limits(nano_cpus=_nano(limits and limits.cpus), memory_bytes=(limits and limits.memory) or 0,
                              pids=(limits and limits.pids) or 0),
                reservations=Resources(nano_cpus=_nano(reserve and reserve.cpus), memory_bytes=(reserve and reserve.memory) or 0),
            ),
            restart_policy=self.restart_policy(name, svc),
            placement=Placement(
                constraints=list((placement and placement.constraints) or []),
                preferences=[self.preference(name, p) for p in (placement and placement.preferences) or []],
                max_replicas=(placement and placement.max_replicas_per_node) or 0,
            ),
            networks=self.networks(name, svc),
        )

    def container(self, name: str, svc) -> ContainerSpec:
        where = f"service {name}"
        labels = dict(svc.labels or {})
        labels[NAMESPACE] = self.ns
        env = [f"{k}={v}" for k, v in (svc.environment or {}).items() if v is not None]
        sysctls = {}
        for key, value in (svc.sysctls or {}).items():
            if value is None:
                raise self.error(where, f"sysctls.{key} has no value; write {key}=VALUE")
            sysctls[key] = str(value)
        return ContainerSpec(
            image=svc.image,
            labels=labels,
            command=list(svc.entrypoint) if svc.entrypoint is not None else None,
            args=list(svc.command) if svc.command is not None else None,
            hostname=svc.hostname or "",
            env=env,
            dir=svc.working_dir or "",
            user=svc.user or "",
            tty=bool(svc.tty),
            open_stdin=bool(svc.stdin_open),
            read_only=bool(svc.read_only),
            init=svc.init,
            mounts=self.mounts(where, svc),
            stop_signal=svc.stop_signal or "",
            stop_grace_period=svc.stop_grace_period,
            healthcheck=_healthcheck(svc.healthcheck),
            hosts=[f"{ip} {host}" for host, ips in (svc.extra_hosts or {}).items() for ip in ips],
            dns_config=DNSConfig(nameservers=list(svc.dns)) if svc.dns else None,
            secrets=[self.secret_ref(ref) for ref in svc.secrets or ()],
            configs=[self.config_ref(ref) for ref in svc.configs or ()],
            cap_add=list(svc.cap_add or ()),
            cap_drop=list(svc.cap_drop or ()),
            sysctls=sysctls,
            ulimits=[Ulimit(name=k, soft=int(u.soft), hard=int(u.hard)) for k, u in (svc.ulimits or {}).items()],
        )

    def mounts(self, where: str, svc) -> list[Mount]:
        out = []
        for v in svc.volumes or ():
            if v.type == "volume":
                source = ""
                if v.source:
                    declared = self.project.volumes.get(v.source)
                    source = declared.name if declared is not None and declared.name else v.source
                options = VolumeOptions(no_copy=bool(v.volume and v.volume.nocopy))
                out.append(Mount(type="volume", source=source, target=v.target, read_only=bool(v.read_only), volume_options=options))
            elif v.type == "bind":
                out.append(Mount(type="bind", source=v.source or "", target=v.target, read_only=bool(v.read_only)))
            elif v.type == "tmpfs":
                size = v.tmpfs.size if v.tmpfs else None
                mode = v.tmpfs.mode if v.tmpfs else None
                out.append(Mount(type="tmpfs", target=v.target, tmpfs_options=TmpfsOptions(size_bytes=size, mode=mode)))
            else:
                raise self.error(where, f"volumes of type {v.type} are not supported; use volume, bind or tmpfs")
        for target in svc.tmpfs or ():
            out.append(Mount(type="tmpfs", target=target.split(":")[0]))
        return out

    def ports(self, where: str, svc) -> list[PortConfig]:
        out = []
        for p in svc.ports or ():
            published = p.published or ""
            if "-" in published:
                raise self.error(where, f"published port range {published} is not supported in a stack; publish each port")
            if p.host_ip:
                self.warnings.append(f"{where}: ports: host_ip {p.host_ip} is ignored in a stack (ports answer on every address)")
            out.append(PortConfig(name=p.name or "", protocol=p.protocol, target_port=p.target,
                                  published_port=int(published) if published else 0, publish_mode=p.mode))
        return out

    def networks(self, name: str, svc) -> list[NetworkAttachmentConfig]:
        out = []
        for key, options in (svc.networks or {"default": None}).items():
            self.used_networks[key] = None
            declared = self.project.networks.get(key)
            target = declared.name if declared is not None and declared.name else f"{self.ns}_{key}"
            aliases = [name] + [a for a in ((options.aliases if options else None) or []) if a != name]
            if options is not None and options.ipv4_address:
                self.warnings.append(f"service {name}: networks.{key}.ipv4_address is ignored in a stack")
            out.append(NetworkAttachmentConfig(target=target, aliases=aliases))
        return out

    def restart_policy(self, name: str, svc) -> RestartPolicy:
        policy = svc.deploy.restart_policy if svc.deploy else None
        if policy is not None:
            defaults = RestartPolicy()
            return RestartPolicy(
                condition=_CONDITIONS[policy.condition or "any"],
                delay=defaults.delay if policy.delay is None else policy.delay,
                max_attempts=policy.max_attempts or 0,
                window=policy.window or 0.0,
            )
        if svc.restart:
            mode, _, count = svc.restart.partition(":")
            return RestartPolicy(condition=_RESTART[mode], max_attempts=int(count) if count else 0)
        return RestartPolicy()

    def update_config(self, config) -> UpdateConfig:
        if config is None:
            return UpdateConfig()
        defaults = UpdateConfig()
        return UpdateConfig(
            parallelism=defaults.parallelism if config.parallelism is None else config.parallelism,
            delay=config.delay or 0.0,
            failure_action=config.failure_action or defaults.failure_action,
            monitor=defaults.monitor if config.monitor is None else config.monitor,
            max_failure_ratio=config.max_failure_ratio or 0.0,
            order=config.order or defaults.order,
        )

    def check_placement(self, name: str, placement) -> None:
        """Constraints and spread preferences as placement reads them: a mistake is refused
        at deploy, not left to make every task pend."""
        from orch.scheduler.placement import parse_constraints, parse_preference

        if placement is None:
            return
        try:
            parse_constraints(placement.constraints or ())
            for pref in placement.preferences or ():
                if set(pref) == {"spread"}:
                    parse_preference(PlacementPreference(spread=pref["spread"]))
        except InvalidArgument as err:
            raise self.error(f"service {name}", str(err)) from None

    def preference(self, name: str, pref: Mapping[str, str]) -> PlacementPreference:
        if set(pref) != {"spread"}:
            raise self.error(f"service {name}", f"deploy.placement.preferences: only spread is supported, not {sorted(pref)}")
        return PlacementPreference(spread=pref["spread"])

    # Secrets and configs.

    def _resolved(self, kind: str, declared: Mapping[str, Any], key: str) -> str:
        resource = declared.get(key)
        if resource is not None and resource.name:
            return resource.name
        if resource is not None and resource.external:
            return key
        return f"{self.ns}_{key}"

    def secret_ref(self, ref) -> SecretReference:
        self.used_secrets[ref.source] = None
        return SecretReference(secret_name=self._resolved("secret", self.project.secrets, ref.source), file=self._target(ref))

    def config_ref(self, ref) -> ConfigReference:
        self.used_configs[ref.source] = None
        return ConfigReference(config_name=self._resolved("config", self.project.configs, ref.source), file=self._target(ref))

    @staticmethod
    def _target(ref) -> FileTarget:
        return FileTarget(name=ref.target or ref.source, uid=str(ref.uid or "0"), gid=str(ref.gid or "0"),
                          mode=ref.mode if ref.mode is not None else 0o444)

    def files(self, kind: str, declared: Mapping[str, Any], used: Mapping[str, None], spec_type):
        specs, external = [], []
        for key in used:
            resource = declared[key]
            name = self._resolved(kind, declared, key)
            if resource.external:
                external.append(name)
                continue
            labels = dict(resource.labels or {})
            labels[NAMESPACE] = self.ns
            specs.append(spec_type(name=name, labels=labels, data=self._data(kind, key, resource)))
        return specs, external

    def _data(self, kind: str, key: str, resource) -> bytes:
        where = f"{kind}s.{key}"
        if getattr(resource, "content", None) is not None:
            return resource.content.encode()
        if resource.environment:
            value = self.environ.get(resource.environment)
            if value is None:
                raise self.error(where, f"the environment variable {resource.environment} is not set")
            return value.encode()
        if resource.file:
            try:
                return self.read_file(str(resource.file))
            except OSError as err:
                raise self.error(where, f"cannot read {resource.file}: {err.strerror or err}") from None
        raise self.error(where, "needs file:, environment:" + (" or content:" if kind == "config" else "") + " (or external: true)")

    # Networks.

    def network(self, key: str, net) -> NetworkSpec:
        name = net.name if net is not None and net.name else f"{self.ns}_{key}"
        driver = (net.driver if net is not None else None) or "overlay"
        if driver != "overlay":
            raise self.error(f"networks.{key}", f"driver {driver} is one node's; a stack's networks are overlay "
                                                "(remove driver:, or use external: true for an existing network)")
        labels = dict((net.labels if net is not None else None) or {})
        labels[NAMESPACE] = self.ns
        ipam = []
        if net is not None and net.ipam is not None:
            for c in net.ipam.config or ():
                ipam.append(IPAMConfig(subnet=c.subnet or "", ip_range=c.ip_range or "", gateway=c.gateway or ""))
        options = {k: str(v) for k, v in ((net.driver_opts if net is not None else None) or {}).items()}
        return NetworkSpec(
            name=name, labels=labels, driver="overlay", options=options,
            internal=bool(net is not None and net.internal), attachable=bool(net is not None and net.attachable), ipam=ipam,
        )


def _nano(cpus: float | None) -> int:
    return int(round(float(cpus) * 1e9)) if cpus else 0


def _healthcheck(check) -> HealthConfig | None:
    if check is None:
        return None
    if check.disable:
        return HealthConfig(test=["NONE"])
    if not check.test:
        return None
    return HealthConfig(test=list(check.test), interval=check.interval, timeout=check.timeout, retries=check.retries,
                        start_period=check.start_period, start_interval=check.start_interval)
