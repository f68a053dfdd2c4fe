"""`orch service create|update` flags -> the Docker Engine API's ServiceSpec JSON, as the
docker CLI 28 builds it (docker/cli cli/command/service/opts.go and update.go; the bodies it
sends are in tests/unit/cluster/data/dockercli).

- create: `spec_from_flags(args)` builds the whole spec. As docker's CLI does, it always sends
  `Init` (false unless --init) and `DNSConfig`, puts the command after the image in `Args`
  (--entrypoint is `Command`), tags an untagged image `:latest`, spells capabilities
  CAP_NAME, and writes UpdateConfig, RollbackConfig and RestartPolicy (with docker's defaults
  for the fields not given) only when one of their flags is given.
- update: `apply_update(spec, args)` changes what the flags name in the spec the agent
  answered, and leaves the rest as it is; list flags come in -add/-rm pairs.

The flags' values (units, --publish, --mount, ...) are parsed by serviceopts.py. Units are
docker's: durations as Go writes them (10s, 1m30s, 500ms) -> nanoseconds, sizes as
go-units' RAMInBytes (64m = 64 MiB), CPUs as decimals -> nano-CPUs.

Pure: flags in, JSON values out; the environment and files (--env KEY, --env-file) come in
through arguments. A mistake is one InvalidArgument line that names the flag.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Mapping

from orch.cli.serviceopts import (
    normalize_cap,
    normalize_image,
    parse_bool,
    parse_bytes,
    parse_cpus,
    parse_duration,
    parse_env,
    parse_file_ref,
    parse_host,
    parse_int,
    parse_kv,
    parse_mount,
    parse_network,
    parse_placement_pref,
    parse_publish,
    parse_ratio,
    parse_ulimit,
    read_env_files,
)
from orch.errors import InvalidArgument

# Flags that take no value, also written --flag=true / --flag=false (pflag's booleans).
BOOL_FLAGS = ("--init", "--read-only", "--tty", "--no-healthcheck", "--detach", "--quiet", "--with-registry-auth",
              "--no-resolve-image", "--force", "--rollback")
_SHORT_BOOLS = {"-t": "--tty", "-d": "--detach", "-q": "--quiet"}

# -- the parsers -------------------------------------------------------------------------------------


def split_bools(argv: list[str]) -> tuple[list[str], dict[str, bool]]:
    """pflag's `--init=false`: argparse cannot give a store_true flag a value, so explicit
    values of the boolean flags are taken out here and returned by flag name."""
    out, explicit = [], {}
    for word in argv:
        if word == "--":
            out.append(word)
            continue
        name, sep, value = word.partition("=")
        name = _SHORT_BOOLS.get(name, name) if sep else name
        if sep and name in BOOL_FLAGS:
            explicit[name] = parse_bool(value, name)
            continue
        out.append(word)
    return out, explicit


def bool_flag(args: argparse.Namespace, explicit: dict[str, bool], name: str) -> bool | None:
    """True/False when the flag was given (bare or with a value), else None."""
    if name in explicit:
        return explicit[name]
    return True if getattr(args, name.lstrip("-").replace("-", "_"), False) else None


def add_common_flags(p: argparse.ArgumentParser, *, update: bool) -> None:
    """The flags `service create` and `service update` share."""
    add = p.add_argument
    add("-d", "--detach", action="store_true", help="exit immediately instead of waiting for the service to converge")
    add("-q", "--quiet", action="store_true", help="suppress progress output")
    add("--with-registry-auth", action="store_true", help="send registry authentication details to swarm agents")
    add("--no-resolve-image", action="store_true", help="do not query the registry (orch never does)")
    add("--replicas", metavar="uint", help="number of tasks")
    add("--replicas-max-per-node", metavar="uint", help="maximum number of tasks per node (0 = unlimited)")
    add("--entrypoint", metavar="command", help="overwrite the default ENTRYPOINT of the image")
    add("-u", "--user", help="username or UID (format: <name|uid>[:<group|gid>])")
    add("-w", "--workdir", help="working directory inside the container")
    add("--hostname", help="container hostname")
    add("--init", action="store_true", help="use an init inside each service container")
    add("--read-only", action="store_true", help="mount the container's root filesystem as read only")
    add("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    add("--stop-grace-period", metavar="duration", help="time to wait before force killing a container")
    add("--stop-signal", help="signal to stop the container")
    add("--endpoint-mode", choices=("vip", "dnsrr"), help="endpoint mode (vip or dnsrr)")
    add("--limit-cpu", metavar="decimal")
    add("--limit-memory", metavar="bytes")
    add("--limit-pids", metavar="int")
    add("--reserve-cpu", metavar="decimal")
    add("--reserve-memory", metavar="bytes")
    add("--health-cmd", metavar="string", help="command to run to check health")
    add("--health-interval", metavar="duration")
    add("--health-retries", metavar="int")
    add("--health-timeout", metavar="duration")
    add("--health-start-period", metavar="duration")
    add("--health-start-interval", metavar="duration")
    add("--no-healthcheck", action="store_true", help="disable any container-specified HEALTHCHECK")
    add("--restart-condition", choices=("none", "on-failure", "any"))
    add("--restart-delay", metavar="duration")
    add("--restart-max-attempts", metavar="uint")
    add("--restart-window", metavar="duration")
    for kind in ("update", "rollback"):
        add(f"--{kind}-parallelism", metavar="uint")
        add(f"--{kind}-delay", metavar="duration")
        add(f"--{kind}-failure-action", choices=("pause", "continue", "rollback") if kind == "update" else ("pause", "continue"))
        add(f"--{kind}-monitor", metavar="duration")
        add(f"--{kind}-max-failure-ratio", metavar="float")
        add(f"--{kind}-order", choices=("start-first", "stop-first"))
    add("--log-driver", help="logging driver for service")
    add("--log-opt", action="append", default=[], metavar="list")
    add("--cap-add", action="append", default=[], metavar="list")
    add("--cap-drop", action="append", default=[], metavar="list")
    suffix = "-add" if update else ""
    lists = ("constraint", "container-label", "dns", "dns-option", "dns-search", "env", "host", "label", "mount", "network",
             "placement-pref", "publish", "secret", "config", "sysctl", "ulimit")
    for name in lists:
        flags = [f"--{name}{suffix}"]
        if not update and name in ("env", "label", "publish"):
            flags.insert(0, {"env": "-e", "label": "-l", "publish": "-p"}[name])
        add(*flags, dest=name.replace("-", "_"), action="append", default=[], metavar="list")
        if update:
            add(f"--{name}-rm", dest=f"{name.replace('-', '_')}_rm", action="append", default=[], metavar="list")
    if not update:
        add("--env-file", action="append", default=[], metavar="list")
        add("--name", help="service name")
        add("--mode", default="replicated", choices=("replicated", "global"), help='service mode ("replicated" or "global")')


def _changed(args: argparse.Namespace, *names: str) -> bool:
    return any(getattr(args, n, None) not in (None, [], False) for n in names)


def _update_config(args: argparse.Namespace, kind: str, base: dict | None) -> dict | None:
    names = [f"{kind}_{f}" for f in ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order")]
    if not _changed(args, *names):
        return base
    out = dict(base) if base else {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000, "MaxFailureRatio": 0,
                                   "Order": "stop-first"}
    flag = f"--{kind}"
    if getattr(args, f"{kind}_parallelism") is not None:
        out["Parallelism"] = parse_int(getattr(args, f"{kind}_parallelism"), f"{flag}-parallelism")
    if getattr(args, f"{kind}_delay") is not None:
        out["Delay"] = parse_duration(getattr(args, f"{kind}_delay"), f"{flag}-delay")
    if getattr(args, f"{kind}_failure_action") is not None:
        out["FailureAction"] = getattr(args, f"{kind}_failure_action")
    if getattr(args, f"{kind}_monitor") is not None:
        out["Monitor"] = parse_duration(getattr(args, f"{kind}_monitor"), f"{flag}-monitor")
    if getattr(args, f"{kind}_max_failure_ratio") is not None:
        out["MaxFailureRatio"] = parse_ratio(getattr(args, f"{kind}_max_failure_ratio"), f"{flag}-max-failure-ratio")
    if getattr(args, f"{kind}_order") is not None:
        out["Order"] = getattr(args, f"{kind}_order")
    order = ("Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio", "Order")
    return {k: out[k] for k in order if k in out}


def _restart_policy(args: argparse.Namespace, base: dict | None) -> dict | None:
    if not _changed(args, "restart_condition", "restart_delay", "restart_max_attempts", "restart_window"):
        return base
    out = dict(base) if base else {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0}
    if args.restart_condition is not None:
        out["Condition"] = args.restart_condition
    if args.restart_delay is not None:
        out["Delay"] = parse_duration(args.restart_delay, "--restart-delay")
    if args.restart_max_attempts is not None:
        out["MaxAttempts"] = parse_int(args.restart_max_attempts, "--restart-max-attempts")
    if args.restart_window is not None:
        out["Window"] = parse_duration(args.restart_window, "--restart-window")
    return out


def _healthcheck(args: argparse.Namespace, no_healthcheck: bool | None, base: dict | None) -> dict | None:
    health_flags = ("health_cmd", "health_interval", "health_retries", "health_timeout", "health_start_period",
                    "health_start_interval")
    if no_healthcheck:
        if _changed(args, *health_flags):
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not _changed(args, *health_flags):
        return base
    out = dict(base) if base and base.get("Test") != ["NONE"] else {}
    if args.health_cmd is not None:
        out["Test"] = ["CMD-SHELL", args.health_cmd] if args.health_cmd else []
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                      ("start_interval", "StartInterval")):
        value = getattr(args, f"health_{flag}")
        if value is not None:
            ns = parse_duration(value, f"--health-{flag.replace('_', '-')}")
            if 0 < ns < 1_000_000:
                raise InvalidArgument(f"--health-{flag.replace('_', '-')} cannot be less than 1ms")
            out[key] = ns
    if args.health_retries is not None:
        out["Retries"] = parse_int(args.health_retries, "--health-retries")
    order = ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries")
    return {k: out[k] for k in order if k in out}


def _resources(args: argparse.Namespace, base: dict | None) -> dict:
    out = {"Limits": dict((base or {}).get("Limits") or {}), "Reservations": dict((base or {}).get("Reservations") or {})}
    for flag, section, key, parse in (("limit_cpu", "Limits", "NanoCPUs", parse_cpus), ("limit_memory", "Limits", "MemoryBytes", parse_bytes),
                                      ("limit_pids", "Limits", "Pids", lambda v, f: parse_int(v, f)),
                                      ("reserve_cpu", "Reservations", "NanoCPUs", parse_cpus),
                                      ("reserve_memory", "Reservations", "MemoryBytes", parse_bytes)):
        value = getattr(args, flag)
        if value is not None:
            n = parse(value, "--" + flag.replace("_", "-"))
            if n:
                out[section][key] = n
            else:
                out[section].pop(key, None)
    return out


def _labels(items: list[str], flag: str) -> dict[str, str]:
    return dict(parse_kv(item, flag) for item in items)


def spec_from_flags(args: argparse.Namespace, explicit: dict[str, bool], *, environ: Mapping[str, str],
                    read_file: Callable[[str], str]) -> dict:
    """`orch service create`'s ServiceSpec."""
    if args.mode == "global" and args.replicas is not None:
        raise InvalidArgument("replicas can only be used with replicated mode")
    if args.mode == "global" and args.replicas_max_per_node is not None:
        raise InvalidArgument("replicas-max-per-node can only be used with replicated mode")
    container: dict = {"Image": normalize_image(args.image)}
    if args.container_label:
        container["Labels"] = _labels(args.container_label, "--container-label")
    if args.entrypoint is not None:
        container["Command"] = shlex.split(args.entrypoint)
    if args.args:
        container["Args"] = list(args.args)
    if args.hostname:
        container["Hostname"] = args.hostname
    env = read_env_files(args.env_file, read_file, environ) + parse_env(args.env, environ)
    if env:
        container["Env"] = env
    if args.workdir:
        container["Dir"] = args.workdir
    if args.user:
        container["User"] = args.user
    container["Init"] = bool(bool_flag(args, explicit, "--init"))
    if args.stop_signal:
        container["StopSignal"] = args.stop_signal
    if bool_flag(args, explicit, "--tty"):
        container["TTY"] = True
    if bool_flag(args, explicit, "--read-only"):
        container["ReadOnly"] = True
    if args.mount:
        container["Mounts"] = [parse_mount(m) for m in args.mount]
    if args.stop_grace_period is not None:
        container["StopGracePeriod"] = parse_duration(args.stop_grace_period, "--stop-grace-period")
    health = _healthcheck(args, bool_flag(args, explicit, "--no-healthcheck"), None)
    if health is not None:
        container["Healthcheck"] = health
    if args.host:
        container["Hosts"] = [parse_host(h) for h in args.host]
    dns = {k: v for k, v in (("Nameservers", args.dns), ("Search", args.dns_search), ("Options", args.dns_option)) if v}
    container["DNSConfig"] = dns
    if args.secret:
        container["Secrets"] = [parse_file_ref(s, "secret") for s in args.secret]
    if args.config:
        container["Configs"] = [parse_file_ref(c, "config") for c in args.config]
    if args.sysctl:
        container["Sysctls"] = dict(parse_kv(s, "--sysctl", allow_bare=False) for s in args.sysctl)
    if args.cap_add:
        container["CapabilityAdd"] = sorted({normalize_cap(c) for c in args.cap_add})
    if args.cap_drop:
        container["CapabilityDrop"] = sorted({normalize_cap(c) for c in args.cap_drop})
    if args.ulimit:
        container["Ulimits"] = [parse_ulimit(u) for u in args.ulimit]
    task: dict = {"ContainerSpec": container, "Resources": _resources(args, None)}
    restart = _restart_policy(args, None)
    if restart is not None:
        task["RestartPolicy"] = restart
    placement: dict = {}
    if args.constraint:
        placement["Constraints"] = list(args.constraint)
    if args.placement_pref:
        placement["Preferences"] = [parse_placement_pref(p) for p in args.placement_pref]
    if args.replicas_max_per_node is not None:
        most = parse_int(args.replicas_max_per_node, "--replicas-max-per-node")
        if most:
            placement["MaxReplicas"] = most
    task["Placement"] = placement
    if args.network:
        task["Networks"] = [parse_network(n) for n in args.network]
    if args.log_driver:
        task["LogDriver"] = {"Name": args.log_driver}
        if args.log_opt:
            task["LogDriver"]["Options"] = dict(parse_kv(o, "--log-opt", allow_bare=False) for o in args.log_opt)
    elif args.log_opt:
        raise InvalidArgument("--log-opt needs --log-driver")
    task["ForceUpdate"] = 0
    spec: dict = {}
    if args.name:
        spec["Name"] = args.name
    spec["Labels"] = _labels(args.label, "--label")
    spec["TaskTemplate"] = task
    if args.mode == "global":
        spec["Mode"] = {"Global": {}}
    else:
        spec["Mode"] = {"Replicated": {"Replicas": parse_int(args.replicas, "--replicas")} if args.replicas is not None else {}}
    for kind, key in (("update", "UpdateConfig"), ("rollback", "RollbackConfig")):
        config = _update_config(args, kind, None)
        if config is not None:
            spec[key] = config
    endpoint: dict = {"Mode": args.endpoint_mode or "vip"}
    if args.publish:
        endpoint["Ports"] = [p for text in args.publish for p in parse_publish(text)]
    spec["EndpointSpec"] = endpoint
    return spec


