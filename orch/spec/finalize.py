"""The last step of loading: profiles, references, env files and names.

Profiles (compose-spec 15-profiles.md): a service with `profiles` is active only when one of
them is enabled (`--profile`, COMPOSE_PROFILES, `*` for all). A reference from an active
service to a disabled one is an error, except a `depends_on` with `required: false`, which is
dropped, as compose-go's consistency check does (an undefined service is an error either way).

Then every reference is checked (depends_on, links, volumes_from, `network_mode: service:X`,
networks, named volumes, secrets, configs), `env_file`s are read into `environment`, and
networks and volumes get the names compose gives them (`<project>_<key>`), with the `default`
network that services without `networks` join.
"""

from pathlib import Path

from orch.spec.dotenv import read_env_file
from orch.spec.errors import Problems, StackError, suggest
from orch.spec.models import Service
from orch.spec.project import Network, Project, Volume
from orch.spec.references import find_cycle, service_references
from orch.spec.validate import locate
from orch.spec.yamltree import Map

NETWORK_MODES = ("none", "host", "bridge", "default")


def finalize(stack, name: str, profiles: list[str], variables: dict, problems: Problems, files: list[Path]) -> Project:
    model = stack.model
    enabled = set(profiles)
    active: dict[str, Service] = {}
    disabled: dict[str, Service] = {}
    for sname, service in model.services.items():
        if not service.profiles or "*" in enabled or enabled & set(service.profiles):
            active[sname] = service
        else:
            disabled[sname] = service

    checker = _References(stack, active, disabled, problems)
    env_problems: dict[str, list[str]] = {}
    for sname, service in active.items():
        checker.check(sname, service)
        # A service's env files are its own business: a missing one fails only the commands
        # that touch the service (compose's TestUnusedMissingEnvFile), so they are kept apart.
        mine = Problems()
        _read_env_files(sname, service, stack.raw_services.get(sname), variables, mine)
        if mine:
            env_problems[sname] = mine.lines
        if not service.networks and service.network_mode is None:
            service.networks = {"default": None}
    checker.check_cycles()

    networks = {key: net or Network() for key, net in model.networks.items()}
    if any("default" in s.networks for s in active.values()) and "default" not in networks:
        networks["default"] = Network()
    volumes = {key: vol or Volume() for key, vol in model.volumes.items()}
    for resources in (networks, volumes):
        for key, resource in resources.items():
            if resource.name is None:
                resource.name = key if resource.external else f"{name}_{key}"
    return Project(
        name,
        stack.project_dir,
        active,
        networks,
        volumes,
        dict(model.secrets),
        dict(model.configs),
        disabled=disabled,
        extensions=model.extensions,
        files=files,
        warnings=problems.warnings,
        models=model.models,
        env_problems=env_problems,
        variables=variables,
    )


