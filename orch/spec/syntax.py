"""Short syntaxes of the compose file, turned into their long form.

Each parser takes what the user wrote and returns the long form as plain dicts (the models
then validate it), or raises ValueError with a message that shows the accepted form. They are
pure: relative paths are resolved against a project directory the caller passes.
"""

import ipaddress
import os
import shlex
from pathlib import Path

PROTOCOLS = ("tcp", "udp", "sctp")
# Options of the short volume syntax `SOURCE:TARGET:OPTIONS`.
_PROPAGATIONS = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
_SELINUX = ("z", "Z")


def scalar_text(value) -> str:
    """A YAML scalar as compose turns it into a string: true -> 'true', 1.5 -> '1.5'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def command_list(value) -> list[str] | None:
    """`command: echo hi` -> ['echo', 'hi'] (shell words, as compose splits it)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as err:
            raise ValueError(f"cannot split {value!r} into words: {err}") from None
    if isinstance(value, list):
        if any(isinstance(item, (dict, list)) for item in value):
            raise ValueError("expected a string or a list of strings")
        return [scalar_text(item) for item in value]
    raise ValueError(f"expected a string or a list of strings, got {type_name(value)}")


def string_list(value) -> list[str]:
    """A string or a list of strings -> list of strings (dns, tmpfs, cap_add, ...)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [scalar_text(value)]
    if isinstance(value, list):
        bad = [item for item in value if isinstance(item, (dict, list)) or item is None]
        if bad:
            raise ValueError(f"expected a list of strings, found {type_name(bad[0])}")
        return [scalar_text(item) for item in value]
    raise ValueError(f"expected a string or a list of strings, got {type_name(value)}")


def list_or_dict(value, *, sep: str = "=", allow_null: bool = True) -> dict[str, str | None]:
    """`[A=1, B]` or `{A: 1, B: null}` -> {'A': '1', 'B': None} (environment, labels, args)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        out: dict[str, str | None] = {}
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                raise ValueError(f"value of '{key}' must be a string, number or boolean, not {type_name(item)}")
            out[str(key)] = None if item is None and allow_null else ("" if item is None else scalar_text(item))
        return out
    if isinstance(value, list):
        out = {}
        for item in value:
            if isinstance(item, (dict, list)) or item is None:
                raise ValueError(f"expected 'KEY{sep}VALUE' strings, found {type_name(item)}")
            text = scalar_text(item)
            key, has_sep, rest = text.partition(sep)
            if not key:
                raise ValueError(f"invalid entry {text!r}; write 'KEY{sep}VALUE'")
            out[key] = rest if has_sep else (None if allow_null else "")
        return out
    raise ValueError(f"expected a mapping or a list of 'KEY{sep}VALUE' strings, got {type_name(value)}")


