"""observe.latencies: a run's latencies counted by value give the statistics, histograms
and shard records of the list of every value."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.observe import latencies as latencies_module
from labsim.observe.html_report import histogram, histogram_svg
from labsim.observe.latencies import Latencies, counted_percentile
from labsim.observe.merge_series import _latencies_of, _latencies_record, archive_record, merged_archive
from labsim.observe.report import server_statistics, stage_latencies
from labsim.observe.stage_archive import StageArchive
from labsim.observe.stats import percentile, statistic, summarize
from labsim.phones.phone import StageList

# Few distinct values (virtual time: whole hops) and many (sockets: every latency differs).
REPEATING = st.lists(st.sampled_from([0.001, 0.002, 0.0009999275207519531, 0.0019998550415039062, 0.25, 3.0]),
                     max_size=400)
DIFFERENT = st.lists(st.floats(0, 100, allow_nan=False), max_size=400)


@pytest.fixture
def few_distinct(monkeypatch):
    """Latencies keeps values one by one past 8 distinct ones, so small lists cross over."""
    monkeypatch.setattr(latencies_module, "DISTINCT_MAX", 8)


@settings(max_examples=200)
@given(st.one_of(REPEATING, DIFFERENT))
def test_the_statistics_are_those_of_the_list_of_every_value(values):
    kept = Latencies(values)
    assert kept.summary() == summarize(values)  # the mean too: the same float, summed in the same order
    assert summarize(kept) == summarize(values)
    assert len(kept) == len(values)
    assert list(kept) == sorted(values)


@given(st.one_of(REPEATING, DIFFERENT), st.one_of(REPEATING, DIFFERENT))
def test_kept_once_by_value_or_one_by_one_the_statistics_agree(first, second):
    """Past DISTINCT_MAX distinct values a Latencies keeps every value; one added to another
    in either form still gives the statistics of both lists together."""
    latencies_module.DISTINCT_MAX, saved = 8, latencies_module.DISTINCT_MAX
    try:
        one, other = Latencies(first), Latencies()
        for value in second:  # one at a time, as StageArchive.take adds them
            other.append(value)
        assert one.counted == (len(set(first)) <= 8)
        one.update(other)
        assert one.summary() == summarize(first + second)
        assert list(one) == sorted(first + second)
    finally:
        latencies_module.DISTINCT_MAX = saved


@given(st.one_of(REPEATING, DIFFERENT), st.integers(0, 100))
def test_a_percentile_walks_the_counts_to_the_nearest_rank(values, p):
    kept = Latencies(values)
    assert counted_percentile(kept.items(), len(kept), p) == percentile(sorted(values), p)


def test_appended_values_are_counted_when_folded_or_read():
    """``append`` gathers into an array (a C call); a fold counts them, a value seen before
    by one scan of the array."""
    kept, every = Latencies(), []
    for batch in ([0.001] * 100, [0.001] * 50 + [0.002], [0.001] * 10, [0.002] * 3, []):
        for value in batch:
            kept.append(value)
        every += batch
        kept.fold()
        assert not kept._pending
    kept.append(0.004)
    every.append(0.004)
    assert kept.items() == [(0.001, 160), (0.002, 4), (0.004, 1)]  # read: folded first
    assert kept.summary() == summarize(every) and len(kept) == len(every)


def test_a_week_of_one_hop_downloads_is_one_value_with_its_count(monkeypatch):
    monkeypatch.setattr("labsim.observe.stage_archive.FOLD_EVERY", 7)  # counted as it goes, not only when read
    archive = StageArchive()
    phone = type("Phone", (), {})()
    for hour in range(168):
        phone.stages = StageList()
        for index in range(400):
            started = 3600.0 * hour + index * 0.01
            phone.stages.add("boot", started, started + 0.001, "ok", "http://127.0.0.1:8080")
        archive.take(phone, keep=0)
        if hour == 100:
            assert len(archive.latencies["boot"]._pending) < 7 * 400
    boot = archive.latencies["boot"]
    assert boot.counted and len(boot) == 168 * 400
    assert len(boot.items()) < 20  # the subtraction's rounding: a few floats near 0.001, not 67,200
    assert sum(times for _, times in archive.server_latencies["http://127.0.0.1:8080"].items()) == 168 * 400


def test_latencies_kept_one_by_one_cost_8_bytes_each(few_distinct):
    values = [random.Random(1).random() for _ in range(10)] + [i / 7 for i in range(1000)]
    kept = Latencies(values)
    assert not kept.counted and kept._values.itemsize * len(kept._values) == 8 * 1010
    assert kept.summary() == summarize(values)


@pytest.mark.parametrize("values", [
    [0.001] * 50 + [0.002] * 3,  # counted
    [i / 3 for i in range(30)],  # one by one (with DISTINCT_MAX 8)
    [],
])
def test_a_shard_record_of_latencies_reads_back_the_same(few_distinct, values):
    kept = Latencies(values)
    record = json.loads(json.dumps(_latencies_record(kept)))
    assert isinstance(record, dict) == kept.counted  # counts only while counted
    again = _latencies_of(record)
    assert again.items() == kept.items() and again.summary() == summarize(values)


def test_a_shard_record_from_before_the_counts_is_read_as_every_value():
    import base64
    from array import array

    old = base64.b64encode(array("d", [0.001, 0.001, 0.5]).tobytes()).decode()  # little-endian here
    assert _latencies_of(old).items() == [(0.001, 2), (0.5, 1)]


def test_merged_shard_archives_give_what_one_archive_of_every_timing_gives(few_distinct):
    """Two shards' archives, one counted and one past DISTINCT_MAX, merged through their
    JSON records: the report's stage and server statistics of one process."""
    rng = random.Random(5)
    whole, parts = StageArchive(), [StageArchive(), StageArchive()]
    phone = type("Phone", (), {})()
    for part, spread in zip(parts, ([0.001, 0.002], [rng.uniform(0, 1) for _ in range(40)])):
        phone.stages = StageList()
        for index in range(300):
            started = 256.0 if len(spread) == 2 else float(index)  # one start: two distinct latencies
            phone.stages.add("mac_cfg", started, started + rng.choice(spread), "ok", "http://127.0.0.1:8080")
        timings = list(phone.stages)
        part.take(phone, keep=0)
        phone.stages = StageList(timings)
        whole.take(phone, keep=0)
    assert parts[0].latencies["mac_cfg"].counted and not parts[1].latencies["mac_cfg"].counted
    merged = merged_archive([json.loads(json.dumps(archive_record(part))) for part in parts])
    assert {stage: values.summary() for stage, values in stage_latencies([], merged).items()} == \
        {stage: values.summary() for stage, values in stage_latencies([], whole).items()}
    assert server_statistics([], merged) == server_statistics([], whole)


