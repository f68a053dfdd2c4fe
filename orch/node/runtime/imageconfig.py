"""An image's config as people see and change it: docker's JSON shapes and `--change` lines.

`inspect_json` is what `docker image inspect` prints, `summary_json` one entry of docker's
image list; `apply_changes` applies the Dockerfile-like instructions that `docker import -c`
and `docker commit -c` take (CMD, ENV, EXPOSE ...) to an image's container config.

Pure: no I/O.
"""

import datetime
import json

from orch.errors import InvalidArgument


def rfc3339(ts: float) -> str:
    dt = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    frac = f"{dt.microsecond * 1000:09d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def parse_time(value: str) -> float:
    """RFC 3339 with up to nanoseconds (Python parses at most microseconds) -> epoch seconds."""
    if not value:
        return 0.0
    v = value.replace("Z", "+00:00")
    if "." in v:
        head, rest = v.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits) :]
        v = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    try:
        return datetime.datetime.fromisoformat(v).timestamp()
    except ValueError:
        return 0.0


# -- docker's shapes ---------------------------------------------------------------------------

CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty", "OpenStdin",
               "StdinOnce", "Env", "Cmd", "Healthcheck", "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels", "StopSignal")
_CONFIG_DEFAULTS = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
                    "Tty": False, "OpenStdin": False, "StdinOnce": False, "Image": "", "WorkingDir": ""}


def inspect_json(image) -> dict:
    """`docker image inspect`'s JSON for one image (the fields orch knows; the rest docker's defaults)."""
    cfg = image.config.get("config") or {}
    config = {}
    for key in CONFIG_KEYS:
        if key in cfg:
            config[key] = cfg[key]
        elif key in _CONFIG_DEFAULTS:
            config[key] = _CONFIG_DEFAULTS[key]
        elif key not in ("ExposedPorts", "Healthcheck", "StopSignal"):
            config[key] = None  # docker prints these as null when unset and omits the others
    history = image.config.get("history") or []
    return {
        "Id": image.id,
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Parent": "",
        "Comment": image.config.get("comment") or (history[-1].get("comment", "") if history else ""),
        "Created": image.created,
        "DockerVersion": "",
        "Author": image.config.get("author", ""),
        "Config": config,
        "Architecture": image.config.get("architecture", ""),
        "Os": image.config.get("os", ""),
        "Size": image.size,
        "GraphDriver": {"Name": "overlay", "Data": None},
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Metadata": {"LastTagTime": rfc3339(image.tagged_at) if image.tagged_at else "0001-01-01T00:00:00Z"},
    }


def summary_json(image) -> dict:
    """One entry of docker's GET /images/json."""
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": list(image.repo_tags),
        "RepoDigests": list(image.repo_digests),
        "Created": int(parse_time(image.created)),
        "Size": image.size,
        "Labels": (image.config.get("config") or {}).get("Labels") or {},
        "Containers": -1,
    }


# -- `--change` instructions (docker import -c / commit -c) ------------------------------------

CHANGEABLE = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _words_or_json(arg: str, shell: bool) -> list[str]:
    text = arg.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
        except json.JSONDecodeError:
            pass
    return ["/bin/sh", "-c", text] if shell else text.split()


def _pairs(arg: str, instruction: str) -> list[tuple[str, str]]:
    import shlex

    words = shlex.split(arg)
    if words and "=" not in words[0]:
        if len(words) < 2:
            raise InvalidArgument(f"--change '{instruction} {arg}': want KEY=VALUE or KEY VALUE")
        return [(words[0], arg.strip()[len(words[0]) :].strip())]
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise InvalidArgument(f"--change '{instruction} {arg}': '{w}' is not KEY=VALUE")
        out.append((k, v))
    return out


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Apply Dockerfile-style instructions (`CMD ["sh"]`, `ENV A=1`, ...) to an image's container config."""
    config = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for line in changes:
        word, _, arg = line.strip().partition(" ")
        instr = word.upper()
        if instr not in CHANGEABLE:
            raise InvalidArgument(f"--change '{line}': {word or 'an empty line'} is not one of {', '.join(CHANGEABLE)}")
        if instr == "CMD":
            config["Cmd"] = _words_or_json(arg, shell=True)
        elif instr == "ENTRYPOINT":
            config["Entrypoint"] = _words_or_json(arg, shell=True)
        elif instr == "ENV":
            env = [e for e in config.get("Env") or []]
            for k, v in _pairs(arg, instr):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            config["Env"] = env
        elif instr == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(arg, instr))
            config["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for p in arg.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            config["ExposedPorts"] = ports
        elif instr == "VOLUME":
            vols = dict(config.get("Volumes") or {})
            for v in _words_or_json(arg, shell=False):
                vols[v] = {}
            config["Volumes"] = vols
        elif instr == "ONBUILD":
            config["OnBuild"] = list(config.get("OnBuild") or []) + [arg.strip()]
        else:
            key = {"STOPSIGNAL": "StopSignal", "USER": "User", "WORKDIR": "WorkingDir"}[instr]
            config[key] = arg.strip()
    return config


# -- history ---------------------------------------------------------------------------------


def history_json(image, layer_sizes: list[int]) -> list[dict]:
    """docker's GET /images/{name}/history: one entry per history item, newest first.

    Items marked `empty_layer` (ENV, CMD ...) have size 0; the others take the image's layers
    in order. Only the newest item carries the image id and tags; older ones are "<missing>",
    as docker prints them for images it did not build itself.
    """
    sizes = iter(layer_sizes)
    items = []
    for h in image.config.get("history") or []:
        size = 0 if h.get("empty_layer") else next(sizes, 0)
        items.append({"Id": "<missing>", "Created": int(parse_time(h.get("created", ""))), "CreatedBy": h.get("created_by", ""),
                      "Tags": None, "Size": size, "Comment": h.get("comment", "")})
    if not items:
        items.append({"Id": "<missing>", "Created": int(parse_time(image.created)), "CreatedBy": "", "Tags": None, "Size": sum(layer_sizes), "Comment": ""})
    items.reverse()
    items[0]["Id"] = image.id
    items[0]["Tags"] = list(image.repo_tags) or None
    return items
