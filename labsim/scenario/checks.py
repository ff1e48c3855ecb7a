"""Checks that span several parts of a scenario (fleets against each other, templates
against fleets). They run on the raw data even when other parts of the file are invalid,
so one ``labsim validate`` shows every problem, each at the place that causes it."""

from __future__ import annotations

from labsim.scenario.schema import MAC_PATTERN

MAC_SPACE = 1 << 48


def cross_checks(data: dict) -> list[tuple[tuple, str]]:
    """(path, message) for every cross-part problem found."""
    problems: list[tuple[tuple, str]] = []
    fleets = data.get("fleets") if isinstance(data.get("fleets"), list) else []
    ranges: list[tuple[int, int, str]] = []
    names: dict[str, int] = {}
    for index, fleet in enumerate(fleets):
        if not isinstance(fleet, dict):
            continue
        label = fleet.get("name") if isinstance(fleet.get("name"), str) else f"fleets[{index}]"
        if isinstance(fleet.get("name"), str):
            if fleet["name"] in names:
                problems.append(((("fleets", index, "name")),
                                 f"fleet names must be unique: {fleet['name']!r} is already used by fleets[{names[fleet['name']]}]"))
            else:
                names[fleet["name"]] = index
        span = _mac_span(fleet)
        if span is None:
            continue
        start, end = span
        if end > MAC_SPACE:
            problems.append((("fleets", index, "first_mac"),
                             f"{end - start} MACs from {fleet['first_mac']} run past ff:ff:ff:ff:ff:ff"))
        for other_start, other_end, other in ranges:
            if start < other_end and other_start < end:
                problems.append((("fleets", index, "first_mac"),
                                 f"fleet {label!r} has overlapping MAC ranges with fleet {other!r}"))
        ranges.append((start, end, label))
    provisioning = data.get("provisioning") if isinstance(data.get("provisioning"), dict) else {}
    templates = provisioning.get("per_phone") if isinstance(provisioning.get("per_phone"), list) else []
    for index, template in enumerate(templates):
        wanted = template.get("fleets") if isinstance(template, dict) else None
        if not isinstance(wanted, list):
            continue
        for position, name in enumerate(wanted):
            if name not in names:
                problems.append((("provisioning", "per_phone", index, "fleets", position),
                                 f"no fleet is named {name!r}; fleets: {', '.join(names) or '(none named)'}"))
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    network = data.get("network") if isinstance(data.get("network"), dict) else {}
    if services.get("dhcp") is None and network.get("dhcp_server") is None:
        problems.append(((), "no DHCP server: add services.dhcp, or network.dhcp_server for a real one"))
    return problems


def _mac_span(fleet: dict) -> tuple[int, int] | None:
    mac = fleet.get("first_mac")
    if not isinstance(mac, str) or not MAC_PATTERN.match(mac):
        return None
    counts = fleet.get("models") if isinstance(fleet.get("models"), dict) else {fleet.get("model"): fleet.get("count")}
    if not all(isinstance(count, int) and count > 0 for count in counts.values()):
        return None
    start = int(mac.replace(":", "").replace("-", ""), 16)
    return start, start + sum(counts.values())
