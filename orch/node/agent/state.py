"""Crash-safe persistence of the agent's container records: one JSON file per container.

ORCH_ROOT/containers/<id>/state.json is written to a temporary file in the same directory,
fsync'd, renamed over the old one and the directory fsync'd (orch.atomic), so
a `kill -9` of the agent at any moment leaves either the old or the new record, never a torn
one. Records are typed and versioned (records.py: docker's inspect view and orch's private
part, kept apart); one written by an older orch is migrated when it is read and written back
in the current format. The supervisor's exit.json beside them is the other half of a
container's truth while the agent is away.
"""

import json
import os
import shutil
from pathlib import Path

from orch import paths
from orch.atomic import write_atomic
from orch.node.agent.records import VERSION, ContainerRecord, load_container

RECORD = "state.json"


class ContainerStore:
    def __init__(self, root: Path):
        self.dir = Path(root) / "containers"
        paths.private_dir(self.dir)  # root only: see orch.paths
        # Removal renames a container's directory here (atomic: the record is there or it is
        # not) and deletes it afterwards, so `rm` and `run --rm` do not wait for rmtree.
        self.trash = Path(root) / "containers-trash"
        paths.private_dir(self.trash)

    def path(self, cid: str) -> Path:
        return self.dir / cid

    def save(self, record: ContainerRecord, durable: bool = True) -> None:
        d = self.path(record["Id"])
        d.mkdir(mode=0o700, exist_ok=True)
        write_atomic(d / RECORD, record.to_json(), durable=durable)

    def load_all(self) -> tuple[list[ContainerRecord], list[str]]:
        """Every record on disk, and the ids of directories without one (a crash inside
        `create`). Leftovers of a crash mid-write (*.tmp.*) are removed; a record of an
        older format is written back in the current one."""
        records, incomplete = [], []
        for d in sorted(self.dir.iterdir()):
            for tmp in d.glob(f"{RECORD}.tmp.*"):
                tmp.unlink(missing_ok=True)
            try:
                raw = (d / RECORD).read_bytes()
            except FileNotFoundError:
                incomplete.append(d.name)
                continue
            record, version = load_container(raw, str(d / RECORD))
            if version != VERSION:
                self.save(record, durable=False)  # migrated; the old file stays whole until the rename
            records.append(record)
        return records, incomplete

    def read_exit(self, cid: str) -> dict | None:
        try:
            with open(self.path(cid) / "exit.json") as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def discard(self, cid: str) -> Path | None:
        """Take a container's directory out of the store at once (a rename); return where it
        went, for `empty_trash` to delete later."""
        try:
            gone = self.trash / f"{cid}.{os.getpid()}"
            os.rename(self.path(cid), gone)
            return gone
        except FileNotFoundError:
            return None

    def empty_trash(self) -> None:
        for d in list(self.trash.iterdir()):
            shutil.rmtree(d, ignore_errors=True)

    def delete(self, cid: str) -> None:
        self.discard(cid)
        self.empty_trash()

    def config_path(self, cid: str) -> str:
        return os.fspath(self.path(cid) / "config.json")

    def log_path(self, cid: str) -> str:
        return os.fspath(self.path(cid) / "container.log")
