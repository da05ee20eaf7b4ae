"""A stand-in for the kale-miner binary: same command line, same output, pure Python.

    python examples/fake_kale_miner.py <block> <entropy-base64> <start-nonce> <difficulty> <G-address>
        [--max-threads N] [--batch-size N] [--device N] [--platform S] [--gpu] [--verbose]

Like the real CPU build it hashes nonces upward from ``start-nonce`` and stops at the first hash with
at least ``difficulty`` leading zero nibbles, printing (after any ``--verbose`` lines)::

    {
      "hash": "<64 hex>",
      "nonce": N
    }

It never stops by itself before a find (the real one does not either), so callers kill it. The
differences: one thread (so with ``--max-threads`` > 1 the real binary may report a different valid
nonce first), and it is some 100 times slower. Tests use it in place of the real binary
(``kale_miner_bridge.py --miner ...``).

Options before the positional arguments (the real binary has none) change what it stands in for:

- ``--as-gpu-build``: a GPU build (CUDA), which takes ``--gpu``. With it, the run prints
  ``[GPU] CUDA``, then before each batch ``[GPU] Mining batch: <start-nonce> ...`` repeating the
  run's start nonce (as the real GPU build does: the lines do not show where it is), and a kernel
  call hashes ``--batch-size`` rounded up to a multiple of ``--max-threads`` (the threads per GPU
  block) before the next batch starts ``--batch-size`` further on, as the CUDA kernel does. Finds
  come in nonce order (a real kernel reports whichever thread found first). ``[GPU] Hash Rate``
  lines give the last batch's rate, at most once a second. Without this option ``--gpu`` is
  refused, as by a CPU-only build.
- ``--stall-after-batches K``: after K batches the run prints the next batch line and then hangs
  (a stuck device, or a thread that never returns): for tests of what bounds a run by time.
"""

from __future__ import annotations

import base64
import binascii
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from protocol import Code, ProtocolError, count_zeros, strkey
from protocol.work import MAX_NONCE, WorkTemplate

USAGE = (
    "Usage: {prog} <block> <hash> <nonce> <difficulty> <miner_address>\n"
    "  [--max-threads <num> (default: 4)]\n"
    "  [--batch-size <num> (default: 10000000)]\n"
    "  [--device <num> (default 0)] [--verbose]\n"
)
DEFAULT_BATCH = 10_000_000
_INT64_MAX = 2**63 - 1  # the real binary reads the start nonce with std::stoll


def format_rate(rate: float) -> str:
    """kale-miner's hash-rate text: two decimals and a 1000-step unit."""
    units = ["H/s", "KH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"]
    unit = 0
    while rate >= 1000.0 and unit < len(units) - 1:
        rate /= 1000.0
        unit += 1
    return f"{rate:.2f} {units[unit]}"


def result_text(digest: bytes, nonce: int) -> str:
    """The result block exactly as kale-miner prints it."""
    return f'{{\n  "hash": "{digest.hex()}",\n  "nonce": {nonce}\n}}\n'


def _stall() -> None:
    """Hang like a stuck device: until killed."""
    while True:
        time.sleep(3600)


def search(
    block: int,
    entropy: bytes,
    farmer: bytes,
    start: int,
    difficulty: int,
    batch_size: int = DEFAULT_BATCH,
    verbose: bool = False,
    entropy_text: str = "",
    out: TextIO = sys.stdout,
    stall_after: int | None = None,
) -> tuple[int, bytes] | None:
    """Hash upward from ``start``; the first ``(nonce, hash)`` with ``zeros >= difficulty``."""
    template = WorkTemplate(block, entropy, farmer)
    hash_of = template.hash
    nonce = start
    last_report = time.monotonic()
    counted = 0
    batches = 0
    while nonce <= MAX_NONCE:
        end = min(nonce + batch_size, MAX_NONCE + 1)
        if verbose:
            out.write(
                f"[CPU] Mining batch: {nonce} block: {block} difficulty: {difficulty} hash: {entropy_text}\n"
            )
            out.flush()
        if stall_after is not None and batches >= stall_after:
            _stall()
        batches += 1
        for n in range(nonce, end):
            digest = hash_of(n)
            if count_zeros(digest) >= difficulty:
                return n, digest
            counted += 1
            if verbose and counted & 0x3FFF == 0:
                now = time.monotonic()
                if now - last_report >= 1.0:
                    out.write(f"[CPU] Hash Rate: {format_rate(counted / (now - last_report))}\n")
                    out.flush()
                    last_report, counted = now, 0
        nonce = end
    return None


