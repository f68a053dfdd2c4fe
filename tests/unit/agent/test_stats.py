"""Stats from cgroup file texts (agent/statsview.py) and docker's CLI arithmetic on them
(cli/stats.py): the texts are what this host's cgroup v1 hierarchies and a v2 one show; the
expected figures are dockerd's and docker's CLI's for the same readings."""

from orch.cli import stats as cli
from orch.node.agent import statsview
from orch.node.runtime.cgroups import Cgroups, compute_update
from orch.node.runtime.config import Resources

V1 = {
    "memory.usage_in_bytes": "6000640\n", "memory.max_usage_in_bytes": "7364608\n", "memory.limit_in_bytes": "67108864\n",
    "memory.failcnt": "0\n",
    "memory.stat": "cache 5242880\nrss 65536\nrss_huge 0\nshmem 0\nmapped_file 0\ndirty 5242880\nwriteback 0\n"
                   "swap 0\npgpgin 1034\npgpgout 1013\npgfault 1341\npgmajfault 0\ninactive_anon 61440\nactive_anon 4096\n"
                   "inactive_file 5242880\nactive_file 0\nunevictable 0\nhierarchical_memory_limit 67108864\n"
                   "hierarchical_memsw_limit 134217728\ntotal_cache 5242880\ntotal_rss 65536\ntotal_inactive_file 5242880\n"
                   "workingset_refault_file 4\n",
    "cpuacct.usage": "2492607436\n", "cpuacct.usage_percpu": "2480872869 11734567 \n", "cpuacct.stat": "user 247\nsystem 1\n",
    "cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 5000\nnr_bursts 0\n",
    "pids.current": "1\n", "pids.max": "50\n",
    "blkio.io_service_bytes_recursive": "",
    "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n",
    "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
}
PROC_STAT = "cpu  965283 0 296461 528547 9522 0 14811 990 0 0\ncpu0 1 2 3 4 5 6 7\n"
NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0:    2102      25    0    1    0     0          0         0      656       8    2    0    0     0       0          0
"""


def test_v1_sample_is_dockerds():
    s = statsview.compute_sample(V1, version="v1", system_usage=1, online_cpus=2, clk_tck=100, machine_memory=25_276_194_816)
    cpu = s["cpu_stats"]
    assert cpu["cpu_usage"] == {"total_usage": 2492607436, "percpu_usage": [2480872869, 11734567],
                                "usage_in_kernelmode": 10_000_000, "usage_in_usermode": 2_470_000_000}
    assert cpu["throttling_data"] == {"periods": 10, "throttled_periods": 2, "throttled_time": 5000}
    mem = s["memory_stats"]
    assert (mem["usage"], mem["max_usage"], mem["limit"]) == (6000640, 7364608, 67108864)
    assert "failcnt" not in mem  # omitted when zero, as Go's omitempty does
    # docker's keys only (no shmem, swap, workingset_*), sorted as Go marshals a map.
    assert list(mem["stats"]) == sorted(mem["stats"]) and "shmem" not in mem["stats"] and mem["stats"]["total_inactive_file"] == 5242880
    assert s["pids_stats"] == {"current": 1, "limit": 50}
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": op, "value": v} for op, v in (("Read", 4096), ("Write", 8192), ("Sync", 0), ("Total", 12288))]
    assert len(s["blkio_stats"]) == 8


def test_an_unlimited_memory_shows_the_machines_and_pids_without_a_limit_has_none():
    files = dict(V1, **{"memory.limit_in_bytes": "9223372036854771712\n", "pids.max": "max\n"})
    s = statsview.compute_sample(files, version="v1", system_usage=1, online_cpus=2, clk_tck=100, machine_memory=1 << 30)
    assert s["memory_stats"]["limit"] == 1 << 30
    assert s["pids_stats"] == {"current": 1}


def test_v2_sample():
    files = {"cpu.stat": "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n",
             "memory.current": "1048576\n", "memory.max": "max\n", "memory.stat": "anon 4096\nfile 8192\ninactive_file 4096\n",
             "pids.current": "3\n", "pids.max": "max\n", "io.stat": "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"}
    s = statsview.compute_sample(files, version="v2", system_usage=5, online_cpus=4, clk_tck=100, machine_memory=1 << 30)
    assert s["cpu_stats"]["cpu_usage"] == {"total_usage": 2_000_000, "usage_in_kernelmode": 500_000, "usage_in_usermode": 1_500_000}
    assert s["cpu_stats"]["throttling_data"] == {"periods": 3, "throttled_periods": 1, "throttled_time": 7000}
    assert s["memory_stats"] == {"usage": 1048576, "stats": {"anon": 4096, "file": 8192, "inactive_file": 4096}, "limit": 1 << 30}
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [{"major": 8, "minor": 0, "op": "read", "value": 10},
                                                               {"major": 8, "minor": 0, "op": "write", "value": 20}]
    assert cli.block_io(s["blkio_stats"]) == (10, 20)
    assert cli.memory_usage(s["memory_stats"]) == 1048576 - 4096


def test_system_usage_and_network():
    assert statsview.system_cpu_usage(PROC_STAT, 100) == (965283 + 296461 + 528547 + 9522 + 14811) * 10_000_000
    assert statsview.parse_net_dev(NET_DEV) == {"eth0": {"rx_bytes": 2102, "rx_packets": 25, "rx_errors": 0, "rx_dropped": 1,
                                                         "tx_bytes": 656, "tx_packets": 8, "tx_errors": 2, "tx_dropped": 0}}


def test_a_message_has_dockers_keys_in_order():
    sample = statsview.compute_sample(V1, version="v1", system_usage=1, online_cpus=2, clk_tck=100, machine_memory=1 << 40)
    first = statsview.compose(sample, None, read="R", preread="", name="/web", cid="c", networks=None)
    assert list(first) == ["read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats", "cpu_stats",
                           "precpu_stats", "memory_stats", "name", "id"]
    assert first["preread"] == statsview.ZERO_TIME and first["precpu_stats"] == statsview.empty_cpu()
    later = statsview.compose(sample, sample, read="R2", preread="R", name="/web", cid="c", networks={})
    assert later["preread"] == "R" and list(later)[-1] == "networks"
    empty = statsview.empty_stats("/web", "c")
    assert empty["blkio_stats"]["io_service_bytes_recursive"] is None and empty["memory_stats"] == {}


def test_the_cli_row_is_dockers():
    # Two readings dockerd gave for `busybox sh -c 'dd ...; while :; do :; done'` here: 740KiB
    # and 1.13% are what docker's CLI printed; CPU % is its formula on these figures.
    pre = {"cpu_usage": {"total_usage": 1537564932}, "system_cpu_usage": 16723760000000, "online_cpus": 2}
    stats = {"id": "8f7c0661c054743f1a46", "name": "/st1",
             "cpu_stats": {"cpu_usage": {"total_usage": 2492607436}, "system_cpu_usage": 16725740000000, "online_cpus": 2},
             "memory_stats": {"usage": 6000640, "stats": {"total_inactive_file": 5242880}, "limit": 67108864},
             "blkio_stats": {"io_service_bytes_recursive": []}, "pids_stats": {"current": 1}}
    assert cli.row(stats, pre, "st1") == {
        "Container": "st1", "ID": "8f7c0661c054", "Name": "st1", "CPUPerc": "96.47%", "MemUsage": "740KiB / 64MiB",
        "MemPerc": "1.13%", "NetIO": "0B / 0B", "BlockIO": "0B / 0B", "PIDs": "1"}
    # A container that does not run: dockerd's empty stats, docker's zeros.
    row = cli.row(statsview.empty_stats("/st2", "b70d4151f25400e9"), None, "b70d4151f254")
    assert (row["CPUPerc"], row["MemUsage"], row["MemPerc"], row["NetIO"], row["BlockIO"], row["PIDs"]) == \
        ("0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0")


def test_units():
    assert [cli.bytes_size(n) for n in (0, 1023, 1024, 757760, 25_276_194_816)] == ["0B", "1023B", "1KiB", "740KiB", "23.54GiB"]
    assert cli.net_io({"eth0": {"rx_bytes": 1590, "tx_bytes": 426}, "eth1": {"rx_bytes": 10, "tx_bytes": 0}}) == (1600, 426)


def test_update_writes_in_the_order_the_kernel_accepts():
    old = Resources(memory=64 << 20)  # memory+swap equal to memory (orch's default)
    raise_ = compute_update(old, Resources(memory=128 << 20, memory_swap=256 << 20), "v1")
    assert raise_ == [("memory", "memory.memsw.limit_in_bytes", str(256 << 20)), ("memory", "memory.limit_in_bytes", str(128 << 20))]
    lower = compute_update(Resources(memory=128 << 20, memory_swap=256 << 20), Resources(memory=32 << 20, memory_swap=64 << 20), "v1")
    assert [w[1] for w in lower] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    unlimited = compute_update(Resources(memory=64 << 20, cpus=0.5, pids=10), Resources(), "v1")
    assert unlimited == [("memory", "memory.memsw.limit_in_bytes", "-1"), ("memory", "memory.limit_in_bytes", "-1"),
                         ("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "-1"), ("pids", "pids.max", "max")]
    v2 = compute_update(Resources(), Resources(memory=64 << 20, cpus=1.5, pids=5), "v2")
    assert v2 == [("memory", "memory.max", str(64 << 20)), ("memory", "memory.swap.max", "0"), ("cpu", "cpu.max", "150000 100000"),
                  ("pids", "pids.max", "5")]
    assert compute_update(Resources(memory=1), Resources(memory=1), "v1") == []


def test_stat_files_are_read_from_each_hierarchy(tmp_path):
    for controller in ("memory", "cpuacct", "cpu", "pids", "blkio"):
        (tmp_path / controller / "orch" / "c1").mkdir(parents=True)
    (tmp_path / "memory" / "orch" / "c1" / "memory.usage_in_bytes").write_text("42\n")
    (tmp_path / "cpuacct" / "orch" / "c1" / "cpuacct.usage").write_text("7\n")
    (tmp_path / "blkio" / "orch" / "c1" / "blkio.throttle.io_service_bytes_recursive").write_text("Total 0\n")
    files = Cgroups(tmp_path).stat_files("orch/c1")
    assert files["memory.usage_in_bytes"] == "42\n" and files["cpuacct.usage"] == "7\n"
    assert files["blkio.throttle.io_service_bytes_recursive"] == "Total 0\n" and files["pids.current"] == ""
    assert Cgroups(tmp_path).stat_files("orch/gone") == {}
