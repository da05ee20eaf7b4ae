"""The Markdown table of a run: every figure beside its target and, for the push, the same-run baseline."""

from __future__ import annotations

import math
from typing import Any

SHARES_TARGET = 20_000  # verified shares/s, durability on (issue 7)
ACK_P99_TARGET_MS = 10.0  # at half that rate
PUSH_RATIO_TARGET = 1.3  # Pooler p99 / bare-websockets p99, same run
KB_PER_SOCKET_TARGET = 20.0


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _ms3(d: dict[str, Any]) -> str:
    return f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f} / {d['max_ms']:.1f}"


def _machine(m: dict[str, Any]) -> str:
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    end = m.get("loadavg_at_end", math.nan)
    return (
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Python {m['python']} ({m['platform']}); "
        f"{pkgs}; load average {m['loadavg_at_start']:.2f} at start, {end:.2f} at end"
    )


def _push(p: dict[str, Any]) -> list[str]:
    out = []
    for row in p["levels"]:
        ratio = row["p99_ratio"]
        out.append(
            _row(
                f"new-block push, N={row['n']:,} sockets, p50 / p99 / max (ms)",
                _ms3(row["pooler"]),
                _ms3(row["baseline"]),
                f"{ratio:.2f}x (p99)",
                f"p99 <= {PUSH_RATIO_TARGET}x",
                _met(ratio <= PUSH_RATIO_TARGET),
            )
        )
    for row in p["levels"]:
        mine, base = row["pooler"]["cpu_ms_per_push"], row["baseline"]["cpu_ms_per_push"]
        out.append(
            _row(
                f"server CPU per push, N={row['n']:,} (ms)",
                mine,
                base,
                f"{mine / max(base, 0.1):.2f}x",
                "",
                "",
            )
        )
    top = p["levels"][-1]
    mine, base = top["pooler"]["kb_per_socket"], top["baseline"]["kb_per_socket"]
    out.append(
        _row(
            f"RSS per idle miner socket at N={top['n']:,} (KB)",
            mine,
            base,
            f"{mine / max(base, 0.01):.2f}x",
            f"<= {KB_PER_SOCKET_TARGET:g} KB",
            _met(mine <= KB_PER_SOCKET_TARGET),
        )
    )
    return out


def _shares(s: dict[str, Any]) -> list[str]:
    out = []
    for row in s["levels"]:
        m, half, high = row["max"], row["at_50"], row["at_90"]
        c = f"{row['connections']:,} conns"
        detail = (
            f"{m['server_us_per_share']} us server CPU a share, {m['records_per_commit']} records a commit"
        )
        out.append(
            _row(
                f"verified shares/s, durable, {c}",
                f"{m['rate']:,} ({detail})",
                "",
                "",
                f">= {SHARES_TARGET:,}/s",
                _met(m["rate"] >= SHARES_TARGET),
            )
        )
        lat = half["latency"]
        out.append(
            _row(
                f"ack latency at 50% ({half['rate']:,}/s), {c}, p50 / p99 (ms)",
                f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f}",
                "",
                "",
                f"p99 < {ACK_P99_TARGET_MS:g} ms",
                _met(lat["p99_ms"] < ACK_P99_TARGET_MS),
            )
        )
        lat = high["latency"]
        out.append(
            _row(
                f"ack latency at 90% ({high['rate']:,}/s), {c}, p50 / p99 (ms)",
                f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f}",
                "",
                "",
                "",
                "",
            )
        )
    return out


def markdown(record: dict[str, Any]) -> str:
    r = record["results"]
    lines = [
        f"Run {record['started']} ({record['mode']}, {record.get('seconds', '?')} s). "
        f"Machine: {_machine(record['machine'])}.",
        "",
        "| benchmark | Pooler | bare-library baseline (same run) | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    if "push" in r:
        lines += _push(r["push"])
    if "shares" in r:
        lines += _shares(r["shares"])
    if "rest" in r:
        for route, label in (("work", "GET /miner/work"), ("submit", "POST /miner/submit")):
            x = r["rest"][route]
            lat = x["latency"]
            cell = f"{x['requests_per_s']:,}, {lat['p50_ms']:.2f} / {lat['p99_ms']:.2f}"
            lines.append(_row(f"REST {label}: req/s, p50 / p99 (ms)", cell, "", "", "", ""))
    if "detect" in r:
        d = r["detect"]
        lines.append(
            _row(
                f"block detection, poll {d['poll_ms']:g} ms, p50 / p99 / max (ms)",
                _ms3(d),
                "",
                "",
                f"<= {d['target_ms']:g} ms",
                _met(d["met"]),
            )
        )
    if "verify" in r:
        v = r["verify"]
        verify = f"one share verification (Keccak {v['keccak_backend']}) (us)"
        lines.append(_row(verify, v["verify_template_us"], "", "", "", ""))
        codec = f"{v['job_encode_us']} / {v['job_decode_us']}"
        lines.append(_row("job encode / decode+validate, orjson (us)", codec, "", "", "", ""))
        alone = f"{v['coordinator']['accepted_per_s']:,}"
        lines.append(_row("coordinator alone (Coordinator.handle, no I/O), shares/s", alone, "", "", "", ""))
    return "\n".join(lines) + "\n"
