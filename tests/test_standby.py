"""api/server/standby.py InFlight: what a standby passed on to a sequencer the lease no longer names is cut off
(ConnectionAbortedError, which the standby answers 503), what went to the sequencer it names is left alone, and a
caller's own cancellation stays a cancellation. With real processes and SIGSTOP: tests/e2e/test_ha_failover.py."""

from __future__ import annotations

import asyncio

import pytest

from api.server.standby import InFlight


async def _never_answered(started: asyncio.Event) -> None:
    started.set()
    await asyncio.Event().wait()


def test_a_request_to_a_sequencer_the_lease_no_longer_names_is_cut_off_and_the_others_go_on():
    async def scenario():
        in_flight = InFlight()
        old_started, new_started = asyncio.Event(), asyncio.Event()
        to_old = asyncio.create_task(in_flight.send("http://old", _never_answered(old_started)))
        to_new = asyncio.create_task(in_flight.send("http://new", _never_answered(new_started)))
        await old_started.wait()
        await new_started.wait()
        in_flight.cut_off(keep="http://new")
        with pytest.raises(ConnectionAbortedError, match="http://old"):
            await to_old
        await asyncio.sleep(0.01)
        assert not to_new.done()  # the sequencer the lease names is still waited for
        in_flight.cut_off(keep=None)  # this server sequences now: nothing goes on to another
        with pytest.raises(ConnectionAbortedError):
            await to_new
        assert await in_flight.send("http://new", asyncio.sleep(0, "answered")) == "answered"

    asyncio.run(scenario())


def test_a_caller_that_is_cancelled_is_cancelled_not_cut_off():
    async def scenario():
        in_flight = InFlight()
        started = asyncio.Event()
        caller = asyncio.create_task(in_flight.send("http://old", _never_answered(started)))
        await started.wait()
        caller.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await caller
        in_flight.cut_off(keep=None)  # nothing is left to cut off

    asyncio.run(scenario())
