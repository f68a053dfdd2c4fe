"""The content store: immutable blobs addressed by their sha256 digest.

As in containerd's `core/content`, content is first *ingested* into a private temporary file,
its digest is computed while it is written, and only when the digest is verified is the file
*committed* by an atomic rename into `blobs/sha256/<hex>`. A reader therefore never sees a
partial or unverified blob: a blob path either does not exist or holds the right bytes, even if
the process is killed half-way through a write.

Layout under the store's root (ORCH_ROOT/content):

    blobs/sha256/<hex>   committed blobs, read-only
    ingest/<random>      blobs being written; left-overs of a crash are removed on open
"""

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator

from orch import paths
from orch.errors import InvalidArgument, NotFound

CHUNK = 1 << 20


def check_digest(digest: str) -> str:
    """Return the hex part of a "sha256:<64 hex>" digest, or raise a one-line error."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise InvalidArgument(f"invalid digest '{digest}': want 'sha256:' and 64 lower-case hex digits")
    return hexpart


class Writer:
    """One blob being ingested. Use as a context manager; nothing is visible until commit()."""

    def __init__(self, store: "ContentStore"):
        self.store = store
        fd, name = tempfile.mkstemp(dir=store.ingest_dir, prefix="ingest-")
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0
        self.committed: str | None = None

    def write(self, data: bytes) -> int:
        self.file.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def copy_from(self, src: BinaryIO) -> None:
        while chunk := src.read(CHUNK):
            self.write(chunk)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def commit(self, expected: str | None = None) -> str:
        """Verify the digest (when `expected` is given), then publish the blob atomically."""
        digest = self.digest
        if expected is not None and expected != digest:
            self.abort()
            raise InvalidArgument(f"content digest mismatch: expected {expected}, got {digest} ({self.size} bytes); the source is corrupt or truncated")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        final = self.store.path(digest)
        if final.exists():
            # Someone else committed the same bytes: content addressing makes them equal.
            self.path.unlink()
        else:
            os.chmod(self.path, 0o444)
            os.rename(self.path, final)
        self.committed = digest
        return digest

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        if self.committed is None:
            self.abort()


class ContentStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.blob_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        paths.private_dir(self.root)  # root only: see orch.paths
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)
        self._clean_stale_ingests()

    def _clean_stale_ingests(self, age: float = 3600.0) -> None:
        # Ingests of a crashed process are garbage; a live writer's file is younger than this.
        now = time.time()
        for p in self.ingest_dir.iterdir():
            try:
                if now - p.stat().st_mtime > age:
                    p.unlink()
            except FileNotFoundError:
                pass

    def path(self, digest: str) -> Path:
        return self.blob_dir / check_digest(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        return self._existing(digest).stat().st_size

    def writer(self) -> Writer:
        return Writer(self)

    def write_bytes(self, data: bytes, expected: str | None = None) -> str:
        # A blob already in the store is the same bytes by its name: nothing to write or sync
        # (a cached rebuild records the same image config and manifest again).
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if (expected is None or expected == digest) and self.has(digest):
            return digest
        with self.writer() as w:
            w.write(data)
            return w.commit(expected)

    def ingest(self, src: BinaryIO, expected: str | None = None) -> str:
        """Copy a stream into the store; verify it against `expected` when given."""
        if expected is not None and self.has(expected):
            return expected
        with self.writer() as w:
            w.copy_from(src)
            return w.commit(expected)

    def open(self, digest: str) -> BinaryIO:
        return open(self._existing(digest), "rb")

    def read_bytes(self, digest: str) -> bytes:
        return self._existing(digest).read_bytes()

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def list(self) -> Iterator[str]:
        for p in sorted(self.blob_dir.iterdir()):
            yield "sha256:" + p.name

    def _existing(self, digest: str) -> Path:
        p = self.path(digest)
        if not p.exists():
            raise NotFound(f"no such blob: {digest} in {self.blob_dir}")
        return p
