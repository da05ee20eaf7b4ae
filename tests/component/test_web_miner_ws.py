"""``/ws/miner`` against the real Pooler (uvicorn on loopback) and the devnet, with a real WebSocket client.

Each test starts its own devnet + Pooler (about 0.1 s). The block interval is 300 s, so the first
block stays open for the whole test and every job the test gets stays current. The share
difficulty is pinned at 1 zero (no vardiff), so the frames a test receives are exactly the
answers to what it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol.work import count_zeros
from tests.support.system import (
    EventTap,
    MinerSocket,
    System,
    find_nonce,
    register_miner,
    running_system,
    tap_events,
    template,
)
from tests.support.wait import FAILSAFE, wait_until

pytestmark = pytest.mark.usefixtures("miner_socket")  # each test on both /ws/miner paths


async def test_hello_gets_welcome_then_a_clean_job_of_the_open_block() -> None:
    async with running_system() as system:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as ws:
            welcome, job = await ws.hello(reg.token, worker="rig-1")
        assert welcome == {
            "type": "welcome",
            "minerId": reg.miner_id,
            "worker": "rig-1",
            "farmerId": reg.farmer_id,
            "farmer": reg.farmer,
            "protocol": 1,
        }
        assert job["block"] == system.block() == system.net.contract.farm_index
        block = system.net.contract.get_block(job["block"])
        assert block is not None and job["entropy"] == block.entropy.hex()
        assert job["farmer"] == reg.farmer
        assert job["clean"] is True
        assert job["shareZeros"] == 1
        assert 0 <= int(job["nonceStart"]) < int(job["nonceEnd"])
        assert isinstance(job["nonceStart"], str) and isinstance(job["nonceEnd"], str)
        assert job["workAt"] < job["blockEndsAt"]


async def test_hello_while_no_block_is_open_gets_the_job_when_one_opens() -> None:
    async with running_system(paused=True) as system:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.send({"type": "hello", "token": reg.token, "protocol": 1})
            welcome = await ws.expect("welcome")
            assert welcome["worker"] == "default"
            system.net.contract.unpause()
            job = await ws.expect("job")  # nothing else came first: no job while paused
        assert job["clean"] is True
        assert job["block"] == system.block()


async def test_no_hello_in_time_is_error_25_and_close_1008() -> None:
    async with running_system(hello_timeout_ms=300) as system:
        async with MinerSocket.open(system.ws_url) as ws:
            code, frames = await ws.closed()
        assert code == 1008
        assert [(f["type"], f["code"], f["reason"]) for f in frames] == [("error", 25, "no-hello")]
        assert "hello" in frames[0]["message"]


async def test_another_message_before_hello_is_error_25_and_close() -> None:
    async with running_system() as system:
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.send({"type": "stats"})
            code, frames = await ws.closed()
        assert code == 1008
        assert [(f["code"], f["reason"]) for f in frames] == [(25, "no-hello")]


@pytest.mark.parametrize("token", ["not-a-token", "x" * 256])
async def test_a_bad_token_is_error_24_and_close_1008(token: str) -> None:
    async with running_system() as system:
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.send({"type": "hello", "token": token, "protocol": 1})
            code, frames = await ws.closed()
        assert code == 1008
        assert [(f["type"], f["code"], f["reason"]) for f in frames] == [("error", 24, "unauthorized")]
        assert "register" in frames[0]["message"]


# frame -> a word the error message must contain (it says what was wrong)
MALFORMED = [
    ("this is not json", "JSON"),
    ("[1, 2, 3]", "object"),
    ('{"no": "type"}', "type"),
    ('{"type": "mine-harder"}', "unknown message type"),
    ('{"type": 7}', "type"),
    ('{"type": "share", "nonce": "5"}', "job"),
    ('{"type": "share", "job": 5, "nonce": "5"}', "job"),
    ('{"type": "share", "job": "j", "nonce": "abc"}', "nonce"),
    ('{"type": "share", "job": "j", "nonce": "-1"}', "nonce"),
    ('{"type": "share", "job": "j", "nonce": true}', "boolean"),
    ('{"type": "share", "job": "j", "nonce": 1.5}', "float"),
    ('{"type": "share", "job": "j", "nonce": "18446744073709551616"}', "u64"),
    ('{"type": "share", "job": "j", "nonce": "1", "hash": "zz"}', "hash"),
    ('{"type": "more", "job": 12}', "job"),
]


async def test_malformed_frames_get_error_20_with_a_clear_message_and_the_socket_stays() -> None:
    async with running_system() as system:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as ws:
            _, job = await ws.hello(reg.token)
            for frame, word in MALFORMED:
                await ws.send(frame)
                err = await ws.expect("error")
                assert (err["code"], err["reason"]) == (20, "malformed"), frame
                assert word.lower() in err["message"].lower(), (frame, err["message"])
            await ws.send(b'{"type": "stats"}')  # binary frame: not part of protocol v1
            err = await ws.expect("error")
            assert (err["code"], err["reason"]) == (20, "malformed")
            assert "binary" in err["message"]
            # still connected and served: a valid share is accepted
            nonce, _, zeros = find_nonce(job)
            accepted = await ws.request({"type": "share", "job": job["job"], "nonce": str(nonce)}, "accepted")
        assert accepted == {
            "type": "accepted",
            "job": job["job"],
            "nonce": str(nonce),
            "zeros": zeros,
            "best": True,
        }


async def test_a_frame_over_max_frame_is_error_29_and_close_1009() -> None:
    async with running_system(max_frame_bytes=512) as system:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.hello(reg.token)
            await ws.send({"type": "stats", "padding": "x" * 600})
            code, frames = await ws.closed()
        assert code == 1009
        assert [(f["type"], f["code"], f["reason"]) for f in frames] == [("error", 29, "too-large")]
        assert "512" in frames[0]["message"]


async def test_shares_accepted_best_duplicates_in_every_spelling_stale_range_and_hash() -> None:
    async with running_system() as system:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as ws:
            _, job = await ws.hello(reg.token)
            jid = job["job"]
            first, digest, zeros = find_nonce(job)
            ok = await ws.request(
                {"type": "share", "job": jid, "nonce": str(first), "hash": digest.hex()}, "accepted"
            )
            assert ok == {"type": "accepted", "job": jid, "nonce": str(first), "zeros": zeros, "best": True}
            assert count_zeros(digest) == zeros >= 1

            # the same number in every spelling: one nonce, credited once
            spellings: list[object] = [
                first,
                str(first),
                "000" + str(first),
                hex(first),
                "0X" + format(first, "X"),
                "0x" + format(first, "x").rjust(16, "0"),
            ]
            for spelling in spellings:
                rej = await ws.request({"type": "share", "job": jid, "nonce": spelling}, "rejected")
                assert (rej["code"], rej["reason"], rej["nonce"], rej["job"]) == (
                    22,
                    "duplicate",
                    str(first),
                    jid,
                )
            # upper-case hash is the same hash: still a duplicate, not invalid
            rej = await ws.request(
                {"type": "share", "job": jid, "nonce": str(first), "hash": digest.hex().upper()}, "rejected"
            )
            assert rej["code"] == 22

            # a second share of no more zeros is accepted, not best
            second, _, zeros2 = find_nonce(job, below=zeros + 1, skip={first})
            ok = await ws.request({"type": "share", "job": jid, "nonce": str(second)}, "accepted")
            assert (ok["zeros"], ok["best"]) == (zeros2, False)

            rej = await ws.request(
                {"type": "share", "job": "no-such-job", "nonce": str(first + 1)}, "rejected"
            )
            assert (rej["code"], rej["reason"], rej["job"]) == (21, "stale", "no-such-job")

            outside = int(job["nonceEnd"])
            rej = await ws.request({"type": "share", "job": jid, "nonce": str(outside)}, "rejected")
            assert (rej["code"], rej["reason"]) == (27, "out-of-range")
            assert job["nonceEnd"] in rej["message"]
            if int(job["nonceStart"]) > 0:
                rej = await ws.request(
                    {"type": "share", "job": jid, "nonce": str(int(job["nonceStart"]) - 1)}, "rejected"
                )
                assert rej["code"] == 27

            third, _, _ = find_nonce(job, below=zeros + 1, skip={first, second})  # never a new best
            rej = await ws.request(
                {"type": "share", "job": jid, "nonce": str(third), "hash": "ab" * 32}, "rejected"
            )
            assert (rej["code"], rej["reason"]) == (26, "invalid-hash")
            assert template_hash_in(rej["message"], job, third)

            low, _, _ = find_nonce(job, at_least=0, below=1)
            rej = await ws.request({"type": "share", "job": jid, "nonce": str(low)}, "rejected")
            assert (rej["code"], rej["reason"]) == (23, "low-zeros")

            # the invalid hash did not burn the nonce: with the right hash it counts
            ok = await ws.request({"type": "share", "job": jid, "nonce": str(third)}, "accepted")
            assert ok["nonce"] == str(third)

            stats = await ws.request({"type": "stats"}, "stats")
        assert stats["minerId"] == reg.miner_id and stats["farmerId"] == reg.farmer_id
        assert stats["block"] == job["block"]
        assert stats["workers"] == 1
        assert stats["accepted"] == 3
        # 6 spellings + upper-case hash duplicates, stale, out-of-range (1 or 2), invalid hash, low zeros
        assert stats["stale"] == 1
        assert stats["rejected"] == 7 + 1 + (2 if int(job["nonceStart"]) > 0 else 1) + 2
        assert stats["bestZeros"] == zeros
        assert stats["shareZeros"] == 1
        assert stats["rewards"] == "0"


def template_hash_in(message: str, job: dict[str, object], nonce: int) -> bool:
    return template(job).hash(nonce).hex() in message


async def test_more_hands_a_disjoint_range_of_the_same_block_and_old_jobs_stay_valid() -> None:
    async with running_system() as system:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as a, MinerSocket.open(system.ws_url) as b:
            _, job_a = await a.hello(reg.token, "a")
            _, job_b = await b.hello(reg.token, "b")
            more_a = await a.request({"type": "more", "job": job_a["job"]}, "job")
            more_b = await b.request({"type": "more"}, "job")
            jobs = [job_a, job_b, more_a, more_b]
            assert [j["clean"] for j in jobs] == [True, True, False, False]
            assert {j["block"] for j in jobs} == {job_a["block"]}
            assert len({j["job"] for j in jobs}) == 4
            ranges = sorted((int(j["nonceStart"]), int(j["nonceEnd"])) for j in jobs)
            for (_, end), (start, _) in itertools.pairwise(ranges):
                assert end <= start, f"ranges overlap: {ranges}"
            # the first range is still valid after `more`
            nonce, _, _ = find_nonce(job_a)
            await a.request({"type": "share", "job": job_a["job"], "nonce": str(nonce)}, "accepted")
            nonce, _, _ = find_nonce(more_a)
            await a.request({"type": "share", "job": more_a["job"], "nonce": str(nonce)}, "accepted")
            # a worker cannot submit on another miner's job... but may on its own miner's other worker's job
            nonce, _, _ = find_nonce(job_b)
            await a.request({"type": "share", "job": job_b["job"], "nonce": str(nonce)}, "accepted")
            stats = await b.request({"type": "stats"}, "stats")
        assert stats["workers"] == 2
        assert stats["accepted"] == 3


async def test_a_job_of_another_miner_is_stale() -> None:
    async with running_system() as system:
        one, two = await register_miner(system.url, "one"), await register_miner(system.url, "two")
        async with MinerSocket.open(system.ws_url) as a, MinerSocket.open(system.ws_url) as b:
            _, job_a = await a.hello(one.token)
            _, job_b = await b.hello(two.token)
            assert job_a["farmer"] != job_b["farmer"]
            nonce, _, _ = find_nonce(job_a)
            rej = await b.request({"type": "share", "job": job_a["job"], "nonce": str(nonce)}, "rejected")
        assert rej["code"] == 21


async def test_bye_closes_with_1000() -> None:
    async with running_system() as system:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.hello(reg.token)
            await ws.send({"type": "bye"})
            code, frames = await ws.closed()
        assert code == 1000
        assert frames == []
        await_no_workers = system.pooler.runner.conns
        assert await_no_workers == {} or all(box.closed for box in await_no_workers.values())


async def test_a_second_hello_on_one_socket_is_an_error_and_the_socket_stays() -> None:
    async with running_system() as system:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.hello(reg.token)
            err = await ws.request({"type": "hello", "token": reg.token, "protocol": 1}, "error")
            assert err["code"] == 20
            await ws.request({"type": "stats"}, "stats")


async def flood_without_reading(system: System, token: str) -> ClientConnection:
    """Say hello, then ask for FLOOD jobs without ever reading an answer.

    ``max_queue=1``: the client library stops reading the socket after one frame, so the answers
    (about 6 MB) fill the kernel's buffers (a few MB on loopback), then uvicorn's transport buffer,
    which makes the Pooler's sender wait: from then on answers pile up in the connection's outbox.
    """
    conn = await connect(system.ws_url, max_queue=1, open_timeout=FAILSAFE, close_timeout=2)
    await conn.send(orjson.dumps({"type": "hello", "token": token, "protocol": 1}).decode())
    for _ in range(FLOOD):
        await conn.send('{"type": "more"}')
    return conn


def disconnected(tap: EventTap, miner_id: object) -> Callable[[], bool]:
    return lambda: tap.has("miner", lambda d: d["minerId"] == miner_id and d["event"] == "disconnected")


FLOOD = 20_000
SLOW: dict[str, Any] = {"outbox_size": 8, "messages_per_second": 1e6, "messages_burst": 10**6}


async def test_a_client_that_stops_reading_is_closed_1013_and_another_client_is_served() -> None:
    async with running_system(**SLOW) as system, tap_events(system.events_url) as tap:
        slow_reg, fast_reg = (
            await register_miner(system.url, "slow"),
            await register_miner(system.url, "fast"),
        )
        async with MinerSocket.open(system.ws_url) as fast:
            _, job = await fast.hello(fast_reg.token)
            slow = await flood_without_reading(system, slow_reg.token)
            try:
                # the Pooler stops serving the slow socket once its outbox overflows
                await wait_until(disconnected(tap, slow_reg.miner_id), "the slow worker to be cut off")
                # meanwhile the other client is served as usual
                nonce, _, _ = find_nonce(job)
                await fast.request({"type": "share", "job": job["job"], "nonce": str(nonce)}, "accepted")
                stats = await fast.request({"type": "stats"}, "stats")
                assert stats["accepted"] == 1
                # the slow client reads at last (within the grace): what was on its way, then a 1013 close
                received = 0
                with contextlib.suppress(ConnectionClosed):
                    async for _ in slow:
                        received += 1
                assert 0 < received < FLOOD
                assert slow.close_code == 1013
                assert slow.close_reason == "outbox full: client too slow"
            finally:
                await slow.close()


async def test_a_client_that_never_reads_again_is_dropped_after_the_grace() -> None:
    async with (
        running_system(**SLOW, tuning={"slow_client_grace": 0.5}) as system,
        tap_events(system.events_url) as tap,
    ):
        reg = await register_miner(system.url, "stuck")
        stuck = await flood_without_reading(system, reg.token)
        try:
            await wait_until(disconnected(tap, reg.miner_id), "the stuck worker to be cut off")

            # its TCP connection is dropped too: writing to it fails soon (on a connection the
            # Pooler kept open but no longer read, writes would block forever instead)
            async def write_fails() -> bool:
                try:
                    await asyncio.wait_for(stuck.send('{"type": "stats"}'), FAILSAFE)
                except ConnectionClosed:
                    return True
                return False

            await wait_until(write_fails, "a write to the dropped connection to fail", step=0.001)
            async with aiohttp.ClientSession() as http, http.get(f"{system.url}/health") as resp:
                assert (await resp.json())["workers"] == 0
            assert system.pooler.runner.conns == {}
        finally:
            stuck.transport.abort()
            await stuck.close()


async def test_a_burst_of_requests_within_the_rate_limit_is_answered_in_full() -> None:
    # More answers at once than the outbox limit: a client that reads is never "too slow".
    async with running_system(outbox_size=16) as system:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.hello(reg.token)
            for _ in range(300):
                await ws.send({"type": "stats"})
            answers = [await ws.expect("stats") for _ in range(300)]
            await ws.send({"type": "bye"})
            code, frames = await ws.closed()
        assert len(answers) == 300 and frames == []
        assert code == 1000


async def test_sockets_open_while_the_pooler_searches_itself_still_close() -> None:
    # The farmer is planted but its only worker submits nothing: the Pooler finds a nonce itself
    # (a local search in a worker process). A worker process forked then would inherit this socket
    # and keep the TCP connection alive after the Pooler closes it: the client would hang.
    async with running_system(block_interval=6, paused=True) as system, tap_events(system.events_url) as tap:
        reg = await register_miner(system.url)
        async with MinerSocket.open(system.ws_url) as ws:
            await ws.send({"type": "hello", "token": reg.token, "protocol": 1})
            await ws.expect("welcome")
            system.net.contract.unpause()
            job = await ws.expect("job")
            await wait_until(
                lambda: tap.has("work", lambda d: d["block"] == job["block"] and d["ok"]),
                "the Pooler's own nonce to be submitted",
            )
            # the search ran in a worker process: it must hold none of the Pooler's sockets
            executor = system.pooler.runner._executor
            assert executor is not None
            for pid in executor._processes:
                assert sockets_held_by(pid) == [], f"search worker {pid} holds sockets"
            await ws.send({"type": "bye"})
            code, _ = await ws.closed()
        assert code == 1000
        work = tap.first("work", lambda d: d["block"] == job["block"] and d["ok"])["data"]
        assert [s["farmerId"] for s in work["submissions"]] == [reg.farmer_id]
        pail = system.net.contract.get_pail(reg.farmer, job["block"])
        assert pail is not None and pail.zeros == work["submissions"][0]["zeros"]


def sockets_held_by(pid: int) -> list[str]:
    """The sockets among a process's open file descriptors (Linux /proc)."""
    fds = Path(f"/proc/{pid}/fd")
    held = [os.readlink(fd) for fd in fds.iterdir()] if fds.is_dir() else []
    return [h for h in held if h.startswith("socket:")]
