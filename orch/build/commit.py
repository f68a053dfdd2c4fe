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

`orch.node.runtime.layers.compute_changes` reads only the upper directory and answers "was it
below?" by looking the path up in the lower directories, top first, stopping at a whiteout or
an opaque parent.

`commit_container` applies the `--change` instructions and lets the image store turn the upper
directory into one more layer (ImageStore.commit: sorted entries, numeric owners, whiteouts as
`.wh.` entries). The caller pauses the container meanwhile (the agent freezes its cgroup, as
docker does by default), so the layer is one consistent state of its files.

"""

from orch.node.runtime.imageconfig import apply_changes
from orch.node.runtime.images import Image

def commit_container(store, image: Image, key: str, *, ref: str | None = None, comment: str = "", author: str = "",
                     changes: list[str] | None = None, created_by: str = "") -> Image:
    """A new image: `image` plus container `key`'s upper directory as one layer, with the
    `--change` instructions (`CMD ["sh"]`, `ENV A=1`, ...) applied to its config."""
    inner = dict(image.config.get("config") or {})
    if changes:
        inner = apply_changes(inner, list(changes))
    return store.commit(key, image, ref, changes=inner, comment=comment, author=author, created_by=created_by)
