"""Progress of pulls and pushes: events in docker's JSON message shape, and their renderers.

The transfers report events such as

    {"status": "Downloading", "id": "3f4ca61aafcd", "progressDetail": {"current": 1048576, "total": 2811478}}
    {"status": "Pull complete", "id": "3f4ca61aafcd"}
    {"status": "Digest: sha256:..."}

(the shape of docker's /images/create stream), so the same events can be drawn as bars on a
terminal (tqdm, one bar a layer), printed as plain lines when stdout is not a terminal (only
the events without progressDetail), or sent by the agent as JSON lines.
"""

import sys
import threading
from typing import Callable

Events = Callable[[dict], None]


def ignore(_event: dict) -> None:
    pass


class Throttle:
    """Report a transfer's progress at most every 1% (and at least every 64 KiB) of its size."""

    def __init__(self, events: Events, status: str, id_: str, total: int):
        self.events, self.status, self.id, self.total = events, status, id_, total
        self.current = 0
        self.last = 0
        self.step = max(total // 100, 64 << 10)
        self.lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self.lock:
            self.current += n
            if self.current - self.last < self.step and self.current < self.total:
                return
            self.last = self.current
            current = self.current
        self.events({"status": self.status, "id": self.id, "progressDetail": {"current": current, "total": self.total}})


class PlainRenderer:
    """Lines for a log or a pipe: statuses only, no byte counts."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        if event.get("progressDetail"):
            return
        line = f"{event['id']}: {event['status']}" if event.get("id") else event["status"]
        with self.lock:
            print(line, file=self.out, flush=True)

    def close(self) -> None:
        pass


class BarRenderer:
    """One tqdm bar per layer on a terminal; finished layers keep their final status line."""

    def __init__(self, out=None):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.out = out or sys.stdout
        self.bars: dict = {}
        self.lock = threading.Lock()

    def _bar(self, id_: str, status: str, total: int | None):
        bar = self.bars.get(id_)
        if bar is None:
            bar = self.tqdm(total=total, desc=f"{id_}: {status}", unit="B", unit_scale=True, unit_divisor=1024,
                            file=self.out, leave=True, position=len(self.bars), dynamic_ncols=True)
            self.bars[id_] = bar
        return bar

    def __call__(self, event: dict) -> None:
        id_, status = event.get("id"), event["status"]
        with self.lock:
            if not id_:
                # A line of its own ("Digest: ...") comes after the layers: the bars are final.
                self._close_bars()
                print(status, file=self.out, flush=True)
                return
            detail = event.get("progressDetail")
            bar = self._bar(id_, status, detail.get("total") if detail else None)
            bar.set_description_str(f"{id_}: {status}", refresh=False)
            if detail:
                if bar.total != detail.get("total"):
                    bar.total = detail.get("total")  # the bar may have started before the size was known
                bar.update(detail["current"] - bar.n)
            else:
                bar.refresh()

    def _close_bars(self) -> None:
        # Close bottom-up so that each bar is drawn in its final place before the cursor moves.
        for bar in reversed(list(self.bars.values())):
            bar.close()
        self.bars.clear()

    def close(self) -> None:
        with self.lock:
            self._close_bars()


def renderer(out=None):
    """Bars when `out` (stdout by default) is a terminal, plain lines otherwise."""
    out = out or sys.stdout
    return BarRenderer(out) if out.isatty() else PlainRenderer(out)
