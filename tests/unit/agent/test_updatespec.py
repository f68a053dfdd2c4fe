"""docker update's rules (agent/updatespec.py) as a table: what a body changes, and what is
refused in one line."""

import pytest

from orch.errors import Conflict, InvalidArgument
from orch.node.agent.updatespec import compute_update

MIB = 1 << 20
# docker's CLI sends every field of UpdateConfig; zero means unchanged.
ZEROS = {"CpuShares": 0, "Memory": 0, "CgroupParent": "", "BlkioWeight": 0, "CpuPeriod": 0, "CpuQuota": 0, "CpusetCpus": "",
         "MemorySwap": 0, "NanoCpus": 0, "PidsLimit": None, "Ulimits": None, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}


def check(resources, body, *, auto_remove=False):
    return compute_update({}, resources, dict(ZEROS, **body), auto_remove=auto_remove, cpus=2)


@pytest.mark.parametrize("resources,body,changes,new", [
    ({}, {"Memory": 64 * MIB}, {"Memory": 64 * MIB}, {"memory": 64 * MIB}),
    ({"memory": 64 * MIB}, {"Memory": 128 * MIB, "MemorySwap": 256 * MIB}, {"Memory": 128 * MIB, "MemorySwap": 256 * MIB},
     {"memory": 128 * MIB, "memory_swap": 256 * MIB}),
    ({"memory": 64 * MIB, "memory_swap": 256 * MIB}, {"Memory": 128 * MIB}, {"Memory": 128 * MIB},
     {"memory": 128 * MIB, "memory_swap": 256 * MIB}),
    ({"memory": 64 * MIB}, {"MemorySwap": -1}, {"MemorySwap": -1}, {"memory": 64 * MIB, "memory_swap": -1}),
    ({}, {"NanoCpus": 500_000_000}, {"NanoCpus": 500_000_000}, {"cpus": 0.5}),
    ({"pids": 10}, {"PidsLimit": 20}, {"PidsLimit": 20}, {"pids": 20}),
    ({"pids": 10}, {"PidsLimit": -1}, {"PidsLimit": None}, {"pids": None}),
    ({"pids": 10}, {"PidsLimit": 0}, {"PidsLimit": None}, {"pids": None}),
    ({"pids": 10}, {}, {}, {"pids": 10}),
    ({}, {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}},
     {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}, {}),
])
def test_changes(resources, body, changes, new):
    got_changes, got_new = check(resources, body)
    assert got_changes == changes
    assert got_new == dict(resources, **new)


@pytest.mark.parametrize("resources,body,error,words", [
    ({"memory": 64 * MIB, "memory_swap": 96 * MIB}, {"Memory": 128 * MIB}, Conflict, "smaller than already set memoryswap"),
    ({}, {"MemorySwap": 128 * MIB}, InvalidArgument, "always set the memory limit"),
    ({}, {"Memory": 128 * MIB, "MemorySwap": 64 * MIB}, InvalidArgument, "larger than memory limit"),
    ({}, {"Memory": 1024}, InvalidArgument, "minimum memory limit allowed is 6MB"),
    ({}, {"NanoCpus": 3_000_000_000}, InvalidArgument, "only 2 CPUs available"),
    ({}, {"CpuShares": 512}, InvalidArgument, "--cpu-shares is not supported"),
    ({}, {"CpusetCpus": "0"}, InvalidArgument, "--cpuset-cpus is not supported"),
    ({}, {"Bogus": 1}, InvalidArgument, "unknown field 'Bogus'"),
    ({}, {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}, InvalidArgument, "cannot be used with restart policy 'always'"),
    ({}, {"RestartPolicy": {"Name": "sometimes"}}, InvalidArgument, "invalid restart policy"),
])
def test_refusals(resources, body, error, words):
    with pytest.raises(error, match=words):
        check(resources, body)


def test_no_restart_policy_for_an_auto_removed_container():
    with pytest.raises(Conflict, match="AutoRemove is enabled"):
        check({}, {"RestartPolicy": {"Name": "always"}}, auto_remove=True)
    assert check({}, {"RestartPolicy": {"Name": "no"}}, auto_remove=True)[0] == {"RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}
