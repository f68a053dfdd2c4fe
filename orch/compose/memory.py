"""What `up` remembers between runs: the updates it rolled back.

When a rolling update fails with failure_action: rollback, the replicas go back to the old
configuration, and the stack file still asks for the new one. Without memory the next `up`
would see outdated replicas and roll the same failing change out again, silently. Swarm keeps
the service's UpdateStatus ("rollback_completed" and why) in its store; orch keeps the same
fact in the project's state document on the node (the agent's /projects/{name}/state):

    {"rolled_back": {"app": {"hash": "<the config hash that failed>", "reason": "...", "at": "..."}}}

Each `up` reads it before planning (`compute_remembered`, pure): an entry stays while the
stack file still asks for that very hash, and `up` then leaves the service as it is, says so,
and exits 1; an entry whose service changed (another hash) is dropped, so a fixed file rolls
out normally; `up --force-recreate` drops the entries of the services it names and tries the
update again. `down` forgets the project.
"""

from __future__ import annotations

from typing import Mapping

from orch.client import quoted
from orch.scheduler.model import short_hash


def compute_remembered(doc: Mapping, desired_hashes: Mapping[str, str], forced: set[str]) -> dict[str, dict]:
    """The rolled back entries that still hold: the file asks for the hash that was rolled
    back, and this `up` does not force the service to be recreated."""
    kept = {}
    for service, entry in (doc.get("rolled_back") or {}).items():
        if not isinstance(entry, Mapping) or service in forced:
            continue
        if desired_hashes.get(service) == entry.get("hash"):
            kept[service] = dict(entry)
    return kept


def describe(service: str, entry: Mapping) -> str:
    """The line `up` prints for a service it leaves rolled back."""
    when = f" at {entry['at']}" if entry.get("at") else ""
    why = f" ({entry['reason']})" if entry.get("reason") else ""
    return (f"the update to config hash {short_hash(entry.get('hash'))} failed{when}{why} and was rolled back; "
            f"fix the stack file, or run up --force-recreate {service} to try it again")


def load(client, project: str) -> dict:
    """The project's document on the node ({} when it has none)."""
    doc = client.call("GET", f"/projects/{quoted(project)}/state")
    return doc if isinstance(doc, dict) else {}


def save(client, project: str, doc: dict) -> None:
    if doc.get("rolled_back"):
        client.call("PUT", f"/projects/{quoted(project)}/state", doc)
    else:
        forget(client, project)


def forget(client, project: str) -> None:
    client.call("DELETE", f"/projects/{quoted(project)}/state")
