"""zwz's own Prometheus metrics around a benchmark cell: ``/metrics`` scraped before and after, as deltas.

They are the server's side of the same requests (no network, no client), next to what Locust measured.

    before = scrape("http://127.0.0.1:8000")
    ...                                              # the load
    server_delta(before, scrape("http://127.0.0.1:8000"))
    # {"by_mode": {"single": {"requests": 40, "mean_duration_ms": 81.2, ...}}, "errors": {"400": 3}, ...}
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

__all__ = ["Samples", "in_flight", "scrape", "server_delta"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(root: str, *, timeout: float = 10.0) -> Samples | None:
    """Every sample of ``root/metrics`` keyed by (name, sorted labels); None when there is no such endpoint."""
    try:
        resp = httpx.get(root.rstrip("/") + "/metrics", timeout=timeout)
    except httpx.HTTPError as exc:
        logger.debug("no /metrics at %s: %s", root, exc)
        return None
    if resp.status_code != 200:
        return None
    samples: Samples = {}
    try:
        for family in text_string_to_metric_families(resp.text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    except ValueError as exc:
        logger.debug("unreadable /metrics at %s: %s", root, exc)
        return None
    return samples


def in_flight(samples: Samples | None) -> float | None:
    """``zwz_requests_in_flight`` (None when the server does not export it)."""
    if samples is None:
        return None
    return samples.get(("zwz_requests_in_flight", ()))


def _by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, labels), value in samples.items():
        if n == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
    return out


def server_delta(before: Samples | None, after: Samples | None) -> dict[str, Any] | None:
    """What the server counted between two scrapes: per ``mode`` label, errors by status, batch sizes.

    >>> b = {("zwz_requests_total", (("mode", "single"),)): 2.0,
    ...      ("zwz_request_duration_seconds_sum", (("mode", "single"),)): 0.5,
    ...      ("zwz_request_duration_seconds_count", (("mode", "single"),)): 2.0}
    >>> a = {k: v * 3 for k, v in b.items()}
    >>> server_delta(b, a)["by_mode"]["single"]["requests"], server_delta(b, a)["by_mode"]["single"]["mean_duration_ms"]
    (4.0, 250.0)
    """
    if before is None or after is None:
        return None

    def diff(name: str, label: str) -> dict[str, float]:
        now, then = _by_label(after, name, label), _by_label(before, name, label)
        return {k: v - then.get(k, 0.0) for k, v in now.items() if v - then.get(k, 0.0)}

    requests = diff("zwz_requests_total", "mode")
    duration_sum, duration_n = diff("zwz_request_duration_seconds_sum", "mode"), diff(
        "zwz_request_duration_seconds_count", "mode")
    ttft_sum, ttft_n = diff("zwz_time_to_first_token_seconds_sum", "mode"), diff(
        "zwz_time_to_first_token_seconds_count", "mode")
    tokens = {kind: diff(f"zwz_{kind}_tokens_total", "mode") for kind in ("prompt", "generation", "visual")}
    by_mode = {}
    for mode, n in requests.items():
        by_mode[mode] = {
            "requests": n,
            "mean_duration_ms": 1e3 * duration_sum.get(mode, 0.0) / duration_n[mode] if duration_n.get(mode) else None,
            "mean_ttft_ms": 1e3 * ttft_sum.get(mode, 0.0) / ttft_n[mode] if ttft_n.get(mode) else None,
            **{f"{kind}_tokens": tokens[kind].get(mode, 0.0) for kind in tokens},
        }
    batch_sum = after.get(("zwz_batch_size_sum", ()), 0.0) - before.get(("zwz_batch_size_sum", ()), 0.0)
    batch_n = after.get(("zwz_batch_size_count", ()), 0.0) - before.get(("zwz_batch_size_count", ()), 0.0)
    return {"by_mode": by_mode, "errors": diff("zwz_request_errors_total", "status"),
            "batches": batch_n, "mean_batch_size": batch_sum / batch_n if batch_n else None}
