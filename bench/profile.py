"""Read a py-spy collapsed-stack file: where the time went, by function (self and inclusive).

python -m bench.profile bench/results/profile-push-10000.txt [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "kale-pooler/", "/bench/", "/wt/bench/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path})"


def top(path: Path, n: int = 25) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(total samples, top self-time functions, top inclusive functions) of a collapsed-stack file."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [_name(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += k
        own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    return total, own.most_common(n), incl.most_common(n)


def format_top(path: Path, n: int = 25) -> str:
    total, own, incl = top(path, n)
    lines = [f"{path.name}: {total} samples"]
    lines.append("  self time:")
    lines += [f"    {100 * k / max(total, 1):5.1f}%  {f}" for f, k in own]
    lines.append("  inclusive:")
    lines += [f"    {100 * k / max(total, 1):5.1f}%  {f}" for f, k in incl]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(format_top(args.path, args.top))


if __name__ == "__main__":
    main()
