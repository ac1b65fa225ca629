"""The benchmark's markdown table, from the results of one run."""

from __future__ import annotations

from typing import Any

from bench.tools import ratio


def summarize(results: dict[str, Any]) -> str:
    """The markdown table of the run."""
    rows = [
        "| scenario | hubmirror | reference | ratio | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    warm1, warm32 = results["warm_hit_1_client"], results["warm_hit_32_clients"]
    rows.append(
        f"| warm hit, 1 client (MB/s) | {warm1['hubmirror']['megabytes_per_second']} | "
        f"nginx {warm1['nginx']['megabytes_per_second']} | {warm1['ratio']} | >= 0.9 |"
    )
    rows.append(
        f"| warm hit, 32 clients (MB/s) | {warm32['hubmirror']['megabytes_per_second']} | "
        f"nginx {warm32['nginx']['megabytes_per_second']} | {warm32['ratio']} | |"
    )
    for name, rate in results["request_rate_64_connections"].items():
        if name == "nginx_small_file":
            continue
        rows.append(
            f"| {name} req/s (p50/p99 ms) | {rate['requests_per_second']:.0f} "
            f"({rate['p50_ms']}/{rate['p99_ms']}) | nginx small file "
            f"{results['request_rate_64_connections']['nginx_small_file']['requests_per_second']:.0f}"
            f" | {rate['ratio_vs_nginx']} | |"
        )
    head = results["head_resolve_64_connections_python_client"]
    rows.append(
        f"| HEAD resolve req/s (p50/p99 ms), python client | "
        f"{head['hubmirror']['requests_per_second']:.0f} ({head['hubmirror']['p50_ms']}/"
        f"{head['hubmirror']['p99_ms']}) | nginx HEAD "
        f"{head['nginx_head_small_file']['requests_per_second']:.0f} | {head['ratio']} | |"
    )
    cold = results["cold_miss"]
    rows.append(
        f"| cold miss (s) | {cold['hubmirror']['seconds']} | direct 1 connection "
        f"{results['direct_single_connection']['seconds']} | {cold['speedup_vs_direct']}x "
        f"| >= 5x |"
    )
    if "direct_aria2c_x8" in results:
        rows.append(
            f"| cold miss (s) | {cold['hubmirror']['seconds']} | aria2c -x 8 direct "
            f"{results['direct_aria2c_x8']['seconds']} | {cold['speedup_vs_aria2c']}x | |"
        )
    rows.append(
        f"| cold TTFB (ms) | {cold['hubmirror']['first_byte_ms']} | upstream "
        f"{results['direct_single_connection']['first_byte_ms']} | "
        f"+{cold['ttfb_added_ms']} ms | <= +100 ms |"
    )
    coalescing = results["coalescing_64_clients"]
    rows.append(
        f"| coalescing: upstream bytes / size | {coalescing['upstream_bytes_over_file_size']}"
        " | 1.0 | | <= 1.02 |"
    )
    rows.append(
        f"| coalescing: slowest / single client | {coalescing['slowest_seconds']} s | "
        f"{cold['hubmirror']['seconds']} s | {coalescing['slowest_over_single']} | <= 1.3 |"
    )
    trips = results.get("cold_round_trips")
    if trips:
        rows.append(
            f"| cold file: sequential upstream round trips, GET | {trips['mirror_cold_get']} | "
            f"direct GET {trips['direct_get']} | | no more than direct |"
        )
        rows.append(
            f"| cold file: round trips, HEAD then GET | {trips['mirror_cold_head_then_get']} | "
            f"direct {trips['direct_head_then_get']} | | no more than direct |"
        )
    ranged = results.get("ranged_read_into_download")
    if ranged:
        rows.append(
            f"| last MiB of a 64 MiB download in flight (s) | {ranged['b_wait_seconds']} | "
            f"the download {ranged['a_seconds']} | {ranged['b_wait_over_a']} | one round trip "
            "+ its bytes |"
        )
    offline = results.get("offline_uncached_error")
    if offline:
        rows.append(
            f"| offline, uncached hf_hub_download fails after (s) | {offline['seconds']} | "
            f"client retries 5xx for {offline['client_retry_patience_seconds']} | | <= 2 |"
        )
    memory = max(
        cold["hubmirror"]["peak_rss_mb"],
        coalescing["peak_rss_mb"],
        results["warm_hit_64_clients"]["peak_rss_mb"],
        warm32["hubmirror"].get("peak_rss_mb", 0),
    )
    rows.append(f"| peak RSS, all scenarios (MB) | {memory} | | | < 250 |")
    olah = results.get("olah", {})
    if "cold_single" in olah:
        rows.append(
            f"| Olah cold miss (s) | {cold['hubmirror']['seconds']} | Olah "
            f"{olah['cold_single']['seconds']} | "
            f"{ratio(olah['cold_single']['seconds'], cold['hubmirror']['seconds'])}x | |"
        )
        rows.append(
            f"| Olah warm hit (MB/s) | {warm1['hubmirror']['megabytes_per_second']} | Olah "
            f"{olah['warm_single']['megabytes_per_second']} | | |"
        )
        if "coalescing" in olah:
            theirs = olah["coalescing"]
            rows.append(
                f"| Olah coalescing: upstream bytes / size, clients complete | "
                f"{coalescing['upstream_bytes_over_file_size']}, "
                f"{coalescing.get('clients_complete', 'n/a')}"
                f" | Olah {theirs['upstream_bytes_over_file_size']}, "
                f"{theirs.get('clients_complete', 'n/a')} | | |"
            )
        if olah.get("status") != "ran":
            rows.append(f"| Olah 0.5.4 | | {olah['status']} | | |")
    else:
        rows.append(f"| Olah 0.5.4 | | {olah.get('status', 'skipped')} | | |")
    return "\n".join(rows)
