"""One report from many shards: ``shard.json`` written by each shard, merged by ``labsim merge``.

A shard (``labsim run --shard i/N``, a worker of ``--workers``, a pod of the Kubernetes
Job) writes, next to its own report, ``shard.json``: every phone it ran with its raw
records (state, reboots, times, every stage timing, the whole flash, its timeline) and
what the run needs to be judged again (the scenario's expectations, counters). The merge
rebuilds the fleet from those records and hands it to the same report code a single
process uses (``observe.report``), so the merged report has the same schema, its
percentiles are computed over every phone's samples (never averaged per shard), counts
add up, and every expectation is judged over the whole fleet.

``events.jsonl`` files are merged line by line in time order (each shard's is already
sorted, and every shard counts time from the one shared start instant); lines at the same
time keep shard order (shard 0 first), so the same shards give the same file.

A shard that counted its time series and archived older download timings as it ran (a
virtual-time shard, ``observe.merge_series``) is merged from those counts, and its
``events.jsonl`` is streamed line by line into the merged file, never held in memory.
"""

from __future__ import annotations

import gc
import heapq
import json
import os
from dataclasses import dataclass
from sys import intern

from labsim.observe.events_log import DHCP_TYPES
from labsim.phones.flash import Flash
from labsim.phones.local_time import CALENDAR_ORIGIN_S
from labsim.phones.packed import EventList
from labsim.phones.phone import StageTiming
from labsim.scenario.calendar_start import calendar_from
from labsim.scenario.timeline import entry_facts
from labsim.services.counters import add_counters

SHARD_FILE = "shard.json"
FORMAT = 1
_DHCP_CODES = {name: code for code, name in DHCP_TYPES.items()}


class MergeError(ValueError):
    """A shard report that is missing, broken or does not belong with the others."""


# --- writing: one shard's record ----------------------------------------------------


def shard_record(*, shard, scenario, scenario_file: str, members, report: dict, start_at: float,
                 end_t: float, series_bucket_s: int = 1, notes=()) -> dict:
    return {
        "format": FORMAT,
        "kind": "labsim-shard",
        "shard": {"index": shard.index, "count": shard.count},
        "scenario": {"name": scenario.name, "file": scenario_file, "seed": scenario.seed,
                     "phones": sum(fleet.total for fleet in scenario.fleets)},
        "expectations": [e.model_dump(mode="json", exclude_none=True) for e in scenario.expectations()],
        "notes": list(notes),
        "timeline_entries": entry_facts(scenario.timeline),
        "start_at": start_at,
        # where the run starts on the lab's calendar: "during" windows are read on it
        "calendar_from": calendar_from(scenario.clock_starts),
        "end_t": end_t,
        "series_bucket_s": series_bucket_s,
        "started": report["started"],
        "duration_s": report["duration_s"],
        "complete": report["complete"],
        "end_reason": report["end_reason"],
        "services": report["services"],
        "network": report["network"],
        "timeline": report["timeline"],
        "uploads": report.get("uploads", []),
        "phones": PhoneRecords(members),
    }


class PhoneRecords:
    """A shard's phones as its record lists them, each made when read: a 5,000-phone
    shard's ~60 MB of them are written one at a time, never all held."""

    def __init__(self, members):
        self.members = members

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self):
        return (_phone_record(member) for member in self.members)


def _phone_record(member) -> dict:
    phone = member.phone
    return {
        "order": member.order, "mac": phone.mac, "vendor": member.vendor, "model": phone.model,
        "fleet": member.fleet, "state": phone.state, "failure": phone.failure, "reboots": phone.reboots,
        "power_cycles": phone.power_cycles, "powered_on_at": phone.powered_on_at, "ready_at": phone.ready_at,
        "flash": phone.flash.to_dict(),
        "events": [list(event) for event in phone.events],
        "events_dropped": getattr(phone, "events_dropped", 0),
        "stages": [[s.stage, s.started, s.ended, s.status, s.server] for s in phone.stages],
        "server_source": getattr(phone, "server_source", None),
        "fetch_error": getattr(phone, "fetch_error", None),
    }


