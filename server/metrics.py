"""Prometheus metrics of the zwz server (all named ``zwz_*``), in a registry of the app's own.

Each app has its own registry so several apps can live in one process (tests); ``/metrics`` renders it
together with the process-wide default registry, where other libraries (vLLM) put theirs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds; spans a tiny CPU model (ms) to a large model answering with many tokens (minutes).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("zwz_requests", "Chat requests answered successfully.", ["mode"], registry=r)
        self.request_duration = Histogram(
            "zwz_request_duration_seconds", "Time from request received to last token sent.", ["mode"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.time_to_first_token = Histogram(
            "zwz_time_to_first_token_seconds", "Time from request received to first generated token.", ["mode"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.prompt_tokens = Counter("zwz_prompt_tokens", "Prompt tokens processed (visual included).", ["mode"],
                                     registry=r)
        self.generation_tokens = Counter("zwz_generation_tokens", "Tokens generated.", ["mode"], registry=r)
        self.visual_tokens = Counter("zwz_visual_tokens", "Prompt tokens that encode images.", ["mode"], registry=r)
        self.in_flight = Gauge("zwz_requests_in_flight", "Chat requests being processed now.", registry=r)
        self.errors = Counter("zwz_request_errors", "Requests answered with an error, by HTTP status.", ["status"],
                              registry=r)
        self.batch_size = Histogram("zwz_batch_size", "Requests decoded together in one engine batch.",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("zwz_queue_depth", "Requests waiting for the engine.", registry=r)

    def record_error(self, status: int) -> None:
        self.errors.labels(status=str(status)).inc()
