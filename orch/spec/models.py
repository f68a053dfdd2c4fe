"""pydantic models of a compose service, in one canonical (long-syntax) form.

Every short syntax is turned into the long one by a `mode="before"` validator, so code that
reads a `Service` never sees two spellings of the same thing: ports are `PortSpec`s, volumes
`VolumeMount`s, depends_on a dict of `DependsOn`, durations float seconds, sizes int bytes.

Every key that compose-spec.json defines for a service is accepted. Keys orch does not act on
(see `orch.spec.supported`) are kept as they were written (`Any`) and reported by
`Project.unsupported()`. `x-*` keys are allowed in every mapping the spec allows them in and
are kept in `extensions`. Relative host paths are resolved against the project directory that
the loader passes as validation context (`{"project_dir": Path}`).
"""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_serializer, model_validator
from pydantic import ValidationInfo

from orch.spec import syntax
from orch.spec.units import format_duration, parse_bytes, parse_duration


def _duration(value):
    return None if value is None else parse_duration(value)


def _bytes(value):
    return None if value is None else parse_bytes(value)


Duration = Annotated[float, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)]
ByteSize = Annotated[int, BeforeValidator(_bytes), PlainSerializer(str, return_type=str)]
StrList = Annotated[list[str], BeforeValidator(syntax.string_list)]
Command = Annotated[list[str] | None, BeforeValidator(syntax.command_list)]
EnvMap = Annotated[dict[str, str | None], BeforeValidator(syntax.list_or_dict)]
LabelMap = Annotated[dict[str, str], BeforeValidator(lambda v: syntax.list_or_dict(v, allow_null=False))]
Text = Annotated[str, BeforeValidator(lambda v: syntax.scalar_text(v) if isinstance(v, (int, float)) else v)]


def project_dir(info: ValidationInfo) -> Path:
    return (info.context or {}).get("project_dir") or Path.cwd()


class Spec(BaseModel):
    """Base of every stack-file model: unknown keys are errors, `x-*` keys are extensions."""

    model_config = ConfigDict(extra="forbid")

    extensions: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _split_extensions(cls, data):
        if isinstance(data, dict) and any(isinstance(k, str) and k.startswith("x-") for k in data):
            ext = {k: v for k, v in data.items() if isinstance(k, str) and k.startswith("x-")}
            data = {k: v for k, v in data.items() if k not in ext}
            data["extensions"] = ext
        return data

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        out = handler(self)
        if isinstance(out, dict):
            out = {k: v for k, v in out.items() if v is not None}
            out.update(self.extensions)
        return out


class BuildSpec(Spec):
    context: str = "."
    dockerfile: str | None = None
    dockerfile_inline: str | None = None
    args: EnvMap | None = None
    target: str | None = None
    labels: LabelMap | None = None
    ssh: Any = None
    cache_from: Any = None
    cache_to: Any = None
    no_cache: Any = None
    additional_contexts: Any = None
    network: Any = None
    provenance: Any = None
    sbom: Any = None
    pull: Any = None
    shm_size: Any = None
    extra_hosts: Any = None
    isolation: Any = None
    privileged: Any = None
    secrets: Any = None
    tags: Any = None
    ulimits: Any = None
    platforms: Any = None
    entitlements: Any = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data, info: ValidationInfo):
        if isinstance(data, str):
            data = {"context": data}
        if isinstance(data, dict):
            context = data.get("context", ".")
            if isinstance(context, str) and "://" not in context and not context.startswith("git@"):
                data = {**data, "context": syntax.resolve_path(context, project_dir(info))}
        return data


class PortSpec(Spec):
    """One published or exposed port: `target` in the container, `published` on the host
    (a port or a range like '8000-8005', None for an ephemeral port)."""

    target: int = Field(ge=1, le=65535)
    published: str | None = None
    host_ip: str | None = None
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    mode: Literal["ingress", "host"] = "ingress"
    name: str | None = None
    app_protocol: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data):
        if isinstance(data, (str, int)) and not isinstance(data, bool):
            entries = syntax.parse_ports(data)
            if len(entries) != 1:
                raise ValueError(f"port range {data!r} cannot be used here")
            return entries[0]
        if isinstance(data, dict):
            data = dict(data)
            data.setdefault("mode", "ingress")
            data.setdefault("protocol", "tcp")
            if isinstance(data.get("published"), int) and not isinstance(data["published"], bool):
                data["published"] = str(data["published"])
        return data


class BindOptions(Spec):
    propagation: Literal["shared", "rshared", "slave", "rslave", "private", "rprivate"] | None = None
    create_host_path: bool | None = None
    selinux: Literal["z", "Z"] | None = None
    recursive: Any = None