def shard_report_fields(record) -> dict:
    """What a ``--workers`` shard keeps of its own run record in place of a report: the
    parent judges and reports the whole fleet from every shard's shard.json, so a shard
    judges nothing itself ("passed" stays True until the merge)."""
    return {"started": record.started, "duration_s": round(record.duration_s, 3),
            "complete": record.complete, "end_reason": record.end_reason, "passed": True,
            "services": record.services, "network": record.network, "timeline": record.timeline,
            "uploads": record.uploads}


def write_shard_record(record: dict, report_dir: str) -> str:
    """``shard.json``: the JSON of ``record`` (compact), written a phone at a time by the C
    encoder (``json.dump`` writes its chunks with the pure-Python one: a 5,000-phone
    shard's record took 1.9 s instead of 1.0, with every phone's record held at once)."""
    os.makedirs(report_dir, exist_ok=True)
    path = os.path.join(report_dir, SHARD_FILE)
    encode = json.JSONEncoder(separators=(",", ":")).encode
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        separator = "{"
        for key, value in record.items():
            handle.write(separator + encode(key) + ":")
            separator = ","
            if key == "phones":
                between = "["
                for phone in value:
                    handle.write(between + encode(phone))
                    between = ","
                handle.write("[]" if between == "[" else "]")
            else:
                handle.write(encode(value))
        handle.write("}" if separator == "," else "{}")
    os.replace(path + ".tmp", path)
    return path


# --- reading ---------------------------------------------------------------------------


@dataclass
class RecordedPhone:
    """A phone as a shard recorded it: the attributes the report code reads."""

    mac: str
    model: str
    state: str
    failure: str
    reboots: int
    power_cycles: int
    powered_on_at: float | None
    ready_at: float | None
    flash: Flash
    events: list
    stages: list
    server_source: tuple | None = None  # why a phone failed (observe.problems)
    fetch_error: tuple | None = None
    events_dropped: int = 0  # left out of ``events`` by a long run (they are in events.jsonl)


@dataclass
class RecordedMember:
    fleet: str
    vendor: str
    phone: RecordedPhone
    order: int


def load_shard(directory: str) -> dict:
    """A shard's record, or a MergeError naming the file and what is wrong with it."""
    path = directory if directory.endswith(".json") and not os.path.isdir(directory) else \
        os.path.join(directory, SHARD_FILE)
    if not os.path.exists(path):
        raise MergeError(f"{path}: no shard report here (is {directory} the report folder of a "
                         "`labsim run --shard` that finished?)")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MergeError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "labsim-shard":
        raise MergeError(f"{path}: not a labsim shard report (no \"kind\": \"labsim-shard\")")
    if data.get("format") != FORMAT:
        raise MergeError(f"{path}: format {data.get('format')!r}, this labsim reads format {FORMAT}")
    try:
        data["members"] = [_member(entry) for entry in data.pop("phones")]  # not both in memory
        shard = data["shard"]
        int(shard["index"]), int(shard["count"])
        data["scenario"]["name"], data["expectations"], data["complete"]
    except (KeyError, TypeError, ValueError) as exc:
        raise MergeError(f"{path}: a shard report with a missing or malformed field ({exc!r})") from None
    data["path"] = path
    data["directory"] = os.path.dirname(path)
    return data


def _member(entry: dict) -> RecordedMember:
    phone = RecordedPhone(
        mac=entry["mac"], model=entry["model"], state=entry["state"], failure=entry["failure"] or "",
        reboots=int(entry["reboots"]), power_cycles=int(entry["power_cycles"]),
        powered_on_at=entry["powered_on_at"], ready_at=entry["ready_at"],
        flash=Flash.from_dict(entry["flash"]),
        events=_events(entry["events"]),
        stages=_stages(entry["stages"]),
        server_source=tuple(entry["server_source"]) if entry.get("server_source") else None,
        fetch_error=tuple(entry["fetch_error"]) if entry.get("fetch_error") else None,
        events_dropped=int(entry.get("events_dropped") or 0),
    )
    return RecordedMember(entry["fleet"], entry["vendor"], phone, int(entry["order"]))


