"""kernel.py's pure helpers (the layering rule is tests/unit/test_import_rules.py)."""


import pytest

from orch.node.runtime.kernel import RecordingSyscalls, flag_bits, split_overlay_options


@pytest.mark.parametrize(
    "options, expected",
    [
        (("lowerdir=/a:/b", "upperdir=/u", "workdir=/w"), (["/a", "/b"], "/u", "/w", [])),
        (("lowerdir+=/a", "lowerdir+=/b", "upperdir=/u", "workdir=/w", "index=off"), (["/a", "/b"], "/u", "/w", ["index=off"])),
        (("lowerdir=/a",), (["/a"], "", "", [])),
    ],
)
def test_split_overlay_options(options, expected):
    assert split_overlay_options(options) == expected


def test_flag_bits():
    assert flag_bits(("MS_BIND", "MS_REC")) == 4096 | 16384
    assert flag_bits(("MS_SLAVE", "MS_REC")) == (1 << 19) | 16384
    assert flag_bits(()) == 0


def test_recording_syscalls_sees_what_it_created():
    sys_ = RecordingSyscalls()
    sys_.mkdir("/r/d")
    sys_.symlink("/x", "/r/l")
    assert (sys_.lstat_kind("/r/d"), sys_.lstat_kind("/r/l"), sys_.lstat_kind("/r/none")) == ("dir", "link:/x", "missing")
