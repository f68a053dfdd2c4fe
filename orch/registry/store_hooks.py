"""What the registry code needs from the image store beyond its public interface.

Discarding what a failed pull left behind (verified blobs and unpacked layers that no image
references), so a failed pull keeps nothing; recording a RepoDigest (ImageStore.add_digest_ref);
and the names an image is known under on a registry.
"""

import json

from orch.node.runtime import layers, reference


def add_repo_digest(store, name_at_digest: str, image_id: str) -> None:
    store.add_digest_ref(name_at_digest, image_id)


def discard_unreferenced(store, blobs: list[str], diff_ids: list[str]) -> None:
    """Delete the given blobs and the layers of `diff_ids` unless an image still needs them."""
    keep_blobs: set[str] = set()
    keep_chains = set(store.snapshots.in_use())
    for image in store.list():
        keep_blobs.update([image.id, image.manifest_digest] + [l["digest"] for l in image.layers])
        keep_chains.update(image.chain_ids)
    for digest in blobs:
        if digest not in keep_blobs:
            store.content.delete(digest)
    for chain in reversed(layers.chain_ids(diff_ids)):
        if chain not in keep_chains and store.snapshots.exists(chain):
            store.snapshots.remove_committed(chain)


def image_digest_names(image, domain: str) -> list[str]:
    """The repositories on `domain` this image is known under (sources for a cross-repo mount)."""
    out = []
    for name in list(image.repo_tags) + list(image.repo_digests):
        try:
            ref = reference.parse(name)
        except Exception:
            continue
        if ref.domain == domain and ref.path not in out:
            out.append(ref.path)
    return out


def manifest_json(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