def _events(events: list) -> EventList | list[tuple]:
    """A phone's events packed as a phone keeps them (``phones.packed.EventList``: a time,
    a (state, kind) byte and the detail, its text kept once for the fleet): as tuples of
    the JSON's strings a 10,000-phone week's two million events were ~140 MB of the
    parent's memory."""
    kept = EventList()
    add = kept.add
    try:
        for t, state, detail, kind in events:
            add(float(t), intern(state), intern(detail), intern(kind))
    except (ValueError, TypeError):  # not the four fields a phone records: as they are
        return [tuple(event) for event in events]
    return kept


def _stages(stages: list) -> list[StageTiming]:
    try:
        return [StageTiming(intern(stage), started, ended, intern(status), intern(server) if server else server)
                for stage, started, ended, status, server in stages]
    except (ValueError, TypeError):
        return [StageTiming(*stage) for stage in stages]


def check_complete_set(shards: list[dict], absent=frozenset()) -> None:
    """Every shard of one run, each once: the same scenario, seed and shard count (but
    those in ``absent``, which the caller stands in for)."""
    if not shards:
        raise MergeError("no shard reports given")
    first = shards[0]
    count = first["shard"]["count"]
    seen: dict[int, str] = {}
    for shard in shards:
        for key in ("name", "seed"):
            if shard["scenario"][key] != first["scenario"][key]:
                raise MergeError(f"{shard['path']}: scenario {key} {shard['scenario'][key]!r} differs from "
                                 f"{first['scenario'][key]!r} in {first['path']}: not shards of one run")
        if shard.get("clock", "real") != first.get("clock", "real"):
            raise MergeError(f"{shard['path']}: a {shard.get('clock', 'real')}-clock shard, {first['path']} a "
                             f"{first.get('clock', 'real')}-clock one: not shards of one run")
        if shard["shard"]["count"] != count:
            raise MergeError(f"{shard['path']}: shard {shard['shard']['index']}/{shard['shard']['count']} "
                             f"does not belong with {first['path']} (a run of {count} shards)")
        index = shard["shard"]["index"]
        if index in seen:
            raise MergeError(f"{shard['path']}: shard {index}/{count} is also given as {seen[index]}")
        seen[index] = shard["path"]
    missing = sorted(set(range(count)) - set(seen) - set(absent))
    if missing:
        raise MergeError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing: "
                         f"a merge needs every shard's report folder ({len(seen)} of {count} given)")


# --- merging -----------------------------------------------------------------------------


def merged_members(shards: list[dict]) -> list[RecordedMember]:
    members = [member for shard in shards for member in shard["members"]]
    members.sort(key=lambda member: member.order)
    return members


def merged_timeline(shards: list[dict]) -> list[dict]:
    """Each shard's timeline log, said per shard, in time order."""
    entries = []
    for shard in shards:
        label = f"shard {shard['shard']['index']}/{shard['shard']['count']}: "
        entries += [{**entry, "outcome": label + str(entry.get("outcome", ""))} for entry in shard["timeline"]]
    entries.sort(key=lambda entry: entry.get("t", 0))
    return entries


def expectations_of(shard: dict) -> list:
    from labsim.scenario.schema import Expectation, FlashExpectation

    return [FlashExpectation.model_validate(e) if "flash" in e else Expectation.model_validate(e)
            for e in shard["expectations"]]


