"""The static probe (probe.c) that isolation tests bind-mount into containers: what busybox
cannot try (keyctl, io_uring, perf_event_open, userfaultfd, personality, a cgroup mount).

Built with the host's gcc once per version of probe.c and cached beside the busybox rootfs.
"""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("probe.c")
CACHE = Path(os.environ.get("ORCH_TEST_CACHE", "/var/cache/orch-test"))
# Where tests mount it in a container.
TARGET = "/probe"


def probe_binary() -> Path:
    """The compiled probe: a static x86-64 executable that runs in any image."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    binary = CACHE / f"probe-{digest}"
    if binary.exists():
        return binary
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("the isolation tests need gcc and libc6-dev to build tests/integration/probe.c (scripts/setup installs them)")
    CACHE.mkdir(parents=True, exist_ok=True)
    building = binary.with_name(binary.name + f".{os.getpid()}")
    subprocess.run([gcc, "-static", "-O1", "-o", str(building), str(SOURCE)], check=True, capture_output=True)
    os.rename(building, binary)
    return binary


def parse(output: str) -> dict[str, str]:
    """{attempt: "ok" | "errno N"} from the probe's lines (other lines are ignored)."""
    answers = {}
    for line in output.splitlines():
        name, _, result = line.partition(" ")
        if result == "ok" or result.startswith("errno "):
            answers[name] = result
    return answers
