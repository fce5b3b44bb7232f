"""What the hypothesis tests of the release readers share: the ingest options and the example budget."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, settings

from service.ingest.options import IngestOptions

OPTIONS = IngestOptions(ZoneInfo("Europe/Paris"), "en", 5_000_000)
BUDGET = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,  # derandomised: nothing to replay, and no .hypothesis folder in the tree
    suppress_health_check=[HealthCheck.too_slow],
)