def row_from_json(line: dict) -> tuple | None:
    """The in-memory row (``observe.events_log``) of one events.jsonl line; None for the
    ``run`` line."""
    kind = line.get("kind")
    if kind == "run":
        return None
    if kind == "dhcp":
        return (line["t"], line["mac"], "dhcp", line["dir"], _DHCP_CODES.get(line["type"], 0),
                int(line["xid"], 16), line["yiaddr"])
    if kind in ("fetch", "upload"):
        return (line["t"], line["mac"], kind, line["url"], line["status"], line["bytes"], line["latency_s"],
                line["detail"], line.get("md5"))
    if kind == "action":
        return (line["t"], None, "action", line["entry"], line["action"], line["outcome"])
    return (line["t"], line["mac"], kind, line["state"], line["detail"])


def read_event_rows(directory: str) -> list[tuple]:
    path = os.path.join(directory, "events.jsonl")
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, 1):
                try:
                    row = row_from_json(json.loads(text))
                except (ValueError, KeyError, TypeError) as exc:
                    raise MergeError(f"{path}:{number}: not an events.jsonl line ({exc!r})") from None
                if row is not None:
                    rows.append(row)
    except FileNotFoundError:
        raise MergeError(f"{path}: missing (every shard writes events.jsonl beside shard.json)") from None
    return rows


def merged_rows(shards: list[dict]) -> list[tuple]:
    """Every shard's events in time order (each file is sorted; ties keep shard order)."""
    return list(heapq.merge(*(read_event_rows(shard["directory"]) for shard in shards), key=lambda row: row[0]))


def end_reason_of(shards: list[dict]) -> str:
    """Why the run ended: each shard's reason once, in shard order; a shard that had no
    phones (a fleet smaller than the shard count) says nothing of the run."""
    speaking = [shard for shard in shards if shard["members"]] or shards
    return "; ".join(dict.fromkeys(shard["end_reason"] for shard in speaking))


def _actions(shard: dict) -> list:
    return [(entry.get("t"), entry.get("entry"), entry.get("action"), entry.get("outcome"))
            for entry in shard["timeline"]]


def merge_event_files(shards: list[dict], report_dir: str, *, complete: bool, end_reason: str, end_t: float,
                      actions_of_first_only: bool = False, chunk_bytes: int = 1 << 22, merge=None) -> str:
    """The shards' events.jsonl merged into one, streamed (``observe.events_merge``): in
    time order, lines at the same time in shard order (then each file's own order), so the
    same shards always give the same bytes. ``actions_of_first_only``: every shard logged
    the same timeline actions, kept once (the first shard's). ``merge``: an
    ``EventsMerge`` of these shards begun while they ran (``--clock virtual --workers``),
    finished here; else one is made over the finished files."""
    from labsim.observe.events_merge import EventsMerge, EventsMergeError

    directories = [os.path.abspath(shard["directory"]) for shard in shards]
    if merge is not None and merge.directories != directories:  # not these shards, or not in this order
        merge.abandon()
        merge = None
    try:
        if merge is None:
            merge = EventsMerge(directories, report_dir, chunk_bytes=chunk_bytes)
        return merge.finish(complete=complete, end_reason=end_reason, end_t=end_t,
                            actions_of_first_only=actions_of_first_only)
    except EventsMergeError as exc:
        merge.abandon()
        raise MergeError(str(exc)) from None


# --- the merged report -------------------------------------------------------------------


