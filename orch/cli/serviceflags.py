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

Units are docker's: durations as Go writes them (10s, 1m30s, 500ms) -> nanoseconds, sizes as
go-units' RAMInBytes (64m = 64 MiB), CPUs as decimals -> nano-CPUs.

Pure: flags in, JSON values out; the environment and files (--env KEY, --env-file) come in
through arguments. A mistake is one InvalidArgument line that names the flag.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Mapping

from orch.errors import InvalidArgument

# Flags that take no value, also written --flag=true / --flag=false (pflag's booleans).
BOOL_FLAGS = ("--init", "--read-only", "--tty", "--no-healthcheck", "--detach", "--quiet", "--with-registry-auth",
              "--no-resolve-image", "--force", "--rollback")
_SHORT_BOOLS = {"-t": "--tty", "-d": "--detach", "-q": "--quiet"}

# -- docker's units -------------------------------------------------------------------------------

_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                   "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str, flag: str) -> int:
    """Go's time.ParseDuration -> nanoseconds ("1m30s", "500ms", "0")."""
    s = text.strip()
    sign = 1
    if s[:1] in "+-" and s:
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if s == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: time: invalid duration "{text}" '
                                  f"(write e.g. 10s, 1m30s, 500ms)")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: time: invalid duration "{text}"')
    return sign * int(round(total))


_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def parse_bytes(text: str, flag: str) -> int:
    """go-units RAMInBytes: binary multiples, `64m` is 64 MiB."""
    m = _RAM.match(text.strip())
    if m is None:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: invalid size: \'{text}\' (write e.g. 64m or 1g)')
    size = float(m.group(1))
    unit = (m.group(2) or "").lower()
    return int(size * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[unit])


def parse_cpus(text: str, flag: str) -> int:
    """A decimal number of CPUs -> nano-CPUs (docker's NanoCPUs option)."""
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: {text!r} is not a number of CPUs') from None
    if value < 0 or "." in text and len(text.split(".", 1)[1]) > 9:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: value is too precise or negative')
    return int(round(value * 1e9))


