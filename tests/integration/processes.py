"""Stopping the agents and supervisors that integration tests start: SIGTERM, a grace of up
to 5 s for their clean shutdown (bridges, tables, sockets), then SIGKILL."""

import os
import signal
import time


def stop_process(pid: int | None) -> None:
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(250):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)  # polling a process we signalled: nothing to wait on but its exit
    os.kill(pid, signal.SIGKILL)
