"""The run report: ``report.json`` (schema in docs/report.md) and the summary table.

Everything here is computed from the phones' own records after the run, so the hot path
of a run pays nothing for reporting. The report's phones (``PhoneEntries``) are made one
at a time as they are written, so writing the report of a 100,000-phone run does not
hold a second copy of the fleet as dicts.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from labsim.scenario.durations import clock_text
from labsim.scenario.expectations import Verdict, evaluate, evaluate_flash, parse_expectation
from labsim.observe.latencies import Latencies
from labsim.observe.log_text import client_text
from labsim.observe.problems import group_problems, phone_cause, problem_line
from labsim.observe.stats import summarize
from labsim.phones.events import DOWNLOAD_OUTCOMES, NEVER_SENT, OPTIONAL_MISSING
from labsim.phones.local_time import CALENDAR_ORIGIN_S
from labsim.phones.packed import SharedValues
from labsim.phones.phone import STATES

SCHEMA_VERSION = 1


@dataclass
class RunRecord:
    scenario_name: str
    scenario_file: str
    seed: int
    started: str  # ISO 8601, UTC
    duration_s: float
    members: list  # FleetMember
    expectations: list  # schema.Expectation
    services: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)
    complete: bool = True
    end_reason: str = "all phones settled"
    timeline: list = field(default_factory=list)
    uploads: list = field(default_factory=list)  # {path, bytes}: files stored from uploads
    series: object = None  # observe.series.TimeSeries: requests and states over time
    end_t: float = 0.0  # the run's end, in seconds from its start (simulated time in a virtual run)
    events_cap: int | None = None  # keep at most this many events per phone in the report
    stage_archive: object = None  # observe.stage_archive.StageArchive: a long run's older timings
    # A virtual run: the moment its clock starts at (epoch seconds: its calendar); None on the real clock.
    simulated_from: float | None = None
    # Where the run starts on the lab's calendar (epoch seconds, UTC): the scenario's clock_starts,
    # else the calendar's origin. What a "during" window of an expectation is read on.
    calendar_from: float = CALENDAR_ORIGIN_S
    notes: list = field(default_factory=list)  # what labsim said about the scenario before the run (scenario.sizing)
    timeline_entries: list = field(default_factory=list)  # timeline.entry_facts: to say which never ran


def count_metrics(members) -> dict[str, int]:
    """The counts a check may read: phones in all and per state, reboots in all."""
    return counts_of(len(members), Counter(member.phone.state for member in members),
                     sum(member.phone.reboots for member in members))


def counts_of(total: int, by_state, reboots: int) -> dict[str, int]:
    """``count_metrics`` from phones in all, a mapping of phones per state and reboots in
    all (a ``--workers`` shard keeps these as its phones change: scale/fleet_metrics.py)."""
    metrics = {"phones.total": total}
    for state in STATES:
        metrics[f"phones.{state}"] = by_state.get(state, 0)
    metrics["reboots.total"] = reboots
    return metrics


def time_to_ready(phone) -> float | None:
    """Seconds from a phone's power-on to its ready state, or None (not ready yet)."""
    if phone.ready_at is None or phone.powered_on_at is None:
        return None
    return phone.ready_at - phone.powered_on_at


def _ready_times(members) -> list[float]:
    return [ready for ready in (time_to_ready(member.phone) for member in members) if ready is not None]


def phone_metrics(members, archive=None, wanted=None) -> tuple[dict, dict]:
    """(aggregate metrics, per-phone metrics) for expectations. ``wanted``: the metric
    names the caller will read (None: every one). The timeline asks for what its pending
    conditions read alone, twice a second while a phone moves: the latency percentiles
    sort every sample of the run (a 1,000-phone day with a pending ``when:`` took 290 s
    instead of 4 s when each look computed them)."""
    def reads(prefix: str) -> bool:
        return wanted is None or any(name.startswith(prefix) for name in wanted)

    metrics: dict[str, float | None] = count_metrics(members)
    if reads("time_to_ready."):
        ready_times = _ready_times(members)
        for stat, value in summarize(ready_times).items():
            metrics[f"time_to_ready.{stat}"] = value
    if reads("stage."):
        for stage, values in stage_latencies(members, archive).items():
            for stat, value in summarize(values).items():
                metrics[f"stage.{stage}.{stat}"] = value
    if reads("downloads."):
        metrics.update(download_metrics(outcomes_by_server(members, archive)))
    per_phone = {"phone.reboots": [(m.phone.mac, m.phone.reboots) for m in members]} if reads("phone.") else {}
    return metrics, per_phone


