"""LinuxSyscalls against the real kernel, inside a throw-away mount namespace."""

import json
import os

import pytest

from orch.node.runtime.kernel import LinuxSyscalls

pytestmark = pytest.mark.privileged


def in_mount_namespace(body):
    """Run body() in a forked child with its own (slave) mount namespace; return its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.unshare(os.CLONE_NEWNS)
            sys = LinuxSyscalls()
            sys.mount("", "/", "", ("MS_SLAVE", "MS_REC"))
            result = {"ok": body(sys)}
        except BaseException as e:  # noqa: BLE001 - reported to the test
            result = {"error": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def layers(tmp_path, count):
    lowers = []
    for n in range(count):
        d = tmp_path / f"l{n}"
        d.mkdir()
        (d / f"f{n}").write_text(str(n))
        lowers.append(str(d))
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    return lowers


def test_new_mount_api_overlay_with_five_hundred_layers(tmp_path):
    lowers = layers(tmp_path, 500)
    merged = tmp_path / "merged"
    result = in_mount_namespace(lambda sys: (
        sys.mount_overlay(lowers, str(tmp_path / "upper"), str(tmp_path / "work"), str(merged)),
        sorted(os.listdir(merged)) == sorted(f"f{n}" for n in range(500)),
    )[1])
    assert result == {"ok": True}
    assert os.listdir(merged) == []  # the mount lived in the child's namespace only


def test_legacy_overlay_mount_for_kernels_without_the_new_api(tmp_path):
    lowers = layers(tmp_path, 3)
    merged = tmp_path / "merged"
    result = in_mount_namespace(lambda sys: (
        sys._mount_overlay_legacy(lowers, str(tmp_path / "upper"), str(tmp_path / "work"), str(merged), ()),
        sorted(os.listdir(merged)),
    )[1])
    assert result == {"ok": ["f0", "f1", "f2"]}


def test_kernel_errors_name_the_operation_paths_and_flags(tmp_path):
    result = in_mount_namespace(lambda sys: sys.mount("proc", str(tmp_path / "nope"), "proc", ("MS_NOSUID", "MS_NODEV")))
    assert result == {"error": f"SystemFailure: mount proc proc on {tmp_path}/nope (MS_NOSUID|MS_NODEV): No such file or directory"}


def test_overlay_errors_name_the_failing_layer(tmp_path):
    result = in_mount_namespace(lambda sys: sys.mount_overlay([str(tmp_path / "gone")], "", "", str(tmp_path)))
    assert result["error"].startswith(f"SystemFailure: mount overlay on {tmp_path} (1 lower dirs): fsconfig lowerdir+=")
