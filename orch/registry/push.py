"""`orch push`: send an image from the image store to a registry.

The image's layers go as gzip blobs. A layer the store keeps uncompressed (an import, a build
step) is compressed reproducibly first: gzip with mtime 0 and no file name, so the same layer
always gives the same blob digest and a second push finds it on the registry. Per blob:

1. HEAD on the registry: present -> "Layer already exists", nothing sent;
2. else a cross-repository mount from another repository of the same registry the image is
   known under -> "Mounted from X";
3. else a chunked, resumable upload (client.py) -> "Pushed".

Then the config blob, then an OCI image manifest under the tag. The manifest's digest is
recorded as the image's RepoDigest, as docker does.
"""

import gzip
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from orch.errors import InvalidArgument
from orch.node.runtime import layers as layer_io
from orch.registry import credentials, manifest as mf, names, store_hooks
from orch.registry.client import RegistryClient
from orch.registry.progress import Events, Throttle, ignore
from orch.registry.pull import open_client, short

PARALLEL = 5  # docker's default max-concurrent-uploads


def gzip_reproducibly(src, dst) -> None:
    """gzip with no name and mtime 0: the same tar always gives the same bytes."""
    with gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=6) as gz:
        shutil.copyfileobj(src, gz, 1 << 20)


def push(store, ref: str, *, events: Events = ignore, lookup=credentials.lookup, transport=None, parallel: int = PARALLEL,
         chunk_size: int | None = None, insecure: str | None = None) -> str:
    """Push the image named `ref` to its registry; return the manifest digest."""
    loc = names.locate(ref, os.environ.get("ORCH_INSECURE_REGISTRIES", "") if insecure is None else insecure)
    if loc.ref.digest:
        raise InvalidArgument(f"cannot push '{ref}' by digest; tag the image and push the tag ('orch tag IMAGE NAME:TAG')")
    image = store.resolve(ref)
    with open_client(loc, lookup, transport=transport, chunk_size=chunk_size) as client, ExitStack() as cleanup:
        return _push(store, client, loc, image, events, parallel, cleanup)


def _gzip_blob(store, desc: dict, cleanup: ExitStack) -> tuple[str, int, Path]:
    """(digest, size, path) of the layer as a gzip blob; temporary files go when the push ends."""
    path = store.content.path(desc["digest"])
    if layer_io.is_gzip(path):
        return desc["digest"], path.stat().st_size, path
    import hashlib

    fd, name = tempfile.mkstemp(dir=store.tmp, prefix="push-")
    cleanup.callback(os.unlink, name)
    h = hashlib.sha256()

    class _Hashing:
        def write(self, data):
            h.update(data)
            return os.write(fd, data) if len(data) else 0

        def flush(self):
            pass

    with open(path, "rb") as src:
        gzip_reproducibly(src, _Hashing())
    os.close(fd)
    return "sha256:" + h.hexdigest(), os.path.getsize(name), Path(name)


def _push(store, client: RegistryClient, loc: names.Location, image, events: Events, parallel: int, cleanup: ExitStack) -> str:
    repo = loc.repository
    events({"status": f"The push refers to repository [{loc.ref.familiar_name if loc.is_docker_hub else loc.ref.name}]"})
    mount_sources = [r for r in store_hooks.image_digest_names(image, loc.ref.domain) if r != repo]
    blobs = [_gzip_blob(store, desc, cleanup) for desc in image.layers]
    for digest, _, _ in reversed(blobs):
        events({"status": "Preparing", "id": short(digest)})

    def send(blob: tuple[str, int, Path]) -> None:
        digest, size, path = blob
        if client.has_blob(repo, digest):
            events({"status": "Layer already exists", "id": short(digest)})
            return
        location = None
        for source in mount_sources:
            location = client.mount_blob(repo, digest, source)
            if location is None:
                events({"status": f"Mounted from {source}", "id": short(digest)})
                return
            break  # the registry opened an upload session instead: use it
        events({"status": "Waiting", "id": short(digest)})
        client.upload_blob(repo, digest, size, lambda: open(path, "rb"), Throttle(events, "Pushing", short(digest), size), location)
        events({"status": "Pushed", "id": short(digest)})

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="push") as pool:
        for fut in [pool.submit(send, b) for b in blobs]:
            fut.result()
    config_path = store.content.path(image.id)
    config_size = config_path.stat().st_size
    if not client.has_blob(repo, image.id):
        client.upload_blob(repo, image.id, config_size, lambda: open(config_path, "rb"))
    doc = mf.image_manifest(image.id, config_size, [{"mediaType": mf.LAYER_GZIP, "digest": d, "size": s} for d, s, _ in blobs])
    raw = store_hooks.manifest_json(doc)
    digest = client.put_manifest(repo, loc.ref.tag, mf.OCI_MANIFEST, raw)
    store_hooks.add_repo_digest(store, f"{loc.ref.name}@{digest}", image.id)
    events({"status": f"{loc.ref.tag}: digest: {digest} size: {len(raw)}"})
    return digest