def outcomes_by_server(members, archive=None) -> dict[str, Counter]:
    """Per server the phones talked to, its requests by outcome: the phones' timings and
    those a long run moved to its ``archive`` (or a ``--workers`` parent's, told by its
    shards: ``scale.fleet_metrics.FleetStages``)."""
    outcomes: defaultdict[str, Counter] = defaultdict(Counter)
    for server, counts in (archive.server_status.items() if archive is not None else ()):
        outcomes[server].update(counts)
    told = Counter((timing.server, timing.status) for member in members for timing in member.phone.stages
                   if timing.server)
    for (server, status), count in told.items():
        outcomes[server][status] += count
    return outcomes


def errors_among(counts, requests: int) -> int:
    """Of ``requests`` counted by outcome, the errors: neither ok nor a file the phone only
    looked for and the server did not have (a server's line and ``downloads.errors``)."""
    return requests - counts.get("ok", 0) - counts.get(OPTIONAL_MISSING, 0)


def download_metrics(outcomes: dict[str, Counter]) -> dict[str, int]:
    """``downloads.requests``, ``downloads.errors`` (as a server's line counts them: neither
    ok nor optional_missing) and ``downloads.<outcome>`` (events.DOWNLOAD_OUTCOMES; an error
    of any kind is ``error``) over every server the phones downloaded from, DHCP's lease
    exchanges left out: ``downloads.errors == 0`` is "no download failed"."""
    counts = dict.fromkeys(DOWNLOAD_OUTCOMES, 0)
    for server, by_status in outcomes.items():
        if server.startswith("dhcp://"):
            continue
        for status, count in by_status.items():
            key = "error" if status.startswith("error") else status
            counts[key] = counts.get(key, 0) + count
    requests = sum(counts.values())
    metrics = {f"downloads.{outcome}": count for outcome, count in counts.items()}
    metrics["downloads.requests"] = requests
    metrics["downloads.errors"] = errors_among(counts, requests)
    return metrics


def stage_latencies(members, archive=None) -> dict[str, Latencies]:
    """Stage name -> every latency of it: the phones' timings, and those a long run moved
    to its ``archive`` (observe.stage_archive), counted by value (observe.latencies)."""
    stages: defaultdict[str, Latencies] = defaultdict(Latencies)
    if archive is not None:
        for stage, values in archive.latencies.items():
            stages[stage].update(values)
    for member in members:
        for timing in member.phone.stages:
            stages[timing.stage].append(timing.ended - timing.started)
    return dict(stages)


def server_statistics(members, archive=None) -> dict:
    """Per server the phones talked to: requests by outcome and latency (load tests).

    A request that never left the phone (its host name did not resolve: NEVER_SENT) is
    counted with its status, but its time is the lab DNS's, not the server's: it is left
    out of the server's latency."""
    outcomes = outcomes_by_server(members, archive)
    latencies: defaultdict[str, Latencies] = defaultdict(Latencies)
    if archive is not None:
        for server, values in archive.server_latencies.items():
            latencies[server].update(values)
    for member in members:
        for timing in member.phone.stages:
            if timing.server and timing.status not in NEVER_SENT:
                latencies[timing.server].append(timing.ended - timing.started)
    result = {}
    for server in sorted(outcomes):
        counts = outcomes[server]
        requests = sum(counts.values())
        result[server] = {
            "requests": requests,
            "errors": errors_among(counts, requests),
            "by_status": dict(sorted(counts.items())),
            "latency_s": summarize(latencies[server]),
        }
    return result


