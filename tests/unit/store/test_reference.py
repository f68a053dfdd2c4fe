"""Image references normalize as docker's do (distribution/reference)."""

import pytest

from orch.errors import InvalidArgument
from orch.node.runtime import reference

NORMALIZE = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("localhost/app:v1", "localhost/app:v1", "localhost/app:v1"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("registry.example.com/x/y", "registry.example.com/x/y:latest", "registry.example.com/x/y:latest"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64, "busybox@sha256:" + "a" * 64),
    ("my_app.v2-x__y", "docker.io/library/my_app.v2-x__y:latest", "my_app.v2-x__y:latest"),
]


@pytest.mark.parametrize("ref, full, short", NORMALIZE)
def test_normalize_and_familiar(ref, full, short):
    assert reference.normalize(ref) == full
    assert reference.familiar(full) == short


INVALID = [
    ("", "invalid reference format"),
    ("Busybox", "lower-case"),
    ("busybox:", "bad tag"),
    ("busybox:-x", "bad tag"),
    ("a//b", "invalid reference format"),
    ("busybox@sha256:123", "64 hex digits"),
    ("UPPER.example.com/x y", "invalid reference format"),
    (" busybox", "invalid reference format"),
]


@pytest.mark.parametrize("ref, message", INVALID)
def test_invalid_references_are_refused_in_one_line(ref, message):
    with pytest.raises(InvalidArgument) as err:
        reference.parse(ref)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("ref, expected", [("abc123", True), ("sha256:" + "f" * 64, True), ("busybox", False), ("sha256:xyz", False)])
def test_looks_like_id(ref, expected):
    assert reference.looks_like_id(ref) is expected
