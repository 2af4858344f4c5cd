"""State: the instance dictionary, named dictionaries and lists."""

from __future__ import annotations

import asyncio

import pytest

import perper

from conftest import run, session


def test_instance_state_is_the_instance_dictionary(fabric):
    async def remember(value):
        await perper.state().set("value", value)

    async def recall():
        return await perper.state().get("value")

    async def body():
        async with session(fabric.address, agent="Caller"):
            async with session(fabric.address, agent="Memo",
                               handlers={"Remember": remember, "Recall": recall}):
                a, b = perper.Agent("Memo", "a"), perper.Agent("Memo", "b")
                await a.call("Remember", "for a")
                await b.call("Remember", "for b")
                assert await a.call("Recall") == "for a"
                assert await b.call("Recall") == "for b"
                assert await perper.Dictionary("a-").get("value") == "for a"
    run(body())


def test_dictionary_operations(fabric):
    async def body():
        async with session(fabric.address):
            d = perper.dictionary()
            assert d.dictionary.startswith("-")
            assert await d.get("missing") is None
            assert await d.get("missing", 5) == 5
            await d.set("n", 1)
            assert await d.contains("n") and not await d.contains("m")
            assert await d.get("n", type=int) == 1
            with pytest.raises(perper.PerperTypeError, match="Int64Value.*str"):
                await d.get("n", type=str)
            assert not await d.compare_and_set("n", 2, 3)
            assert await d.compare_and_set("n", 1, 3)
            assert await d.get("n") == 3
            assert await d.set_if_absent("m", "x")
            assert not await d.set_if_absent("m", "y")
            assert await d.get_and_set("m", "z") == "x"
            assert await d.count() == 2
            assert sorted([k async for k, _ in d.items()]) == ["m", "n"]
            assert await d.remove("m") and not await d.remove("m")
            # Concurrent atomic updates lose nothing.
            await asyncio.gather(*(d.update("n", lambda v: v + 1) for _ in range(20)))
            assert await d.get("n") == 23
            # Any value type works as a key.
            await d.set(7, "seven")
            assert await d.get(7) == "seven" and await d.get("7") is None
            await d.clear()
            assert await d.count() == 0
            named = perper.dictionary("shared")
            await named.set("k", perper.Stream("s", 0, 1))
            assert await perper.Dictionary("shared").get("k") == perper.Stream("s", 0, 1)
    run(body())


def test_list_operations(fabric):
    async def body():
        async with session(fabric.address):
            items = perper.list_state()
            assert await items.pop_front() is None
            await items.push_back(1, 2, 3)
            await items.push_front("a", "b")
            assert [v async for v in items.items()] == ["a", "b", 1, 2, 3]
            assert await items.count() == 5
            assert await items.get(0) == "a" and await items.get(-1) == 3
            with pytest.raises(IndexError):
                await items.get(5)
            await items.set(2, "one")
            await items.insert(1, "x")
            assert [v async for v in items.items()] == ["a", "x", "b", "one", 2, 3]
            assert await items.locate("one") == 3 and await items.locate("zzz") is None
            assert await items.remove_at(1) == "x"
            assert await items.pop_front() == "a"
            assert await items.pop_back(type=int) == 3
            assert [v async for v in items.items()] == ["b", "one", 2]
            await items.clear()
            assert await items.count() == 0
            assert await items.pop_back("empty") == "empty"
    run(body())
