"""The top level of a stack: `Project`, with its networks, volumes, secrets and configs.

`StackFile` validates the merged, interpolated tree of one project; the loader then turns it
into a `Project` (active services only, resources named after the project, the default network
added) as `docker compose config` shows it.
"""

from pathlib import Path
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, model_validator

from orch.spec import syntax
from orch.spec.models import LabelMap, Service, Spec
from orch.spec.supported import unsupported_paths



class IpamConfig(Spec):
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict[str, str] | None = None


class Ipam(Spec):
    driver: str | None = None
    config: list[IpamConfig] | None = None
    options: dict[str, str] | None = None


class Resource(Spec):
    """What networks, volumes, secrets and configs share: a name and `external`."""

    name: str | None = None
    external: bool | None = None
    labels: LabelMap | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_external(cls, data):
        if isinstance(data, dict) and isinstance(data.get("external"), dict):
            data = dict(data)
            old = data.pop("external")
            data["external"] = True
            if "name" in old:
                data.setdefault("name", old["name"])
        return data


class Network(Resource):
    driver: str | None = None
    driver_opts: dict[str, Any] | None = None
    ipam: Ipam | None = None
    internal: bool | None = None
    attachable: bool | None = None
    enable_ipv4: bool | None = None
    enable_ipv6: bool | None = None


class Volume(Resource):
    driver: str | None = None
    driver_opts: dict[str, Any] | None = None


class FileResource(Resource):
    file: str | None = None
    environment: str | None = None
    driver: Any = None
    driver_opts: Any = None
    template_driver: Any = None

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data, info: ValidationInfo):
        if isinstance(data, dict) and isinstance(data.get("file"), str):
            base = (info.context or {}).get("project_dir") or Path.cwd()
            data = {**data, "file": syntax.resolve_path(data["file"], base)}
        return data


class Secret(FileResource):
    pass


class Config(FileResource):
    content: str | None = None


def _null_is_empty(value):
    return {} if value is None else value


class StackFile(Spec):
    """One project's merged tree, validated."""

    version: Any = None  # obsolete; accepted and ignored, as compose does
    name: str | None = None
    include: Any = None  # resolved by the loader
    services: Annotated[dict[str, Service], BeforeValidator(_null_is_empty)] = Field(default_factory=dict)
    networks: Annotated[dict[str, Network | None], BeforeValidator(_null_is_empty)] = Field(default_factory=dict)
    volumes: Annotated[dict[str, Volume | None], BeforeValidator(_null_is_empty)] = Field(default_factory=dict)
    secrets: Annotated[dict[str, Secret], BeforeValidator(_null_is_empty)] = Field(default_factory=dict)
    configs: Annotated[dict[str, Config], BeforeValidator(_null_is_empty)] = Field(default_factory=dict)
    models: Any = None


def _escape(value):
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {key: _escape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape(item) for item in value]
    return value


class Project:
    """A loaded stack: its name, directory, active services and resources."""

    def __init__(
        self,
        name: str,
        project_dir: Path,
        services: dict[str, Service],
        networks: dict[str, Network],
        volumes: dict[str, Volume],
        secrets: dict[str, Secret],
        configs: dict[str, Config],
        *,
        disabled: dict[str, Service] | None = None,
        extensions: dict[str, Any] | None = None,
        files: list[Path] | None = None,
        warnings: list[str] | None = None,
        models: Any = None,
        env_problems: dict[str, list[str]] | None = None,
        variables: dict[str, str] | None = None,
    ):
        self.name = name
        self.project_dir = project_dir
        self.services = services
        self.networks = networks
        self.volumes = volumes
        self.secrets = secrets
        self.configs = configs
        self.disabled = disabled or {}
        self.extensions = extensions or {}
        self.files = files or []
        self.warnings = warnings or []
        self.models = models  # top-level `models:` (AI models), kept as written
        # service -> the error lines of its env_file entries (a missing file), raised only
        # for the services a command touches (require_env).
        self.env_problems = env_problems or {}
        # The variables the files were interpolated with (OS environment, then .env files):
        # where the CLI reads the COMPOSE_* settings that a .env may hold, as compose does.
        self.variables = variables or {}

    def __repr__(self) -> str:
        return f"Project(name={self.name!r}, services={sorted(self.services)})"

    def require_env(self, services: Iterable[str] | None = None) -> None:
        """Raise the env_file problems of `services` (every active service when None)."""
        from orch.spec.errors import StackError, sort_lines

        names = self.services if services is None else services
        lines = [line for name in names for line in self.env_problems.get(name, ())]
        if lines:
            raise StackError(sort_lines(lines, [str(f) for f in self.files]))

    def setting(self, name: str) -> bool:
        """A COMPOSE_* switch (COMPOSE_REMOVE_ORPHANS, ...) from the environment or a .env,
        read as compose's utils.StringToBool reads it."""
        return self.variables.get(name, "").strip().lower() in ("1", "t", "true", "y")

    def profiles(self) -> list[str]:
        """Every profile named by a service, enabled or not."""
        names = {p for svc in (*self.services.values(), *self.disabled.values()) for p in svc.profiles}
        return sorted(names)

    def to_dict(self, *, escape_dollars: bool = False) -> dict:
        """The normalized stack as `docker compose config` prints it (JSON-compatible values).

        With escape_dollars, every `$` in a value is written `$$`, so the output is a stack
        file that means the same thing when it is read (and interpolated) again."""

        def dump(items: dict) -> dict:
            return {key: value.model_dump(mode="json", exclude_unset=True) for key, value in sorted(items.items())}

        out: dict[str, Any] = {"name": self.name, "services": dump(self.services)}
        for section in ("networks", "volumes", "secrets", "configs"):
            items = getattr(self, section)
            if items:
                out[section] = dump(items)
        if self.models is not None:
            out["models"] = self.models
        out.update(self.extensions)
        return _escape(out) if escape_dollars else out

    def unsupported(self) -> list[str]:
        """Key paths present in this stack that orch accepts but does not act on."""
        return unsupported_paths(self.to_dict())