def merge_report(shard_dirs: list[str], report_dir: str, stream, *, overrides: dict | None = None,
                 extra_network: dict | None = None, extra_services: dict | None = None,
                 state_dir: str | None = None,
                 pcap_path: str | None = None, stand_ins=None, events_merge=None, usage: list | None = None) -> int:
    """Writes the merged report folder (report.json, events.jsonl, junit.xml,
    report.html) and, when asked, the merged capture and the fleet's flash
    (``--state-dir``). ``overrides`` replaces fields of the run record (a ``--workers``
    parent knows the services' counters, its timeline and why the run ended);
    ``extra_network`` and ``extra_services`` are added to the shards' network and service
    counters (a ``--workers`` parent's own services). ``events_merge``: the merge of the
    shards' events.jsonl begun while they ran (``observe.events_merge``; used only if the
    shards carry their counts, else abandoned). ``usage``, when given, gets each shard's
    ``end_t`` and ``process`` (what it cost) as read. ``stand_ins(index)``, when
    given, stands in for a shard whose report cannot be read (a worker that died): its
    phones as the caller last saw them, and the report is marked incomplete. Returns
    ``run``'s exit code; raises MergeError for shard reports that cannot be merged."""
    shards, lost = [], {}
    collecting = gc.isenabled()
    gc.disable()  # millions of objects parsed, none in a cycle: collections would only walk them (~55 % of the reading)
    try:
        for index, directory in enumerate(shard_dirs):
            try:
                shards.append(load_shard(directory))
            except MergeError as exc:
                if stand_ins is None or len(lost) + 1 == len(shard_dirs):
                    raise
                lost[index] = str(exc)
    finally:
        if collecting:
            gc.enable()
    gc.freeze()  # and the report's own collections need not walk the shards' records either
    try:
        return _merged(shards, lost, report_dir, stream, overrides=overrides, extra_network=extra_network,
                       extra_services=extra_services, state_dir=state_dir, pcap_path=pcap_path, stand_ins=stand_ins,
                       events_merge=events_merge, usage=usage, shard_count=len(shard_dirs))
    finally:
        gc.unfreeze()


