"""docker's stats JSON (GET /containers/{id}/stats, Engine API 1.41's ContainerStats) from
the texts of a container's cgroup files, /proc/stat and its /proc/<pid>/net/dev. Pure: the
agent reads the files (Cgroups.stat_files), this module only parses and shapes.

What goes where, as dockerd fills it from containerd's cgroup metrics:
- cgroup v1: cpuacct.usage (ns) and usage_percpu; cpuacct.stat's user and system ticks as
  usage_in_usermode/kernelmode in ns; cpu.stat's throttling; memory.usage_in_bytes,
  max_usage_in_bytes, failcnt, limit_in_bytes and every memory.stat line as `stats`; blkio's
  io_service_bytes_recursive (the throttle files when the scheduler keeps none), pids.
- cgroup v2: cpu.stat's usage_usec, user_usec, system_usec in ns (no per-CPU figures),
  memory.current, memory.max, memory.stat, io.stat's rbytes/wbytes as "read"/"write", pids.
- A memory limit above the machine's memory (or none) is reported as the machine's memory
  (moby daemon/stats_unix.go).
- system_cpu_usage: the first seven fields of /proc/stat's "cpu" line, ticks in ns.
"""

from __future__ import annotations

ZERO_TIME = "0001-01-01T00:00:00Z"
# The memory.stat lines dockerd reports on cgroup v1 (containerd's MemoryStat); a newer
# kernel's others (shmem, swap, workingset_*) are left out, as docker leaves them.
V1_MEMORY_KEYS = ("cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pgpgin", "pgpgout", "pgfault", "pgmajfault",
                  "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable", "hierarchical_memory_limit",
                  "hierarchical_memsw_limit")
BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive", "io_service_time_recursive",
              "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive", "sectors_recursive")
NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errs", "rx_drop", None, None, None, None,
              "tx_bytes", "tx_packets", "tx_errs", "tx_drop")
NET_NAMES = {"rx_errs": "rx_errors", "rx_drop": "rx_dropped", "tx_errs": "tx_errors", "tx_drop": "tx_dropped"}


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text.strip())
    except (ValueError, AttributeError):
        return default


def _pairs(text: str) -> dict[str, int]:
    """"key value" lines (memory.stat, cpu.stat, cpuacct.stat) as a dict of integers."""
    out = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def system_cpu_usage(proc_stat: str, clk_tck: int) -> int:
    """/proc/stat's first line (user nice system idle iowait irq softirq) in nanoseconds."""
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            return sum(int(f) for f in fields[1:8]) * 1_000_000_000 // clk_tck
    return 0


def parse_net_dev(text: str) -> dict[str, dict]:
    """/proc/<pid>/net/dev of a container: its interfaces but lo, in docker's NetworkStats."""
    out = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        name = name.strip()
        values = rest.split()
        if not name or name == "lo" or len(values) < 12:
            continue
        stats = {}
        for field, value in zip(NET_FIELDS, values):
            if field is not None:
                stats[NET_NAMES.get(field, field)] = int(value)
        out[name] = {k: stats[k] for k in ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
                                           "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")}
    return out


def _blkio_v1(text: str) -> list[dict]:
    out = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) == 3 and ":" in fields[0]:
            major, _, minor = fields[0].partition(":")
            out.append({"major": int(major), "minor": int(minor), "op": fields[1], "value": int(fields[2])})
    return out


def _blkio_v2(text: str) -> tuple[list[dict], list[dict]]:
    """io.stat lines ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...") as docker's two lists."""
    bytes_, ios = [], []
    for line in (text or "").splitlines():
        fields = line.split()
        if not fields or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        values = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        for key, op, into in (("rbytes", "read", bytes_), ("wbytes", "write", bytes_), ("rios", "read", ios), ("wios", "write", ios)):
            if key in values:
                into.append({"major": int(major), "minor": int(minor), "op": op, "value": int(values[key])})
    return bytes_, ios


def empty_cpu() -> dict:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def empty_stats(name: str, cid: str) -> dict:
    """What dockerd answers for a container that does not run."""
    return {"read": ZERO_TIME, "preread": ZERO_TIME, "pids_stats": {}, "blkio_stats": {k: None for k in BLKIO_KEYS},
            "num_procs": 0, "storage_stats": {}, "cpu_stats": empty_cpu(), "precpu_stats": empty_cpu(), "memory_stats": {},
            "name": name, "id": cid}


