"""users.py: docker's user resolution against the container's own passwd and group files."""

import pytest

from orch.errors import InvalidArgument
from orch.node.runtime.users import ExecUser, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1::/usr/sbin:/bin/false
app:x:1000:1000:App:/home/app:/bin/sh
odd:x:1001:1001::
"""
GROUP = """root:x:0:
wheel:x:10:root,app
tty:x:5:
app:x:1000:
staff:x:50:app
"""


@pytest.mark.parametrize(
    "spec, extra, expected",
    [
        ("", (), ExecUser(0, 0, (0, 10), "/root")),
        ("root", (), ExecUser(0, 0, (0, 10), "/root")),
        ("0", (), ExecUser(0, 0, (0, 10), "/root")),
        ("app", (), ExecUser(1000, 1000, (1000, 10, 50), "/home/app")),
        ("1000", (), ExecUser(1000, 1000, (1000, 10, 50), "/home/app")),
        # An explicit group replaces the primary gid and skips the group file's memberships.
        ("app:tty", (), ExecUser(1000, 5, (5,), "/home/app")),
        ("app:77", (), ExecUser(1000, 77, (77,), "/home/app")),
        # A number that is not in passwd is fine: gid 0, home /.
        ("4242", (), ExecUser(4242, 0, (0,), "/")),
        ("4242:4243", (), ExecUser(4242, 4243, (4243,), "/")),
        ("odd", (), ExecUser(1001, 1001, (1001,), "/")),
        # --group-add by name or number.
        ("app", ("tty", "99", "staff"), ExecUser(1000, 1000, (1000, 10, 50, 5, 99), "/home/app")),
    ],
)
def test_resolve_user(spec, extra, expected):
    assert resolve_user(spec, extra, PASSWD, GROUP) == expected


def test_without_passwd_only_numbers_work():
    assert resolve_user("", (), None, None) == ExecUser(0, 0, (0,), "/")
    assert resolve_user("5:6", (), None, None) == ExecUser(5, 6, (6,), "/")


@pytest.mark.parametrize(
    "spec, extra, message",
    [
        ("nobody", (), "unable to find user nobody: no matching entries in passwd file"),
        ("app:nogroup", (), "unable to find group nogroup: no matching entries in group file"),
        ("app", ("ghosts",), "unable to find group ghosts: no matching entries in group file"),
    ],
)
def test_unknown_names_are_one_line_errors(spec, extra, message):
    with pytest.raises(InvalidArgument) as info:
        resolve_user(spec, extra, PASSWD, GROUP)
    assert str(info.value) == message
