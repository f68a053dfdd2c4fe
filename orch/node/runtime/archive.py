"""Image archives: `docker save` tars and OCI image layouts, in and out; rootfs imports.

Two formats carry images between machines without a registry:

- docker-archive (what `docker save` and `podman save` write): `manifest.json`, a list of
  {Config, RepoTags, Layers} with paths inside the tar; the config file is the image config,
  each layer an uncompressed (older tools) or gzip tar. A legacy `repositories` file is written
  for old readers and ignored when reading.
- OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): descriptors with digests,
  maybe a nested index (we pick linux/amd64). Names come from the annotations
  `io.containerd.image.name` (a full reference, as docker writes it) or
  `org.opencontainers.image.ref.name` (a tag, or a full reference).

Both are read from a tar (maybe compressed) or from a directory. Every blob is verified
against its digest as it is ingested; the image config's diff IDs are verified when the layers
are unpacked, so nothing from a corrupt archive becomes visible. Written archives are
reproducible: sorted entries, mtime 0, uid/gid 0.
"""

import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from orch.errors import InvalidArgument, NotFound
from orch.node.runtime import layers, reference

MEDIA_INDEX = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
MEDIA_MANIFESTS = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
ANNOTATION_NAME = "io.containerd.image.name"
ANNOTATION_REF = "org.opencontainers.image.ref.name"


# -- import of a rootfs ------------------------------------------------------------------------


def import_layer(store, source: Path, *, epoch: int | None) -> tuple[str, str]:
    """Put a rootfs (directory, tar or tar.gz) into the content store as one uncompressed layer.

    Returns (blob digest, diff ID); they are equal since the blob is stored uncompressed.
    """
    if source.is_dir():
        with store.content.writer() as w:
            diff_id, _ = layers.create_layer(source, w, epoch=epoch)
            return w.commit(diff_id), diff_id
    if not source.is_file():
        raise NotFound(f"no such file or directory: {source}; give a rootfs tar, tar.gz or directory")
    with open(source, "rb") as f, store.content.writer() as w:
        w.copy_from(layers.open_uncompressed(f))
        digest = w.commit()
    return digest, digest


# -- reading archives ------------------------------------------------------------------------


class _DirReader:
    def __init__(self, root: Path):
        self.root = root

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()

    def open(self, name: str) -> BinaryIO:
        p = (self.root / name).resolve()
        if self.root.resolve() not in p.parents:
            raise InvalidArgument(f"archive {self.root}: '{name}' points outside the archive")
        return open(p, "rb")


class _TarReader:
    def __init__(self, path: Path):
        try:
            self.tar = tarfile.open(path, "r:*")
        except (tarfile.TarError, EOFError, OSError) as err:
            raise InvalidArgument(f"cannot read {path} as an image archive (a tar, maybe gzip-compressed): {err}") from None
        self.path = path
        self.members = {}
        for m in self.tar.getmembers():
            name = m.name[2:] if m.name.startswith("./") else m.name
            self.members[name] = m

    def has(self, name: str) -> bool:
        m = self.members.get(name)
        return m is not None and (m.isreg() or m.issym() or m.islnk())

    def open(self, name: str) -> BinaryIO:
        m = self.members.get(name)
        if m is None:
            raise InvalidArgument(f"archive {self.path}: '{name}' is listed but missing; the archive is truncated or corrupt")
        f = self.tar.extractfile(m)
        if f is None:
            raise InvalidArgument(f"archive {self.path}: '{name}' is not a file")
        return f


def _read_json(reader, name: str, what: str):
    try:
        with reader.open(name) as f:
            return json.loads(f.read())
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"{what} '{name}' is not valid JSON: {err}") from None


def load_archive(store, path: Path) -> list[str]:
    """Load every image of a docker-archive or OCI layout (tar or directory); docker's output lines."""
    if not path.exists():
        raise NotFound(f"no such file or directory: {path}; give the file 'orch save' or 'docker save' wrote")
    reader = _DirReader(path) if path.is_dir() else _TarReader(path)
    if reader.has("oci-layout") and reader.has("index.json"):
        return _load_oci(store, reader, path)
    if reader.has("manifest.json"):
        return _load_docker(store, reader, path)
    raise InvalidArgument(f"{path} is neither a docker-archive (no manifest.json) nor an OCI image layout (no oci-layout and index.json)")


