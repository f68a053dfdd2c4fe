"""What the metadata instructions do to an image's config. Pure.

ENV, LABEL, EXPOSE, USER, VOLUME, WORKDIR, CMD, ENTRYPOINT, HEALTHCHECK, STOPSIGNAL, SHELL,
ONBUILD and MAINTAINER change only the image config (the OCI config's "config" object, in
docker's key names); each gets a history entry marked `"empty_layer": true`, as docker marks
them. Arguments arrive expanded (the builder expands variables first, per buildkit's list of
instructions that expand: ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR).

The functions take the inner config dict and return a new one; they never mutate their input.
"""

import copy
import json

from orch.build.dockerfile_checks import parse_duration
from orch.errors import UserError

DEFAULT_SHELL = ["/bin/sh", "-c"]


def shell_of(inner: dict) -> list[str]:
    return list(inner.get("Shell") or DEFAULT_SHELL)


def command_words(args: list[str], is_json: bool, inner: dict) -> list[str]:
    """The argv of RUN/CMD/ENTRYPOINT: the JSON form as is, the shell form through SHELL."""
    if is_json:
        return list(args)
    return shell_of(inner) + [" ".join(args)]


def set_env(inner: dict, pairs: list[tuple[str, str]]) -> dict:
    out = copy.deepcopy(inner)
    env = list(out.get("Env") or [])
    for key, value in pairs:
        env = [e for e in env if e.split("=", 1)[0] != key]
        env.append(f"{key}={value}")
    out["Env"] = env
    return out


def env_dict(inner: dict) -> dict[str, str]:
    out = {}
    for e in inner.get("Env") or []:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def set_labels(inner: dict, pairs: list[tuple[str, str]]) -> dict:
    out = copy.deepcopy(inner)
    labels = dict(out.get("Labels") or {})
    labels.update(pairs)
    out["Labels"] = labels
    return out


def port_list(ports: list[str]) -> list[str]:
    """EXPOSE's words as "NUMBER/PROTO", ranges spread out, in the order written."""
    out = []
    for port in ports:
        number, _, proto = port.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise UserError(f"EXPOSE {port}: unknown protocol '{proto}'; use tcp, udp or sctp")
        low, _, high = number.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise UserError(f"EXPOSE {port}: invalid port; use NUMBER[/PROTO] or LOW-HIGH[/PROTO]")
        out += [f"{n}/{proto}" for n in range(int(low), int(high or low) + 1)]
    return out


def add_ports(inner: dict, ports: list[str]) -> dict:
    out = copy.deepcopy(inner)
    exposed = dict(out.get("ExposedPorts") or {})
    for port in port_list(ports):
        exposed[port] = {}
    out["ExposedPorts"] = exposed
    return out


def add_volumes(inner: dict, paths: list[str]) -> dict:
    out = copy.deepcopy(inner)
    volumes = dict(out.get("Volumes") or {})
    for p in paths:
        if not p.strip():
            raise UserError("VOLUME specified can not be an empty string")
        volumes[p] = {}
    out["Volumes"] = volumes
    return out


def join_workdir(current: str, path: str) -> str:
    """WORKDIR is relative to the previous one; the result is clean and absolute."""
    full = path if path.startswith("/") else (current or "/").rstrip("/") + "/" + path
    parts: list[str] = []
    for p in full.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    return "/" + "/".join(parts)


def set_key(inner: dict, key: str, value) -> dict:
    out = copy.deepcopy(inner)
    out[key] = value
    return out


def set_entrypoint(inner: dict, argv: list[str]) -> dict:
    # docker: "If CMD is defined from the base image, setting ENTRYPOINT will reset CMD to an
    # empty value": a Cmd set earlier in this Dockerfile is reset too, and a later CMD wins.
    out = copy.deepcopy(inner)
    out["Entrypoint"] = argv
    out["Cmd"] = None
    return out


