"""The image store: OCI images on the content store and snapshots, and the names that point at them.

An image is an OCI image config (its id is the config's sha256, as in docker) and an OCI
manifest listing its layer blobs; both live in the content store. Layers are unpacked once,
into committed snapshots keyed by chain ID, and shared read-only by every image and container
that stands on them. References ("docker.io/library/busybox:latest" -> image id) and the list
of known images live in one small JSON file, images/db.json, changed under a thread lock and
an flock and replaced by an atomic rename, so the agent's threads, tests and other processes
can use the same store, and `kill -9` at any moment leaves the old or the new file.

Layout under the store's root (ORCH_ROOT):

    content/     blobs (configs, manifests, layer tars)            see content.py
    snapshots/   unpacked layers and containers' upper dirs         see snapshots.py
    images/db.json, images/lock
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from orch import paths
from orch.atomic import write_json_atomic
from orch.errors import Conflict, InvalidArgument, NotFound
from orch.node.runtime import layers, reference
from orch.node.runtime.content import ContentStore, check_digest
from orch.node.runtime.imageconfig import parse_time, rfc3339
from orch.node.runtime.mount import Mount
from orch.node.runtime.snapshots import UNPACK_PREFIX, Snapshotter

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _writer(method):
    """Run a store method that writes blobs or layers under the shared gc lock (see ImageStore)."""

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with self._writing():
            return method(self, *args, **kwargs)

    return wrapped


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Image:
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    config: dict
    manifest_digest: str
    layers: tuple[dict, ...]
    size: int
    tagged_at: float = 0.0

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    @property
    def chain_ids(self) -> list[str]:
        return layers.chain_ids(self.diff_ids)

    @property
    def top_layer(self) -> str | None:
        chains = self.chain_ids
        return chains[-1] if chains else None

    @property
    def created(self) -> str:
        return self.config.get("created", "")

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]


class ImageStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.content = ContentStore(self.root / "content")
        self.snapshots = Snapshotter(self.root / "snapshots")
        self.dir = self.root / "images"
        paths.private_dir(self.dir)  # root only: see orch.paths
        self.tmp = self.root / "tmp"
        paths.private_dir(self.tmp)
        _clean_old(self.tmp)
        self._db_path = self.dir / "db.json"
        self._lock = threading.RLock()

    # -- the references file ---------------------------------------------------------------

    def _read_db(self) -> dict:
        try:
            return json.loads(self._db_path.read_text())
        except FileNotFoundError:
            return {"refs": {}, "images": {}}

    @contextmanager
    def _locked_db(self):
        """Read-modify-write of db.json, exclusive between threads and processes."""
        with self._lock:
            fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                db = self._read_db()
                before = json.dumps(db, sort_keys=True)
                yield db
                if json.dumps(db, sort_keys=True) == before:
                    return  # nothing changed (a rebuild that tags the same image again): no write, no sync
                write_json_atomic(self._db_path, db)
            finally:
                os.close(fd)  # closing releases the flock

    # -- garbage collection vs writers -----------------------------------------------------
    #
    # Blobs and layers are written before the image that references them is recorded, so a
    # collector could take them for garbage in between. Every writer holds a shared flock on
    # images/gc.lock for its whole run; the collector runs only when it gets the lock
    # exclusively, without waiting: when writers are busy it leaves the garbage to the next
    # removal or prune. The flock works between threads (one open file each) and processes.

    @contextmanager
    def _writing(self):
        fd = os.open(self.dir / "gc.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _try_collect(self, db: dict) -> list[str]:
        fd = os.open(self.dir / "gc.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return []
            return self._collect(db)
        finally:
            os.close(fd)

    # -- reading ---------------------------------------------------------------------------

    def _image(self, image_id: str, db: dict) -> Image:
        rec = db["images"][image_id]
        manifest = json.loads(self.content.read_bytes(rec["manifest"]))
        config = json.loads(self.content.read_bytes(image_id))
        names = sorted(n for n, i in db["refs"].items() if i == image_id and "@" not in n)
        digests = sorted(n for n, i in db["refs"].items() if i == image_id and "@" in n)
        return Image(
            id=image_id,
            repo_tags=tuple(reference.familiar(n) for n in names),
            repo_digests=tuple(reference.familiar(n) for n in digests),
            config=config,
            manifest_digest=rec["manifest"],
            layers=tuple(manifest.get("layers", [])),
            size=rec.get("size", 0),
            tagged_at=rec.get("tagged_at", 0.0),
        )

    def list(self) -> list[Image]:
        db = self._read_db()
        images = [self._image(i, db) for i in db["images"]]
        return sorted(images, key=lambda im: (parse_time(im.created), im.id), reverse=True)

    def resolve(self, ref: str) -> Image:
        db = self._read_db()
        return self._image(self._resolve_id(ref, db), db)

    def exists(self, ref: str) -> bool:
        try:
            self._resolve_id(ref, self._read_db())
            return True
        except NotFound:
            return False

    def _resolve_id(self, ref: str, db: dict) -> str:
        missing = NotFound(f"no such image: {ref}; build it, pull it, or make a base with 'orch bootstrap busybox'")
        try:
            parsed = reference.parse(ref)
        except InvalidArgument:
            parsed = None
        if parsed is not None:
            if parsed.digest:
                if str(parsed) in db["refs"]:
                    return db["refs"][str(parsed)]
                for image_id, rec in db["images"].items():
                    if rec["manifest"] == parsed.digest or image_id == parsed.digest:
                        return image_id
            elif str(parsed) in db["refs"]:
                return db["refs"][str(parsed)]
        if reference.looks_like_id(ref):
            want = ref if ref.startswith("sha256:") else "sha256:" + ref
            hits = [i for i in db["images"] if i.startswith(want)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise InvalidArgument(f"image id prefix '{ref}' is ambiguous ({len(hits)} images); give more digits")
        if parsed is None:
            reference.parse(ref)  # raise the format error
        raise missing

    # -- writing ---------------------------------------------------------------------------

    @_writer
    def add_image(self, config: bytes, blobs: list[tuple[str, str]], refs: Iterable[str] = ()) -> tuple[Image, list[str]]:
        """Record an image whose config bytes and layer blobs are in (or go into) the store.

        `blobs` are (blob digest, media type) already committed to the content store. The
        layers are unpacked (verifying each diff ID) before the image becomes visible.
        Returns the image and docker's messages about tags moved away from older images.
        """
        try:
            cfg = json.loads(config)
            diff_ids = cfg.get("rootfs", {}).get("diff_ids", [])
            for d in diff_ids:
                check_digest(d)  # a diff ID names directories: it must be a plain digest
        except (ValueError, AttributeError, TypeError) as err:
            raise InvalidArgument(f"image config: not a valid OCI image config ({err})") from None
        image_id = self.content.write_bytes(config)
        if len(diff_ids) != len(blobs):
            raise InvalidArgument(f"image {image_id[:19]}: the config lists {len(diff_ids)} layers but {len(blobs)} layer blobs were given")
        size = self._unpack(diff_ids, [d for d, _ in blobs])
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": image_id, "size": len(config)},
            "layers": [{"mediaType": m, "digest": d, "size": self.content.size(d)} for d, m in blobs],
        }
        manifest_digest = self.content.write_bytes(canonical_json(manifest))
        notes = []
        with self._locked_db() as db:
            rec = db["images"].setdefault(image_id, {})
            rec.update(manifest=manifest_digest, size=size)
            for ref in refs:
                name = reference.normalize(ref)
                old = db["refs"].get(name)
                if old is not None and old != image_id:
                    notes.append(f"The image {reference.familiar(name)} already exists, renaming the old one with ID {old} to empty string")
                if old != image_id:
                    # A name that stays on the same image keeps its time (docker would note the
                    # time again; a cached rebuild then writes nothing at all).
                    db["refs"][name] = image_id
                    rec["tagged_at"] = time.time()
            # A layer a concurrent rmi collected while we unpacked is unpacked again here.
            self._unpack(diff_ids, [d for d, _ in blobs])
            image = self._image(image_id, db)
        return image, notes

    def _unpack(self, diff_ids: list[str], blob_digests: list[str]) -> int:
        total = 0
        parent = None
        for diff_id, blob in zip(diff_ids, blob_digests):
            chain = layers.chain_id(parent, diff_id)
            if not self.snapshots.exists(chain):
                key = f"{UNPACK_PREFIX}{uuid.uuid4().hex}"
                self.snapshots.prepare(key, parent)
                try:
                    with self.content.open(blob) as f:
                        got, size = layers.apply_layer(f, self.snapshots.upper_dir(key), label=f"layer {layers.short(blob)}")
                    if got != diff_id:
                        raise InvalidArgument(f"layer {layers.short(blob)}: its content has diff ID {got}, but the image config says {diff_id}; the archive is corrupt")
                    self.snapshots.commit(chain, key, size=size)
                except BaseException:
                    self.snapshots.remove(key)
                    raise
            total += self.snapshots.size(chain)
            parent = chain
        return total

    def add_digest_ref(self, name_at_digest: str, image_id: str) -> None:
        """Record a RepoDigest ("localhost:5000/app@sha256:...") for an image, as docker does
        after a pull or a push; nothing when the image is gone meanwhile."""
        with self._locked_db() as db:
            if image_id in db["images"]:
                db["refs"][str(reference.parse(name_at_digest))] = image_id

    def tag(self, src: str, dst: str) -> None:
        with self._locked_db() as db:
            image_id = self._resolve_id(src, db)
            name = reference.parse(dst)
            if name.digest:
                raise InvalidArgument(f"cannot tag with a digest reference '{dst}'; use NAME[:TAG]")
            db["refs"][str(name)] = image_id
            db["images"][image_id]["tagged_at"] = time.time()

    def remove(self, ref: str, force: bool = False, in_use: "set[str] | Callable[[str], list[str]] | None" = None) -> list[str]:
        """Untag or delete an image as `docker rmi` does; return its "Untagged:"/"Deleted:" lines.

        `in_use` is the set of image ids containers use, or a function image id -> container
        names; an image in use is only untagged, and only with force.
        """
        out: list[str] = []
        with self._locked_db() as db:
            image_id = self._resolve_id(ref, db)
            users = _users(in_use, image_id)
            names = sorted(n for n, i in db["refs"].items() if i == image_id)
            by_name = not reference.looks_like_id(ref) or _normalized_or_none(ref) in db["refs"]
            if by_name:
                name = _normalized_or_none(ref)
                name = name if name in db["refs"] else (names[0] if names else None)
                if len(names) > 1 and name is not None:
                    del db["refs"][name]
                    return [f"Untagged: {reference.familiar(name)}"]
                if users and not force:
                    raise Conflict(f"unable to remove repository reference \"{ref}\" (must force) - {users[0]} is using its referenced image {image_id[7:19]}")
            else:
                if len(names) > 1 and not force:
                    raise Conflict(f"unable to delete {image_id[7:19]} (must be forced) - image is referenced in multiple repositories")
                if users and not force:
                    raise Conflict(f"unable to delete {image_id[7:19]} (cannot be forced) - image is being used by {users[0]}")
            for n in names:
                del db["refs"][n]
                out.append(f"Untagged: {reference.familiar(n)}")
            if users:
                return out  # the image stays, untagged, for its containers
            db["images"].pop(image_id)
            out.append(f"Deleted: {image_id}")
            out += self._try_collect(db)
        return out

    def _collect(self, db: dict) -> list[str]:
        """Delete every layer and blob no image and no container references; "Deleted:" lines."""
        keep_chains = set(self.snapshots.in_use())
        keep_blobs: set[str] = set()
        for image_id, rec in db["images"].items():
            cfg = json.loads(self.content.read_bytes(image_id))
            keep_chains.update(layers.chain_ids(cfg["rootfs"]["diff_ids"]))
            man = json.loads(self.content.read_bytes(rec["manifest"]))
            keep_blobs.update([image_id, rec["manifest"]] + [l["digest"] for l in man["layers"]])
        out = []
        for chain in sorted(set(self.snapshots.list_committed()) - keep_chains):
            self.snapshots.remove_committed(chain)
            out.append(f"Deleted: {chain}")
        for blob in set(self.content.list()) - keep_blobs:
            self.content.delete(blob)
        return out

    # -- building blocks for import, load, save --------------------------------------------

    @_writer
    def import_rootfs(self, source: Path | str, ref: str | None, changes: dict | None = None, *, created: float | None = None,
                      comment: str | None = None, epoch: int | None = None) -> Image:
        """Make a one-layer image from a rootfs tar (maybe gzip) or a directory."""
        from orch.node.runtime.archive import import_layer

        source = Path(source)
        if ref is not None:
            reference.parse(ref)  # refuse a bad name before the work
        blob, diff_id = import_layer(self, source, epoch=epoch if epoch is not None else layers.source_date_epoch())
        if created is None:
            sde = layers.source_date_epoch()
            created = float(sde) if sde is not None else time.time()
        container_config = dict(changes or {})
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": rfc3339(created),
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": rfc3339(created), "created_by": "orch image import", "comment": comment or f"Imported from {source.name}"}],
        }
        image, _ = self.add_image(canonical_json(config), [(blob, MEDIA_LAYER)], [ref] if ref else [])
        return image

    @_writer
    def load(self, archive: Path | str) -> list[str]:
        from orch.node.runtime.archive import load_archive

        return load_archive(self, Path(archive))

    def save(self, refs: list[str], out: Path | str, fmt: str = "docker") -> None:
        from orch.node.runtime.archive import save_archive

        save_archive(self, refs, Path(out), fmt)

    # -- rootfs for containers -------------------------------------------------------------

    @_writer
    def prepare_rootfs(self, image: Image, key: str) -> list[Mount]:
        """The mounts of container `key`'s rootfs: an overlay of the image's layers and its own upper dir.

        Preparing a key that exists already (a restarted container) returns its mounts: the
        upper dir, and so the container's changes, are kept.
        """
        self._unpack(image.diff_ids, [l["digest"] for l in image.layers])
        if self.snapshots.active_exists(key):
            return self.snapshots.mounts(key)
        return self.snapshots.prepare(key, image.top_layer)

    @_writer
    def commit(self, key: str, image: Image, ref: str | None = None, *, changes: dict | None = None, comment: str = "",
               author: str = "", created_by: str = "", epoch: int | None = None) -> Image:
        """A new image: `image`'s layers plus container `key`'s changes as one more layer (docker commit).

        The upper dir's overlay whiteouts become `.wh.` entries. `changes` replaces keys of the
        container config (Cmd, Env, ...).
        """
        import copy

        upper = self.snapshots.upper_dir(key)
        if not upper.is_dir():
            raise NotFound(f"no such snapshot: '{key}'")
        with self.content.writer() as w:
            diff_id, _ = layers.create_layer(upper, w, epoch=epoch if epoch is not None else layers.source_date_epoch())
            blob = w.commit(diff_id)
        sde = layers.source_date_epoch()
        now = rfc3339(float(sde) if sde is not None else time.time())
        config = copy.deepcopy(image.config)
        config["config"] = {**(config.get("config") or {}), **(changes or {})}
        config["created"] = now
        config["rootfs"] = {"type": "layers", "diff_ids": image.diff_ids + [diff_id]}
        config["history"] = list(config.get("history") or []) + [{"created": now, "created_by": created_by, "comment": comment, **({"author": author} if author else {})}]
        if author:
            config["author"] = author
        blobs = [(l["digest"], l["mediaType"]) for l in image.layers] + [(blob, MEDIA_LAYER)]
        new, _ = self.add_image(canonical_json(config), blobs, [ref] if ref else [])
        return new

    def changes(self, key: str) -> list[dict]:
        """What container `key` changed, as docker's API has it: [{"Path", "Kind"}], sorted."""
        upper = self.snapshots.upper_dir(key)
        if not upper.is_dir():
            raise NotFound(f"no such snapshot: '{key}'")
        lowers = [self.snapshots.committed_path(c) for c in self.snapshots.chain(self.snapshots.active_parent(key))]
        return layers.compute_changes(upper, lowers)

    def layer_sizes(self, image: Image) -> list[int]:
        """The content size of each of the image's layers (docker's DiffSize), bottom first."""
        return [self.snapshots.size(c) if self.snapshots.exists(c) else 0 for c in image.chain_ids]

    def remove_snapshot(self, key: str) -> None:
        self.snapshots.remove(key)

    def upper_dir(self, key: str) -> Path:
        return self.snapshots.upper_dir(key)

    def disk_usage(self, in_use: "set[str] | None" = None) -> dict:
        """Totals for `orch system df` (docker's Images row): count, active, size, reclaimable.

        Sizes count each unpacked layer once, however many images share it; an image is
        active when a container uses it (`in_use`: image ids), and reclaimable is what removing
        every inactive image would free.
        """
        in_use = in_use or set()
        images = self.list()
        size_of = {c: self.snapshots.size(c) for c in self.snapshots.list_committed()}
        active_chains = {c for im in images if im.id in in_use for c in im.chain_ids}
        total = sum(size_of.values())
        kept = sum(size for c, size in size_of.items() if c in active_chains)
        return {"images": len(images), "active": sum(1 for im in images if im.id in in_use), "size": total, "reclaimable": total - kept}

    def prune(self, all_images: bool = False, in_use: "set[str] | Callable[[str], list[str]] | None" = None) -> tuple[list[str], int]:
        """Remove dangling images (all unused ones with `all_images`), as `docker image prune`.

        Returns docker's "Deleted:"/"Untagged:" lines and the bytes reclaimed.
        """
        before = sum(self.snapshots.size(c) for c in self.snapshots.list_committed())
        lines: list[str] = []
        for image in self.list():
            if _users(in_use, image.id) or (image.repo_tags and not all_images):
                continue
            try:
                lines += self.remove(image.id, force=True, in_use=in_use)
            except NotFound:
                continue  # removed meanwhile by someone else
        after = sum(self.snapshots.size(c) for c in self.snapshots.list_committed())
        return lines, before - after


def _clean_old(directory: Path, age: float = 3600.0) -> None:
    """Remove what a crashed bootstrap or save left in a scratch directory."""
    import shutil

    now = time.time()
    for p in directory.iterdir():
        try:
            if now - p.lstat().st_mtime > age:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except FileNotFoundError:
            pass


def _users(in_use, image_id: str) -> list[str]:
    if in_use is None:
        return []
    if callable(in_use):
        return [f"container {name}" for name in in_use(image_id) or []]
    return ["a container"] if image_id in in_use else []


def _normalized_or_none(ref: str) -> str | None:
    try:
        return reference.normalize(ref)
    except InvalidArgument:
        return None
