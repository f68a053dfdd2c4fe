"""The Engine API's version prefix and dockerd's refusals (orch/dockerapi/versions.py)."""

import pytest

from orch.dockerapi import versions


@pytest.mark.parametrize("path, expected", [
    ("/v1.41/containers/json", ("1.41", "/containers/json")),
    ("/v1.47/_ping", ("1.47", "/_ping")),
    ("/v1.41", ("1.41", "/")),
    ("/containers/json", (None, "/containers/json")),
    ("/volumes/v1.2x", (None, "/volumes/v1.2x")),
    ("/vx/containers/json", (None, "/vx/containers/json")),
])
def test_split_path(path, expected):
    assert versions.split_path(path) == expected


def test_refusals_are_dockerds():
    assert versions.refusal(versions.MIN_VERSION) is None and versions.refusal(versions.MAX_VERSION) is None
    assert versions.refusal("1.41") is None
    assert versions.refusal("1.12") == ("client version 1.12 is too old. Minimum supported API version is 1.24, "
                                        "please upgrade your client to a newer version")
    assert versions.refusal("1.99") == f"client version 1.99 is too new. Maximum supported API version is {versions.MAX_VERSION}"
    assert "not a version" in versions.refusal("1.x")


def test_at_least():
    assert versions.at_least("1.42", "1.42") and not versions.at_least("1.41", "1.42")
    assert versions.at_least(None, "1.42")  # no prefix: the server's version
    assert versions.at_least("1.100", "1.42")  # numbers, not text
