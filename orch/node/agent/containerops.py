"""What changes a container after its creation without starting or stopping it: `rename`,
`update` (its limits and restart policy), and `container prune` (the stopped ones go).

Each is called by its route (routes_containers.py) in the agent's trio thread and publishes
docker's event (rename with oldName, update, prune with reclaimed).
"""

from __future__ import annotations

import json
import os

import trio

from orch.atomic import write_json_atomic
from orch.errors import AlreadyExists, InvalidArgument, OrchError
from orch.node.agent import names as naming


def rename(node, rec: dict, new: str) -> None:
    """docker rename: the record's name, and the DNS names of a container on bridge networks."""
    if not new:
        raise InvalidArgument("Neither old nor new names may be empty")
    new = naming.check_name(new)
    old = rec["Name"].lstrip("/")
    if new == old:
        raise InvalidArgument("Renaming a container with the same name as its current name")
    taken = {r["Name"].lstrip("/"): cid for cid, r in node.records.items()}
    if new in taken or new in node.reserved:
        raise AlreadyExists(f'Error when allocating new name: Conflict. The container name "/{new}" is already in use by container '
                            f'"{taken.get(new, "")}". '
                            "You have to remove (or rename) that container to be able to reuse that name.")
    rec["Name"] = "/" + new
    node.save(rec)
    if node.net is not None:
        node.net.rename(rec["Id"], old, new)
    node.events.container(rec, "rename", oldName="/" + old)


async def update(node, rec: dict, body: dict) -> list[str]:
    """docker update: the record (HostConfig) and config.json for every container, and the
    cgroup of a running one. Returns docker's Warnings."""
    from orch.node.agent.updatespec import compute_update
    from orch.node.runtime.config import Resources

    path = node.store.config_path(rec["Id"])
    with open(path) as f:
        config = json.load(f)
    old = Resources.from_json(config.get("resources") or {})
    changes, new = compute_update(rec["HostConfig"], old.to_json(), body, auto_remove=bool(rec["HostConfig"].get("AutoRemove")),
                                  cpus=len(os.sched_getaffinity(0)))
    new_resources = Resources.from_json(new)
    if rec["State"]["Status"] in ("running", "paused") and new_resources != old:
        cgroups = node.cgroups()
        try:
            await trio.to_thread.run_sync(cgroups.update, rec.orch.cgroup, old, new_resources)
        except OrchError as err:
            raise type(err)(f"Cannot update container {rec['Id']}: {err}") from None
    config["resources"] = new_resources.to_json()
    await trio.to_thread.run_sync(lambda: write_json_atomic(path, config, durable=False))
    for key, value in changes.items():
        if key == "RestartPolicy":
            # docker's keys only: a policy from deploy.restart_policy gives way to the new one.
            rec["HostConfig"]["RestartPolicy"] = value
        else:
            rec["HostConfig"][key] = value
    node.save(rec)
    node.events.container(rec, "update")
    if "RestartPolicy" in changes and rec["State"]["Status"] == "exited":
        from orch.node.agent import supervision

        supervision.schedule_restart(node, rec, after_boot=False)
    return []


def prune_filters(filters: dict[str, list[str]], now: float):
    """docker's container prune filters, as a predicate on a record: `until` (created before
    a time or a duration ago), `label` and `label!` (key or key=value)."""
    from orch.api.times import docker_timestamp
    from orch.node.agent.views import parse_time

    for key in filters:
        if key not in ("until", "label", "label!"):
            raise InvalidArgument(f"invalid filter '{key}'")
    until = None
    if filters.get("until"):
        if len(filters["until"]) > 1:
            raise InvalidArgument("more than one until filter specified")
        try:
            until = float(docker_timestamp(filters["until"][0], now))
        except ValueError as err:
            raise InvalidArgument(f"invalid until filter {filters['until'][0]!r}: {err}") from None

    def has(labels: dict, wanted: str) -> bool:
        key, eq, value = wanted.partition("=")
        return key in labels and (not eq or labels[key] == value)

    def keep(rec: dict) -> bool:
        labels = rec["Config"].get("Labels") or {}
        if until is not None and (parse_time(rec["Created"]) or 0) >= until:
            return False
        if not all(has(labels, w) for w in filters.get("label", ())):
            return False
        return not any(has(labels, w) for w in filters.get("label!", ()))

    return keep


async def prune(node, filters: dict[str, list[str]]) -> dict:
    """docker container prune: every container that is not running nor paused (created ones
    too) and passes `filters`; {"ContainersDeleted", "SpaceReclaimed"} (their rw layers)."""
    import time

    from orch.node.runtime.snapshots import content_size

    match = prune_filters(filters, time.time())
    deleted, reclaimed = [], 0
    for rec in list(node.records.values()):
        if rec["State"]["Status"] not in ("created", "exited", "dead") or not match(rec):
            continue
        upper = node.images.upper_dir(rec["Id"]) if node.images is not None else None
        # docker's SizeRw: what the container wrote, file bytes counted once per inode.
        size = await trio.to_thread.run_sync(lambda: content_size(upper) if upper and os.path.exists(upper) else 0)
        try:
            await node.remove(rec, force=False)
        except OrchError:
            continue  # it started meanwhile, or is being removed: docker skips it too
        deleted.append(rec["Id"])
        reclaimed += size
    node.events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}
