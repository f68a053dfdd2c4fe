"""The name-resolution files a container gets: /etc/hosts, /etc/hostname, /etc/resolv.conf.

Pure: each function takes values and returns the text; the runtime writes the files (docker
keeps them in the container's directory and bind-mounts them over the image's copies).
"""

from __future__ import annotations

from dataclasses import dataclass

# The loopback and IPv6 lines docker writes into every /etc/hosts.
_HOSTS_HEADER = (
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
)


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def render_hostname(hostname: str) -> str:
    return hostname + "\n"


def render_hosts(
    hostname: str,
    addresses: tuple[str, ...] = (),
    *,
    domainname: str = "",
    extra_hosts: tuple[tuple[str, str], ...] = (),
) -> str:
    """/etc/hosts: loopback lines, `--add-host` entries, then the container's own addresses.

    `addresses` are the container's addresses on its networks, first network first; each maps
    to the hostname (and the FQDN first when a domain name is set, as glibc expects).
    """
    lines = [f"{ip}\t{names}" for ip, names in _HOSTS_HEADER]
    lines += [f"{ip}\t{name}" for name, ip in extra_hosts]
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    lines += [f"{ip}\t{names}" for ip in addresses]
    return "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    """The nameserver, search and options lines of a resolv.conf (comments ignored)."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, rest = words[0], words[1:]
        if key == "nameserver" and rest:
            nameservers.append(rest[0])
        elif key in ("search", "domain"):
            # The last search or domain line wins, as in glibc.
            search = list(rest)
        elif key == "options":
            options.extend(rest)
    return ResolvConf(tuple(nameservers), tuple(search), tuple(options))


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def compute_resolv_conf(
    host: ResolvConf,
    *,
    embedded_dns: str | None,
    dns: tuple[str, ...] = (),
    dns_search: tuple[str, ...] = (),
    dns_options: tuple[str, ...] = (),
) -> ResolvConf:
    """What a container's resolv.conf says.

    On a user network (`embedded_dns` is the address of orch's DNS server for it) the only
    nameserver is the embedded server, which forwards what it cannot answer to the host's
    resolvers (or to `dns` when given); `ndots:0` as docker sets it. Without embedded DNS (the
    host's or no network) the container gets `dns` or the host's nameservers minus loopback
    ones, which would point at the container itself; with none left, Google's as docker does.
    """
    search = dns_search or host.search
    if embedded_dns is not None:
        options = dns_options or tuple(o for o in host.options if not o.startswith("ndots")) + ("ndots:0",)
        return ResolvConf((embedded_dns,), search, options)
    servers = dns or tuple(ns for ns in host.nameservers if not _is_loopback(ns))
    if not servers:
        servers = ("8.8.8.8", "8.8.4.4")
    return ResolvConf(servers, search, dns_options or host.options)


def render_resolv_conf(conf: ResolvConf) -> str:
    lines = [f"nameserver {ns}" for ns in conf.nameservers]
    if conf.search:
        lines.append("search " + " ".join(conf.search))
    if conf.options:
        lines.append("options " + " ".join(conf.options))
    return "\n".join(lines) + "\n"
