"""Named and anonymous volumes: directories under the node's root that outlive containers.

`VolumeStore(root)` keeps each volume at ROOT/volumes/<name>/_data with its metadata beside it
in meta.json (written atomically, typed and versioned: volumerecord.py), as docker's `local`
driver lays them out. The store knows
nothing of containers: whoever removes a volume says which containers use it (`in_use`), so
"a volume in use cannot be removed" is decided where the container records are (the agent).

Filling a new volume from the image (`prefill`): docker copies what the image has at the mount
path into an empty volume the first time a container mounts it. orch does it in a short-lived
worker process (`python -m orch.node.runtime.volumes`) that makes a private mount namespace,
mounts the image's layers read-only there (an overlay of the lower dirs, so the top-most layer
wins and whiteouts hide what they delete, exactly as the container will see it), resolves the
path inside that root as the container would (a symbolic link in the image cannot point the
copy at the host), and copies with `cp -a` (owners, modes, times, links, xattrs). The worker's
mounts vanish with its namespace, also when it is killed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from orch import paths
from orch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, SystemFailure

# Docker's rule for volume names.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
META = "meta.json"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


class VolumeStore:
    def __init__(self, root: Path):
        self.dir = Path(root) / "volumes"
        # Told of each volume made and removed, as docker's events name them:
        # listener("create" | "destroy", name). The agent sets it to its event bus.
        self.listener = None

    def _tell(self, action: str, name: str) -> None:
        if self.listener is not None:
            self.listener(action, name)

    def _meta_path(self, name: str) -> Path:
        return self.dir / name / META

    def data_path(self, name: str) -> Path:
        return self.dir / name / "_data"

    def create(self, name: str | None = None, *, labels: dict | None = None, driver: str = "local",
               driver_opts: dict | None = None, anonymous: bool = False, exist_ok: bool = True) -> dict:
        """Make a volume (an existing one of that name is returned as it is, as docker does)."""
        if driver not in ("", "local"):
            raise InvalidArgument(f"volume driver {driver!r} is not available; orch has only the 'local' driver")
        if driver_opts:
            raise InvalidArgument(f"volume options {sorted(driver_opts)} are not supported by orch's local driver; "
                                  "create the volume without -o")
        if name is None:
            name, anonymous = secrets.token_hex(32), True
        if not _NAME.fullmatch(name):
            raise InvalidArgument(f"invalid volume name {name!r}: use letters, digits, '_', '.', '-', starting with a letter or digit")
        if self._meta_path(name).exists():
            if not exist_ok:
                raise AlreadyExists(f"volume {name} already exists")
            self._tell("create", name)  # docker tells of a create that finds the volume made, too
            return self.get(name)
        paths.private_dir(self.dir)  # root only (a volume holds what containers leave): see orch.paths
        # The data directory first and the metadata last: meta.json is the commit point, a
        # crash before it leaves a directory that `list` ignores and `create` completes.
        self.data_path(name).mkdir(parents=True, exist_ok=True)
        from orch.atomic import write_atomic
        from orch.node.runtime.volumerecord import VERSION, VolumeRecord

        record = VolumeRecord(
            version=VERSION, Name=name, Mountpoint=str(self.data_path(name)), Labels=dict(labels or {}) | ({ANONYMOUS_LABEL: ""} if anonymous else {}),
            CreatedAt=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        write_atomic(self._meta_path(name), record.model_dump_json().encode())
        self._tell("create", name)
        return record.view()

    def get(self, name: str) -> dict:
        """docker's volume inspect of `name` (a meta.json of any version)."""
        from orch.node.runtime.volumerecord import load_volume

        try:
            text = self._meta_path(name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no such volume: {name}") from None
        return load_volume(text, str(self._meta_path(name))).view()

    def exists(self, name: str) -> bool:
        return self._meta_path(name).exists()

    def list(self) -> list[dict]:
        if not self.dir.is_dir():
            return []
        out = []
        for d in sorted(self.dir.iterdir()):
            try:
                out.append(self.get(d.name))
            except NotFound:
                continue  # a directory without meta.json: a create cut short, completed by the next
            except SystemFailure as err:
                print(f"volumes: {err}", file=sys.stderr, flush=True)
        return out

    def remove(self, name: str, in_use: list[str] = (), force: bool = False) -> None:
        """Delete a volume and its data. Refused while a container uses it, even with force
        (docker's force only silences "no such volume")."""
        if not self.exists(name):
            if force:
                return
            raise NotFound(f"no such volume: {name}")
        if in_use:
            raise Conflict(f"volume {name} is in use by container(s) {', '.join(in_use)}; remove them first "
                           "(or 'orch rm -v' for their anonymous volumes)")
        # Rename first, so that the volume is gone at once and a crash mid-delete leaves no
        # half volume under its name; then delete the renamed directory.
        trash = self.dir / f".trash-{name}-{os.getpid()}"
        os.rename(self.dir / name, trash)
        self._tell("destroy", name)
        shutil.rmtree(trash, ignore_errors=True)

    def prune(self, in_use: set[str], all_volumes: bool = False) -> tuple[list[str], int]:
        """Remove unused volumes: anonymous ones only unless all_volumes (docker 23's rule).
        Returns the names removed and the bytes freed."""
        gone, freed = [], 0
        for meta in self.list():
            name = meta["Name"]
            if name in in_use or (not all_volumes and ANONYMOUS_LABEL not in meta.get("Labels", {})):
                continue
            freed += _size(self.data_path(name))
            self.remove(name)
            gone.append(name)
        return gone, freed

    def is_empty(self, name: str) -> bool:
        try:
            return not any(os.scandir(self.data_path(name)))
        except FileNotFoundError:
            return True

    def prefill(self, name: str, layers: list[str], path: str) -> None:
        """Copy what the image has at `path` (layers: the image's lower dirs, top first) into
        the volume, if the volume is empty; nothing when the image has nothing there."""
        if not layers or not self.is_empty(name):
            return
        # Most volume paths (/data, /var/lib/db) are not in the image at all: when no layer has
        # even the path's first component, skip the worker (a Python start, ~50 ms).
        first = path.strip("/").split("/")[0]
        if not any(os.path.lexists(os.path.join(layer, first)) for layer in layers):
            return
        args = json.dumps({"layers": layers, "path": path, "dest": str(self.data_path(name))})
        proc = subprocess.run([sys.executable, "-m", "orch.node.runtime.volumes", args], capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise SystemFailure(f"fill volume {name} from the image's {path}: {last}")


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _copy_from_image(layers: list[str], path: str, dest: str) -> None:
    """The worker: runs alone in its own process (unshare of the mount namespace needs that)."""
    import tempfile

    from orch.node.runtime.init import resolve_in_root
    from orch.node.runtime.kernel import LinuxSyscalls

    sys_ = LinuxSyscalls()
    sys_.unshare(("mount",))
    sys_.mount("", "/", "", ("MS_REC", "MS_PRIVATE"))
    if len(layers) == 1:
        _copy_dir(resolve_in_root(layers[0], path, sys_.lstat_kind), dest, sys_)
        return  # one layer is its own view (overlay wants two lower dirs without an upper)
    root = tempfile.mkdtemp(prefix="orch-prefill-")
    try:
        sys_.mount_overlay(layers, "", "", root, ())
        try:
            _copy_dir(resolve_in_root(root, path, sys_.lstat_kind), dest, sys_)
        finally:
            sys_.umount2(root, 2)  # MNT_DETACH
    finally:
        os.rmdir(root)


def _copy_dir(source: str, dest: str, sys_) -> None:
    if sys_.lstat_kind(source) != "dir":
        return  # nothing at that path in the image (or not a directory): the volume stays empty
    result = subprocess.run(["cp", "-a", "--", source + "/.", dest + "/"], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemFailure(f"cp -a: {result.stderr.strip()}")


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    try:
        _copy_from_image(spec["layers"], spec["path"], spec["dest"])
    except Exception as err:  # one line to the agent, which wraps it in its own error
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