def type_name(value) -> str:
    """How an error message names the type of a value the user wrote."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (dict, "a mapping"), (list, "a list"), (str, "a string"), ((int, float), "a number")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _port_range(text: str, what: str) -> tuple[int, int]:
    start, dash, end = text.partition("-")
    try:
        low, high = int(start), int(end) if dash else int(start)
    except ValueError:
        raise ValueError(f"invalid {what} port {text!r}; expected a number or a range like 3000-3005") from None
    if not (0 < low <= high <= 65535) and not (what == "published" and low == 0 == high):
        raise ValueError(f"invalid {what} port {text!r}; ports are 1-65535 and a range goes low-high")
    return low, high


def parse_ports(value) -> list[dict]:
    """One short-syntax port ('127.0.0.1:8080-8081:80-81/udp') -> its long-syntax entries.

    A range of container ports is expanded to one entry each, paired with a published range
    of the same length, as compose-go does; a single container port keeps a published range
    as a string ('8000-8005')."""
    text = scalar_text(value).strip()
    body, slash, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise ValueError(f"invalid protocol {protocol!r} in port {text!r}; use tcp, udp or sctp")
    host_ip = None
    if body.startswith("["):
        close = body.find("]")
        if close < 0 or body[close + 1 : close + 2] != ":":
            raise ValueError(f"invalid port {text!r}; write [IPv6]:PUBLISHED:TARGET")
        host_ip, body = body[1:close], body[close + 2 :]
        parts = body.split(":")
        if len(parts) != 2:
            raise ValueError(f"invalid port {text!r}; write [IPv6]:PUBLISHED:TARGET")
        published, target = parts
    else:
        parts = body.split(":")
        if len(parts) == 1:
            published, target = "", parts[0]
        elif len(parts) == 2:
            published, target = parts
        else:
            host_ip, published, target = ":".join(parts[:-2]), parts[-2], parts[-1]
    if host_ip is not None:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise ValueError(f"invalid host IP {host_ip!r} in port {text!r}") from None
    low, high = _port_range(target, "container")
    entry = {"mode": "ingress", "protocol": protocol}
    if host_ip:
        entry["host_ip"] = host_ip
    if high == low:
        if published:
            _port_range(published, "published")
        return [{**entry, "target": low, **({"published": published} if published else {})}]
    pubs: list[str | None]
    if not published:
        pubs = [None] * (high - low + 1)
    else:
        plow, phigh = _port_range(published, "published")
        if phigh - plow == high - low:
            pubs = [str(p) for p in range(plow, phigh + 1)]
        elif plow == phigh:
            raise ValueError(f"invalid port {text!r}: a range of container ports needs a published range of the same length")
        else:
            raise ValueError(f"invalid port {text!r}: the published and container ranges differ in length")
    return [{**entry, "target": port, **({"published": pub} if pub else {})} for port, pub in zip(range(low, high + 1), pubs)]


def is_path(source: str) -> bool:
    """A volume source that is a host path rather than a volume name."""
    return source.startswith((".", "/", "~")) or (len(source) > 1 and source[1] == ":")


def resolve_path(source: str, project_dir: Path) -> str:
    """Relative and `~` host paths become absolute, against the project directory."""
    if source.startswith("~"):
        source = os.path.expanduser(source)
    path = Path(source)
    return os.path.normpath(path if path.is_absolute() else project_dir / path)


def parse_volume(value: str, project_dir: Path) -> dict:
    """'vol:/data:ro', './src:/app', '/data' (anonymous) -> a long-syntax volume mapping."""
    text = value.strip()
    parts = text.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": _target(parts[0], text), "volume": {}}
    if len(parts) > 3:
        raise ValueError(f"invalid volume {text!r}; write SOURCE:TARGET[:OPTIONS]")
    source, target = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    if not source:
        raise ValueError(f"invalid volume {text!r}: the source is empty")
    out: dict = {"target": _target(target, text)}
    if is_path(source):
        out.update(type="bind", source=resolve_path(source, project_dir), bind={"create_host_path": True})
    else:
        out.update(type="volume", source=source, volume={})
    for option in options:
        if option in ("ro", "rw"):
            if option == "ro":
                out["read_only"] = True
        elif option in _PROPAGATIONS and out["type"] == "bind":
            out["bind"]["propagation"] = option
        elif option in _SELINUX and out["type"] == "bind":
            out["bind"]["selinux"] = option
        elif option == "nocopy" and out["type"] == "volume":
            out["volume"]["nocopy"] = True
        else:
            raise ValueError(f"invalid option {option!r} in volume {text!r}; use ro, rw, z, Z, nocopy or a propagation mode")
    return out


def _target(target: str, text: str) -> str:
    if not target.startswith("/"):
        raise ValueError(f"invalid volume {text!r}: the container path {target!r} must be absolute")
    return target


def parse_extra_hosts(value) -> dict[str, list[str]]:
    """['db:10.0.0.2', 'v6=::1'] or {db: 10.0.0.2} -> {'db': ['10.0.0.2'], 'v6': ['::1']}."""
    out: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for host, ips in value.items():
            items = ips if isinstance(ips, list) else [ips]
            out[str(host)] = [_host_ip(scalar_text(ip), str(host)) for ip in items]
        return out
    for entry in string_list(value):
        if "=" in entry:
            host, _, ip = entry.partition("=")
        else:
            host, _, ip = entry.partition(":")
        if not host or not ip:
            raise ValueError(f"invalid extra host {entry!r}; write HOST=IP or HOST:IP")
        out.setdefault(host, []).append(_host_ip(ip, host))
    return out


def _host_ip(ip: str, host: str) -> str:
    ip = ip.strip("[]")
    if ip != "host-gateway":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"invalid IP address {ip!r} for extra host {host!r}") from None
    return ip
