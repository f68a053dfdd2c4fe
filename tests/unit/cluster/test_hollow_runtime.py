"""The hollow runtime's containers on trio's MockClock: a wait ends with the stop or the
removal, whenever it comes, and a cancelled wait leaves nothing for a later stop to wake."""

import pytest
import trio
import trio.testing

from orch.cluster.hollow import HollowRuntime


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


async def started(runtime: HollowRuntime, tid: str = "t1") -> str:
    cid = await runtime.create({"id": tid})
    await runtime.start(cid)
    return cid


async def test_a_wait_ends_with_the_stop_or_the_removal(autojump_clock):
    runtime = HollowRuntime(start_delay=0.5)
    stopped, removed = await started(runtime, "t1"), await started(runtime, "t2")
    assert runtime.running() == 2 and trio.current_time() == 1.0
    codes = {}

    async def wait(cid):
        codes[cid] = await runtime.wait(cid, on_health=None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, stopped)
        nursery.start_soon(wait, removed)
        await trio.testing.wait_all_tasks_blocked()
        assert codes == {}
        await runtime.stop(stopped, timeout=None)
        await runtime.remove(removed)
    assert codes == {stopped: 0, removed: 137} and runtime.running() == 0
    # Stopped before anyone waits: the wait returns at once; a container gone: 137.
    early = await started(runtime, "t3")
    await runtime.stop(early, timeout=None)
    assert await runtime.wait(early, on_health=None) == 0
    assert await runtime.wait("nosuch", on_health=None) == 137


async def test_a_cancelled_wait_is_not_woken_by_a_later_stop(autojump_clock):
    runtime = HollowRuntime()
    cid = await started(runtime)
    with trio.move_on_after(1) as scope:
        await runtime.wait(cid, on_health=None)
    assert scope.cancelled_caught
    await runtime.stop(cid, timeout=None)  # would reschedule a task no longer waiting
    await trio.testing.wait_all_tasks_blocked()
    assert runtime.containers[cid].stopped and runtime.running() == 0
