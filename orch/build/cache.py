"""The build cache: which earlier step a build step may reuse.

A step is reused when three things are unchanged (docker's classic builder and buildkit agree):

1. its parent: the id of the image state the step starts from (the config digest of the
   previous step's result, or of the base image);
2. its instruction, after variable expansion (`COPY $SRC /app` with SRC changed is another
   step), with its flags;
3. the content it reads: for COPY and ADD, a digest over the sources' names, types, modes,
   owners, link targets and file contents, but never their mtimes (a `git checkout` or a
   `touch` must not invalidate a layer); for RUN, the build arguments in scope, since they
   are in the command's environment without being in the image.

`compute_cache_key` and `compute_sources_digest` are pure: they take values and return a
digest. The index that maps a key to the step's result (an image config and its layer blobs)
lives in `BuildCache`, one small JSON file per key under ORCH_ROOT/build-cache, written to a
temporary file and renamed, so a crashed build leaves either no entry or a whole one.
"""

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from orch import paths
from orch.atomic import write_atomic, write_json_atomic

# Bump when the meaning of a step changes in orch, so old entries are not reused.
CACHE_VERSION = "orch-build-cache-1"


@dataclass(frozen=True)
class SourceEntry:
    """One file a COPY/ADD reads, as the cache sees it: no mtimes, no inode numbers."""

    name: str  # the path relative to the source root it was found under, "/"-separated
    kind: str  # "file", "dir", "symlink", "other"
    mode: int  # permission bits (with setuid/setgid/sticky)
    uid: int
    gid: int
    content: str = ""  # "sha256:..." of a file's bytes, a symlink's target, "" otherwise


def compute_sources_digest(entries: list[SourceEntry]) -> str:
    """A digest over the content a COPY/ADD reads; the order of `entries` does not matter."""
    h = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.name):
        h.update(json.dumps([e.name, e.kind, e.mode, e.uid, e.gid, e.content], separators=(",", ":")).encode())
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def compute_cache_key(parent: str, instruction: str, *, sources: str | None = None, build_args: dict[str, str] | None = None,
                      platform: str = "linux/amd64") -> str:
    """The cache key of one step.

    `parent` is the id of the state the step starts from; `instruction` the instruction's
    canonical text after expansion (keyword, flags, arguments); `sources` the digest of what a
    COPY/ADD reads (compute_sources_digest); `build_args` the build arguments a RUN sees.
    """
    value = {
        "v": CACHE_VERSION,
        "parent": parent,
        "instruction": instruction,
        "sources": sources,
        "build_args": sorted((build_args or {}).items()),
        "platform": platform,
    }
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_digest(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# A file changed less than this long before it was hashed may change again within the same
# timestamp tick without its stat changing ("racy git"): its digest is not remembered.
RACY_SECONDS = 2.0


class StatDigests:
    """File digests remembered by what lstat says of the file, so a rebuild reads no file that
    did not change (BuildKit's content hashes keep a stat-keyed cache the same way).

    An entry is used only when path, size, mtime, ctime, inode, device and mode are all the
    same as when the file was hashed. ctime cannot be set from user space: a file written and
    then given its old mtime back (`touch -d`, `cp -p`, an archive extraction) still has a
    new ctime, so it is hashed again. A file that changed less than RACY_SECONDS before it
    was hashed is not remembered, because a second write in the same timestamp tick would
    leave its stat as it was. One JSON file per build context under ORCH_ROOT/build-stat,
    holding the entries of that context's last build; it is written (atomically) only when
    something changed, and a lost or broken file only costs hashing again.
    """

    def __init__(self, root: Path, context: Path | str, *, now: float | None = None):
        self.dir = Path(root) / "build-stat"
        self.path = self.dir / hashlib.sha256(os.fsencode(str(context))).hexdigest()
        self.now = time.time() if now is None else now
        try:
            self.known: dict[str, list] = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            self.known = {}
        self.seen: dict[str, list] = {}
        self.changed = False

    @staticmethod
    def _stamp(st: os.stat_result) -> list:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, st.st_mode]

    def digest(self, path: str, st: os.stat_result) -> str:
        """The file's sha256, from memory when `st` (its lstat, or stat for a followed link)
        matches what was recorded."""
        stamp = self._stamp(st)
        entry = self.known.get(path)
        if entry is not None and entry[:-1] == stamp:
            self.seen[path] = entry
            return entry[-1]
        digest = file_digest(path)
        # Read what was hashed against the file as it is now: a write during the read shows.
        after = os.stat(path)
        if self._stamp(after) == stamp and self.now - max(st.st_mtime, st.st_ctime) >= RACY_SECONDS:
            self.seen[path] = stamp + [digest]
            self.changed = True
        elif path in self.known:
            self.changed = True  # the old entry is dropped
        return digest

    def save(self) -> None:
        """Keep the entries of this build (not those of files it no longer reads)."""
        if not self.changed and len(self.seen) == len(self.known):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        # Not fsync'd: digests lost to a power loss are read again, nothing more.
        write_atomic(self.path, json.dumps(self.seen, separators=(",", ":")).encode(), durable=False)


class BuildCache:
    """Cache entries: key -> {"config": the step's image config (dict), "layers": [blob digests]}."""

    def __init__(self, root: Path):
        self.dir = Path(root) / "build-cache"
        paths.private_dir(self.dir)  # root only: see orch.paths

    def _path(self, key: str) -> Path:
        return self.dir / key.split(":", 1)[-1]

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self._path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, entry: dict) -> None:
        # Not fsync'd: a cache entry lost to a power loss is a rebuilt step, nothing more.
        write_json_atomic(self._path(key), entry, durable=False)

    def drop(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def clear(self) -> int:
        """Remove every entry (the layers stay with the images that use them); return how many."""
        n = 0
        for p in self.dir.iterdir():
            p.unlink(missing_ok=True)
            n += 1
        return n
