"""`docker run --rm busybox true` through orch's docker.sock beside the same command against a
private dockerd, in one hyperfine run: the same docker CLI 28 client, the same busybox image,
with each engine's default network and with `--network none`. Prints medians and the ratio.

Usage (as root):  python bench/docker_run.py [--runs 30]

Sets up under a temporary directory, removed at the end: an orch node of its own (its agent
serving docker.sock) and bench/peers.py's private dockerd with a bridge of its own, both with
busybox:latest (orch's bootstrap, loaded into dockerd from the same archive).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.peers import private_dockerd  # noqa: E402
from bench.run_startup import OrchNode  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description="docker run --rm busybox true: orch's docker.sock beside dockerd")
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args()
    if os.geteuid() != 0 or not shutil.which("hyperfine") or not shutil.which("docker"):
        print("docker_run: run as root, with hyperfine and the docker CLI (apt-get install hyperfine docker.io)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="orch-bench-dockerrun-"))
    node = OrchNode(base / "orch")
    node.env["ORCH_NET_PREFIX"] = "orchB" + os.urandom(2).hex()
    try:
        node.setup()
        from tests.integration.build.conftest import cached_base

        with private_dockerd(cached_base("busybox"), bridge=True) as dockerd:
            if isinstance(dockerd, str):
                print(f"dockerd not available: {dockerd}")
                return 1
            hosts = {"orch": f"unix://{node.run}/docker.sock", "dockerd": dockerd["DOCKER_HOST"]}
            commands = {}
            for name, host in hosts.items():
                for variant, flags in (("default network", ""), ("--network none", " --network none")):
                    commands[f"{name}, {variant}"] = f"docker -H {host} run --rm{flags} busybox true"
            out = base / "hyperfine.json"
            argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(args.runs), "--export-json", str(out), "--style", "none"]
            for label, cmd in commands.items():
                argv += ["-n", label, cmd]
            subprocess.run(argv, env=dict(node.env, DOCKER_CONFIG=str(base / "docker-config")), check=True, stdout=subprocess.DEVNULL)
            medians = {r["command"]: statistics.median(r["times"]) for r in json.loads(out.read_text())["results"]}
        print(f"docker run --rm busybox true, docker CLI 28, {args.runs} runs each (median)")
        for variant in ("default network", "--network none"):
            o, d = medians[f"orch, {variant}"], medians[f"dockerd, {variant}"]
            print(f"  {variant:<16} orch {o * 1000:7.1f} ms   dockerd {d * 1000:7.1f} ms   orch/dockerd {o / d:.2f}x")
    finally:
        node.stop()
        from tests.integration.processes import remove_node_networks

        remove_node_networks(node.root, node.env["ORCH_NET_PREFIX"])
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
