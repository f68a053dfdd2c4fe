"""Stored registry credentials: ~/.config/orch/auth.json in docker's config.json shape.

    {"auths": {"localhost:5000": {"auth": "<base64 of user:password>"},
               "https://index.docker.io/v1/": {"auth": "..."}}}

The file holds passwords, so it is created with mode 0600 (and its directory 0700), and it is
replaced atomically: written to a temporary file in the same directory, fsync'd, renamed. A
reader sees the old or the new file, never half of one. Other keys in the file are kept.

Where: $ORCH_AUTH_FILE if set, else $XDG_CONFIG_HOME/orch/auth.json, else
~/.config/orch/auth.json.
"""

import json
import os
from pathlib import Path

from orch.atomic import write_json_atomic
from orch.errors import InvalidArgument
from orch.registry import auth, names


def auth_file() -> Path:
    explicit = os.environ.get("ORCH_AUTH_FILE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "orch" / "auth.json"


def load(path: Path | None = None) -> dict:
    path = path or auth_file()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"auths": {}}
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"{path}: not valid JSON (line {err.lineno}): {err.msg}; fix or remove the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("auths", {}), dict):
        raise InvalidArgument(f"{path}: want an object with an 'auths' object; fix or remove the file")
    data.setdefault("auths", {})
    return data


def _write(data: dict, path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_json_atomic(path, data, mode=0o600, indent=1)


def lookup(domain: str, path: Path | None = None) -> tuple[str, str] | None:
    """The (user, password) stored for a registry domain (as a reference names it), if any."""
    path = path or auth_file()
    key = names.credentials_key_for(domain)
    entry = load(path)["auths"].get(key)
    if not entry:
        return None
    if entry.get("auth"):
        return auth.decode_auth(entry["auth"], f"{path}: auths.{key}")
    if entry.get("username") and entry.get("password") is not None:
        return entry["username"], entry["password"]
    return None


def save(server: str | None, username: str, password: str, path: Path | None = None) -> str:
    """Store credentials for a server; return the key they are stored under."""
    path = path or auth_file()
    key = names.credentials_key(server)
    data = load(path)
    data["auths"][key] = {"auth": auth.encode_auth(username, password)}
    _write(data, path)
    return key


def remove(server: str | None, path: Path | None = None) -> tuple[str, bool]:
    """Forget a server's credentials; return (key, whether there were any)."""
    path = path or auth_file()
    key = names.credentials_key(server)
    data = load(path)
    if key not in data["auths"]:
        return key, False
    del data["auths"][key]
    _write(data, path)
    return key, True
