"""What the fleet's size means for the rest of a scenario, said before a run starts.

Two parts of a scenario do not grow with its fleet, and a run whose fleet outgrows them
fails for a reason that is the scenario's, not the servers':

- **the DHCP pool.** Phones beyond its room get no lease. A lab may want exactly that (a
  full pool is a lesson), so this is a note, not a refusal;
- **numbers written for the fleet as written.** ``labsim run --phones N`` scales the
  fleets and keeps every other number as written: an expectation or a ``when:`` that
  compares a count growing with the fleet (``phones.ready >= 450``,
  ``stage.mac_cfg.count == 500``, ``service.http.requests_per_min.max < 400``: a server's
  budget or a fleet's count, labsim cannot tell which), or an action on a number of
  phones (``power_cycle: {phones: 50}``). Percentages, per-phone checks and latencies
  scale by themselves and are not named, nor is a count asked to be none or some
  (``service.http.requests == 0 during mon-fri 08:00-18:00``, ``phones.failed >= 1``).

``sizing_notes`` gives each as a :class:`~labsim.scenario.loader.Problem` (file, line,
field, words); ``labsim run`` prints them before the fleet starts and the report keeps
them (``notes``). One thing ``--phones`` can make impossible, fleets whose MACs now run
into each other's, is an error instead (``scaled_fleet_problems``): the run does not start.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from labsim.scenario.checks import mac_problems
from labsim.scenario.expectations import Check, parse_expectation
from labsim.scenario.loader import LoadedScenario, Problem, field_text, marks_of
from labsim.scenario.name_lookup import lookup_notes
from labsim.scenario.yaml_marks import MarkedDocument


def grows_with_fleet(check: Check) -> bool:
    """A count that a larger fleet makes larger: phones in a state (not as a %), reboots
    in all, how many timings a stage has, a service's requests and request rates, the
    fleet's downloads."""
    if check.percent or check.per_phone:
        return False
    metric = check.metric
    return (metric.startswith(("phones.", "service.", "downloads.")) or metric == "reboots.total"
            or metric.endswith(".count"))


def kept_as_written_matters(check: Check) -> bool:
    """Whether a count compared as written says something else once ``--phones`` changes
    the fleet: not when it asks for none or for some (``== 0``, ``< 1``, ``> 0``,
    ``>= 1``: "no request during the day", "a phone failed"), which is the same question
    at any size."""
    if not grows_with_fleet(check):
        return False
    return not (check.value == 0 or (check.value == 1 and check.op in ("<", ">=")))


def pool_room(dhcp, start: str, end: str) -> int:
    """Addresses the server may lease dynamically from ``start``..``end``: all of them but
    the reserved ones and its own."""
    excluded = {int(ipaddress.IPv4Address(ip)) for ip in dhcp.reservations.values()}
    if dhcp.server_id or dhcp.address:
        try:
            excluded.add(int(ipaddress.IPv4Address(dhcp.server_id or dhcp.address)))
        except ValueError:
            pass
    first, last = int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(end))
    return last - first + 1 - sum(1 for ip in excluded if first <= ip <= last)


def reserved_macs(dhcp) -> set[str]:
    """The MACs ``dhcp.reservations`` names, as the fleet writes them."""
    return {mac.lower().replace("-", ":") for mac in dhcp.reservations}


def phones_needing_a_lease(scenario) -> int:
    """Phones that lease from the pool: the fleet but those with a reservation."""
    reserved = reserved_macs(scenario.services.dhcp)
    if not reserved:
        return sum(fleet.total for fleet in scenario.fleets)
    from labsim.fleet.fleet import fleet_macs

    return sum(1 for mac in fleet_macs(scenario) if mac not in reserved)