def apply_update(spec: dict, args: argparse.Namespace, explicit: dict[str, bool], *, environ: Mapping[str, str]) -> dict:
    """`orch service update`: the spec read from the agent, changed where the flags say."""
    import copy

    spec = copy.deepcopy(spec)
    task = spec.setdefault("TaskTemplate", {})
    c = task.setdefault("ContainerSpec", {})
    if args.image:
        c["Image"] = normalize_image(args.image)
    if args.args is not None:
        c["Args"] = shlex.split(args.args)
    if args.entrypoint is not None:
        c["Command"] = shlex.split(args.entrypoint) or None
    for flag, key in (("user", "User"), ("workdir", "Dir"), ("hostname", "Hostname"), ("stop_signal", "StopSignal")):
        value = getattr(args, flag)
        if value is not None:
            c[key] = value
    for flag, key in (("--init", "Init"), ("--read-only", "ReadOnly"), ("--tty", "TTY")):
        value = bool_flag(args, explicit, flag)
        if value is not None:
            c[key] = value
    if args.stop_grace_period is not None:
        c["StopGracePeriod"] = parse_duration(args.stop_grace_period, "--stop-grace-period")
    _update_env(c, args, environ)
    _update_map(c, "Labels", args.container_label, args.container_label_rm, "--container-label-add")
    _update_map(spec, "Labels", args.label, args.label_rm, "--label-add")
    _update_map(c, "Sysctls", args.sysctl, args.sysctl_rm, "--sysctl-add", bare=False)
    if args.mount_rm or args.mount:
        mounts = [m for m in c.get("Mounts") or [] if m.get("Target") not in set(args.mount_rm)]
        for new in (parse_mount(m) for m in args.mount):
            mounts = [m for m in mounts if m.get("Target") != new["Target"]] + [new]
        c["Mounts"] = mounts
    for name, key, kind in (("secret", "Secrets", "SecretName"), ("config", "Configs", "ConfigName")):
        added, removed = getattr(args, name), getattr(args, f"{name}_rm")
        if added or removed:
            refs = [ref for ref in c.get(key) or [] if ref.get(kind) not in set(removed)]
            for new in (parse_file_ref(t, name) for t in added):
                refs = [ref for ref in refs if ref["File"]["Name"] != new["File"]["Name"]] + [new]
            c[key] = refs
    if args.host or args.host_rm:
        gone = {parse_host(h, "--host-rm") for h in args.host_rm}
        hosts = [h for h in c.get("Hosts") or [] if h not in gone]
        c["Hosts"] = hosts + [h for h in (parse_host(x, "--host-add") for x in args.host) if h not in hosts]
    if args.ulimit or args.ulimit_rm:
        ulimits = {u["Name"]: u for u in c.get("Ulimits") or [] if u["Name"] not in set(args.ulimit_rm)}
        ulimits.update({u["Name"]: u for u in (parse_ulimit(x) for x in args.ulimit)})
        c["Ulimits"] = [ulimits[k] for k in sorted(ulimits)]
    dns = dict(c.get("DNSConfig") or {})
    for key, added, removed in (("Nameservers", args.dns, args.dns_rm), ("Search", args.dns_search, args.dns_search_rm),
                                ("Options", args.dns_option, args.dns_option_rm)):
        if added or removed:
            values = [v for v in dns.get(key) or [] if v not in set(removed)]
            dns[key] = values + [v for v in added if v not in values]
    if dns != (c.get("DNSConfig") or {}):
        c["DNSConfig"] = {k: v for k, v in dns.items() if v}
    _update_caps(c, args)
    health = _healthcheck(args, bool_flag(args, explicit, "--no-healthcheck"), c.get("Healthcheck"))
    if health is not None:
        c["Healthcheck"] = health
    task["Resources"] = _resources(args, task.get("Resources"))
    restart = _restart_policy(args, task.get("RestartPolicy"))
    if restart is not None:
        task["RestartPolicy"] = restart
    placement = dict(task.get("Placement") or {})
    if args.constraint or args.constraint_rm:
        constraints = [x for x in placement.get("Constraints") or [] if x not in set(args.constraint_rm)]
        placement["Constraints"] = constraints + [x for x in args.constraint if x not in constraints]
    if args.placement_pref or args.placement_pref_rm:
        gone = [parse_placement_pref(p, "--placement-pref-rm") for p in args.placement_pref_rm]
        prefs = [p for p in placement.get("Preferences") or [] if p not in gone]
        placement["Preferences"] = prefs + [parse_placement_pref(p, "--placement-pref-add") for p in args.placement_pref]
    if args.replicas_max_per_node is not None:
        placement["MaxReplicas"] = parse_int(args.replicas_max_per_node, "--replicas-max-per-node")
    task["Placement"] = {k: v for k, v in placement.items() if v}
    if args.network or args.network_rm:
        nets = [n for n in task.get("Networks") or [] if n.get("Target") not in set(args.network_rm)]
        for new in (parse_network(n) for n in args.network):
            if any(n.get("Target") == new["Target"] for n in nets):
                raise InvalidArgument(f"service is already attached to network {new['Target']}")
            nets.append(new)
        task["Networks"] = nets
    if args.log_driver is not None:
        task["LogDriver"] = {"Name": args.log_driver}
        if args.log_opt:
            task["LogDriver"]["Options"] = dict(parse_kv(o, "--log-opt", allow_bare=False) for o in args.log_opt)
    if bool_flag(args, explicit, "--force"):
        task["ForceUpdate"] = int(task.get("ForceUpdate") or 0) + 1
    if args.replicas is not None:
        replicated = spec.get("Mode", {}).get("Replicated")
        if replicated is None:
            raise InvalidArgument("replicas can only be used with replicated mode")
        replicated["Replicas"] = parse_int(args.replicas, "--replicas")
    for kind, key in (("update", "UpdateConfig"), ("rollback", "RollbackConfig")):
        config = _update_config(args, kind, spec.get(key))
        if config is not None:
            spec[key] = config
    endpoint = dict(spec.get("EndpointSpec") or {"Mode": "vip"})
    if args.endpoint_mode:
        endpoint["Mode"] = args.endpoint_mode
    if args.publish or args.publish_rm:
        endpoint["Ports"] = _update_ports(endpoint.get("Ports") or [], args)
    spec["EndpointSpec"] = endpoint
    return spec


