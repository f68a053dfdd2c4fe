"""A container's changes (`orch container diff`) and a new image from them (`orch commit`).

A container's root is an overlay: its image's layers below, its own upper directory on top.
Everything the container changed is in the upper directory, in overlayfs's vocabulary:

- a file or directory that is in no lower layer was added (A);
- one that is also in a lower layer was changed (C); a directory shows up in the upper
  directory whenever something inside it changed (overlayfs copies it up), and docker reports
  it as changed too;
- a 0/0 character device is a *whiteout*: the name was deleted (D);
- an *opaque* directory (xattr trusted.overlay.opaque=y) replaced a lower directory whole:
  it is changed, and what it holds was added.

`compute_changes` reads only the upper directory and answers "was it below?" by looking the
path up in the lower directories, top first, stopping at a whiteout or an opaque parent.

`commit_container` turns the upper directory into one more layer on the container's image
(orch.node.runtime.layers.create_layer: sorted entries, numeric owners, whiteouts as `.wh.`
entries) and records a new image with the `--change` instructions applied. The caller pauses
the container meanwhile (the agent freezes its cgroup, as docker does by default), so the layer
is one consistent state of its files.
"""

import copy
import json
import os
import stat
import time
from pathlib import Path

from orch.node.runtime import layers
from orch.node.runtime.images import MEDIA_LAYER, Image, apply_changes, canonical_json, rfc3339

KIND_CHANGED, KIND_ADDED, KIND_DELETED = 0, 1, 2
LETTERS = {KIND_CHANGED: "C", KIND_ADDED: "A", KIND_DELETED: "D"}


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, layers.OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def in_lowers(lowers: list[Path], rel: str) -> bool:
    """Whether `rel` exists in the stack of lower dirs (top first), overlayfs's way."""
    parts = rel.split("/")
    for lower in lowers:
        # A whiteout or an opaque directory on the way in this layer hides the layers below.
        hidden = False
        for i in range(1, len(parts)):
            prefix = lower.joinpath(*parts[:i])
            try:
                st = os.lstat(prefix)
            except (FileNotFoundError, NotADirectoryError):
                break
            if _whiteout(st) or not stat.S_ISDIR(st.st_mode):
                return False
            if _opaque(prefix):
                hidden = True
        try:
            st = os.lstat(lower / rel)
        except (FileNotFoundError, NotADirectoryError):
            if hidden:
                return False
            continue
        return not _whiteout(st)
    return False


def compute_changes(upper: Path, lowers: list[Path]) -> list[dict]:
    """docker's GET /containers/{id}/changes: [{"Path": "/etc", "Kind": 0|1|2}], sorted by path."""
    upper = Path(upper)
    out: list[dict] = []

    def walk(rel_dir: str, parent_new: bool) -> None:
        base = upper / rel_dir if rel_dir else upper
        for name in sorted(os.listdir(base)):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            st = os.lstat(base / name)
            if _whiteout(st):
                if not parent_new and in_lowers(lowers, rel):
                    out.append({"Path": "/" + rel, "Kind": KIND_DELETED})
                continue
            existed = not parent_new and in_lowers(lowers, rel)
            out.append({"Path": "/" + rel, "Kind": KIND_CHANGED if existed else KIND_ADDED})
            if stat.S_ISDIR(st.st_mode):
                walk(rel, parent_new or not existed or _opaque(base / name))

    walk("", False)
    return out


def format_changes(changes: list[dict]) -> list[str]:
    return [f"{LETTERS[c['Kind']]} {c['Path']}" for c in changes]


def commit_container(store, image: Image, upper: Path, *, ref: str | None = None, comment: str = "", author: str = "",
                     changes: list[str] | None = None, created_by: str = "") -> Image:
    """A new image: `image` plus the upper directory as one layer, with `changes` applied."""
    sde = layers.source_date_epoch()
    with store.content.writer() as w:
        diff_id, _ = layers.create_layer(Path(upper), w, epoch=sde)
        blob = w.commit(diff_id)
    config = copy.deepcopy(image.config)
    inner = config.get("config") or {}
    if changes:
        inner = apply_changes(inner, list(changes))
    config["config"] = inner
    now = rfc3339(float(sde) if sde is not None else time.time())
    config["created"] = now
    if author:
        config["author"] = author
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"] = image.diff_ids + [diff_id]
    entry = {"created": now, "created_by": created_by or "orch commit"}
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    config["history"] = list(config.get("history") or []) + [entry]
    blobs = [(l["digest"], l.get("mediaType", MEDIA_LAYER)) for l in image.layers] + [(blob, MEDIA_LAYER)]
    new, _ = store.add_image(canonical_json(config), blobs, [ref] if ref else [])
    return new


# -- history ---------------------------------------------------------------------------------


def compute_history(store, image: Image) -> list[dict]:
    """docker's GET /images/{name}/history: newest first; only the newest row carries the id
    and tags, older rows are "<missing>" as docker shows for layers built elsewhere."""
    history = image.config.get("history") or []
    layer_sizes = []
    for l in image.layers:
        try:
            layer_sizes.append(store.content.size(l["digest"]))
        except Exception:
            layer_sizes.append(0)
    rows = []
    i = 0
    for h in history:
        size = 0
        if not h.get("empty_layer"):
            size = layer_sizes[i] if i < len(layer_sizes) else 0
            i += 1
        rows.append({"Id": "<missing>", "Created": int(_epoch(h.get("created", ""))), "CreatedBy": h.get("created_by", ""),
                     "Tags": None, "Size": size, "Comment": h.get("comment", "")})
    if not rows:
        rows.append({"Id": "<missing>", "Created": int(_epoch(image.created)), "CreatedBy": "", "Tags": None, "Size": image.size, "Comment": ""})
    rows.reverse()
    rows[0]["Id"] = image.id
    rows[0]["Tags"] = list(image.repo_tags) or None
    return rows


def _epoch(text: str) -> float:
    from orch.node.runtime.images import parse_time

    return parse_time(text)


def to_json(value) -> str:
    return json.dumps(value)