class _References:
    def __init__(self, stack, active: dict, disabled: dict, problems: Problems):
        self.stack = stack
        self.active = active
        self.disabled = disabled
        self.problems = problems

    def add(self, sname: str, path: tuple, message: str) -> None:
        raw = self.stack.raw_services.get(sname)
        # A depends_on or networks entry is named by its key: point at the name.
        by_key = len(path) == 2 and path[0] in ("depends_on", "networks")
        mark = locate(raw, path, key=by_key) if raw is not None else None
        self.problems.add(mark, ("services", sname) + path, message)

    def service_problem(self, target: str) -> str | None:
        """Why `target` cannot be referred to, or None when it can."""
        if target in self.active or target in self.stack.invalid:
            return None
        if target in self.disabled:
            profiles = ", ".join(self.disabled[target].profiles)
            return f"'{target}', which is disabled by its profiles ({profiles}); enable one with --profile"
        return f"undefined service '{target}'{suggest(target, [*self.active, *self.stack.invalid])}"

    def check(self, sname: str, service: Service) -> None:
        model = self.stack.model
        # A `provider` service is run by a plugin, not from an image.
        if service.image is None and service.build is None and service.provider is None and sname not in self.stack.invalid:
            self.add(sname, (), "has neither an image nor a build context; add 'image:' or 'build:'")
        replicas = service.deploy.replicas if service.deploy else None
        if service.scale is not None and replicas is not None and service.scale != replicas:
            self.add(sname, ("scale",), f"scale ({service.scale}) and deploy.replicas ({replicas}) differ; keep one")
        for dep, spec in list(service.depends_on.items()):
            if dep == sname:
                self.add(sname, ("depends_on", dep), "a service cannot depend on itself")
                continue
            why = self.service_problem(dep)
            if why and dep in self.disabled and not spec.required:
                del service.depends_on[dep]  # an optional dependency that profiles disabled: dropped, as compose-go does
            elif why:
                self.add(sname, ("depends_on", dep), f"depends on {why}")
        for index, link in enumerate(service.links):
            why = self.service_problem(link.split(":", 1)[0])
            if why:
                self.add(sname, ("links", index), f"links to {why}")
        for index, entry in enumerate(service.volumes_from):
            if not entry.startswith("container:"):
                why = self.service_problem(entry.split(":", 1)[0])
                if why:
                    self.add(sname, ("volumes_from", index), f"takes volumes from {why}")
        mode = service.network_mode
        if mode is not None:
            if mode.startswith("service:"):
                why = self.service_problem(mode[len("service:") :])
                if why:
                    self.add(sname, ("network_mode",), f"shares the network of {why}")
            elif mode not in NETWORK_MODES and not mode.startswith("container:"):
                self.add(sname, ("network_mode",), f"invalid network_mode {mode!r}; use none, host, bridge, service:NAME or container:NAME")
            if service.networks:
                self.add(sname, ("network_mode",), "network_mode and networks cannot be used together; keep one")
        for net in service.networks:
            if net != "default" and net not in model.networks:
                self.add(sname, ("networks", net), _undefined("network", net, model.networks))
        for index, mount in enumerate(service.volumes):
            if mount.type == "volume" and mount.source and mount.source not in model.volumes:
                self.add(sname, ("volumes", index), _undefined("volume", mount.source, model.volumes))
        for section in ("secrets", "configs"):
            declared = getattr(model, section)
            for index, ref in enumerate(getattr(service, section) or []):
                if ref.source not in declared:
                    self.add(sname, (section, index), _undefined(section[:-1], ref.source, declared))


    def check_cycles(self) -> None:
        """A dependency cycle among the active services, named as `up` names it, at the
        reference that closes it (compose-go's graph.CheckCycle does this on load)."""
        # A service naming itself is reported as that, not as a cycle.
        edges = {name: [ref[0] for ref in service_references(svc) if ref[0] != name] for name, svc in self.active.items()}
        cycle = find_cycle(edges)
        if cycle is None:
            return
        source, target = cycle[0], cycle[1]
        service = self.active[source]
        kind = next(ref[1] for ref in service_references(service) if ref[0] == target)
        if kind == "depends_on":
            path: tuple = ("depends_on", target)
        elif kind == "network_mode":
            path = ("network_mode",)
        else:  # links or volumes_from: the entry's index
            path = (kind, next(i for i, e in enumerate(getattr(service, kind)) if e.split(":", 1)[0] == target))
        self.add(source, path, "dependency cycle: " + " -> ".join(cycle) + "; remove one of these references")


def _undefined(kind: str, name: str, declared) -> str:
    hint = suggest(name, declared)
    return f"undefined {kind} '{name}'" + (hint or f"; declare it under the top-level '{kind}s:'")


def _read_env_files(sname: str, service: Service, raw: Map | None, variables: dict, problems: Problems) -> None:
    """Merge the service's env files under its `environment` and fill bare `KEY` entries from
    the variables (OS environment and .env), as `docker compose config` shows them."""
    env: dict[str, str | None] = {}
    for index, env_file in enumerate(service.env_file or []):
        path = Path(env_file.path)
        if not path.is_file():
            if env_file.required:
                mark = locate(raw, ("env_file", index)) if raw is not None else None
                problems.add(mark, ("services", sname, "env_file", index), f"env file not found: {path}")
            continue
        try:
            env.update(read_env_file(path, variables.get))
        except StackError as err:
            problems.extend(err)
    env.update(service.environment)
    resolved = {key: (variables.get(key) if value is None else value) for key, value in env.items()}
    if service.env_file or resolved != service.environment:
        service.environment = resolved