def judge(record: RunRecord) -> list[Verdict]:
    metrics, per_phone = phone_metrics(record.members, record.stage_archive)
    if record.series is not None:
        metrics.update(record.series.metrics(record.end_t))
    verdicts = []
    for expectation in record.expectations:
        if hasattr(expectation, "flash"):
            verdicts.append(evaluate_flash(expectation.flash, record.members, expectation.name))
            continue
        check = parse_expectation(expectation.check)
        if check.window is not None and check.key not in metrics and record.series is not None:
            during = record.series.window_metrics(record.end_t, record.calendar_from, check.window)
            metrics.update({f"{name} during {check.window.text}": value for name, value in during.items()})
        verdicts.append(evaluate(check, metrics, per_phone, len(record.members), expectation.name))
    return verdicts


def entries_not_run(facts: list[dict], records: list[dict], end_t: float) -> list[dict]:
    """The timeline entries of ``facts`` that no record of the run's timeline names, and
    why: a condition that never held (a ``when:`` written for a larger fleet, a metric
    that never got there), or a time after the run's end. A run that passes says nothing
    of an action it never carried out otherwise."""
    ran = {record["entry"] for record in records}
    missing = []
    for fact in facts:
        if fact["entry"] in ran:
            continue
        if fact["when"] is not None:
            why = f"its condition '{fact['when']}' never held"
        elif fact["at"] is not None and fact["at"] > end_t:
            why = f"the run ended at {clock_text(end_t)}, before its time, {clock_text(fact['at'])}"
        else:
            why = "it did not run"
        missing.append({"entry": fact["entry"], "why": why})
    return missing


def simulated_span(simulated_from: float | None, end_t: float) -> dict | None:
    """What a virtual run simulated: from and to on its clock's calendar (ISO 8601, UTC),
    and how long (seconds). None for a run on the real clock (its ``duration_s`` says it)."""
    if simulated_from is None:
        return None
    return {"from": _calendar(simulated_from), "to": _calendar(simulated_from + end_t), "duration_s": round(end_t, 3)}


def _calendar(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="seconds")


def build_report(record: RunRecord, verdicts: list[Verdict]) -> dict:
    members = record.members
    by_state = Counter(member.phone.state for member in members)
    ready_times = _ready_times(members)
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": {"name": record.scenario_name, "file": record.scenario_file, "seed": record.seed},
        "started": record.started,
        "duration_s": round(record.duration_s, 3),
        "complete": record.complete,
        "end_reason": record.end_reason,
        "clock": "real" if record.simulated_from is None else "virtual",
        "simulated": simulated_span(record.simulated_from, record.end_t),
        "passed": all(v.passed for v in verdicts),
        "notes": list(record.notes),
        "expectations": [
            {"name": v.name, "check": e.check, "passed": v.passed, "observed": v.observed, "detail": v.detail}
            for e, v in zip(record.expectations, verdicts)
        ],
        "summary": {
            "phones": len(members),
            "by_state": {state: by_state.get(state, 0) for state in STATES},
            "reboots_total": sum(m.phone.reboots for m in members),
            "time_to_ready_s": summarize(ready_times),
            "stages_s": {stage: summarize(values)
                         for stage, values in sorted(stage_latencies(members, record.stage_archive).items())},
            "servers": server_statistics(members, record.stage_archive),
            "problems": group_problems(members),
        },
        "services": record.services,
        "network": record.network,
        "timeline": record.timeline,
        "timeline_not_run": entries_not_run(record.timeline_entries, record.timeline, record.end_t),
        "uploads": record.uploads,
        "phones": PhoneEntries(members, record.events_cap),
        **({"series": record.series.to_report(record.end_t)} if record.series is not None else {}),
    }


class PhoneEntries:
    """``report["phones"]``: each phone's entry, made when it is read (the fleet's
    ``members`` stay the one copy). A sequence: ``len``, iteration, indexing."""

    def __init__(self, members, events_cap: int | None = None):
        self.members = members
        self.events_cap = events_cap

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self):
        cap = self.events_cap
        return (_phone_entry(member, cap) for member in self.members)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [_phone_entry(member, self.events_cap) for member in self.members[index]]
        return _phone_entry(self.members[index], self.events_cap)


