"""Placement benchmark: the pure placement function alone, M tasks on N nodes.

    .venv/bin/python bench/placement.py [--nodes 1000] [--tasks 100000] [--runs 3]

The cluster: N ready nodes (a tenth of them managers), each with 8 CPUs and 32 GiB, labelled
with one of three zones, one of ten racks and a tier (app on 80%, db on 20%). The work: services
of 1 to 1,000 replicas (sizes drawn from a fixed mix until M tasks are reached), each with
small reservations; a third are constrained to `node.labels.tier==app` and
`node.role!=manager`, half spread over `node.labels.zone` (and a quarter of those also over
`node.labels.rack`), a tenth capped with max_replicas_per_node. Everything is placed from an
empty cluster in one pass, as `stack deploy` of all of it would be.

Printed: the time of the pass (wall and CPU, medians of --runs), decisions per second, how many
tasks were placed, the load average, and the issue's target (100,000 tasks on 1,000 nodes in
under 2 s) beside it. No peer
runs here: swarm's scheduler cannot be called alone; the published anchors (nomad C2M's 1,500
containers a second end to end) are in issue 13.
"""

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orch.cluster.records import Node, NodeDescription, NodeSpec, NodeStatus, Placement, PlacementPreference, Resources  # noqa: E402
from orch.scheduler.placement import Demand, compute_placements  # noqa: E402

SIZES = [1000, 500, 200, 100, 50, 10, 3, 1]
WEIGHTS = [2, 3, 5, 8, 10, 20, 20, 32]


def make_nodes(n: int) -> list[Node]:
    nodes = []
    for i in range(n):
        labels = {"zone": f"z{i % 3}", "rack": f"r{i % 30}", "tier": "db" if i % 5 == 0 else "app"}
        nodes.append(Node(
            id=f"node{i:05d}",
            spec=NodeSpec(role="manager" if i % 10 == 0 else "worker", labels=labels),
            description=NodeDescription(hostname=f"host{i}", resources=Resources(nano_cpus=8_000_000_000, memory_bytes=32 << 30)),
            status=NodeStatus(state="ready", addr=f"10.1.{i // 250}.{i % 250 + 1}"),
        ))
    return nodes


def make_demands(total: int, seed: int = 7) -> list[Demand]:
    rng = random.Random(seed)
    demands, placed, k = [], 0, 0
    while placed < total:
        size = min(rng.choices(SIZES, WEIGHTS)[0], total - placed)
        constraints = ["node.labels.tier==app", "node.role!=manager"] if k % 3 == 0 else []
        prefs = []
        if k % 2 == 0:
            prefs.append(PlacementPreference(spread="node.labels.zone"))
            if k % 4 == 0:
                prefs.append(PlacementPreference(spread="node.labels.rack"))
        max_replicas = 200 if k % 10 == 0 else 0
        placement = Placement(constraints=constraints, preferences=prefs, max_replicas=max_replicas)
        ids = tuple(f"s{k}t{i}" for i in range(size))
        demands.append(Demand(f"svc{k}", ids, placement, Resources(nano_cpus=10_000_000, memory_bytes=16 << 20)))
        placed += size
        k += 1
    return demands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    nodes = make_nodes(args.nodes)
    demands = make_demands(args.tasks)
    times, cpu, placed = [], [], 0
    for _ in range(args.runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        results = compute_placements(nodes, (), demands)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        placed = sum(len(r.assigned) for r in results)
    took = statistics.median(times)
    print(f"placement: {args.tasks} tasks of {len(demands)} services on {args.nodes} nodes "
          f"(constraints on 1/3, spread on 1/2, max_replicas on 1/10)")
    # The CPU time too: on a machine shared with other work the wall clock also counts the
    # time this process waited for a core.
    print(f"  {took:.3f} s wall, {statistics.median(cpu):.3f} s CPU (medians of {args.runs}), "
          f"{placed / took:,.0f} decisions/s, {placed} placed; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if (args.tasks, args.nodes) == (100_000, 1000):
        print(f"  target (issue 13): 100,000 tasks on 1,000 nodes in under 2 s; this run used {took / 2.0:.2f}x of it")
    else:
        print("  (the issue's target, under 2 s, is for 100,000 tasks on 1,000 nodes)")


if __name__ == "__main__":
    main()
