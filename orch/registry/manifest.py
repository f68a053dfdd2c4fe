"""Manifests and indexes of the OCI and Docker (schema 2) kinds, and the platform choice.

A registry answers a manifest request with one of four documents: an OCI image manifest or a
Docker v2 schema 2 manifest (a config and layers), or an OCI image index or a Docker manifest
list (one manifest per platform). orch runs linux/amd64 only, so from an index it picks the
linux/amd64 entry, as docker does on this machine.

Pure: no I/O.
"""

import json

from orch.errors import InvalidArgument, NotFound

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(MANIFESTS + INDEXES)

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

PLATFORM = ("linux", "amd64")


def compression(media_type: str) -> str:
    """"gzip", "zstd" or "" (an uncompressed tar), from a layer's media type."""
    if media_type in (LAYER_GZIP, DOCKER_LAYER_GZIP, DOCKER_FOREIGN, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"):
        return "gzip"
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        return "zstd"
    if media_type in (LAYER_TAR, "application/vnd.docker.image.rootfs.diff.tar", "application/vnd.oci.image.layer.nondistributable.v1.tar"):
        return ""
    raise InvalidArgument(f"unsupported layer media type '{media_type}'")


def parse_document(data: bytes, content_type: str, what: str) -> tuple[str, dict]:
    """(media type, document) of a manifest or index; the body's mediaType wins over the header."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"{what}: the registry sent a manifest that is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what}: the registry sent a manifest that is not a JSON object")
    media = doc.get("mediaType") or content_type.split(";")[0].strip()
    if not media:
        # OCI documents may omit mediaType: an index has "manifests", a manifest has "config".
        media = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media not in MANIFESTS + INDEXES:
        hint = " (schema 1 manifests are obsolete; re-push the image with a current tool)" if "schema1" in media or doc.get("schemaVersion") == 1 else ""
        raise InvalidArgument(f"{what}: unsupported manifest type '{media}'{hint}")
    if media in MANIFESTS and not isinstance(doc.get("config"), dict):
        raise InvalidArgument(f"{what}: the manifest has no config descriptor")
    return media, doc


def pick_platform(index: dict, what: str) -> dict:
    """The descriptor of the linux/amd64 manifest in an index (the first one, if several)."""
    found = []
    for desc in index.get("manifests") or []:
        platform = desc.get("platform") or {}
        pair = (platform.get("os"), platform.get("architecture"))
        if pair == PLATFORM:
            return desc
        if pair != (None, None):
            found.append("/".join(p for p in pair if p))
    have = ", ".join(sorted(set(found))) or "no platforms"
    raise NotFound(f"{what}: no linux/amd64 image in its index (it has {have}); orch runs linux/amd64 images only")


def check_layers(manifest: dict, config: dict, what: str) -> list[dict]:
    """The layer descriptors, checked against the config's diff IDs (one layer per diff ID)."""
    layers = manifest.get("layers") or []
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(layers) != len(diff_ids):
        raise InvalidArgument(f"{what}: the manifest lists {len(layers)} layers but the image config {len(diff_ids)} diff IDs")
    for desc in layers:
        compression(desc.get("mediaType", ""))
        if not isinstance(desc.get("digest"), str) or not isinstance(desc.get("size"), int):
            raise InvalidArgument(f"{what}: a layer descriptor lacks its digest or size")
    return layers


def image_manifest(config_digest: str, config_size: int, layers: list[dict]) -> dict:
    """An OCI image manifest for a config and (gzip) layer descriptors."""
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layers,
    }
