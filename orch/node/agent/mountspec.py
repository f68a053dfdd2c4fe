"""A container's mounts as docker's flags ask for them: volumes, binds, tmpfs, --volumes-from,
and the image's VOLUMEs; and how `inspect` shows them.

Pure: `compute_mount_plan` checks and orders the request (the driver, wiring.py, then creates
volumes, fills them from the image and turns each entry into a runtime `Mount`). An entry is
{type, source, target, read_only, tmpfs_size, nocopy, anonymous}: for a volume `source` is the
volume's name ("" for a new anonymous one), for a bind the host path.
"""

from __future__ import annotations

import posixpath

from orch.errors import InvalidArgument

TYPES = ("volume", "bind", "tmpfs")


def compute_mount_plan(mounts: list[dict], *, image_volumes: dict | None = None,
                       volumes_from: list[tuple[str, list[dict]]] = ()) -> list[dict]:
    """The container's mounts, one per target: the request's, then those of --volumes-from
    containers (with :ro/:rw applied), then an anonymous volume for every image VOLUME no
    other mount covers. `volumes_from` pairs a "name[:ro|:rw]" with that container's plan."""
    out: list[dict] = []
    for m in mounts:
        out.append(_entry(m))
    for spec, theirs in volumes_from:
        ref, _, mode = spec.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid --volumes-from {spec!r}: the mode after ':' is ro or rw")
        for m in theirs:
            if m["type"] == "tmpfs":
                continue  # docker does not share tmpfs mounts: they are the other container's memory
            out.append(dict(m, read_only=(mode == "ro") if mode else m["read_only"], anonymous=False))
    for target in sorted(image_volumes or {}):
        path = _target(target)
        if not any(e["target"] == path for e in out):
            out.append({"type": "volume", "source": "", "target": path, "read_only": False, "tmpfs_size": None,
                        "nocopy": False, "anonymous": True})
    seen: set[str] = set()
    for e in out:
        if e["target"] in seen:
            raise InvalidArgument(f"duplicate mount point: {e['target']}; give each mount its own target")
        seen.add(e["target"])
    return out


def _entry(m: dict) -> dict:
    kind = m.get("type") or "volume"
    if kind not in TYPES:
        raise InvalidArgument(f"invalid mount type {kind!r}: use volume, bind or tmpfs")
    target = _target(m.get("target") or "")
    source = m.get("source") or ""
    if kind == "bind":
        if not source.startswith("/"):
            raise InvalidArgument(f"invalid bind mount source {source!r} for {target}: give an absolute host path")
        source = posixpath.normpath(source)
    if kind == "tmpfs" and source:
        raise InvalidArgument(f"a tmpfs mount has no source (got {source!r} for {target})")
    size = m.get("tmpfs_size")
    if size is not None and (kind != "tmpfs" or int(size) <= 0):
        raise InvalidArgument(f"tmpfs-size is for tmpfs mounts and must be more than 0 (mount on {target})")
    return {"type": kind, "source": source, "target": target, "read_only": bool(m.get("read_only")),
            "tmpfs_size": int(size) if size is not None else None, "nocopy": bool(m.get("nocopy")),
            "anonymous": kind == "volume" and not source}


def _target(path: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid mount target {path!r}: give an absolute path inside the container")
    path = posixpath.normpath(path)
    if path == "/":
        raise InvalidArgument("invalid mount target '/': a mount cannot replace the container's root")
    return path


def compute_mounts_view(entries: list[dict], volume_paths: dict[str, str]) -> list[dict]:
    """inspect's Mounts: [{Type, Name, Source, Destination, Driver, Mode, RW, Propagation}]."""
    view = []
    for e in entries:
        item = {"Type": e["type"], "Source": e["source"], "Destination": e["target"], "Mode": "ro" if e["read_only"] else "",
                "RW": not e["read_only"], "Propagation": "rprivate" if e["type"] == "bind" else ""}
        if e["type"] == "volume":
            item.update(Name=e["source"], Source=volume_paths.get(e["source"], ""), Driver="local", Mode="z" if not e["read_only"] else "ro")
        if e["type"] == "tmpfs":
            item["Source"] = ""
        view.append(item)
    return view


def volumes_in(entries: list[dict]) -> list[str]:
    return [e["source"] for e in entries if e["type"] == "volume" and e["source"]]