class VolumeOptions(Spec):
    nocopy: bool | None = None
    subpath: str | None = None
    labels: Any = None


class TmpfsOptions(Spec):
    size: ByteSize | None = None
    mode: int | None = None


class VolumeMount(Spec):
    """One mount of a service: a named or anonymous volume, a host bind, or a tmpfs."""

    type: Literal["volume", "bind", "tmpfs", "npipe", "cluster", "image"]
    source: str | None = None
    target: str
    read_only: bool | None = None
    consistency: str | None = None
    bind: BindOptions | None = None
    volume: VolumeOptions | None = None
    tmpfs: TmpfsOptions | None = None
    image: Any = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data, info: ValidationInfo):
        if isinstance(data, str):
            return syntax.parse_volume(data, project_dir(info))
        if isinstance(data, dict) and data.get("type") == "bind" and isinstance(data.get("source"), str):
            data = {**data, "source": syntax.resolve_path(data["source"], project_dir(info))}
        return data

    @field_validator("target")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"the container path {value!r} must be absolute")
        return value

    @model_validator(mode="after")
    def _bind_needs_source(self):
        if self.type == "bind" and not self.source:
            raise ValueError("a bind mount needs a 'source' (the host path)")
        return self


class ServiceNetwork(Spec):
    aliases: list[str] | None = None
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    interface_name: Any = None
    link_local_ips: Any = None
    mac_address: Any = None
    driver_opts: Any = None
    priority: Any = None
    gw_priority: Any = None


class DependsOn(Spec):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = "service_started"
    restart: bool = False
    required: bool = True

    @model_validator(mode="before")
    @classmethod
    def _required_is_shown(cls, data):
        # `docker compose config` always prints `required`; make it part of what was set.
        if isinstance(data, dict) and "required" not in data:
            data = {**data, "required": True}
        return data


def _depends_on(value):
    if isinstance(value, list):
        names = syntax.string_list(value)
        return {name: {"condition": "service_started", "required": True} for name in names}
    return value


def _networks(value):
    if isinstance(value, list):
        return {name: None for name in syntax.string_list(value)}
    return value


class Healthcheck(Spec):
    test: list[str] | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    retries: int | None = None
    start_period: Duration | None = None
    start_interval: Duration | None = None
    disable: bool | None = None

    @field_validator("test", mode="before")
    @classmethod
    def _test(cls, value):
        if isinstance(value, str):
            return ["CMD-SHELL", value]
        if isinstance(value, list):
            words = syntax.string_list(value) if value else []
            if not words or words[0] not in ("NONE", "CMD", "CMD-SHELL"):
                raise ValueError("a healthcheck test list starts with NONE, CMD or CMD-SHELL")
            return words
        return value


class ResourceSpec(Spec):
    cpus: float | None = None
    memory: ByteSize | None = None
    pids: int | None = None
    devices: Any = None
    generic_resources: Any = None


class Resources(Spec):
    limits: ResourceSpec | None = None
    reservations: ResourceSpec | None = None


class RestartPolicy(Spec):
    condition: Literal["none", "on-failure", "any"] | None = None
    delay: Duration | None = None
    max_attempts: int | None = None
    window: Duration | None = None


class UpdateConfig(Spec):
    parallelism: int | None = None
    delay: Duration | None = None
    failure_action: Literal["continue", "pause", "rollback"] | None = None
    monitor: Duration | None = None
    max_failure_ratio: float | None = None
    order: Literal["start-first", "stop-first"] | None = None


class Placement(Spec):
    constraints: list[str] | None = None
    preferences: list[dict[str, str]] | None = None
    max_replicas_per_node: int | None = None


class Deploy(Spec):
    mode: Literal["replicated", "global", "replicated-job", "global-job"] | None = None
    replicas: int | None = Field(default=None, ge=0)
    resources: Resources | None = None
    restart_policy: RestartPolicy | None = None
    update_config: UpdateConfig | None = None
    rollback_config: UpdateConfig | None = None
    placement: Placement | None = None
    labels: LabelMap | None = None
    endpoint_mode: str | None = None


class Ulimit(Spec):
    soft: int
    hard: int

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data):
        if isinstance(data, (int, str)) and not isinstance(data, bool):
            return {"soft": data, "hard": data}
        return data


class FileRef(Spec):
    """A service's use of a top-level secret or config."""

    source: str
    target: str | None = None
    uid: Text | None = None
    gid: Text | None = None
    mode: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data):
        return {"source": data} if isinstance(data, str) else data


class EnvFile(Spec):
    path: str
    required: bool = True
    format: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data, info: ValidationInfo):
        if isinstance(data, str):
            data = {"path": data}
        if isinstance(data, dict) and isinstance(data.get("path"), str):
            data = {**data, "path": syntax.resolve_path(data["path"], project_dir(info))}
        return data


