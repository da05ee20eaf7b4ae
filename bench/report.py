"""The Markdown table of a run: every figure beside its target and, for the push, the same-run baseline."""

from __future__ import annotations

from typing import Any

SHARES_TARGET = 20_000  # verified shares/s, durability on (issue 7)
ACK_P99_TARGET_MS = 10.0  # at half that rate
PUSH_RATIO_TARGET = 1.3  # Pooler p99 / bare-websockets p99, same run
KB_PER_SOCKET_TARGET = 20.0


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _machine(m: dict[str, Any]) -> str:
    p = m["packages"]
    pkgs = ", ".join(f"{k} {v}" for k, v in p.items())
    return (
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Python {m['python']} ({m['platform']}); "
        f"{pkgs}; load average {m['loadavg_at_start']:.2f} at start, {m.get('loadavg_at_end', float('nan')):.2f} at end"
    )


def markdown(record: dict[str, Any]) -> str:
    r = record["results"]
    lines = [
        f"Run {record['started']} ({record['mode']}, {record.get('seconds', '?')} s). Machine: {_machine(record['machine'])}.",
        "",
        "| benchmark | Pooler | bare-library baseline (same run) | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    if "push" in r:
        for row in r["push"]["levels"]:
            p, b = row["pooler"], row["baseline"]
            lines.append(
                f"| new-block push, N={row['n']:,} sockets, p50 / p99 / max (ms) | "
                f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} / {p['max_ms']:.1f} | "
                f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} / {b['max_ms']:.1f} | {row['p99_ratio']:.2f}x (p99) | "
                f"p99 <= {PUSH_RATIO_TARGET}x | {_met(row['p99_ratio'] <= PUSH_RATIO_TARGET)} |"
            )
        for row in r["push"]["levels"]:
            p, b = row["pooler"], row["baseline"]
            lines.append(
                f"| server CPU per push, N={row['n']:,} (ms) | {p['cpu_ms_per_push']} | {b['cpu_ms_per_push']} | "
                f"{p['cpu_ms_per_push'] / max(b['cpu_ms_per_push'], 0.1):.2f}x | | |"
            )
        top = r["push"]["levels"][-1]
        p, b = top["pooler"], top["baseline"]
        lines.append(
            f"| RSS per idle miner socket at N={top['n']:,} (KB) | {p['kb_per_socket']} | {b['kb_per_socket']} | "
            f"{p['kb_per_socket'] / max(b['kb_per_socket'], 0.01):.2f}x | <= {KB_PER_SOCKET_TARGET:g} KB | "
            f"{_met(p['kb_per_socket'] <= KB_PER_SOCKET_TARGET)} |"
        )
    if "shares" in r:
        for row in r["shares"]["levels"]:
            m, h, n = row["max"], row["at_50"], row["at_90"]
            lines.append(
                f"| verified shares/s, durable, {row['connections']:,} connections | {m['rate']:,} "
                f"({m['server_us_per_share']} us server CPU a share, {m['records_per_commit']} records a commit) "
                f"| | | >= {SHARES_TARGET:,}/s | {_met(m['rate'] >= SHARES_TARGET)} |"
            )
            lines.append(
                f"| ack latency at 50% = {h['rate']:,}/s, {row['connections']:,} conns, p50 / p99 (ms) | "
                f"{h['latency']['p50_ms']:.2f} / {h['latency']['p99_ms']:.2f} | | | p99 < {ACK_P99_TARGET_MS:g} ms "
                f"| {_met(h['latency']['p99_ms'] < ACK_P99_TARGET_MS)} |"
            )
            lines.append(
                f"| ack latency at 90% = {n['rate']:,}/s, {row['connections']:,} conns, p50 / p99 (ms) | "
                f"{n['latency']['p50_ms']:.2f} / {n['latency']['p99_ms']:.2f} | | | | |"
            )
    if "rest" in r:
        for route, label in (("work", "GET /miner/work"), ("submit", "POST /miner/submit")):
            x = r["rest"][route]
            lines.append(
                f"| REST {label}: req/s, p50 / p99 (ms) | {x['requests_per_s']:,}, "
                f"{x['latency']['p50_ms']:.2f} / {x['latency']['p99_ms']:.2f} | | | | |"
            )
    if "detect" in r:
        d = r["detect"]
        lines.append(
            f"| block detection, poll {d['poll_ms']:g} ms, p50 / p99 / max (ms) | "
            f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f} / {d['max_ms']:.1f} | | | <= {d['target_ms']:g} ms | {_met(d['met'])} |"
        )
    if "verify" in r:
        v = r["verify"]
        lines.append(
            f"| one share verification (Keccak {v['keccak_backend']}) (us) | {v['verify_template_us']} | | | | |"
        )
        lines.append(
            f"| job encode / decode+validate, orjson (us) | {v['job_encode_us']} / {v['job_decode_us']} | | | | |"
        )
        lines.append(
            f"| coordinator alone (Coordinator.handle, no I/O), shares/s | "
            f"{v['coordinator']['accepted_per_s']:,} | | | | |"
        )
    return "\n".join(lines) + "\n"
