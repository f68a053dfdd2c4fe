"""orch.paths: the store's directories made root-only, when created and at an agent's start,
and nothing below them touched (those modes are what containers see)."""

import os
import stat

from orch import paths


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_private_dir_makes_every_missing_directory_0700_and_tightens_the_last(tmp_path):
    os.chmod(tmp_path, 0o755)
    paths.private_dir(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    os.chmod(tmp_path / "a" / "b", 0o755)
    paths.private_dir(tmp_path / "a" / "b")
    assert mode(tmp_path / "a" / "b") == 0o700
    assert mode(tmp_path) == 0o755  # what existed above is not ours


def test_secure_store_fixes_what_an_older_orch_left_and_nothing_below(tmp_path):
    root, run = tmp_path / "root", tmp_path / "run"
    fs = root / "snapshots" / "active" / "k" / "fs"
    data = root / "volumes" / "v" / "_data"
    for d in (fs, data, root / "containers", root / "init-layer" / "etc"):
        d.mkdir(parents=True)
    (root / "agent.log").write_text("old\n")
    for p in (root, root / "snapshots", root / "volumes", root / "containers", fs, data, root / "init-layer"):
        os.chmod(p, 0o755)
    os.chmod(root / "agent.log", 0o644)

    fixed = paths.secure_store(root, run)

    assert sorted(fixed) == sorted(str(p) for p in (root, root / "snapshots", root / "volumes", root / "containers",
                                                       root / "agent.log"))
    assert [mode(p) for p in (root, run, root / "snapshots", root / "volumes", root / "containers")] == [0o700] * 5
    assert (mode(root / "agent.log"), (root / "agent.log").read_text()) == (0o600, "old\n")
    assert mode(root / "supervisor.log") == 0o600
    # A container's /, a volume's mount point, the init layer: their own modes.
    assert [mode(p) for p in (fs, data, root / "init-layer")] == [0o755] * 3
    assert paths.secure_store(root, run) == []
