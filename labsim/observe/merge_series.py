"""What a shard counted as it ran, kept for the merge: its time series and its archive of
older download timings (``observe.series``, ``observe.stage_archive``).

A shard in virtual time (``labsim run --clock virtual --workers N``) runs a week of its
phones; its ``events.jsonl`` is millions of lines. Rebuilding the series from the merged
lines (what ``observe.merge.series_of`` does for real-clock shards) would read them all
into memory, so a virtual shard writes the counts themselves into ``shard.json``:

- per service, the requests of each second of the run (32-bit counts, base64);
- per state, the phones in it at each bucket boundary, and at the shard's end;
- per stage and per server, the latencies of the downloads moved to the archive (each
  distinct value with its count, 64-bit; or every value when they are all different),
  and the servers' counts by status.

Merging adds them: requests second by second (so the busiest second and minute of the
fleet are exact, not a sum of per-shard peaks), phones per state boundary by boundary (a
shard that ended earlier keeps its end counts for the boundaries after it), latencies
added together (percentiles over every sample).
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections import Counter

from labsim.observe.latencies import Latencies
from labsim.observe.series import TimeSeries
from labsim.observe.stage_archive import StageArchive


def _packed(values: array) -> str:
    if sys.byteorder != "little":  # the file says little-endian, whatever wrote it
        values = array(values.typecode, values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def _unpacked(typecode: str, text: str) -> array:
    values = array(typecode)
    values.frombytes(base64.b64decode(text))
    if sys.byteorder != "little":
        values.byteswap()
    return values


# --- writing (the shard) ---------------------------------------------------------------


def series_record(series: TimeSeries, end_t: float) -> dict:
    series._sample_until(end_t)  # the boundaries up to the shard's end, as to_report takes them
    seconds = max(1, int(end_t) + 1)
    return {
        "bucket_s": series.bucket_s,
        "per_second_u32le": {service: _packed(counts[:seconds])
                             for service, counts in sorted(series.per_second.items())},
        "states": {state: list(samples) for state, samples in series.states.items()},
        "final": dict(series._counts),
    }


def archive_record(archive: StageArchive | None) -> dict:
    if archive is None:
        return {"latencies": {}, "server_latencies": {}, "server_status": {}}
    return {
        "latencies": {stage: _latencies_record(values) for stage, values in sorted(archive.latencies.items())},
        "server_latencies": {server: _latencies_record(values)
                             for server, values in sorted(archive.server_latencies.items())},
        "server_status": {server: dict(counts) for server, counts in sorted(archive.server_status.items())},
    }


def _latencies_record(latencies: Latencies) -> str | dict:
    """Counted latencies as their distinct values and counts; listed ones as every value."""
    if not latencies.counted:
        return _packed(latencies.as_array())
    items = latencies.items()
    return {"values_f64le": _packed(array("d", (value for value, _ in items))),
            "counts_u64le": _packed(array("Q", (times for _, times in items)))}


def _latencies_of(record: str | dict) -> Latencies:
    latencies = Latencies()
    if isinstance(record, str):  # every value (listed, or a shard of an older labsim)
        latencies.extend(_unpacked("d", record))
    else:
        latencies.add_counts(zip(_unpacked("d", record["values_f64le"]), _unpacked("Q", record["counts_u64le"])))
    return latencies


# --- merging (the parent, labsim merge) ----------------------------------------------------


def merged_series(records: list[dict], phones: int) -> TimeSeries:
    """One TimeSeries holding every shard's counts, as one process would have counted them."""
    bucket = records[0]["bucket_s"]
    if any(record["bucket_s"] != bucket for record in records):
        raise ValueError(f"shards counted their series in different buckets "
                         f"({sorted({record['bucket_s'] for record in records})} s): not shards of one run")
    series = TimeSeries(0, phones)
    series.bucket_s = bucket
    for record in records:
        for service, text in record["per_second_u32le"].items():
            counts = _unpacked("I", text)
            total = series.per_second.get(service)
            if total is None:
                series.per_second[service] = counts
                continue
            if len(total) < len(counts):
                total.extend([0] * (len(counts) - len(total)))
            for second, value in enumerate(counts):
                if value:
                    total[second] += value
    length = max(len(record["states"]["off"]) for record in records)
    for state in series.states:
        summed = [0] * length
        for record in records:
            samples = record["states"].get(state, [])
            last = record["final"].get(state, 0)
            for index in range(length):
                summed[index] += samples[index] if index < len(samples) else last
        series.states[state] = summed
    series._counts = {state: sum(record["final"].get(state, 0) for record in records) for state in series.states}
    return series


def merged_archive(records: list[dict]) -> StageArchive:
    archive = StageArchive()
    for record in records:
        for kept, recorded in ((archive.latencies, record["latencies"]),
                               (archive.server_latencies, record["server_latencies"])):
            for name, text in recorded.items():
                values = _latencies_of(text)
                if name in kept:
                    kept[name].update(values)
                else:
                    kept[name] = values
        for server, counts in record["server_status"].items():
            archive.server_status.setdefault(server, Counter()).update(counts)
    return archive
