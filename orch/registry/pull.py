"""`orch pull`: fetch an image from a registry into the image store.

The order of work makes a failed pull leave nothing behind:

1. resolve the reference (docker's defaults: "busybox" is docker.io/library/busybox:latest);
2. fetch the manifest (from an index, the linux/amd64 one), digest-verified;
3. fetch the image config, digest-verified, and check it lists one diff ID per layer;
4. download the layers in parallel, each streamed into a content-store writer that commits
   only when the bytes hash to the descriptor's digest (gzip blobs are kept as they are; zstd
   blobs, verified, are decompressed and kept as plain tars since the layer code reads gzip);
5. register the image (the store unpacks each layer and checks its diff ID), its tag and its
   RepoDigest (name@digest of the manifest or index the tag pointed to).

If any step fails, the blobs this pull committed and the layers it unpacked are removed again
unless an image already uses them.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

from orch.errors import InvalidArgument, OrchError
from orch.registry import credentials, manifest as mf, names, store_hooks
from orch.registry.client import RegistryClient
from orch.registry.progress import Events, Throttle, ignore

PARALLEL = 3  # docker's default max-concurrent-downloads


class Cancelled(OrchError):
    pass


def open_client(loc: names.Location, lookup=credentials.lookup, *, transport=None, chunk_size: int | None = None) -> RegistryClient:
    what = f"Docker Hub ({loc.host})" if loc.is_docker_hub else loc.host
    kw = {"chunk_size": chunk_size} if chunk_size else {}
    return RegistryClient(loc.host, loc.scheme, lookup(loc.ref.domain), transport=transport, what=what, **kw)


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def pull(store, ref: str, *, events: Events = ignore, lookup=credentials.lookup, transport=None, parallel: int = PARALLEL,
         insecure: str | None = None):
    """Pull `ref` into `store`; return the Image. Progress goes to `events` (see progress.py)."""
    loc = names.locate(ref, os.environ.get("ORCH_INSECURE_REGISTRIES", "") if insecure is None else insecure)
    with open_client(loc, lookup, transport=transport) as client:
        return _pull(store, client, loc, events, parallel)


def _pull(store, client: RegistryClient, loc: names.Location, events: Events, parallel: int):
    ref, repo = loc.ref, loc.repository
    target = ref.digest or ref.tag
    if loc.defaulted_tag:
        events({"status": f"Using default tag: {ref.tag}"})
    events({"status": f"{target}: Pulling from {repo}"})
    shown = ref.familiar() if loc.is_docker_hub else str(ref)
    if not ref.digest:
        # A HEAD says where the tag points; if this node has that already, nothing is fetched.
        known = client.head_manifest(repo, target)
        if known and store.exists(f"{ref.name}@{known}"):
            image = store.resolve(f"{ref.name}@{known}")
            store.tag(image.id, str(ref))
            events({"status": f"Digest: {known}"})
            events({"status": f"Status: Image is up to date for {shown}"})
            events({"status": str(ref)})
            return store.resolve(image.id)
    media, doc, _raw, top_digest = client.get_manifest(repo, target)
    if media in mf.INDEXES:
        desc = mf.pick_platform(doc, f"{ref.familiar()}")
        media, doc, _raw, _ = client.get_manifest(repo, desc["digest"])
        if media in mf.INDEXES:
            raise InvalidArgument(f"{ref.familiar()}: the linux/amd64 entry of its index is another index; orch does not follow nested indexes")
    config_desc = doc["config"]
    config_bytes = client.get_blob(repo, config_desc["digest"])
    config = _json(config_bytes, ref)
    if config.get("os", "linux") != "linux" or config.get("architecture", "amd64") != "amd64":
        raise InvalidArgument(f"{ref.familiar()} is a {config.get('os')}/{config.get('architecture')} image; orch runs linux/amd64 images only")
    layer_descs = mf.check_layers(doc, config, ref.familiar())
    diff_ids = config["rootfs"]["diff_ids"]

    fresh: list[str] = []  # blobs this pull committed: removed again if it fails
    try:
        ordered = _fetch_layers(store, client, ref, layer_descs, events, parallel, fresh)
        for desc in layer_descs:
            events({"status": "Extracting", "id": short(desc["digest"])})
        tags = [str(ref)] if ref.tag and not ref.digest else []
        existed = store.exists(config_desc["digest"])
        image, _notes = store.add_image(config_bytes, ordered, tags)
        store_hooks.add_repo_digest(store, f"{ref.name}@{top_digest}", image.id)
    except BaseException:
        store_hooks.discard_unreferenced(store, fresh + [config_desc["digest"]], diff_ids)
        raise
    for desc in layer_descs:
        events({"status": "Pull complete", "id": short(desc["digest"])})
    events({"status": f"Digest: {top_digest}"})
    if existed and not fresh:
        events({"status": f"Status: Image is up to date for {shown}"})
    else:
        events({"status": f"Status: Downloaded newer image for {shown}"})
    events({"status": str(ref)})
    return store.resolve(image.id)


def _fetch_layers(store, client: RegistryClient, ref, descs: list[dict], events: Events, parallel: int, fresh: list[str]) -> list[tuple[str, str]]:
    """Download the layers in parallel; return their (blob digest, media type) in order.

    Every blob committed is appended to `fresh`, so the caller can remove them on failure.
    The first failure stops the others: downloads under way at their next chunk, queued ones
    before they start.
    """
    lock = threading.Lock()
    cancel = threading.Event()

    def committed(digest: str) -> None:
        with lock:
            fresh.append(digest)

    def fetch(desc: dict) -> tuple[str, str]:
        digest, size = desc["digest"], desc["size"]
        kind = mf.compression(desc.get("mediaType", mf.LAYER_GZIP))
        if store.content.has(digest):
            events({"status": "Already exists", "id": short(digest)})
            return digest, _oci_media(kind)
        events({"status": "Pulling fs layer", "id": short(digest)})
        throttle = Throttle(events, "Downloading", short(digest), size)

        def progress(n: int) -> None:
            if cancel.is_set():
                raise Cancelled(f"pull of {ref.familiar()} cancelled")
            throttle(n)

        with store.content.writer() as w:
            client.fetch_blob(ref.path, digest, size, w, progress)
            events({"status": "Verifying Checksum", "id": short(digest)})
            w.commit(digest)
        committed(digest)
        events({"status": "Download complete", "id": short(digest)})
        if kind == "zstd":
            plain = _decompress_zstd(store, digest, ref)
            committed(plain)
            return plain, mf.LAYER_TAR
        return digest, _oci_media(kind)

    results: dict[int, tuple[str, str]] = {}
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="pull") as pool:
        futures = {pool.submit(fetch, d): i for i, d in enumerate(descs)}
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
        except BaseException:
            cancel.set()
            for fut in futures:
                fut.cancel()
            raise
    return [results[i] for i in range(len(descs))]


def _oci_media(kind: str) -> str:
    return {"gzip": mf.LAYER_GZIP, "": mf.LAYER_TAR}.get(kind, mf.LAYER_TAR)


def _json(data: bytes, ref) -> dict:
    import json

    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"{ref.familiar()}: the image config is not JSON: {err}") from None
    if not isinstance(value, dict) or not isinstance(value.get("rootfs"), dict):
        raise InvalidArgument(f"{ref.familiar()}: the image config has no rootfs section")
    return value


def _decompress_zstd(store, digest: str, ref) -> str:
    """A verified zstd layer as a plain tar blob (the layer code unpacks tar and tar+gzip)."""
    try:
        import zstandard
    except ImportError:
        raise InvalidArgument(f"{ref.familiar()}: layer {digest} is zstd-compressed; install the 'zstandard' package to pull it") from None
    with store.content.open(digest) as src, store.content.writer() as w:
        reader = zstandard.ZstdDecompressor().stream_reader(src)
        while chunk := reader.read(1 << 20):
            w.write(chunk)
        plain = w.commit()
    store.content.delete(digest)
    return plain
