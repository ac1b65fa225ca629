"""Scraping a mirror's `/metrics` and reading samples, for end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.http import fetch


@dataclass(frozen=True)
class Scrape:
    """One scrape: every sample as (name, sorted labels) → value."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
        return sum(
            value
            for (sample_name, sample_labels), value in self.samples.items()
            if sample_name == name and set(labels.items()) <= set(sample_labels)
        )

    def delta(self, before: Scrape, name: str, **labels: str) -> float:
        """How much a sample moved since `before`."""
        return self.value(name, **labels) - before.value(name, **labels)


def scrape(mirror_url: str, token: str | None = None) -> Scrape:
    """GET /metrics and parse the Prometheus text answer."""
    status, headers, body = fetch(f"{mirror_url}/metrics", token=token)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    return Scrape(samples)
