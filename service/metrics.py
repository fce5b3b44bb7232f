"""Prometheus metrics: one registry per running service, so tests and several apps never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.models import ReleaseState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.releases = Gauge("announce_releases", "Releases by state.", ["state"], registry=self.registry)
        self.file_problems = Gauge(
            "announce_file_problems", "Release files currently refused.", registry=self.registry
        )
        self.ingest_errors = Counter(
            "announce_ingest_errors",
            "Release files refused, counted at each attempt.",
            registry=self.registry,
        )
        self.scan_seconds = Histogram(
            "announce_scan_duration_seconds",
            "Duration of a pass over the announcements folder.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.feed_requests = Counter(
            "announce_feed_requests", "Feed requests by format.", ["format"], registry=self.registry
        )
        self.not_modified = Counter(
            "announce_not_modified_responses",
            "Responses answered 304 Not Modified.",
            ["kind"],
            registry=self.registry,
        )
        self.websub_pings = Counter(
            "announce_websub_pings",
            "WebSub hub notifications by outcome.",
            ["outcome"],
            registry=self.registry,
        )

        self.deliveries = Counter(
            "announce_deliveries", "Send attempts by outcome (sent, temporary, permanent, unknown, skipped).",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "announce_delivery_queue_depth", "Ledger rows still to send.", registry=self.registry
        )
        self.send_seconds = Histogram(
            "announce_send_duration_seconds", "Time to hand one message to the transport.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30), registry=self.registry,
        )  # fmt: skip

    def set_release_counts(self, counts: dict[ReleaseState, int]) -> None:
        """Publish the current number of releases in each state."""
        for state, n in counts.items():
            self.releases.labels(state=state.value).set(n)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