@given(REPEATING.filter(bool))
def test_a_histogram_of_counted_latencies_is_the_histogram_of_every_value(values):
    assert histogram(Latencies(values), bins=17) == histogram(values, bins=17)
    assert histogram_svg("stage boot", Latencies(values)) == histogram_svg("stage boot", values)


@pytest.mark.parametrize("value", [0.00015, 0.00035, 0.00125])
def test_the_mean_adds_every_value_as_the_list_does(value):
    """value × count / count rounds to the other side of 4 decimals from the sum of the
    list here (the sum drifts): the report's mean must not depend on how it was kept."""
    values = [value] * 1000
    assert Latencies(values).summary()["mean"] == summarize(values)["mean"]


@given(st.lists(st.one_of(REPEATING, DIFFERENT), min_size=1, max_size=6), st.sampled_from(["p50", "p95", "max", "mean"]))
def test_a_statistic_asked_again_as_values_arrive_is_that_of_every_value_so_far(batches, name):
    """A pending when: on a stage asks at every look while latencies arrive: counted, or
    from a sorted list kept up to date (a few values each into its place, many merged)."""
    latencies_module.DISTINCT_MAX, saved = 8, latencies_module.DISTINCT_MAX
    try:
        kept, every = Latencies(), []
        for batch in batches:
            kept.extend(batch)
            every += batch
            assert kept.statistic(name) == statistic(sorted(every), name)
            assert kept.summary() == summarize(every)
    finally:
        latencies_module.DISTINCT_MAX = saved


@pytest.mark.parametrize("archived", [0, 3, 6])
def test_a_download_whose_name_did_not_resolve_counts_for_the_server_but_not_in_its_latency(archived):
    """Status dns: the request never left the phone. The server's line counts it by status
    (the phones saw it fail) but its 3 s of lookup retries are not the server's latency,
    whether the timing is still the phone's or a long run moved it to the archive."""
    server = "http://prov.lab:8080"
    phone = type("Phone", (), {})()
    phone.stages = StageList()
    for index, (status, latency) in enumerate([("dns", 3.0), ("dns", 3.0), ("ok", 0.002), ("not_found", 0.001),
                                               ("ok", 0.004), ("dns", 3.0)]):
        phone.stages.add("mac_cfg", 10.0 * index, 10.0 * index + latency, status, server)
    archive = StageArchive()
    archive.take(phone, keep=6 - archived)
    member = type("Member", (), {"phone": phone})()
    line = server_statistics([member], archive)[server]
    assert (line["requests"], line["errors"], line["by_status"]) == (6, 4, {"dns": 3, "not_found": 1, "ok": 2})
    assert line["latency_s"] == summarize([0.002, 0.001, 0.004])
    # The stage is the phone's experience: the lookups' time is part of it.
    assert stage_latencies([member], archive)["mac_cfg"].summary()["max"] == 3.0