def _merged(shards, lost, report_dir, stream, *, overrides, extra_network, extra_services, state_dir, pcap_path,
            stand_ins, events_merge, usage, shard_count) -> int:
    from labsim.fleet.state_dir import save_flash
    from labsim.observe.events_log import write_events
    from labsim.observe.html_report import PageFacts, write_html_report
    from labsim.observe.junit import write_junit
    from labsim.observe.report import RunRecord, build_report, judge, stage_latencies, summary_table, write_report
    from labsim.run import EVENTS_PER_PHONE_IN_REPORT

    check_complete_set(shards, absent=set(lost))
    shards.sort(key=lambda shard: shard["shard"]["index"])
    if usage is not None:
        usage += [{"end_t": shard.get("end_t", 0.0), "process": shard.get("process", {})} for shard in shards]
    members = merged_members(shards)
    if lost:
        members = sorted(members + [member for index in lost for member in stand_ins(index)],
                         key=lambda member: member.order)
    first = shards[0]
    # Virtual-time shards carry their counts (observe.merge_series); real-clock ones are
    # counted again from their events.
    counted = not lost and all("series" in shard for shard in shards)
    timeline, one_timeline = merged_timeline(shards), False
    if counted and all(_actions(shard) == _actions(first) for shard in shards):
        # Every shard ran the whole timeline on its own copy of the lab, with the same
        # outcomes (phones picked over the whole fleet): the run's timeline is one of them.
        timeline, one_timeline = first["timeline"], True
    fields = dict(
        scenario_name=first["scenario"]["name"], scenario_file=first["scenario"]["file"],
        seed=first["scenario"]["seed"], started=min(shard["started"] for shard in shards),
        duration_s=max(shard["duration_s"] for shard in shards), members=members,
        expectations=expectations_of(first),
        notes=first.get("notes", []),
        timeline_entries=first.get("timeline_entries", []),
        services=add_counters([extra_services or {}] + [shard["services"] for shard in shards]),
        network=add_counters([shard["network"] for shard in shards] + [extra_network or {}]),
        timeline=timeline, complete=all(shard["complete"] for shard in shards),
        end_reason=end_reason_of(shards),
        # Virtual-time shards all start at the virtual clock's epoch (their start_at).
        simulated_from=first["start_at"] if first.get("clock") == "virtual" else None,
        calendar_from=first.get("calendar_from", CALENDAR_ORIGIN_S),
        uploads=list({upload["path"]: upload for shard in shards
                      for upload in shard.get("uploads", [])}.values()),  # shards on one host list one folder
    )
    fields.update(overrides or {})
    if lost:
        fields["complete"] = False
        for index, why in lost.items():
            stream.write(f"  labsim: shard {index}/{shard_count} wrote no report ({why}); its phones are "
                         "reported as last seen, without their timelines\n")
    end_t = max(shard["end_t"] for shard in shards)
    if counted:
        from labsim.observe.merge_series import merged_archive, merged_series

        rows = None
        try:
            series = merged_series([shard["series"] for shard in shards], len(members))
            archive = merged_archive([shard.get("stage_archive") or {"latencies": {}, "server_latencies": {},
                                                                     "server_status": {}} for shard in shards])
        except (KeyError, TypeError, ValueError) as exc:
            raise MergeError(f"{first['path']} and the others: their series cannot be merged ({exc})") from None
        for shard in shards:  # their counts are in the merged ones now (at 10,000 phones a week, ~70 MB a shard)
            shard.pop("series"), shard.pop("stage_archive", None)
        fields.update(series=series, stage_archive=archive)
    else:
        rows = merged_rows(shards)
        if overrides and "timeline" in overrides:  # a --workers parent ran the timeline: its actions
            actions = [(e["t"], None, "action", e["entry"], e["action"], e["outcome"])
                       for e in overrides["timeline"]]
            rows = list(heapq.merge(rows, sorted(actions, key=lambda row: row[0]), key=lambda row: row[0]))
        fields["series"] = series_of(rows, len(members), first.get("series_bucket_s", 1))
    fields.update(end_t=end_t, events_cap=EVENTS_PER_PHONE_IN_REPORT)
    record = RunRecord(**fields)
    report = build_report(record, judge(record))
    facts = PageFacts(report)  # what report.html reads of the phones, gathered as report.json is written
    path = write_report(report, report_dir, each_phone=facts.add)
    table = summary_table(report)
    stream.write(table + f"\n  report: {path} (merged from {len(shards)} shards)\n")
    if rows is None:
        merge_event_files(shards, report_dir, complete=report["complete"], end_reason=report["end_reason"],
                          end_t=end_t, actions_of_first_only=one_timeline, merge=events_merge)
    else:
        if events_merge is not None:
            events_merge.abandon()
        write_events(rows, report_dir, complete=report["complete"], end_reason=report["end_reason"], end_t=end_t)
    write_junit(report, report_dir, system_out=table)
    write_html_report(report, report_dir, stage_latencies=stage_latencies(members, record.stage_archive), rows=rows,
                      facts=facts)
    written = ["events.jsonl", "junit.xml", "report.html"]
    if pcap_path:
        from labsim.observe.pcap_merge import merge_pcaps

        captures = [shard.get("pcap") for shard in shards]
        if not all(captures):
            raise MergeError(f"--pcap: shard(s) {', '.join(s['path'] for s, c in zip(shards, captures) if not c)} "
                             "made no capture (run them with --pcap)")
        packets = merge_pcaps(captures, pcap_path)
        written.append(f"capture {pcap_path} ({packets} packets)")
    if state_dir:
        save_flash(state_dir, members)
        written.append(f"flash of {len(members)} phones in {state_dir}")
    stream.write(f"  also written: {', '.join(written)}\n")
    stream.flush()
    return 0 if report["passed"] and report["complete"] else 1


def series_of(rows: list[tuple], phones: int, bucket_s: int):
    """The run's time series (observe.series) rebuilt from the merged rows: each DHCP
    message a phone sent and each request at the second it left, and the phones' states
    over time, exactly as one process counts them while it runs."""
    from labsim.observe.series import TimeSeries

    series = TimeSeries(0, phones)
    series.bucket_s = bucket_s
    state: dict[str, str] = {}
    for row in rows:
        kind = row[2]
        if kind == "dhcp":
            if row[3] == "out":
                series.request("dhcp", row[0])
        elif kind in ("fetch", "upload"):
            series.fetch(row[3], row[0] - row[6])
        elif kind == "state":
            old = state.get(row[1], "off")
            if old != row[3]:
                series.state_changed(row[0], old, row[3])
                state[row[1]] = row[3]
    return series

