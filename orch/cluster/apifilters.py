"""The `filters` query of GET /nodes, /services and /tasks, with docker's rules.

`filters` is JSON: `{"name": ["web"]}` (the swagger's map[string][]string) or, as docker's
client sends it, `{"name": {"web": true}}`. Values of one key are alternatives (any matches);
keys must all match. What each key matches follows moby's daemon/cluster/filters.go and
swarmkit's list filters:

- nodes: id (prefix), name (prefix of the node's name or hostname), label (engine labels),
  node.label (the node's own labels), role (manager|worker), membership (accepted|pending);
- services: id (prefix), name (prefix), label, mode (replicated|global);
- tasks: id (prefix), name (prefix of SERVICE.SLOT), label (the labels of the task's service,
  as swarmkit matches a task's ServiceAnnotations: `stack ps` lists a stack's tasks by its
  namespace label), service and node (ids: the route resolves names first), desired-state,
  and `_up-to-date`, the docker CLI's internal filter for tasks of the service's current spec.

A `label` value is `KEY` (the label exists) or `KEY=VALUE`. An unknown key, or a role,
membership, mode or desired state that does not exist, is one InvalidArgument line.

Pure: values in, booleans out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from orch.cluster import records as r
from orch.errors import InvalidArgument

Filters = dict[str, list[str]]

NODE_KEYS = ("id", "name", "label", "node.label", "role", "membership")
SERVICE_KEYS = ("id", "name", "label", "mode")
TASK_KEYS = ("id", "name", "label", "service", "node", "desired-state", "_up-to-date")


def parse_filters(text: str | None, accepted: Iterable[str]) -> Filters:
    """The `filters` query as {key: [values]}; refuses a key not in `accepted`."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise InvalidArgument(f"invalid filters {text!r}: not JSON (give {{\"name\": [\"web\"]}})") from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"invalid filters {text!r}: expected a JSON object of lists")
    out: Filters = {}
    accepted = tuple(accepted)
    for key, values in raw.items():
        if key not in accepted:
            raise InvalidArgument(f"invalid filter '{key}'; filters here are {', '.join(k for k in accepted if not k.startswith('_'))}")
        if isinstance(values, dict):  # docker's client: {"value": true}
            values = [v for v, on in values.items() if on]
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidArgument(f"invalid filters: values of '{key}' must be strings")
        out[key] = list(values)
    _check_choices(out, "role", ("manager", "worker"), "Invalid role filter")
    _check_choices(out, "membership", ("accepted", "pending"), "Invalid membership filter")
    _check_choices(out, "mode", ("replicated", "global", "replicated-job", "global-job"), "Invalid mode filter")
    _check_choices(out, "desired-state", tuple(s.value for s in r.TaskState), "Invalid desired-state filter")
    return out


def _check_choices(filters: Filters, key: str, choices: tuple[str, ...], what: str) -> None:
    for value in filters.get(key, ()):
        if value and value.lower() not in choices:
            raise InvalidArgument(f"{what}: '{value}'; use {' or '.join(choices[:4])}")


def _any(values: list[str] | None, test) -> bool:
    """No filter on the key, or one of its values passes."""
    return values is None or any(test(v) for v in values)


def labels_match(wanted: list[str] | None, labels: Mapping[str, str]) -> bool:
    """docker's label filter: every KEY or KEY=VALUE given must hold."""
    if wanted is None:
        return True
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def node_matches(f: Filters, node: r.Node) -> bool:
    names = (node.spec.name, node.description.hostname)
    return (_any(f.get("id"), node.id.startswith)
            and _any(f.get("name"), lambda p: any(n.startswith(p) for n in names if n))
            and labels_match(f.get("label"), node.description.engine_labels)
            and labels_match(f.get("node.label"), node.spec.labels)
            and _any(f.get("role"), lambda v: not v or v.lower() == node.spec.role)
            and _any(f.get("membership"), lambda v: not v or v.lower() == "accepted"))  # orch's nodes join accepted


def service_matches(f: Filters, service: r.Service) -> bool:
    spec = service.spec
    return (_any(f.get("id"), service.id.startswith)
            and _any(f.get("name"), spec.name.startswith)
            and labels_match(f.get("label"), spec.labels)
            and _any(f.get("mode"), lambda v: v.lower() == spec.mode))


def task_matches(f: Filters, task: r.Task, *, service: r.Service | None = None) -> bool:
    """`service` and `node` values are ids here (the route resolves names); `label` and
    `_up-to-date` read the task's service (None: it is gone, and neither matches)."""
    up_to_date = f.get("_up-to-date")
    return (_any(f.get("id"), task.id.startswith)
            and _any(f.get("name"), task.name.startswith)
            and labels_match(f.get("label"), service.spec.labels if service is not None else {})
            and _any(f.get("service"), lambda v: v == task.service_id)
            and _any(f.get("node"), lambda v: v == task.node_id)
            and _any(f.get("desired-state"), lambda v: not v or v.lower() == task.desired_state.value)
            and (not up_to_date or (service is not None and task.spec_version == service.spec_version)))
