"""config.py: docker's rules for the process, and JSON round trips."""

import json

import pytest

from orch.errors import InvalidArgument
from orch.node.runtime.config import (
    DEFAULT_CAPABILITIES,
    DEFAULT_PATH,
    ContainerConfig,
    Process,
    Resources,
    capability_mask,
    compute_process,
    merge_env,
)
from orch.node.runtime.mount import Mount

IMAGE = {"config": {"Entrypoint": ["/entry"], "Cmd": ["serve", "--port=80"], "Env": ["PATH=/img/bin", "LANG=C"],
                    "WorkingDir": "/app", "User": "www"}}
NO_ENTRY = {"config": {"Cmd": ["sh"], "Env": ["A=1"]}}
P = "PATH=" + DEFAULT_PATH


def call(image, **flags) -> Process:
    args = dict(entrypoint=None, command=None, env=[], workdir=None, user=None, tty=False)
    args.update(flags)
    return compute_process(image, **args)


@pytest.mark.parametrize(
    "image, flags, args",
    [
        (IMAGE, {}, ("/entry", "serve", "--port=80")),
        (IMAGE, {"command": ["debug"]}, ("/entry", "debug")),
        (IMAGE, {"command": []}, ("/entry", "serve", "--port=80")),
        # An --entrypoint override drops the image's Cmd.
        (IMAGE, {"entrypoint": ["/bin/sh"]}, ("/bin/sh",)),
        (IMAGE, {"entrypoint": ["/bin/sh"], "command": ["-c", "x"]}, ("/bin/sh", "-c", "x")),
        # --entrypoint "" clears it: the command alone runs.
        (IMAGE, {"entrypoint": [], "command": ["ls"]}, ("ls",)),
        (NO_ENTRY, {}, ("sh",)),
        (NO_ENTRY, {"command": ["echo", "hi"]}, ("echo", "hi")),
        (NO_ENTRY["config"], {}, ("sh",)),  # the inner config dict works too
    ],
)
def test_entrypoint_and_command(image, flags, args):
    assert call(image, **flags).args == args


@pytest.mark.parametrize("image, flags", [({}, {}), (IMAGE, {"entrypoint": []}), ({"config": {"Cmd": None}}, {})])
def test_no_command_is_an_error(image, flags):
    with pytest.raises(InvalidArgument, match="no command specified"):
        call(image, **flags)


@pytest.mark.parametrize(
    "image, flags, env",
    [
        ({"Cmd": ["x"]}, {}, (P,)),
        ({"Cmd": ["x"]}, {"hostname": "h1", "tty": True}, (P, "HOSTNAME=h1", "TERM=xterm")),
        (IMAGE, {"env": ["LANG=de", "X=1"]}, ("PATH=/img/bin", "LANG=de", "X=1")),
        (IMAGE, {"env": ["PATH=/mine"]}, ("PATH=/mine", "LANG=C")),
        (IMAGE, {"env": ["LANG"]}, ("PATH=/img/bin",)),
    ],
)
def test_environment(image, flags, env):
    assert call(image, **flags).env == env


@pytest.mark.parametrize(
    "image, flags, cwd, user",
    [
        (IMAGE, {}, "/app", "www"),
        (IMAGE, {"workdir": "/tmp", "user": "0:0"}, "/tmp", "0:0"),
        (IMAGE, {"user": ""}, "/app", ""),
        (NO_ENTRY, {}, "/", ""),
    ],
)
def test_workdir_and_user(image, flags, cwd, user):
    process = call(image, **flags)
    assert (process.cwd, process.user) == (cwd, user)


def test_relative_workdir_is_refused():
    with pytest.raises(InvalidArgument, match="not absolute"):
        call(IMAGE, workdir="app")


def test_tty_and_defaults():
    process = call(NO_ENTRY, tty=True)
    assert process.terminal and process.no_new_privileges and process.capabilities == DEFAULT_CAPABILITIES


def test_merge_env_replaces_in_place():
    assert merge_env(["A=1", "B=2"], ["B=3", "C=4", "A"]) == ["B=3", "C=4"]


def test_docker_default_capability_mask():
    assert capability_mask(DEFAULT_CAPABILITIES) == 0xA80425FB
    assert capability_mask(["net_admin", "CAP_SYS_ADMIN"]) == (1 << 12) | (1 << 21)


def test_unknown_capability_is_a_one_line_error():
    with pytest.raises(InvalidArgument, match="unknown capability 'CAP_FLY'"):
        capability_mask(["CAP_FLY"])


def test_container_config_round_trips_through_json():
    config = ContainerConfig(
        id="c1", hostname="h", rootfs="/r", rootfs_mounts=(Mount("overlay", "overlay", "/", ("lowerdir=/a",)),),
        mounts=(Mount("bind", "/src", "/dst", ("ro",)),), process=Process(args=("sh",), env=("A=1",), terminal=True),
        namespaces=("pid", "mount"), netns_path="/run/netns/x", cgroup_path="orch/c1",
        resources=Resources(memory=1 << 20, memory_swap=-1, cpus=1.5, pids=10), readonly_rootfs=True, init=True,
        sysctls={"net.core.somaxconn": "1024"}, labels={"a": "b"},
    )
    assert ContainerConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_minimal_json_gets_dockers_defaults():
    config = ContainerConfig.from_json({"id": "c", "rootfs": "/r", "process": {"args": ["sh"]}})
    assert config.process.capabilities == DEFAULT_CAPABILITIES
    assert "/proc/kcore" in config.masked_paths and "/proc/sys" in config.readonly_paths
    assert config.namespaces == ("pid", "mount", "uts", "ipc", "net", "cgroup")
