"""The values of `orch service create|update` flags, parsed as the docker CLI parses them
(docker/cli opts/ and cli/command/service/opts.go): Go durations, go-units sizes, CPUs,
--publish, --mount, --secret/--config, --ulimit, --network, --placement-pref, --host and
--env. Each returns the Docker Engine API's JSON for its part of a ServiceSpec; a mistake is
one InvalidArgument line naming the flag and the value, as docker words it.

Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from orch.errors import InvalidArgument

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


def parse_int(text: str, flag: str, *, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: {text!r} is not an integer') from None
    if value < minimum:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: must be {minimum} or more')
    return value


def parse_ratio(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: {text!r} is not a number') from None
    if not 0 <= value <= 1:
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: give a ratio between 0 and 1')
    return value


def parse_kv(item: str, flag: str, *, allow_bare: bool = True) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not key or (not sep and not allow_bare):
        raise InvalidArgument(f'invalid argument "{item}" for "{flag}" flag: write KEY=VALUE')
    return key, value


def parse_bool(text: str, flag: str) -> bool:
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
            mount["ReadOnly"] = parse_bool(value, flag) if sep else True
            continue
        if key == "volume-nocopy":
            volume["NoCopy"] = parse_bool(value, flag) if sep else True
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
            k, v = parse_kv(value, flag)
            volume.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, v = parse_kv(value, flag)
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
            k, v = parse_kv(value, "--network")
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
