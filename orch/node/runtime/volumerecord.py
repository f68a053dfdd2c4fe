"""A volume's meta.json, typed and versioned (the node's records: orch/node/agent/records.py).

The fields are docker's volume inspect, which the API shows as they are; `version` is orch's
and is left out of that view. Files written before records had a version (version 1) have the
same fields and are read as they are. Kept apart from volumes.py so the volume-filling worker,
which never reads a record, does not import pydantic.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orch.errors import SystemFailure

VERSION = 2


class VolumeRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: int = 1  # a file without one: it has the same fields
    Name: str
    Driver: str = "local"
    Mountpoint: str
    Labels: dict[str, str] = Field(default_factory=dict)
    Options: dict[str, str] = Field(default_factory=dict)
    Scope: str = "local"
    CreatedAt: str = ""

    def view(self) -> dict:
        """docker's volume inspect."""
        return self.model_dump(exclude={"version"})


def load_volume(text: str | bytes, where: str) -> VolumeRecord:
    try:
        record = VolumeRecord.model_validate_json(text)
    except ValidationError as err:
        e = err.errors()[0]
        raise SystemFailure(f"{where}: not a volume record orch can read ({'.'.join(map(str, e['loc']))}: {e['msg'].lower()})") from None
    if record.version > VERSION:
        raise SystemFailure(f"{where}: a volume record of version {record.version}, newer than this orch ({VERSION})")
    return record
