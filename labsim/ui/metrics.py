"""Prometheus ``/metrics`` for ``run --ui`` and ``serve --ui`` (prometheus_client's text format).

A collector computes every value when Prometheus scrapes, from what the run keeps
anyway (the phones' states, reboots and stage timings; the services' counters), so a
run pays nothing between scrapes and the numbers are the ones report.json is built from:

- ``labsim_phones{state}``: phones per state (report: ``summary.by_state``)
- ``labsim_phone_reboots_total``: reboots of all phones (``summary.reboots_total``)
- ``labsim_fetches_total{service,server,status}``: downloads per server and outcome
  (``summary.servers[server].by_status``)
- ``labsim_stage_latency_seconds{stage,service}``: a histogram per provisioning stage
  (``summary.stages_s[stage]``: its ``_count`` is the stage's ``count``)
- ``labsim_service_counter{service,counter}``: every counter of labsim's own services
  (``services``: DHCP messages by type, HTTP status codes, TFTP transfers ...)
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from labsim.phones.phone import STATES

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _service_of(stage: str, server: str) -> str:
    if server:
        return server.partition("://")[0]
    return {"dhcp": "dhcp", "pnp": "pnp"}.get(stage, "none")


def _flatten(prefix: str, value, out: list) -> None:
    if isinstance(value, bool):
        out.append((prefix, int(value)))
    elif isinstance(value, (int, float)):
        out.append((prefix, value))
    elif isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)


class LabCollector:
    """``members``: () -> the fleet (may be empty for serve); ``services``: () -> LabServices stats."""

    def __init__(self, members=lambda: [], services=lambda: {}):
        self.members = members
        self.services = services

    def collect(self):
        members = self.members()
        if members:
            yield from self._phones(members)
        counters = GaugeMetricFamily("labsim_service_counter", "a counter of one of labsim's services",
                                     labels=["service", "counter"])
        for service, stats in sorted(self.services().items()):
            flat: list = []
            _flatten("", stats, flat)
            for name, value in flat:
                counters.add_metric([service, name], value)
        yield counters

    def _phones(self, members):
        states = GaugeMetricFamily("labsim_phones", "phones per state", labels=["state"])
        by_state = dict.fromkeys(STATES, 0)
        reboots = 0
        fetches: dict[tuple[str, str, str], int] = {}
        latencies: dict[tuple[str, str], list[float]] = {}
        for member in members:
            phone = member.phone
            by_state[phone.state] += 1
            reboots += phone.reboots
            for timing in phone.stages:
                service = _service_of(timing.stage, timing.server)
                if timing.server:
                    key = (service, timing.server, timing.status)
                    fetches[key] = fetches.get(key, 0) + 1
                latencies.setdefault((timing.stage, service), []).append(timing.ended - timing.started)
        for state, count in by_state.items():
            states.add_metric([state], count)
        yield states
        yield CounterMetricFamily("labsim_phone_reboots", "reboots of all phones", value=reboots)
        family = CounterMetricFamily("labsim_fetches", "downloads per server and outcome",
                                     labels=["service", "server", "status"])
        for labels, count in sorted(fetches.items()):
            family.add_metric(list(labels), count)
        yield family
        histogram = HistogramMetricFamily("labsim_stage_latency_seconds", "time of each provisioning stage",
                                          labels=["stage", "service"])
        for (stage, service), values in sorted(latencies.items()):
            values.sort()
            buckets, index = [], 0
            for bound in LATENCY_BUCKETS:
                while index < len(values) and values[index] <= bound:
                    index += 1
                buckets.append((repr(bound), index))
            buckets.append(("+Inf", len(values)))
            histogram.add_metric([stage, service], buckets, sum(values))
        yield histogram


def registry_for(collector: LabCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
