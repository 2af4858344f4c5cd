"""Notebook/REPL use: connect, register handlers while connected, call, enumerate."""

from __future__ import annotations

import asyncio

import perper

from conftest import run


def test_connect_register_call_and_enumerate(fabric):
    async def letters(text):
        for char in text:
            yield char

    async def body():
        app = await perper.run_notebook(endpoint=fabric.address)
        try:
            assert perper.current_agent() == perper.Agent("notebook", "notebook-Main")
            app.register("Double", lambda x: 2 * x)
            app.register("Letters", letters)
            await app.ready(10)
            assert await perper.call("Double", 21) == 42
            stream = await perper.stream("Letters", "abc")
            assert [c async for c in stream] == ["a", "b", "c"]
            await perper.state().set("cell", 1)
            assert await perper.state().get("cell") == 1
        finally:
            await app.stop()
    run(body())


def test_ambient_calls_outside_a_context_are_a_clear_error():
    try:
        perper.state()
    except perper.PerperError as e:
        assert "no Perper context" in str(e)
    else:
        raise AssertionError("perper.state() worked without a context")


def test_serving_another_agent_than_the_scaler_started_is_refused(monkeypatch):
    monkeypatch.setenv("X_PERPER_AGENT", "Sensor")
    try:
        perper.run("sensor", {})
    except ValueError as e:
        assert str(e) == "perper: X_PERPER_AGENT is Sensor but this process serves agent sensor"
    else:
        raise AssertionError("a process started for Sensor served sensor")


def test_a_stop_request_ends_a_running_deploy_at_once(fabric):
    async def body():
        started = asyncio.Event()
        cancelled = []

        async def deploy():
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        app = perper.Application("Stopper", {"Deploy": deploy}, endpoint=fabric.address)
        serving = asyncio.ensure_future(app.serve())
        await asyncio.wait_for(started.wait(), 10)
        app.request_stop()
        assert await asyncio.wait_for(serving, 5) is None
        assert cancelled == [True]
    run(body())