# A step's text as the report shows it (client_text), once for each text: most read the
# same for a whole fleet ("downloaded y000000000066.cfg (131 bytes)"), and a 10,000-phone
# report shows two million of them.
_REPORT_DETAILS = SharedValues(1 << 16, lambda detail: client_text(detail, 2000))


def _phone_entry(member, events_cap: int | None = None) -> dict:
    details = _REPORT_DETAILS
    phone = member.phone
    events = phone.events
    cut = max(0, len(events) - events_cap) if events_cap is not None else 0
    if cut:  # the first ones (how it booted) and the last ones (how it ended); all in events.jsonl
        events = events[: events_cap // 2] + events[len(events) - (events_cap - events_cap // 2):]
    dropped = cut + getattr(phone, "events_dropped", 0)
    # Where the left-out ones were: after the first half (the run's events log keeps a phone's
    # first EVENTS_PER_PHONE_IN_REPORT // 2 as this cut does), between these two events' times.
    head = (events_cap if events_cap is not None else len(events)) // 2
    between = [_round(events[head - 1][0]), _round(events[head][0])] if dropped and 0 < head < len(events) else None
    entry = {
        "mac": phone.mac,
        "vendor": member.vendor,
        "model": phone.model,
        "fleet": member.fleet,
        "state": phone.state,
        "failure": client_text(phone.failure, 2000) or None,
        "cause": phone_cause(phone),
        "reboots": phone.reboots,
        "power_cycles": phone.power_cycles,
        "powered_on_at_s": _round(phone.powered_on_at),
        "ready_at_s": _round(phone.ready_at),
        "files": dict(phone.flash.file_md5),
        "flash": phone.flash.summary(),
        "events": [{"t": round(t, 4), "kind": kind, "state": state, "detail": details[detail]}
                   for t, state, detail, kind in events],
    }
    if dropped:
        entry["events_dropped"] = dropped
        if between is not None:
            entry["events_dropped_between"] = between
    return entry


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def report_chunks(report: dict, each_phone=None):
    """report.json's text, a piece at a time: indented, but each phone on one line, written
    as it is made. json indents only with its pure-Python encoder, ~10x slower than the C
    one: a week of 10,000 phones spent most of its writing time there. ``each_phone`` is
    handed each phone's entry as it goes (what report.html reads of them: one pass)."""
    if "phones" not in report:
        yield json.dumps(report, indent=1) + "\n"
        return
    compact = json.JSONEncoder(separators=(", ", ": ")).encode
    rest = {key: value for key, value in report.items() if key != "phones"}
    yield json.dumps(rest, indent=1)[:-2] + ',\n "phones": ['
    separator = "\n  "
    for phone in report["phones"]:
        if each_phone is not None:
            each_phone(phone)
        yield separator + compact(phone)
        separator = ",\n  "
    yield "\n ]\n}\n"


def write_report(report: dict, report_dir: str, each_phone=None) -> str:
    os.makedirs(report_dir, exist_ok=True)
    path = os.path.join(report_dir, "report.json")
    temporary = path + ".tmp"
    try:
        with open(temporary, "w", encoding="utf-8", buffering=1 << 20) as handle:
            for chunk in report_chunks(report, each_phone):
                handle.write(chunk)
    except BaseException:
        os.unlink(temporary)
        raise
    os.replace(temporary, path)  # a reader never sees half a report
    return path


def service_counters_line(counters: dict, most: int = 6) -> str:
    """The first few non-zero counters of one of labsim's services, for the summary:
    which services the run used and what they did (report.json has them all)."""
    shown = [f"{key} {value}" for key, value in counters.items() if isinstance(value, int) and value][:most]
    return ", ".join(shown) if shown else "(nothing)"


LONG_S = 3600  # a time this long or longer is also written as days and a clock


def _long(seconds: float, text: str) -> str:
    """``text`` (a number of seconds), and past an hour the same as days and a clock: a
    DHCP stage across a weekend's outage reads ``151126.4092 (1d 17:58:46)``."""
    return f"{text} ({clock_text(seconds)})" if seconds >= LONG_S else text


def summary_table(report: dict) -> str:
    summary = report["summary"]
    simulated = report.get("simulated")
    span = (f", {clock_text(simulated['duration_s'])} simulated" if simulated else "") + f" in {report['duration_s']:.1f}s"
    lines = [f"Scenario {report['scenario']['name']!r}: {summary['phones']} phones{span}"
             + ("" if report["complete"] else f" (INCOMPLETE: {report['end_reason']})")]
    states = ", ".join(f"{s} {n}" for s, n in summary["by_state"].items() if n)
    lines.append(f"  final states: {states}")
    for problem in summary.get("problems", []):
        lines.append(f"    {problem_line(problem)}")
    lines.append(f"  reboots: {summary['reboots_total']}")
    ttr = summary["time_to_ready_s"]
    if ttr["count"]:
        lines.append("  time to ready (s): " + "  ".join(f"{key} {_long(ttr[key], f'{ttr[key]:.3f}')}"
                                                       for key in ("p50", "p95", "p99", "max")))
    # Columns as wide as the longest name (Avaya's primary_profile, a long server URL).
    width = max([12, *map(len, summary["stages_s"])])
    for stage, stats in summary["stages_s"].items():
        lines.append(f"  stage {stage:<{width}} n={stats['count']:<6} " + "  ".join(
            f"{key} {_long(stats[key], f'{stats[key]:.4f}')}" for key in ("p50", "p95", "max")))
    width = max([28, *map(len, summary.get("servers", {}))])
    for server, stats in summary.get("servers", {}).items():
        # Which outcomes: the errors by kind, and the optional files not there (a Yealink's boot files).
        which = ", ".join(f"{status} {n}" for status, n in stats.get("by_status", {}).items() if status != "ok")
        p95 = stats["latency_s"]["p95"]  # None: no request reached it (every name lookup failed)
        lines.append(f"  server {server:<{width}} requests {stats['requests']:<6} errors {stats['errors']:<5} "
                     f"p95 {'-' if p95 is None else _long(p95, f'{p95:.4f}s')}" + (f"  ({which})" if which else ""))
    for name, counters in (report.get("services") or {}).items():
        lines.append(f"  service {name:<6} {service_counters_line(counters)}")
    lookups = (report.get("network") or {}).get("dns_lookups") or {}
    if lookups.get("lookups"):  # what the phones asked the DNS, whoever's server answered
        rest = ", ".join(f"{key} {value}" for key, value in lookups.items() if key != "lookups" and value)
        lines.append(f"  lookups dns    {lookups['lookups']}" + (f" ({rest})" if rest else ""))
    if report.get("uploads"):
        folders = sorted({os.path.dirname(u["path"]) for u in report["uploads"]})
        lines.append(f"  uploads: {len(report['uploads'])} file(s) kept in {', '.join(folders[:3])}"
                     + (" ..." if len(folders) > 3 else ""))
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    for record in report.get("timeline", []):
        if str(record.get("outcome", "")).startswith("error: "):
            lines.append(f"  timeline: {record['entry']!r} {record['action']} at {clock_text(record['t'])} failed: "
                         f"{record['outcome'][len('error: '):]}")
    for entry in report.get("timeline_not_run", []):
        lines.append(f"  timeline: {entry['entry']!r} never ran: {entry['why']}")
    if report["expectations"]:
        lines.append("  expectations:")
        width = max(len(e["name"]) for e in report["expectations"])
        for e in report["expectations"]:
            mark = "PASS" if e["passed"] else "FAIL"
            detail = f"  ({e['detail']})" if e["detail"] else ""
            lines.append(f"    {mark}  {e['name']:<{width}}  observed: {json.dumps(e['observed'])}{detail}")
    result = "PASSED" if report["passed"] and report["complete"] else "FAILED"
    if not report["expectations"]:
        # Nothing held or failed: a bare PASSED above "failed 5" reads as a verdict on them.
        summary = report["summary"]
        result += (f" (no expectations: nothing was judged; {summary['by_state'].get('ready', 0)} of "
                   f"{summary['phones']} phones ready; add expect: to the scenario, e.g. phones.ready == 100%)")
    lines.append("  result: " + result)
    return "\n".join(lines)
