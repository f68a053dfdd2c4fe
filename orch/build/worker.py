"""A build for the node agent: in the agent's process when every step is cached, else in a
worker process of its own (`python -m orch.build.worker`).

The agent is a multi-threaded trio program; a build forks containers (spawn.start wants a
single-threaded caller that reaps its children as a subreaper) and mounts overlays. So a
build that runs a step runs in this worker: it reads the request as one JSON object on stdin
and writes JSON lines on stdout, docker's build stream: {"stream": "Step 1/5 : ...\\n"}, and
at the end {"aux": {"ID": "sha256:..."}} or {"error": "...", "kind": "..."}.

A rebuild with nothing changed forks and mounts nothing, though: `build_cached` runs the
builder in cache-only mode in the agent (in a thread), which answers the whole build from
the cache or gives up at the first step it would have to run; then the worker builds (its
hits cost little: the files it hashes are in the stat cache). A cached rebuild so costs no
interpreter start, which is most of what it would cost otherwise.

The worker first moves into a mount namespace of its own whose mounts do not propagate to
the host, so the overlays it mounts for COPY vanish with it even if it is killed.
"""

import json
import os
import signal
import sys
from pathlib import Path


class Stopped(BaseException):
    pass


def _stop(signum, frame):
    raise Stopped()


def build_request(req: dict):
    """The BuildRequest of the agent's JSON body (the context and -f paths are absolute)."""
    from orch.build.builder import BuildRequest

    return BuildRequest(context=Path(req["context"]), dockerfile=Path(req["dockerfile"]) if req.get("dockerfile") else None,
                        tags=list(req.get("tags") or []), build_args=dict(req.get("build_args") or {}),
                        target=req.get("target") or None, no_cache=bool(req.get("no_cache")), labels=dict(req.get("labels") or {}),
                        network=req.get("network") or "default", allow=tuple(req.get("allow") or ()))


def build_cached(store, req: dict) -> list[dict] | None:
    """The build's messages when every step comes from the cache, computed in the caller's
    process; None when a step would have to run (or --no-cache), for the worker to do."""
    from orch.build.builder import Builder, CacheMiss
    from orch.errors import OrchError

    if req.get("no_cache"):
        return None
    messages: list[dict] = []
    try:
        image = Builder(store, out=lambda line: messages.append({"stream": line + "\n"}), cache_only=True).build(build_request(req))
    except CacheMiss:
        return None
    except OrchError as err:
        messages.append({"error": str(err), "kind": err.kind})
        return messages
    messages.append({"aux": {"ID": image.id}})
    return messages


def main() -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything that prints by mistake goes to stderr, not into the stream

    def emit(value: dict) -> None:
        out.write(json.dumps(value) + "\n")

    # The agent stops a build whose client went away with SIGTERM: raising here unwinds the
    # builder's `finally` blocks, which kill the step's container and drop its snapshot.
    signal.signal(signal.SIGTERM, _stop)
    try:
        from orch.build.builder import Builder
        from orch.build.rootfs import BuildNetwork
        from orch.errors import OrchError
        from orch.node.runtime.images import ImageStore
        from orch.node.runtime.kernel import LinuxSyscalls

        req = json.loads(sys.stdin.read())
        sys_ = LinuxSyscalls()
        sys_.unshare(("mount",))
        sys_.mount("", "/", "", ("MS_REC", "MS_PRIVATE"))
        store = ImageStore(Path(req.pop("root")))
        # The namespace the agent made on its default bridge for this build's RUN steps.
        net = req.get("build_network")
        network = BuildNetwork(net["netns"], net["resolv_conf"]) if net else None
        try:
            image = Builder(store, out=lambda line: emit({"stream": line + "\n"}), network=network).build(build_request(req))
        except OrchError as err:
            emit({"error": str(err), "kind": err.kind})
            return 1
        emit({"aux": {"ID": image.id}})
        return 0
    except Stopped:
        return 143
    except Exception as err:  # a bug: one line for the user, the traceback in the agent's log
        import traceback

        traceback.print_exc()
        emit({"error": f"internal error in the build: {type(err).__name__}: {err}", "kind": "error"})
        return 70


if __name__ == "__main__":
    sys.exit(main())
