"""The stand-in kale-miner prints what the real binary prints, and the bridge reads it back."""

from __future__ import annotations

import base64
import io
import json

import pytest

from examples import fake_kale_miner
from examples.kale_miner_bridge import RateMeter, batch_start, miner_argv, plan_batch, reported_rate
from examples.minerkit import parse_miner_output
from protocol import address_bytes, count_zeros
from protocol.messages import Job
from protocol.work import work_hash

# The example published in the kale-miner README (also the first of tests/data/kale_vectors.json).
README_BLOCK = 37
README_ENTROPY = bytes.fromhex("0000000009faeb2ff8dc93fb334dabc1398e359a163a6bb538f633fdb9b327ca")
README_FARMER = "GBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALE"
README_NONCE = 20495217910
README_HASH = "0000000099be0037e5a48324959cb9dd10965ae59511cfd1996f9b917aad9980"
CONTRACT = "CDL74RF5BLYR2YBLCCI7F5FB6TPSCLKEJUBSD2RSVWZ4YHF3VMFAIGWA"  # kale-miner mines for G... only


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = fake_kale_miner.main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def b64(entropy: bytes) -> str:
    return base64.b64encode(entropy).decode()


def test_readme_example_prints_the_published_result_in_kale_miners_format() -> None:
    code, out, err = run(str(README_BLOCK), b64(README_ENTROPY), str(README_NONCE), "8", README_FARMER)
    assert (code, err) == (0, "")
    assert out == f'{{\n  "hash": "{README_HASH}",\n  "nonce": {README_NONCE}\n}}\n'
    assert json.loads(out) == {"hash": README_HASH, "nonce": README_NONCE}


def test_it_stops_at_the_first_nonce_that_reaches_the_difficulty() -> None:
    start = 5_000
    code, out, _ = run(
        str(README_BLOCK), b64(README_ENTROPY), str(start), "3", README_FARMER, "--max-threads", "1"
    )
    assert code == 0
    nonce, digest = parse_miner_output(out) or (None, b"")
    farmer = address_bytes(README_FARMER)
    first = next(
        n
        for n in range(start, start + 1_000_000)
        if count_zeros(work_hash(README_BLOCK, n, README_ENTROPY, farmer)) >= 3
    )
    assert nonce == first
    assert digest == work_hash(README_BLOCK, first, README_ENTROPY, farmer)


def test_verbose_lines_come_before_the_result_and_name_each_batch() -> None:
    start = README_NONCE - 25
    code, out, _ = run(
        str(README_BLOCK),
        b64(README_ENTROPY),
        str(start),
        "8",
        README_FARMER,
        "--verbose",
        "--batch-size",
        "10",
    )
    assert code == 0
    lines = out.splitlines()
    entropy_text = b64(README_ENTROPY)
    assert lines[:3] == [
        f"[CPU] Mining batch: {start + 10 * i} block: {README_BLOCK} difficulty: 8 hash: {entropy_text}"
        for i in range(3)
    ]
    assert [batch_start(line) for line in lines[:3]] == [start, start + 10, start + 20]
    assert parse_miner_output(out) == (README_NONCE, bytes.fromhex(README_HASH))


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        ((), 1, "Usage: miner <block> <hash> <nonce> <difficulty> <miner_address>\n"),
        (("1", "AAAA", "0", "1", CONTRACT), 0, "Exception: Invalid Stellar address.\n"),
        (("1", b64(bytes(32)), "0", "1", README_FARMER, "--gpu"), 1, "GPU support not enabled"),
        (("x", b64(bytes(32)), "0", "1", README_FARMER), 134, "std::invalid_argument"),
    ],
)  # fmt: skip
def test_bad_command_lines_fail_like_the_real_binary(args: tuple[str, ...], code: int, stderr: str) -> None:
    got_code, out, err = run(*args)
    assert got_code == code
    assert stderr in err
    assert parse_miner_output(out) is None


def test_help_prints_the_usage() -> None:
    code, out, _ = run("--help")
    assert code == 0 and out.startswith("Usage: miner")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[CPU] Mining batch: 1 block: 2\n"
         '{\n  "hash": "' + "00" * 32 + '",\n  "nonce": 18446744073709551615\n}\n',
         (2**64 - 1, bytes(32))),
        ('{"hash": "' + "ab" * 32 + '", "nonce": 7}', (7, bytes([0xAB]) * 32)),
        ("No valid hash found.\n", None),
        ('{\n  "hash": "abc",\n  "nonce": 7\n}', None),
        ("[CPU] Hash Rate: 1.00 MH/s\n{ broken", None),
        ("", None),
    ],
)  # fmt: skip
def test_parse_miner_output(text: str, expected: tuple[int, bytes] | None) -> None:
    assert parse_miner_output(text) == expected