def search_gpu(
    block: int,
    entropy: bytes,
    farmer: bytes,
    start: int,
    difficulty: int,
    batch_size: int = DEFAULT_BATCH,
    threads: int = 4,
    verbose: bool = False,
    entropy_text: str = "",
    out: TextIO = sys.stdout,
    stall_after: int | None = None,
) -> tuple[int, bytes] | None:
    """The GPU build's loop: kernel calls of ``batch_size`` (rounded up to ``threads``) nonces."""
    template = WorkTemplate(block, entropy, farmer)
    hash_of = template.hash
    kernel = -(-batch_size // threads) * threads  # the CUDA kernel's rounded-up batch
    current = start
    last_report = time.monotonic()
    batches = 0
    while current <= MAX_NONCE:
        if verbose:  # the real GPU build prints the run's start nonce here, every batch
            out.write(
                f"[GPU] Mining batch: {start} block: {block} difficulty: {difficulty} hash: {entropy_text}\n"
            )
            out.flush()
        if stall_after is not None and batches >= stall_after:
            _stall()
        began = time.monotonic()
        for n in range(current, min(current + kernel, MAX_NONCE + 1)):
            digest = hash_of(n)
            if count_zeros(digest) >= difficulty:
                return n, digest
        batches += 1
        now = time.monotonic()
        if verbose and now - last_report >= 1.0:
            out.write(f"[GPU] Hash Rate: {format_rate(batch_size / max(now - began, 1e-9))}\n")
            out.flush()
            last_report = now
        current += batch_size
    return None


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = "miner"
    if any(a in ("-h", "--help") for a in args):
        out.write(USAGE.format(prog=prog))
        return 0
    gpu_build = False
    stall_after: int | None = None
    while args and args[0] in ("--as-gpu-build", "--stall-after-batches"):  # the stand-in's own options
        if args.pop(0) == "--as-gpu-build":
            gpu_build = True
        elif args and args[0].isdigit():
            stall_after = int(args.pop(0))
        else:
            err.write("--stall-after-batches needs a number\n")
            return 1
    if len(args) < 5:
        err.write(USAGE.format(prog=prog))
        return 1
    verbose = False
    gpu = False
    batch_size = DEFAULT_BATCH
    threads = 4
    i = 5
    try:
        while i < len(args):  # the real parser: known options anywhere after the positionals, others ignored
            opt = args[i]
            if opt in ("--max-threads", "--device", "--platform") and i + 1 < len(args):
                if opt == "--max-threads":
                    threads = int(args[i + 1])
                elif opt == "--device":
                    int(args[i + 1])
                i += 1
            elif opt == "--batch-size" and i + 1 < len(args):
                batch_size = int(args[i + 1])
                i += 1
            elif opt == "--verbose":
                verbose = True
            elif opt == "--gpu":
                if not gpu_build:
                    err.write("GPU support not enabled in this build.\n")
                    return 1
                gpu = True
            i += 1
        block = int(args[0])
        start = int(args[2])
        difficulty = int(args[3])
    except ValueError as exc:
        err.write(
            f"terminate called after throwing an instance of 'std::invalid_argument'\n  what():  {exc}\n"
        )
        return 134
    if not 0 <= block < 2**32 or not 0 <= start <= _INT64_MAX or batch_size < 1 or threads < 1:
        err.write("terminate called after throwing an instance of 'std::out_of_range'\n")
        return 134
    try:
        entropy = base64.b64decode(args[1], validate=True)
    except (binascii.Error, ValueError):
        entropy = b""
    try:
        kind, farmer = strkey.decode(args[4])
        if kind != "G":
            raise ProtocolError(Code.MALFORMED, "not a G address")
    except ProtocolError:
        err.write("Exception: Invalid Stellar address.\n")
        return 0
    if len(entropy) != 32:
        err.write("Exception: entropy must be 32 bytes of base64.\n")
        return 0
    if gpu:
        out.write("[GPU] CUDA\n")
        out.flush()
        found = search_gpu(
            block, entropy, farmer, start, difficulty, batch_size, threads, verbose, args[1], out, stall_after
        )
    else:
        found = search(
            block, entropy, farmer, start, difficulty, batch_size, verbose, args[1], out, stall_after
        )
    if found is None:
        out.write("No valid hash found.\n")
    else:
        out.write(result_text(found[1], found[0]))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
