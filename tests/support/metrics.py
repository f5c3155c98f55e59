"""Scraping a /metrics endpoint over loopback and reading its samples with prometheus-client's parser."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def fetch(url: str, headers: Mapping[str, str] | None = None) -> str:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


async def scrape(url: str, headers: Mapping[str, str] | None = None) -> Samples:
    return parse(await asyncio.to_thread(fetch, url, headers))


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; fails naming the series (and the ones of that name there are) when absent."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        present = sorted(str(dict(k[1])) for k in samples if k[0] == name)
        raise AssertionError(f"no sample {name}{labels}; samples of that name: {present}")
    return samples[key]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}