def healthcheck(inner: dict, args: list[str], flags: dict, is_json: bool) -> dict:
    """docker's Healthcheck object: Test plus durations in nanoseconds."""
    if args[0].upper() == "NONE":
        return set_key(inner, "Healthcheck", {"Test": ["NONE"]})
    rest = args[1:]
    test = ["CMD", *rest] if is_json else ["CMD-SHELL", " ".join(rest)]
    check: dict = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        if flag in flags:
            check[key] = int(round(parse_duration(flags[flag], f"--{flag}") * 1e9))
    if "retries" in flags:
        check["Retries"] = int(flags["retries"])
    return set_key(inner, "Healthcheck", check)


def add_onbuild(inner: dict, trigger: str) -> dict:
    out = copy.deepcopy(inner)
    out["OnBuild"] = list(out.get("OnBuild") or []) + [trigger]
    return out


def history_text(keyword: str, text: str) -> str:
    """An instruction as one line: the cache key's text, and the history's created_by where
    buildkit writes the same (ENV, LABEL, USER, WORKDIR, ...)."""
    return f"{keyword} {text}".strip()


def json_args(argv: list[str]) -> str:
    return json.dumps(argv)


# -- the history's created_by, as buildkit's dockerfile2llb writes it ----------------------
#
# buildkit formats some values with Go's fmt verbs: %q of a []string (CMD, ENTRYPOINT) is
# ["a" "b"], %v (VOLUME, SHELL, EXPOSE) is [a b], %+v of the healthcheck names its fields.
# These texts are for people; they can be ambiguous ("VOLUME [/a b]"), so cache keys are
# made from the JSON forms instead.

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """Go's strconv.Quote: printable characters as they are, the rest escaped."""
    out = []
    for char in text:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif 0xDC80 <= ord(char) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def go_list(items: list[str]) -> str:
    """A []string printed with Go's %v."""
    return "[" + " ".join(items) + "]"


def go_quoted_list(items: list[str]) -> str:
    """A []string printed with Go's %q."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def go_duration(ns: int) -> str:
    """Go's time.Duration.String(): 0s, 500ms, 1.5s, 1m30s, 1h0m0s."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def frac(value: int, digits: int) -> str:
        return "." + f"{value:0{digits}d}".rstrip("0") if digits and value else ""

    if u < 10**9:
        for unit, digits in (("ns", 0), ("µs", 3), ("ms", 6)):
            if u < 10 ** (digits + 3):
                whole, rest = divmod(u, 10**digits)
                return f"{sign}{whole}{frac(rest, digits)}{unit}"
    seconds, rest = divmod(u, 10**9)
    out = f"{seconds % 60}{frac(rest, 9)}s"
    minutes = seconds // 60
    if minutes:
        out = f"{minutes % 60}m" + out
        if minutes // 60:
            out = f"{minutes // 60}h" + out
    return sign + out


def healthcheck_history(check: dict) -> str:
    """HEALTHCHECK {Test:[CMD-SHELL true] Interval:5s ... Retries:0}, buildkit's %+v."""
    durations = " ".join(f"{key}:{go_duration(int(check.get(key) or 0))}" for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"))
    return f"HEALTHCHECK {{Test:{go_list(list(check.get('Test') or []))} {durations} Retries:{int(check.get('Retries') or 0)}}}"


def run_history(argv: list[str], declared: dict[str, str | None], env: dict[str, str]) -> str:
    """RUN's created_by: `RUN |2 A=1 B= /bin/sh -c make # buildkit`. Every ARG the stage has
    declared so far comes first, in declaration order, with the value the step sees (an ENV
    of the same name wins; an ARG without a value shows empty), as buildkit's
    runCommandString writes them, so two builds that differ only by a build argument show
    different histories."""
    pairs = [f"{name}={env[name] if name in env else (value or '')}" for name, value in declared.items()]
    prefix = [f"|{len(pairs)}", *pairs] if pairs else []
    return "RUN " + " ".join(prefix + list(argv)) + " # buildkit"


def copy_history(keyword: str, flags: dict, sources: list[str], dest: str) -> str:
    """COPY/ADD's created_by: the keyword, --chown/--chmod as given, sources (a heredoc as
    <<NAME) and destination, then `# buildkit`. --from is not in it, as in buildkit."""
    words = [keyword]
    for flag in ("chown", "chmod"):
        if isinstance(flags.get(flag), str):
            words.append(f"--{flag}={flags[flag]}")
    return " ".join(words + sources + [dest]) + " # buildkit"
