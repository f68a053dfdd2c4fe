"""`run`/`create`'s flags into the create request (orch.api.runflags): what docker refuses is
refused in one line, and no flag is ever taken for an abbreviation of another."""

import pytest

from orch.api import runflags
from orch.errors import InvalidArgument


def body(*flags):
    return runflags.create_body(runflags.create_parser("orch run").parse_args([*flags, "busybox", "true"]))


@pytest.mark.parametrize("flags, message", [
    (("--pids", "5"), "unrecognized arguments: --pids"),  # not --pids-limit
    (("--mem", "1g"), "unrecognized arguments: --mem"),  # not --memory or --memory-swap
    (("--hostn", "x"), "unrecognized arguments: --hostn"),
    (("-m", "9223372036854775808"), r"it is more than 2\^63-1 bytes"),
    (("-m", "8e18k"), r"it is more than 2\^63-1 bytes"),
    (("-m", "inf"), r"it is more than 2\^63-1 bytes"),
    (("--memory-swap", "100000p"), r"it is more than 2\^63-1 bytes"),
    (("--cpus", "0"), "it must be more than 0"),
    (("--cpus", "nan"), "it must be more than 0"),
    (("--cpus", "inf"), "it must be more than 0"),
    (("-v", ":/x"), "empty section between colons"),
    (("-v", "/a::/x"), "empty section between colons"),
    (("-v", "data:/x:"), "empty section between colons"),
    (("--device", "/dev/fuse"), "--device /dev/fuse is not supported by orch"),
])
def test_refused_in_one_line(flags, message):
    with pytest.raises(InvalidArgument, match=message) as err:
        body(*flags)
    assert "\n" not in str(err.value)


def test_the_abbreviation_is_its_own_flag_now():
    """`--pid host` once parsed as `--pids-limit host`: now it is docker's --pid."""
    assert body("--pid", "host")["pid_mode"] == "host" and "pids_limit" not in body("--pid", "host")
    assert body("--ipc", "host", "--userns", "host")["ipc_mode"] == "host"
    assert body("-it")["tty"] and body("-it")["open_stdin"]  # short flags still group


def test_sizes_at_the_limit_pass():
    assert body("-m", "9223372036854775807")["memory"] == 2**63 - 1
    assert body("-v", "data:/x:ro")["mounts"] == [{"type": "volume", "source": "data", "target": "/x", "read_only": True, "nocopy": False}]
    assert body("-v", "/x")["mounts"] == [{"type": "volume", "source": "", "target": "/x"}]