def _ingest_layer(store, reader, name: str, expected: str | None = None) -> tuple[str, str]:
    with reader.open(name) as f:
        head = f.read(2)
        f.seek(0)
        digest = store.content.ingest(f, expected)
    media = "application/vnd.oci.image.layer.v1.tar+gzip" if head == layers.GZIP_MAGIC else "application/vnd.oci.image.layer.v1.tar"
    return digest, media


def _loaded_lines(store, image, tags: list[str]) -> list[str]:
    lines = []
    for tag in tags:
        lines.append(f"Loaded image: {reference.familiar(reference.normalize(tag))}")
    return lines or [f"Loaded image ID: {image.id}"]


def _load_docker(store, reader, path: Path) -> list[str]:
    manifest = _read_json(reader, "manifest.json", f"{path}:")
    if not isinstance(manifest, list):
        raise InvalidArgument(f"{path}: manifest.json must be a list of images")
    out: list[str] = []
    for i, entry in enumerate(manifest):
        try:
            config_name, layer_names = entry["Config"], entry["Layers"]
        except (KeyError, TypeError):
            raise InvalidArgument(f"{path}: manifest.json entry {i} lacks Config or Layers") from None
        tags = entry.get("RepoTags") or []
        with reader.open(config_name) as f:
            config = f.read()
        blobs = [_ingest_layer(store, reader, name) for name in layer_names]
        image, notes = store.add_image(config, blobs, tags)
        out += notes + _loaded_lines(store, image, tags)
    return out