def compute_sample(files: dict[str, str], *, version: str, system_usage: int, online_cpus: int, clk_tck: int,
                   machine_memory: int) -> dict:
    """One reading: {"cpu_stats", "memory_stats", "blkio_stats", "pids_stats"} in docker's shapes."""
    pids = {"current": _int(files.get("pids.current", ""))}
    limit = files.get("pids.max", "").strip()
    if limit.isdigit() and int(limit) > 0:
        pids["limit"] = int(limit)
    if version == "v2":
        cpu = _pairs(files.get("cpu.stat", ""))
        cpu_stats = {"cpu_usage": {"total_usage": cpu.get("usage_usec", 0) * 1000,
                                   "usage_in_kernelmode": cpu.get("system_usec", 0) * 1000,
                                   "usage_in_usermode": cpu.get("user_usec", 0) * 1000},
                     "system_cpu_usage": system_usage, "online_cpus": online_cpus,
                     "throttling_data": {"periods": cpu.get("nr_periods", 0), "throttled_periods": cpu.get("nr_throttled", 0),
                                         "throttled_time": cpu.get("throttled_usec", 0) * 1000}}
        max_text = files.get("memory.max", "").strip()
        mem_limit = int(max_text) if max_text.isdigit() else machine_memory
        memory = {"usage": _int(files.get("memory.current", ""))}
        if files.get("memory.peak", "").strip().isdigit():
            memory["max_usage"] = _int(files["memory.peak"])
        memory.update(stats=dict(sorted(_pairs(files.get("memory.stat", "")).items())), limit=min(mem_limit, machine_memory) if machine_memory else mem_limit)
        service_bytes, serviced = _blkio_v2(files.get("io.stat", ""))
    else:
        ticks = _pairs(files.get("cpuacct.stat", ""))
        throttling = _pairs(files.get("cpu.stat", ""))
        per_cpu = [int(x) for x in files.get("cpuacct.usage_percpu", "").split()]
        usage = {"total_usage": _int(files.get("cpuacct.usage", ""))}
        if per_cpu:
            usage["percpu_usage"] = per_cpu
        usage.update(usage_in_kernelmode=ticks.get("system", 0) * 1_000_000_000 // clk_tck,
                     usage_in_usermode=ticks.get("user", 0) * 1_000_000_000 // clk_tck)
        cpu_stats = {"cpu_usage": usage, "system_cpu_usage": system_usage, "online_cpus": online_cpus,
                     "throttling_data": {"periods": throttling.get("nr_periods", 0),
                                         "throttled_periods": throttling.get("nr_throttled", 0),
                                         "throttled_time": throttling.get("throttled_time", 0)}}
        mem_limit = _int(files.get("memory.limit_in_bytes", ""))
        if machine_memory and (mem_limit == 0 or mem_limit > machine_memory):
            mem_limit = machine_memory
        memory = {"usage": _int(files.get("memory.usage_in_bytes", "")), "max_usage": _int(files.get("memory.max_usage_in_bytes", ""))}
        failcnt = _int(files.get("memory.failcnt", ""))
        if failcnt:
            memory["failcnt"] = failcnt
        raw = _pairs(files.get("memory.stat", ""))
        wanted = set(V1_MEMORY_KEYS) | {"total_" + k for k in V1_MEMORY_KEYS if not k.startswith("hierarchical")}
        memory.update(stats={k: raw[k] for k in sorted(raw) if k in wanted}, limit=mem_limit)
        # The CFQ/BFQ files when the disk's scheduler keeps them, else the throttle layer's.
        service_bytes = _blkio_v1(files.get("blkio.io_service_bytes_recursive", "")) or \
            _blkio_v1(files.get("blkio.throttle.io_service_bytes_recursive", ""))
        serviced = _blkio_v1(files.get("blkio.io_serviced_recursive", "")) or \
            _blkio_v1(files.get("blkio.throttle.io_serviced_recursive", ""))
    blkio = {k: [] for k in BLKIO_KEYS}
    blkio.update(io_service_bytes_recursive=service_bytes, io_serviced_recursive=serviced)
    return {"pids_stats": pids, "blkio_stats": blkio, "cpu_stats": cpu_stats, "memory_stats": memory}


def compose(sample: dict, previous: dict | None, *, read: str, preread: str, name: str, cid: str, networks: dict | None) -> dict:
    """The stats message: this sample, the previous one's CPU figures as precpu_stats, in
    docker's key order (networks last, and only for a container with a network of its own)."""
    out = {"read": read, "preread": preread if previous else ZERO_TIME, "pids_stats": sample["pids_stats"],
           "blkio_stats": sample["blkio_stats"], "num_procs": 0, "storage_stats": {}, "cpu_stats": sample["cpu_stats"],
           "precpu_stats": previous["cpu_stats"] if previous else empty_cpu(), "memory_stats": sample["memory_stats"],
           "name": name, "id": cid}
    if networks is not None:
        out["networks"] = networks
    return out
