"""The metrics a ``when:`` reads under ``--clock virtual --workers N``
(labsim.scale.fleet_metrics): what each shard sends of what moved, accumulated by the
parent, gives the metrics one process computes over the whole fleet."""

from __future__ import annotations

import json
import random

import pytest

from labsim.observe.latencies import Latencies
from labsim.observe.report import count_metrics, phone_metrics
from labsim.observe.stage_archive import StageArchive
from labsim.observe.series import TimeSeries
from labsim.observe.stats import STATISTICS, summarize
from labsim.phones.phone import STATES, StageList
from labsim.phones.local_time import CALENDAR_ORIGIN_S
from labsim.scale.fleet_metrics import FleetMetrics, FleetRequests, MetricsOutbox
from labsim.scenario.expectations import evaluate, parse_expectation


class Phone:
    def __init__(self, index: int):
        self.mac = f"00:15:65:00:{index // 256:02x}:{index % 256:02x}"
        self.state, self.reboots, self.ready_at, self.powered_on_at = "off", 0, None, None
        self.stages = StageList()


class Member:
    def __init__(self, index: int):
        self.phone = Phone(index)


class Driver:
    def __init__(self, phone):
        self.phone = phone


class Counter:
    """observe.progress.StateCounter's part the outbox reads."""

    def __init__(self, total: int):
        self.counts, self.listeners = {"off": total}, []

    def state_changed(self, driver, old: str, new: str) -> None:
        self.counts[old] -= 1
        self.counts[new] = self.counts.get(new, 0) + 1
        for listener in self.listeners:
            listener(driver, old, new)


class Shard:
    """What MetricsOutbox reads of a shard's run: its members, its state listeners."""

    def __init__(self, members):
        self.members, self.counter, self.changes = members, Counter(len(members)), 0

    def change(self, phone, rng: random.Random, now: float) -> None:
        old = phone.state
        phone.state = rng.choice(STATES)
        if rng.random() < 0.3:
            phone.powered_on_at = now
            phone.reboots += rng.random() < 0.5
        if phone.state == "ready" and phone.ready_at is None and phone.powered_on_at is not None:
            phone.ready_at = now + rng.choice([0.001, 0.5, 2.0, 17.25])
        self.changes += 1
        self.counter.state_changed(Driver(phone), old, phone.state)


WANTED = {"phones.ready", "time_to_ready.p50", "time_to_ready.p95", "time_to_ready.max", "time_to_ready.mean",
          "time_to_ready.count", "stage.dhcp.p99", "stage.dhcp.mean", "stage.mac_cfg.p90", "stage.mac_cfg.count",
          "stage.never.p50", "phone.reboots"}