def sizing_notes(loaded: LoadedScenario, doc: MarkedDocument, written_phones: int) -> list[Problem]:
    """The notes for ``loaded`` (its fleets possibly scaled by ``--phones``), placed in the
    file by ``doc`` (the file as read); ``written_phones``: the fleet the file describes."""
    scenario = loaded.scenario
    running = sum(fleet.total for fleet in scenario.fleets)
    notes = []

    def note(path: tuple, message: str) -> None:
        notes.append(Problem(loaded.path, doc.mark_for(path), field_text(path), message))

    dhcp = scenario.services.dhcp
    if dhcp is not None:
        room, needing = pool_room(dhcp, dhcp.pool.start, dhcp.pool.end), phones_needing_a_lease(scenario)
        if needing > room:
            note(("services", "dhcp", "pool"),
                 f"{dhcp.pool.start}-{dhcp.pool.end} holds {room:,} address(es) for the {needing:,} phones that "
                 f"lease one: {needing - room:,} will get no lease while the others hold theirs "
                 "(the server counts pool_exhausted)")
    if running == written_phones:
        return notes
    scaled = f"written for {written_phones:,} phones; --phones runs {running:,}: kept as written"
    data = doc.data if isinstance(doc.data, dict) else {}
    for key, items in (("expect", scenario.expect), ("lab", scenario.lab.check if scenario.lab else [])):
        for index, item in enumerate(items):
            if hasattr(item, "flash"):
                continue  # judged on every phone it selects: no count
            text = item if isinstance(item, str) else item.check
            if not kept_as_written_matters(parse_expectation(text)):
                continue
            path = (key, index) if key == "expect" else ("lab", "check", index)
            if not isinstance(item, str):
                path += ("check",)
            note(path, f"'{text}' compares a count that grows with the fleet, {scaled}")
    raw_timeline = data.get("timeline") if isinstance(data.get("timeline"), list) else []
    for index, entry in enumerate(scenario.timeline):
        if entry.when is not None and kept_as_written_matters(parse_expectation(entry.when)):
            note(("timeline", index, "when"), f"'{entry.when}' compares a count that grows with the fleet, {scaled}")
        raw = raw_timeline[index] if index < len(raw_timeline) and isinstance(raw_timeline[index], dict) else {}
        listed = isinstance(raw.get("do"), list)
        for number, action in enumerate(entry.actions()):
            count = getattr(action.argument, "phones", None)
            if isinstance(count, int) and not isinstance(count, bool):
                path = ("timeline", index, "do") + ((number,) if listed else ()) + (action.kind, "phones")
                note(path, f"{action.kind} acts on {count:,} phones, {scaled}"
                     + (f" (all {running:,} of them)" if count >= running else ""))
    return sorted(notes, key=lambda note: (note.mark.line, note.mark.column) if note.mark else (0, 0))


def scaled_fleet_problems(loaded: LoadedScenario) -> list[Problem]:
    """What makes ``loaded``'s fleets, scaled by ``--phones``, impossible to build: a
    fleet whose MACs now run into the next fleet's (or past the last MAC). An error, as
    ``labsim validate`` gives it for a file: the run does not start."""
    fleets = [{"name": fleet.name, "first_mac": fleet.first_mac, "models": fleet.model_counts()}
              for fleet in loaded.scenario.fleets]
    problems = mac_problems(fleets)
    if not problems:
        return []
    doc = marks_of(loaded.path)
    spans = ", ".join(f"{fleet['name'] or f'fleets[{index}]'} {sum(fleet['models'].values()):,} from "
                      f"{fleet['first_mac']}" for index, fleet in enumerate(fleets))
    return [Problem(loaded.path, doc.mark_for(path), field_text(path),
                    f"{message} once --phones scales them ({spans}): set the fleets' first_mac further apart, "
                    "or run fewer phones") for path, message in problems]


def noted(loaded: LoadedScenario, written_phones: int) -> LoadedScenario:
    """``loaded`` with its notes, placed in its file as it reads now: ``sizing_notes``,
    then the host names the lab cannot look up (scenario.name_lookup)."""
    doc = marks_of(loaded.path)
    notes = [str(problem) for problem in sizing_notes(loaded, doc, written_phones)]
    data = doc.data if isinstance(doc.data, dict) else {}
    for path, message in lookup_notes(data, loaded.scenario):
        notes.append(str(Problem(loaded.path, doc.mark_for(path), field_text(path), message)))
    return dataclasses.replace(loaded, notes=tuple(notes))
