"""Foreground `orch compose up`: converge, then print every container's logs until they all
exit; Ctrl-C stops the stack gracefully (dependents first), a second Ctrl-C kills it.

The converge loop and the log threads only read and call the agent, so Ctrl-C (a
KeyboardInterrupt in the main thread) can land anywhere: the stop that follows observes the
node afresh, and the next `up` converges whatever state the interrupt left.
"""

from __future__ import annotations

import sys
import time

from orch.compose.logs import LogPrinter, short_name


def run_attached(stack, options) -> int:
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM (a service manager, `kill`) stops the stack as Ctrl-C does.
    signal.signal(signal.SIGTERM, interrupt)
    try:
        code = stack.converge(options)
        if code:
            return code
        records = [r for r in stack.records() if r["State"]["Status"] in ("running", "paused")]
        print("Attaching to " + ", ".join(short_name(r, stack.name) for r in records), file=sys.stderr, flush=True)
        threads = LogPrinter(stack.client, stack.name, records).follow(follow=True, tail=0)
        while any(th.is_alive() for th in threads):
            time.sleep(0.2)
        return 0
    except KeyboardInterrupt:
        print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr, flush=True)
        try:
            stop_stack(stack)
        except KeyboardInterrupt:
            stop_stack(stack, kill=True)
        return 130


def stop_stack(stack, services=None, *, kill: bool = False) -> None:
    """Stop the project's running containers, dependents before their dependencies."""
    from orch.scheduler.graph import compute_graph, stop_order

    records = stack.records()
    by_service: dict[str, list[dict]] = {}
    for r in records:
        service = (r["Config"].get("Labels") or {}).get("com.docker.compose.service", "")
        if services and service not in services:
            continue
        if r["State"]["Status"] in ("running", "paused"):
            by_service.setdefault(service, []).append(r)
    generations = stop_order(compute_graph(stack.project.services)) if stack.project.services else []
    known = {s for g in generations for s in g}
    generations = [[s for s in by_service if s not in known]] + generations
    from concurrent.futures import ThreadPoolExecutor

    for generation in generations:
        targets = [r for s in generation for r in by_service.get(s, [])]
        if not targets:
            continue

        def stop(r):
            path = f"/containers/{r['Id']}/kill" if kill else f"/containers/{r['Id']}/stop"
            try:
                stack.client.call("POST", path)
            except Exception:  # noqa: BLE001 - it exited meanwhile
                pass
            stack.report.done("Container", r["Name"].lstrip("/"), "Killed" if kill else "Stopped")

        with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
            list(pool.map(stop, targets))