CHECKS = ["time_to_ready.p95 < 10", "time_to_ready.count >= 5", "stage.dhcp.p99 <= 1.5", "stage.mac_cfg.count > 30",
          "stage.never.p50 < 1", "phone.reboots <= 1", "phone.reboots != 2", "phone.reboots == 0",
          "phones.ready >= 10"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_what_the_shards_send_gives_the_parent_the_metrics_one_process_computes(seed):
    rng = random.Random(seed)
    members = [Member(index) for index in range(40)]
    count = 3
    shards = [Shard(members[index::count]) for index in range(count)]
    archives = [StageArchive() for _ in range(count)]  # a long run moves older timings out of the phones
    outboxes = [MetricsOutbox(shard, WANTED) for shard in shards]
    parent = FleetMetrics(count)
    judged = 0
    for meeting in range(60):
        now = meeting * 0.5
        for _ in range(rng.randrange(0, 12)):  # some meetings see nothing move
            shard = rng.randrange(count)
            phone = rng.choice(shards[shard].members).phone
            if rng.random() < 0.5:
                shards[shard].change(phone, rng, now)
            else:  # a download: no state change
                stage = rng.choice(["dhcp", "mac_cfg", "firmware"])
                phone.stages.add(stage, now, now + rng.choice([0.002, 0.1, 0.25, 1.0, 3.5]), "ok")
        if meeting % 7 == 6:
            for shard, archive in zip(shards, archives):
                for member in shard.members:
                    archive.take(member.phone, keep=1)
        for index, (shard, outbox) in enumerate(zip(shards, outboxes)):
            message = {"changes": shard.changes}
            outbox.fill(message, shard.changes)
            parent.take(index, json.loads(json.dumps(message)))  # as it crosses the pipe
        whole = StageArchive()
        for archive in archives:
            for stage, values in archive.latencies.items():
                whole.latencies.setdefault(stage, Latencies()).update(values)
        expected, expected_per_phone = phone_metrics(members, whole, WANTED)
        got, per_phone = parent.metrics(WANTED)
        for name in WANTED - {"phone.reboots"}:
            assert got.get(name) == expected.get(name), (meeting, name)
        assert {key: got[key] for key in count_metrics(members)} == count_metrics(members)
        for check in map(parse_expectation, CHECKS):
            assert evaluate(check, got, per_phone, len(members)).passed == \
                evaluate(check, expected, expected_per_phone, len(members)).passed, (meeting, check.text)
        judged += expected["time_to_ready.count"] > 0 and expected.get("stage.dhcp.p99") is not None
    assert judged > 30  # most meetings had samples of both kinds to compare


class SeriesShard(Shard):
    """A shard whose phones make requests (``observe.series``) at its clock's ``now``."""

    def __init__(self, members):
        super().__init__(members)
        self.series, self.now, self.state_changes = TimeSeries(7 * 86400), 0.0, 0

    def elapsed_s(self) -> float:
        return self.now


SERIES_WANTED = {f"service.{service}.{metric}" for service in ("http", "dhcp", "tftp")
                 for metric in ("requests", "requests_per_s.max", "requests_per_s.mean", "requests_per_min.max",
                                "requests_per_min.mean")}


@pytest.mark.parametrize("seed", [1, 2])
def test_the_shards_requests_give_the_parent_the_series_one_process_counts(seed):
    """Each shard sends its requests per second since the last meeting (the last second
    again, as more may have come in it); the parent's total, busiest second and minute
    and means over the run so far are what one process's series gives for every request
    of the fleet, at every meeting: several in a second, gaps of minutes and hours
    between them, a service that first asks on day 3. The fleet's requests give the
    metrics of a window of the week too (a dashboard's check of a --workers lab)."""
    rng = random.Random(seed)
    shards = [SeriesShard([Member(index)]) for index in range(3)]
    outboxes = [MetricsOutbox(shard, SERIES_WANTED) for shard in shards]
    parent, whole = FleetMetrics(len(shards)), TimeSeries(7 * 86400)
    fleet_requests = FleetRequests()
    windows = [parse_expectation(f"service.http.requests > 0 during {text}").window
               for text in ("mon-fri 08:00-18:00", "22:00-06:00", "sun-mon")]
    windows_seen = set()
    now = 0.0
    for meeting in range(120):
        now += rng.choice([0.5, 0.5, 0.5, 3.0, 61.0, 3599.5, 20000.0])
        for _ in range(rng.randrange(0, 9)):  # requests made since the last meeting, in time order
            t = rng.uniform(max(0.0, now - 0.5), now)
            service = rng.choice(["http", "http", "dhcp"] + (["tftp"] if now > 2 * 86400 else []))
            shard = rng.choice(shards)
            shard.series.request(service, t)
            whole.request(service, t)
        for index, (shard, outbox) in enumerate(zip(shards, outboxes)):
            shard.now = now
            assert outbox.changes() == shard.series.requests  # the requests are changes while read
            message = {"changes": outbox.changes()}
            outbox.fill(message, message["changes"])
            parent.take(index, json.loads(json.dumps(message)))
            if "requests" in message:
                fleet_requests.take(index, json.loads(json.dumps(message["requests"])))
        got, _ = parent.metrics(SERIES_WANTED)
        expected = whole.metrics(now)
        assert {name: value for name, value in got.items() if name.startswith("service.")} == expected, meeting
        assert fleet_requests.metrics(now) == expected, meeting
        for number, window in enumerate(windows if meeting % 8 == 7 or meeting == 119 else ()):  # a week's seconds each
            in_window = whole.window_metrics(now, CALENDAR_ORIGIN_S, window)
            assert fleet_requests.window_metrics(now, CALENDAR_ORIGIN_S, window) == in_window, (meeting, number)
            if in_window.get("service.http.requests"):
                windows_seen.add(number)
    assert windows_seen == {0, 1, 2}, "every window had requests in it"
    assert whole.per_second["tftp"] and whole.metrics(now)["service.http.requests_per_s.max"] > 1


def test_a_meeting_where_nothing_moved_sends_nothing_and_what_no_condition_reads_is_not_sent():
    members = [Member(index) for index in range(4)]
    shard = Shard(members)
    outbox = MetricsOutbox(shard, {"phones.ready"})
    message = {}
    outbox.fill(message, 0)
    assert set(message) == {"counts"}  # the first time: the counts; no phones, no timings
    members[0].phone.stages.add("dhcp", 0.0, 1.0, "ok")  # not wrapped: nothing reads stage.*
    message = {}
    outbox.fill(message, 0)
    assert message == {}
    outbox = MetricsOutbox(shard, {"time_to_ready.p95", "stage.dhcp.max"})
    first = {}
    outbox.fill(first, 0)
    assert [mac for mac, _, _ in first["phones"]] == [member.phone.mac for member in members] and "stages" not in first
    members[1].phone.stages.add("dhcp", 1.0, 1.25, "ok")
    shard.change(members[2].phone, random.Random(1), 3.0)
    second = {}
    outbox.fill(second, 1)
    assert second["stages"] == {"dhcp": [0.25]} and [mac for mac, _, _ in second["phones"]] == [members[2].phone.mac]
    outbox.want({"phones.ready"})  # the conditions that read them fired
    members[1].phone.stages.add("dhcp", 2.0, 2.5, "ok")
    shard.change(members[3].phone, random.Random(1), 4.0)
    third = {}
    outbox.fill(third, 2)
    assert set(third) == {"counts"}


def test_a_statistic_of_sorted_values_is_what_summarize_gives():
    rng = random.Random(5)
    for size in (0, 1, 2, 7, 100, 1001):
        values = [rng.choice([0.001, 0.1, 1 / 3, 2.5, rng.random()]) for _ in range(size)]
        from labsim.observe.stats import statistic

        assert {name: statistic(sorted(values), name) for name in STATISTICS} == summarize(values)
    assert list(summarize([1.0])) == ["count", "p50", "p90", "p95", "p99", "max", "mean"]  # the report's order
