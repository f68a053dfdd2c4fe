"""~/.config/orch/auth.json: docker's shape, owner-only, replaced atomically."""

import json
import os
import stat

import pytest

from orch.errors import InvalidArgument
from orch.registry import credentials


@pytest.fixture
def path(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_AUTH_FILE", str(tmp_path / "cfg" / "orch" / "auth.json"))
    return credentials.auth_file()


def test_default_location_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("ORCH_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert credentials.auth_file() == tmp_path / "orch" / "auth.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert credentials.auth_file() == tmp_path / "home" / ".config" / "orch" / "auth.json"


def test_save_lookup_remove(path):
    assert credentials.lookup("localhost:5000") is None
    assert credentials.save("localhost:5000", "u", "p:ss") == "localhost:5000"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert json.loads(path.read_text()) == {"auths": {"localhost:5000": {"auth": "dTpwOnNz"}}}
    assert credentials.lookup("localhost:5000") == ("u", "p:ss")
    credentials.save(None, "hub", "pw")
    assert credentials.lookup("docker.io") == ("hub", "pw")
    assert credentials.remove("docker.io") == ("https://index.docker.io/v1/", True)
    assert credentials.remove("docker.io") == ("https://index.docker.io/v1/", False)
    assert credentials.lookup("localhost:5000") == ("u", "p:ss")
    assert sorted(p.name for p in path.parent.iterdir()) == ["auth.json"]


def test_docker_style_username_password_entries_are_read(path):
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"auths": {"r.example": {"username": "a", "password": "b"}}}))
    assert credentials.lookup("r.example") == ("a", "b")


@pytest.mark.parametrize("text, message", [
    ("{", "auth.json: not valid JSON \\(line 1\\)"),
    ('{"auths": []}', "auth.json: want an object with an 'auths' object"),
    ('{"auths": {"r.example": {"auth": "!!"}}}', "auth.json: auths.r.example: 'auth' is not base64"),
])
def test_broken_files_are_one_line_errors(path, text, message):
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(InvalidArgument, match=message):
        credentials.lookup("r.example")


def test_a_failed_write_leaves_the_old_file(path, monkeypatch):
    credentials.save("a.example", "u", "p")
    before = path.read_bytes()

    def broken(*a, **kw):
        raise OSError("disk full (test)")

    monkeypatch.setattr(os, "rename", broken)
    with pytest.raises(OSError):
        credentials.save("b.example", "u", "p")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["auth.json"]