def _update_env(c: dict, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    if not (args.env or args.env_rm):
        return
    env = [e for e in c.get("Env") or [] if e.split("=", 1)[0] not in set(args.env_rm)]
    for item in parse_env(args.env, environ):
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    c["Env"] = env


def _update_map(obj: dict, key: str, added: list[str], removed: list[str], flag: str, *, bare: bool = True) -> None:
    if not (added or removed):
        return
    values = {k: v for k, v in (obj.get(key) or {}).items() if k not in set(removed)}
    values.update(dict(parse_kv(item, flag, allow_bare=bare) for item in added))
    obj[key] = values


def _update_caps(c: dict, args: argparse.Namespace) -> None:
    """docker's tri-state: dropping a capability that was added removes it from the adds."""
    if not (args.cap_add or args.cap_drop):
        return
    add = {normalize_cap(x) for x in c.get("CapabilityAdd") or []}
    drop = {normalize_cap(x) for x in c.get("CapabilityDrop") or []}
    to_add = {normalize_cap(x) for x in args.cap_add}
    to_drop = {normalize_cap(x) for x in args.cap_drop}
    if "RESET" in to_add:
        add, to_add = set(), to_add - {"RESET"}
    if "RESET" in to_drop:
        drop, to_drop = set(), to_drop - {"RESET"}
    for cap in to_drop - to_add:
        if cap in add:
            add.discard(cap)
        else:
            drop.add(cap)
    for cap in to_add:
        if cap in drop:
            drop.discard(cap)
        else:
            add.add(cap)
    for key, caps in (("CapabilityAdd", add), ("CapabilityDrop", drop)):
        if caps:
            c[key] = ["ALL"] if "ALL" in caps else sorted(caps)
        else:
            c.pop(key, None)


def _update_ports(ports: list[dict], args: argparse.Namespace) -> list[dict]:
    """docker's updatePorts: remove by target port (and protocol, mode), add what is new."""
    removed = [p for text in args.publish_rm for p in parse_publish(text)]
    kept = [p for p in ports if not any(p.get("TargetPort") == r["TargetPort"] and p.get("Protocol", "tcp") == r["Protocol"]
                                        for r in removed)]
    key = lambda p: f"{p.get('PublishedPort', 0)}/{p.get('Protocol', 'tcp')}"  # noqa: E731
    have = {key(p) for p in kept}
    for new in (p for text in args.publish for p in parse_publish(text)):
        if key(new) not in have:
            kept.append(new)
            have.add(key(new))
    return sorted(kept, key=key)