def _int(text: str, flag: str, *, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: {text!r} is not an integer') from None
    if value < minimum:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: must be {minimum} or more')
    return value


def _ratio(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: {text!r} is not a number') from None
    if not 0 <= value <= 1:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: give a ratio between 0 and 1')
    return value


def _kv(item: str, flag: str, *, allow_bare: bool = True) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not key or (not sep and not allow_bare):
        raise InvalidArgument(f'invalid argument "{item}" for "{flag}" flag: write KEY=VALUE')
    return key, value


def _bool_value(text: str, flag: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true", "yes", ""):
        return True
    if lowered in ("0", "f", "false", "no"):
        return False
    raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: use true or false')


def normalize_image(image: str) -> str:
    """An untagged, undigested image gets :latest, as docker's CLI sends it."""
    if "@" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last else image + ":latest"


def normalize_cap(cap: str) -> str:
    upper = cap.strip().upper()
    return upper if upper in ("ALL", "RESET") or upper.startswith("CAP_") else "CAP_" + upper


# -- structured flags: --publish, --mount, --secret, --config, --ulimit, --network ----------------


def parse_publish(text: str) -> list[dict]:
    """`8080:80[/udp]`, `80` (a port the cluster picks), ranges `8080-8081:80-81`, or the long
    form `published=8080,target=80,protocol=udp,mode=host`."""
    flag = "--publish"
    if "=" in text:
        port: dict = {"Protocol": "tcp", "PublishMode": "ingress"}
        for field in text.split(","):
            key, sep, value = field.partition("=")
            key = key.strip().lower()
            if not sep:
                raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: invalid field {field!r}: write key=value')
            if key == "published":
                port["PublishedPort"] = _port_number(value, text)
            elif key == "target":
                port["TargetPort"] = _port_number(value, text)
            elif key == "protocol":
                if value not in ("tcp", "udp", "sctp"):
                    raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: invalid protocol {value!r}')
                port["Protocol"] = value
            elif key == "mode":
                if value not in ("ingress", "host"):
                    raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: invalid publish mode {value!r}')
                port["PublishMode"] = value
            else:
                raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: invalid field key {key!r}')
        if "TargetPort" not in port:
            raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: missing mandatory field "target"')
        return [_ordered_port(port)]
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: invalid protocol {proto!r}')
    parts = spec.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: hostip is not supported')
    published_range = _port_range(parts[0], text) if len(parts) == 2 else None
    target_range = _port_range(parts[-1], text)
    if published_range is not None and len(published_range) != len(target_range):
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: the published and target ranges differ in length')
    out = []
    for i, target in enumerate(target_range):
        port = {"Protocol": proto, "TargetPort": target, "PublishMode": "ingress"}
        if published_range is not None:
            port["PublishedPort"] = published_range[i]
        out.append(_ordered_port(port))
    return out


def _ordered_port(port: dict) -> dict:
    return {k: port[k] for k in ("Protocol", "TargetPort", "PublishedPort", "PublishMode") if k in port}


def _port_number(value: str, text: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise InvalidArgument(f'invalid argument "{text}" for "--publish" flag: {value!r} is not a port number')
    return n


def _port_range(value: str, text: str) -> list[int]:
    start, sep, end = value.partition("-")
    first = _port_number(start, text)
    last = _port_number(end, text) if sep else first
    if last < first:
        raise InvalidArgument(f'invalid argument "{text}" for "--publish" flag: invalid range {value}')
    return list(range(first, last + 1))


def parse_mount(text: str) -> dict:
    """docker's --mount CSV: type, source/src, target/dst/destination, readonly/ro,
    volume-nocopy, volume-label, volume-driver, volume-opt, tmpfs-size, tmpfs-mode,
    bind-propagation, consistency."""
    flag = "--mount"
    mount: dict = {"Type": "volume"}
    volume: dict = {}
    tmpfs: dict = {}
    bind: dict = {}
    for field in _csv(text):
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro"):
            mount["ReadOnly"] = _bool_value(value, flag) if sep else True
            continue
        if key == "volume-nocopy":
            volume["NoCopy"] = _bool_value(value, flag) if sep else True
            continue
        if not sep:
            raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: invalid field {field!r} must be a key=value pair')
        if key == "type":
            if value not in ("volume", "bind", "tmpfs"):
                raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: mounts of type {value} are not supported; '
                                      f"use volume, bind or tmpfs")
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "dst", "destination"):
            mount["Target"] = value
        elif key == "consistency":
            mount["Consistency"] = value
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key == "volume-label":
            k, v = _kv(value, flag)
            volume.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, v = _kv(value, flag)
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            tmpfs["SizeBytes"] = parse_bytes(value, flag)
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: tmpfs-mode {value!r} is not octal') from None
        else:
            raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: unexpected key {key!r} in {field!r}')
    if not mount.get("Target"):
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: target is required')
    kind = mount["Type"]
    if volume and kind != "volume":
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: cannot mix volume options with type {kind}')
    if tmpfs and kind != "tmpfs":
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: cannot mix tmpfs options with type {kind}')
    if bind and kind != "bind":
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: cannot mix bind options with type {kind}')
    if kind == "bind" and not mount.get("Source"):
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: source is required when specifying a bind mount')
    ordered = {k: mount[k] for k in ("Type", "Source", "Target", "ReadOnly", "Consistency") if k in mount}
    if bind:
        ordered["BindOptions"] = bind
    if volume:
        ordered["VolumeOptions"] = volume
    if tmpfs:
        ordered["TmpfsOptions"] = tmpfs
    return ordered


def _csv(text: str) -> list[str]:
    import csv

    return next(csv.reader([text])) if text else []


def parse_file_ref(text: str, kind: str) -> dict:
    """--secret / --config: `NAME`, or `source=NAME,target=PATH,uid=,gid=,mode=0400`."""
    flag = f"--{kind}"
    name_key = "SecretName" if kind == "secret" else "ConfigName"
    file = {"Name": "", "UID": "0", "GID": "0", "Mode": 0o444}
    source = ""
    if "=" not in text:
        source = text
    else:
        for field in _csv(text):
            key, sep, value = field.partition("=")
            key = key.strip().lower()
            if not sep:
                raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: invalid field {field!r}: write key=value')
            if key in ("source", "src"):
                source = value
            elif key == "target":
                file["Name"] = value
            elif key == "uid":
                file["UID"] = value
            elif key == "gid":
                file["GID"] = value
            elif key == "mode":
                try:
                    file["Mode"] = int(value, 8)
                except ValueError:
                    raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: mode {value!r} is not octal') from None
            else:
                raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: invalid field key {key!r}')
    if not source:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: source is required')
    file["Name"] = file["Name"] or source
    return {"File": file, name_key: source}


def parse_ulimit(text: str) -> dict:
    name, sep, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        soft_n = int(soft)
        hard_n = int(hard) if hard else soft_n
    except ValueError:
        soft_n = hard_n = -2
    if not name or not sep or soft_n < -1 or hard_n < -1:
        raise InvalidArgument(f'invalid argument "{text}" for "--ulimit" flag: write NAME=SOFT[:HARD], e.g. nofile=1024:2048')
    return {"Name": name, "Hard": hard_n, "Soft": soft_n}


def parse_network(text: str) -> dict:
    """--network NAME, or `name=NAME,alias=A,driver-opt=K=V`."""
    if "=" not in text:
        return {"Target": text}
    out: dict = {}
    for field in _csv(text):
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if key in ("name", "target"):
            out["Target"] = value
        elif key == "alias":
            out.setdefault("Aliases", []).append(value)
        elif key == "driver-opt":
            k, v = _kv(value, "--network")
            out.setdefault("DriverOpts", {})[k] = v
        else:
            raise InvalidArgument(f'invalid argument "{text}" for "--network" flag: invalid field key {key!r}')
    if not out.get("Target"):
        raise InvalidArgument(f'invalid argument "{text}" for "--network" flag: network name/id is not specified')
    return out


def parse_placement_pref(text: str, flag: str = "--placement-pref") -> dict:
    strategy, sep, descriptor = text.partition("=")
    if not sep or not descriptor:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: write spread=node.labels.KEY')
    if strategy.lower() != "spread":
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: unsupported placement preference {strategy} '
                              f"(only spread is supported)")
    return {"Spread": {"SpreadDescriptor": descriptor}}


def parse_host(text: str, flag: str = "--host") -> str:
    """docker's host:ip -> the hosts(5) line "ip host"."""
    host, sep, ip = text.partition(":")
    if not sep or not host or not ip:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: write HOST:IP')
    return f"{ip} {host}"


def parse_env(items: list[str], environ: Mapping[str, str]) -> list[str]:
    """KEY=VALUE, or KEY alone: its value here, as docker's ValidateEnv does."""
    out = []
    for item in items:
        if "=" in item:
            out.append(item)
        elif item in environ:
            out.append(f"{item}={environ[item]}")
        else:
            out.append(item)
    return out


def read_env_files(paths: list[str], read_file: Callable[[str], str], environ: Mapping[str, str]) -> list[str]:
    out = []
    for path in paths:
        try:
            text = read_file(path)
        except OSError as err:
            raise InvalidArgument(f"--env-file {path}: {err.strerror or err}") from None
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out += parse_env([line], environ)
    return out


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
            explicit[name] = _bool_value(value, name)
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
        out["Parallelism"] = _int(getattr(args, f"{kind}_parallelism"), f"{flag}-parallelism")
    if getattr(args, f"{kind}_delay") is not None:
        out["Delay"] = parse_duration(getattr(args, f"{kind}_delay"), f"{flag}-delay")
    if getattr(args, f"{kind}_failure_action") is not None:
        out["FailureAction"] = getattr(args, f"{kind}_failure_action")
    if getattr(args, f"{kind}_monitor") is not None:
        out["Monitor"] = parse_duration(getattr(args, f"{kind}_monitor"), f"{flag}-monitor")
    if getattr(args, f"{kind}_max_failure_ratio") is not None:
        out["MaxFailureRatio"] = _ratio(getattr(args, f"{kind}_max_failure_ratio"), f"{flag}-max-failure-ratio")
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
        out["MaxAttempts"] = _int(args.restart_max_attempts, "--restart-max-attempts")
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
        out["Retries"] = _int(args.health_retries, "--health-retries")
    order = ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries")
    return {k: out[k] for k in order if k in out}


def _resources(args: argparse.Namespace, base: dict | None) -> dict:
    out = {"Limits": dict((base or {}).get("Limits") or {}), "Reservations": dict((base or {}).get("Reservations") or {})}
    for flag, section, key, parse in (("limit_cpu", "Limits", "NanoCPUs", parse_cpus), ("limit_memory", "Limits", "MemoryBytes", parse_bytes),
                                      ("limit_pids", "Limits", "Pids", lambda v, f: _int(v, f)),
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
    return dict(_kv(item, flag) for item in items)


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
        container["Sysctls"] = dict(_kv(s, "--sysctl", allow_bare=False) for s in args.sysctl)
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
        most = _int(args.replicas_max_per_node, "--replicas-max-per-node")
        if most:
            placement["MaxReplicas"] = most
    task["Placement"] = placement
    if args.network:
        task["Networks"] = [parse_network(n) for n in args.network]
    if args.log_driver:
        task["LogDriver"] = {"Name": args.log_driver}
        if args.log_opt:
            task["LogDriver"]["Options"] = dict(_kv(o, "--log-opt", allow_bare=False) for o in args.log_opt)
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
        spec["Mode"] = {"Replicated": {"Replicas": _int(args.replicas, "--replicas")} if args.replicas is not None else {}}
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
        placement["MaxReplicas"] = _int(args.replicas_max_per_node, "--replicas-max-per-node")
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
            task["LogDriver"]["Options"] = dict(_kv(o, "--log-opt", allow_bare=False) for o in args.log_opt)
    if bool_flag(args, explicit, "--force"):
        task["ForceUpdate"] = int(task.get("ForceUpdate") or 0) + 1
    if args.replicas is not None:
        replicated = spec.get("Mode", {}).get("Replicated")
        if replicated is None:
            raise InvalidArgument("replicas can only be used with replicated mode")
        replicated["Replicas"] = _int(args.replicas, "--replicas")
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
    values.update(dict(_kv(item, flag, allow_bare=bare) for item in added))
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
