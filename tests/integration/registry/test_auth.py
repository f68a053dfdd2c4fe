"""Basic auth against a real registry (htpasswd, bcrypt): login, push, pull, logout."""

import io
import json
import os
import stat

import pytest

from orch.cli import registry as cli
from orch.errors import UserError
from orch.registry import credentials
from orch.registry.pull import pull
from orch.registry.push import push

from .conftest import PASSWORD, USER, make_image


def _login(monkeypatch, server: str, user: str, password: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return cli.login("orch", ["-u", user, "--password-stdin", server])


def test_login_push_pull_logout(registry_server, store_factory, monkeypatch, capsys):
    reg = registry_server(auth=True)
    src, dst = store_factory("a"), store_factory("b")
    ref = f"{reg.host}/private/app:v1"
    image = make_image(src, ref, [{"x": b"secret layer\n"}])

    with pytest.raises(UserError, match=rf"registry {reg.host} wants a user name and password: run 'orch login {reg.host}'"):
        push(src, ref)

    assert _login(monkeypatch, reg.host, USER, PASSWORD) == 0
    assert capsys.readouterr().out == "Login Succeeded\n"
    path = credentials.auth_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["auths"][reg.host]["auth"]  # docker's shape
    assert [p.name for p in path.parent.iterdir() if p.name.startswith("auth.json")] == ["auth.json"]  # no temporary file left

    push(src, ref)
    assert pull(dst, ref).id == image.id

    assert cli.logout("orch", [reg.host]) == 0
    assert capsys.readouterr().out == f"Removing login credentials for {reg.host}\n"
    with pytest.raises(UserError, match="wants a user name and password"):
        pull(store_factory("c"), ref)
    assert cli.logout("orch", [reg.host]) == 0
    assert capsys.readouterr().out == f"Not logged in to {reg.host}\n"


def test_login_with_a_wrong_password_stores_nothing(registry_server, monkeypatch):
    reg = registry_server(auth=True)
    with pytest.raises(UserError, match=rf"login to {reg.host}: the registry refused user 'orch' \(HTTP 401\); check the user name and password"):
        _login(monkeypatch, reg.host, USER, "wrong")
    assert not credentials.auth_file().exists()


def test_login_keeps_other_servers_and_keys(registry_server, monkeypatch, capsys):
    reg = registry_server(auth=True)
    path = credentials.auth_file()
    path.write_text(json.dumps({"auths": {"other.example:5000": {"auth": "dTpw"}}, "credsStore": "none"}))
    _login(monkeypatch, reg.host, USER, PASSWORD)
    data = json.loads(path.read_text())
    assert set(data["auths"]) == {"other.example:5000", reg.host}
    assert data["credsStore"] == "none"
    assert credentials.lookup(reg.host.split("/")[0]) == (USER, PASSWORD)
