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

`commit_container` applies the `--change` instructions and lets the image store turn the upper
directory into one more layer (ImageStore.commit: sorted entries, numeric owners, whiteouts as
`.wh.` entries). The caller pauses the container meanwhile (the agent freezes its cgroup, as
docker does by default), so the layer is one consistent state of its files.

(The store has a simpler `layers.compute_changes`; this one also knows whiteouts and opaque
directories in the lower layers, so a file deleted by an earlier layer is not "changed".)
"""

import os
import stat
from pathlib import Path

from orch.node.runtime import layers
from orch.node.runtime.imageconfig import apply_changes
from orch.node.runtime.images import Image

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


def commit_container(store, image: Image, key: str, *, ref: str | None = None, comment: str = "", author: str = "",
                     changes: list[str] | None = None, created_by: str = "") -> Image:
    """A new image: `image` plus container `key`'s upper directory as one layer, with the
    `--change` instructions (`CMD ["sh"]`, `ENV A=1`, ...) applied to its config."""
    inner = dict(image.config.get("config") or {})
    if changes:
        inner = apply_changes(inner, list(changes))
    return store.commit(key, image, ref, changes=inner, comment=comment, author=author, created_by=created_by)
