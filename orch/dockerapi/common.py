"""What every handler of docker.sock uses: the node, docker's query values, JSON in and out,
and `forward`, which runs one of the agent's own handlers on a translated request.

The agent's API (orch.sock) already follows docker's paths and shapes for much of the Engine
API; where it does, docker.sock serves the agent's handler itself (app.py's table), and where
only a body or a query differs, a handler here translates the request and forwards it.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orch.errors import InvalidArgument


def node_of(request: Request):
    return request.app.state.node


def boolean(request: Request, name: str, default: bool = False) -> bool:
    """dockerd's rule for a boolean query value (httputils.BoolValue): anything but "", "0",
    "no", "false" and "none" is true."""
    value = request.query_params.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "no", "false", "none")


def integer(request: Request, name: str, default: int | None = None) -> int | None:
    return _query(request, name, default, int, "an integer")


def number(request: Request, name: str, default: float | None = None) -> float | None:
    return _query(request, name, default, float, "a number")


def _query(request: Request, name: str, default, kind, what: str):
    value = request.query_params.get(name)
    if value in (None, ""):
        return default
    try:
        return kind(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r} is not {what}") from None


async def json_body(request: Request, what: str, *, default=None):
    """The request's JSON body; an empty body is `default` ({} unless given)."""
    raw = await request.body()
    if not raw.strip():
        return {} if default is None else default
    try:
        return json.loads(raw)
    except ValueError as err:
        raise InvalidArgument(f"{what}: the body is not JSON ({err})") from None


def canonical(body: dict, keys) -> dict:
    """`body` with its keys spelled as `keys` spells them: Go's JSON decoder, which dockerd
    uses, matches field names case-insensitively, and clients rely on it (docker-py sends
    "detachKeys" for DetachKeys)."""
    spelled = {k.lower(): k for k in keys}
    return {spelled.get(k.lower(), k): v for k, v in body.items()}


def json_query(request: Request, name: str, what: str, default=None):
    """A query value that holds JSON (docker's `filters`, `buildargs`, `labels`)."""
    raw = request.query_params.get(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"{what}: invalid {name} {raw!r}: give JSON") from None


def validated(model, body: dict, what: str):
    """`body` as pydantic `model`; a value that does not fit is one line naming the field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        raise InvalidArgument(f"{what}: {'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg'].lower()}") from None


def answer(value, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status)


def decoded(response: Response):
    """The JSON a forwarded handler answered."""
    return json.loads(bytes(response.body) or b"null")


async def forward(handler, request: Request, *, body=None, query: dict | None = None, path_params: dict | None = None):
    """Run the agent's `handler` on `request`, with a translated JSON `body` (a value, sent as
    JSON; None sends an empty body), query (replacing the client's) and path parameters."""
    scope = dict(request.scope)
    if query is not None:
        scope["query_string"] = urlencode({k: v for k, v in query.items() if v is not None}, doseq=True).encode()
    if path_params is not None:
        scope["path_params"] = dict(scope.get("path_params") or {}, **path_params)
    data = b"" if body is None else json.dumps(body).encode()
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await request.receive()  # a disconnect, for a streamed answer

    return await handler(Request(scope, receive))