def _blob_name(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def _read_blob(reader, digest: str, what: str) -> bytes:
    import hashlib

    with reader.open(_blob_name(digest)) as f:
        data = f.read()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise InvalidArgument(f"{what} {digest}: content does not match its digest; the archive is corrupt")
    return data


def _pick_manifests(reader, index: dict, inherited: dict | None = None) -> list[tuple[dict, dict]]:
    """(manifest descriptor, annotations) pairs of an index, descending into nested indexes."""
    out = []
    for desc in index.get("manifests", []):
        annotations = {**(inherited or {}), **(desc.get("annotations") or {})}
        media = desc.get("mediaType", "")
        if media in MEDIA_INDEX:
            nested = json.loads(_read_blob(reader, desc["digest"], "index"))
            out += _pick_manifests(reader, nested, annotations)
        elif media in MEDIA_MANIFESTS or media == "":
            platform = desc.get("platform")
            if platform and (platform.get("os"), platform.get("architecture")) != ("linux", "amd64"):
                continue
            out.append((desc, annotations))
    return out


def _name_from_annotations(annotations: dict) -> str | None:
    name = annotations.get(ANNOTATION_NAME)
    if name:
        return name
    ref = annotations.get(ANNOTATION_REF)
    # A bare tag ("latest") names no repository: the image is loaded untagged, as docker does.
    if ref and ("/" in ref or ":" in ref):
        try:
            reference.parse(ref)
            return ref
        except InvalidArgument:
            return None
    return None


def _load_oci(store, reader, path: Path) -> list[str]:
    index = _read_json(reader, "index.json", f"{path}:")
    out: list[str] = []
    picked = _pick_manifests(reader, index)
    if not picked:
        raise InvalidArgument(f"{path}: the OCI index holds no linux/amd64 image manifest")
    for desc, annotations in picked:
        manifest = json.loads(_read_blob(reader, desc["digest"], "manifest"))
        config = _read_blob(reader, manifest["config"]["digest"], "config")
        blobs = []
        for layer in manifest.get("layers", []):
            media = layer.get("mediaType", "")
            if "zstd" in media:
                raise InvalidArgument(f"{path}: layer {layer['digest']} is zstd-compressed, which orch cannot unpack yet; save it with gzip layers")
            blobs.append(_ingest_layer(store, reader, _blob_name(layer["digest"]), layer["digest"]))
        name = _name_from_annotations(annotations)
        tags = [name] if name else []
        image, notes = store.add_image(config, blobs, tags)
        out += notes + _loaded_lines(store, image, tags)
    return out


# -- writing archives ------------------------------------------------------------------------


class _TarWriter:
    """Reproducible tar entries: mtime 0, root-owned, no user names, in the order added."""

    def __init__(self, fileobj: BinaryIO):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self.dirs: set[str] = set()

    def _info(self, name: str, type_, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.mtime = type_, mode, size, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def dir(self, name: str) -> None:
        if name not in self.dirs:
            self.dirs.add(name)
            self.tar.addfile(self._info(name, tarfile.DIRTYPE, 0o755))

    def bytes(self, name: str, data: bytes) -> None:
        self.tar.addfile(self._info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))

    def file(self, name: str, path: Path) -> None:
        with open(path, "rb") as f:
            self.tar.addfile(self._info(name, tarfile.REGTYPE, 0o644, os.fstat(f.fileno()).st_size), f)

    def close(self) -> None:
        self.tar.close()


def _resolve_all(store, refs: list[str]) -> list[tuple[object, list[str]]]:
    """The images to save and, per image, the names it is saved under (only names asked for)."""
    chosen: dict[str, tuple[object, list[str]]] = {}
    for ref in refs:
        image = store.resolve(ref)
        tags = chosen.setdefault(image.id, (image, []))[1]
        if not reference.looks_like_id(ref) or ref in image.repo_tags:
            name = reference.familiar(reference.normalize(ref)) if "@" not in ref else None
            if name and name not in tags:
                tags.append(name)
    return list(chosen.values())


def save_archive(store, refs: list[str], out: Path, fmt: str = "docker") -> None:
    if fmt not in ("docker", "oci"):
        raise InvalidArgument(f"unknown archive format '{fmt}'; use 'docker' (docker-archive) or 'oci' (OCI image layout)")
    if not refs:
        raise InvalidArgument("give at least one image to save")
    images = _resolve_all(store, refs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            w = _TarWriter(f)
            (_write_docker if fmt == "docker" else _write_oci)(store, w, images)
            w.close()
        os.chmod(tmp_name, 0o644)
        os.rename(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _write_docker(store, w: _TarWriter, images) -> None:
    manifest, repositories, written = [], {}, set()
    for image, tags in images:
        hexid = image.id.split(":", 1)[1]
        names = []
        for desc, diff_id in zip(image.layers, image.diff_ids):
            dhex = diff_id.split(":", 1)[1]
            names.append(f"{dhex}/layer.tar")
            if dhex in written:
                continue
            written.add(dhex)
            w.dir(f"{dhex}/")
            w.bytes(f"{dhex}/VERSION", b"1.0")
            _write_uncompressed(store, w, f"{dhex}/layer.tar", desc["digest"])
        w.bytes(f"{hexid}.json", store.content.read_bytes(image.id))
        manifest.append({"Config": f"{hexid}.json", "RepoTags": tags or None, "Layers": names})
        top = image.diff_ids[-1].split(":", 1)[1] if image.diff_ids else hexid
        for tag in tags:
            ref = reference.parse(tag)
            repositories.setdefault(ref.familiar_name, {})[ref.tag] = top
    w.bytes("manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    if repositories:
        w.bytes("repositories", json.dumps(repositories, separators=(",", ":"), sort_keys=True).encode())


def _write_uncompressed(store, w: _TarWriter, name: str, digest: str) -> None:
    path = store.content.path(digest)
    if not layers.is_gzip(path):
        w.file(name, path)
        return
    # A tar entry needs its size up front: decompress to a temporary file first.
    with tempfile.NamedTemporaryFile(dir=store.tmp, prefix="layer-") as tmp:
        with gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, tmp, 1 << 20)
        tmp.flush()
        w.file(name, Path(tmp.name))


def _write_oci(store, w: _TarWriter, images) -> None:
    w.bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX[0], "manifests": []}
    blobs: list[str] = []
    for image, tags in images:
        blobs += [image.manifest_digest, image.id] + [l["digest"] for l in image.layers]
        desc = {"mediaType": MEDIA_MANIFESTS[0], "digest": image.manifest_digest, "size": store.content.size(image.manifest_digest)}
        for tag in tags or [None]:
            d = dict(desc)
            if tag:
                full = reference.parse(tag)
                d["annotations"] = {ANNOTATION_NAME: str(full), ANNOTATION_REF: full.tag}
            index["manifests"].append(d)
    w.bytes("index.json", json.dumps(index, separators=(",", ":")).encode())
    w.dir("blobs/")
    w.dir("blobs/sha256/")
    for digest in sorted(set(blobs)):
        w.file(_blob_name(digest), store.content.path(digest))
