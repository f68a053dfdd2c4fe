"""docker's `filters` query parameter of GET /containers/json, as a pure predicate.

`filters` is JSON: {"label": ["com.docker.compose.project=web", "tier"], "name": ["web-"],
"status": ["running"], "id": ["3f2a"]}. Values of one key are alternatives (any may match),
except `label`, where every value must match (docker ANDs labels); different keys all must hold.
A name filter matches a substring of the name, as docker's does.
"""

import json

from orch.errors import InvalidArgument

KEYS = ("label", "name", "status", "id")


def parse_filters(text: str | None) -> dict[str, list[str]]:
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise InvalidArgument(f"filters {text!r} is not JSON; send e.g. {{\"label\": [\"key=value\"]}}") from None
    if not isinstance(raw, dict):
        raise InvalidArgument("filters must be a JSON object of lists")
    out = {}
    for key, values in raw.items():
        if key not in KEYS:
            raise InvalidArgument(f"invalid filter {key!r}; this agent filters by {', '.join(KEYS)}")
        # docker also accepts {"label": {"a=b": true}}.
        out[key] = [str(v) for v in (values.keys() if isinstance(values, dict) else values)]
    return out


def container_matches(rec: dict, filters: dict[str, list[str]]) -> bool:
    labels = rec["Config"].get("Labels") or {}
    for wanted in filters.get("label", ()):
        key, eq, value = wanted.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    if filters.get("name") and not any(n.lstrip("/") in rec["Name"].lstrip("/") for n in filters["name"]):
        return False
    if filters.get("status") and rec["State"]["Status"] not in filters["status"]:
        return False
    if filters.get("id") and not any(rec["Id"].startswith(i) for i in filters["id"]):
        return False
    return True
