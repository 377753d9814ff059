"""Reading a Prometheus endpoint the way Prometheus does: over HTTP, in the text format."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    """One series' value in a scrape."""

    name: str
    labels: dict[str, str]
    value: float


def scrape(url: str) -> list[Sample]:
    """Every sample an endpoint serves now."""
    text = httpx.get(url, timeout=10, trust_env=False).raise_for_status().text
    return [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def values(samples: list[Sample], name: str, **labels: str) -> list[float]:
    """Values of the series named `name` whose labels include `labels`."""
    return [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one value of a series; AssertionError if there is not exactly one."""
    found = values(samples, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {len(found)} series"
    return found[0]