def test_gpu_build_repeats_the_start_nonce_and_rounds_batches_up_to_the_threads() -> None:
    start = README_NONCE - 25
    code, out, err = run(
        "--as-gpu-build", str(README_BLOCK), b64(README_ENTROPY), str(start), "8", README_FARMER,
        "--gpu", "--verbose", "--batch-size", "10", "--max-threads", "4",
    )  # fmt: skip
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "[GPU] CUDA"
    batch = f"[GPU] Mining batch: {start} block: {README_BLOCK} difficulty: 8 hash: {b64(README_ENTROPY)}"
    # kernels of 12 nonces (10 rounded up to 4 threads) every 10: the third finds start + 25
    assert lines[1:4] == [batch] * 3
    assert parse_miner_output(out) == (README_NONCE, bytes.fromhex(README_HASH))
    code, out, _ = run(
        "--as-gpu-build", str(README_BLOCK), b64(README_ENTROPY), str(README_NONCE - 21), "8", README_FARMER,
        "--gpu", "--verbose", "--batch-size", "10", "--max-threads", "4",
    )  # fmt: skip
    # the second kernel (start + 10 .. start + 22) reaches the find one batch early
    assert out.count("Mining batch") == 2 and parse_miner_output(out) == (
        README_NONCE,
        bytes.fromhex(README_HASH),
    )


def test_the_stand_in_can_stall_like_a_stuck_device() -> None:
    # (the stall itself is exercised with a real process: tests/component/test_examples_kale_miner.py)
    code, _, err = run("--stall-after-batches", "x", "1", b64(bytes(32)), "0", "1", README_FARMER)
    assert code == 1 and "needs a number" in err


def test_bridge_command_line() -> None:
    job = Job(
        job="j1", block=README_BLOCK, entropy=README_ENTROPY, farmer=README_FARMER,
        nonce_start=1000, nonce_end=2001, share_zeros=4, clean=True, work_at=0, block_ends_at=1,
    )  # fmt: skip
    argv = miner_argv(["miner"], job, 1500, 4, 1, 167, ["--device", "1"])
    assert argv == [
        "miner", "37", b64(README_ENTROPY), "1500", "4", README_FARMER,
        "--max-threads", "1", "--batch-size", "167", "--verbose", "--device", "1",
    ]  # fmt: skip
    assert batch_start("[GPU] Mining batch: 99 block: 1") == 99
    assert batch_start("[CPU] Hash Rate: 1.00 MH/s") is None


@pytest.mark.parametrize(
    ("remaining", "rate", "seconds", "batch"),
    [
        (1001, 0.0, 0.25, 1001),  # unknown rate: the first-batch size (below, 1 << 20) caps nothing here
        (1001, 1000.0, 0.25, 201),  # 5 batches of ~250 nonces: 5 * 201 = 1005, 4 past the end
        (1_000_000, 1e6, 0.25, 250_000),
        (7, 1e9, 1.0, 7),  # less than one batch's worth: one batch
        (10**12, 2e9, 1.0, 2_000_000_000),
    ],
)
def test_plan_batch_tiles_what_is_left(remaining: int, rate: float, seconds: float, batch: int) -> None:
    got = plan_batch(remaining, rate, seconds)
    assert got == batch
    count = -(-remaining // got)
    assert 0 <= count * got - remaining < count  # the overshoot is below the number of batches


def test_plan_batch_before_the_rate_is_known_uses_the_first_batch_size() -> None:
    assert plan_batch(10**9, 0.0, 0.25, first=1 << 20) == -(-(10**9) // 954)  # 954 batches of ~1 Mi
    with pytest.raises(ValueError):
        plan_batch(0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("line", "rate"),
    [
        ("[CPU] Hash Rate: 984.39 KH/s", 984_390.0),
        ("[GPU] Hash Rate: 1.90 GH/s", 1.9e9),
        ("[CPU] Hash Rate: 12.00 H/s", 12.0),
        ("[CPU] Mining batch: 0 block: 1", None),
    ],
)
def test_reported_rate_reads_the_binarys_hash_rate_lines(line: str, rate: float | None) -> None:
    assert reported_rate(line) == (None if rate is None else pytest.approx(rate))


def test_reported_rate_reads_what_the_stand_in_prints() -> None:
    assert reported_rate(f"[GPU] Hash Rate: {fake_kale_miner.format_rate(2_500_000.0)}") == 2.5e6


def test_rate_meter_weighs_by_time_and_forgets_old_samples() -> None:
    meter = RateMeter(half_life=10.0)
    assert meter.value == 0.0
    meter.add(1000, 1.0)
    meter.add(3000, 1.0)
    assert meter.value == pytest.approx(2000, rel=0.05)  # (1000 * 0.93 + 3000) / (0.93 + 1)
    for _ in range(100):
        meter.add(10_000, 1.0)  # 100 s at the new rate: the old samples are gone
    assert meter.value == pytest.approx(10_000, rel=0.01)
    meter.add(5, 0.0)  # no time: ignored
    assert meter.value == pytest.approx(10_000, rel=0.01)