def _env_files(value):
    return [value] if isinstance(value, (str, dict)) else value


def _expand_ports(value):
    """Short-syntax port ranges expand to several entries; other items validate one by one."""
    if not isinstance(value, list):
        return value
    out = []
    for item in value:
        if isinstance(item, str):
            try:
                out.extend(syntax.parse_ports(item))
                continue
            except ValueError:
                pass  # PortSpec reports it with the item's index
        out.append(item)
    return out


def _restart(value):
    if value is None:
        return None
    text = syntax.scalar_text(value)
    if text == "":
        return None  # `restart: ""` (or an unset `restart: ${VAR}`) is no policy, as in docker
    name, _, count = text.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped") or (count and (name != "on-failure" or not count.isdigit())):
        raise ValueError(f"invalid restart policy {text!r}; use no, always, on-failure[:N] or unless-stopped")
    return text


class Service(Spec):
    """A service, normalized. The scheduler's graph reads depends_on, links, network_mode and
    volumes_from; their names and types are part of orch.spec's contract."""

    # What orch acts on (orch.spec.supported.SERVICE_KEYS lists them).
    image: str | None = None
    build: BuildSpec | None = None
    command: Command = None
    entrypoint: Command = None
    environment: EnvMap = Field(default_factory=dict)
    env_file: Annotated[list[EnvFile] | None, BeforeValidator(_env_files)] = None
    ports: Annotated[list[PortSpec], BeforeValidator(_expand_ports)] = Field(default_factory=list)
    expose: StrList = Field(default_factory=list)
    volumes: list[VolumeMount] = Field(default_factory=list)
    networks: Annotated[dict[str, ServiceNetwork | None], BeforeValidator(_networks)] = Field(default_factory=dict)
    network_mode: str | None = None
    depends_on: Annotated[dict[str, DependsOn], BeforeValidator(_depends_on)] = Field(default_factory=dict)
    links: StrList = Field(default_factory=list)
    volumes_from: StrList = Field(default_factory=list)
    healthcheck: Healthcheck | None = None
    restart: Annotated[str | None, BeforeValidator(_restart)] = None
    deploy: Deploy | None = None
    scale: int | None = Field(default=None, ge=0)
    hostname: str | None = None
    user: Text | None = None
    working_dir: str | None = None
    labels: LabelMap = Field(default_factory=dict)
    stop_signal: str | None = None
    stop_grace_period: Duration | None = None
    init: bool | None = None
    read_only: bool | None = None
    tmpfs: StrList | None = None
    cap_add: StrList | None = None
    cap_drop: StrList | None = None
    privileged: bool | None = None
    ulimits: dict[str, Ulimit] | None = None
    sysctls: EnvMap | None = None
    security_opt: StrList | None = None
    extra_hosts: Annotated[dict[str, list[str]] | None, BeforeValidator(syntax.parse_extra_hosts)] = None
    dns: StrList | None = None
    profiles: StrList = Field(default_factory=list)
    container_name: str | None = None
    pull_policy: str | None = None
    tty: bool | None = None
    stdin_open: bool | None = None
    secrets: list[FileRef] | None = None
    configs: list[FileRef] | None = None
    extends: Any = None  # resolved by the loader before validation; never left in a Project

    # Accepted as written; orch does not act on them yet.
    annotations: Any = None
    attach: Any = None
    blkio_config: Any = None
    cgroup: Any = None
    cgroup_parent: Any = None
    cpu_count: Any = None
    cpu_percent: Any = None
    cpu_period: Any = None
    cpu_quota: Any = None
    cpu_rt_period: Any = None
    cpu_rt_runtime: Any = None
    cpu_shares: Any = None
    cpus: Any = None
    cpuset: Any = None
    credential_spec: Any = None
    develop: Any = None
    device_cgroup_rules: Any = None
    devices: Any = None
    dns_opt: Any = None
    dns_search: Any = None
    domainname: Any = None
    external_links: Any = None
    gpus: Any = None
    group_add: Any = None
    ipc: Any = None
    isolation: Any = None
    label_file: Any = None
    logging: Any = None
    mac_address: Any = None
    mem_limit: Any = None
    mem_reservation: Any = None
    mem_swappiness: Any = None
    memswap_limit: Any = None
    models: Any = None
    oom_kill_disable: Any = None
    oom_score_adj: Any = None
    pid: Any = None
    pids_limit: Any = None
    platform: Any = None
    post_start: Any = None
    pre_stop: Any = None
    provider: Any = None
    pull_refresh_after: Any = None
    runtime: Any = None
    shm_size: Any = None
    storage_opt: Any = None
    use_api_socket: Any = None
    userns_mode: Any = None
    uts: Any = None
