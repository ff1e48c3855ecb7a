"""Checks that span several parts of a scenario (fleets against each other, templates
against fleets). They run on the raw data even when other parts of the file are invalid,
so one ``labsim validate`` shows every problem, each at the place that causes it."""

from __future__ import annotations

import posixpath
from functools import partial

from labsim.phones.vendors import VENDORS, timed_stages
from labsim.scenario import schema
from labsim.scenario.expectations import BadExpectation, parse_expectation
from labsim.scenario.network_rules import network_problems
from labsim.scenario.schema import MAC_PATTERN
from labsim.scenario.suggest import did_you_mean
from labsim.scenario.yaml_marks import MarkedDocument

MAC_SPACE = 1 << 48


def cross_checks(data: dict, read_file=None) -> list[tuple[tuple, str]]:
    """(path, message) for every cross-part problem found. ``read_file(path)``: the bytes
    of a file at ``path`` relative to the scenario file, or None; without it, the checks
    that would read the provisioning folder's files judge by the scenario's text alone."""
    problems: list[tuple[tuple, str]] = []
    fleets = data.get("fleets") if isinstance(data.get("fleets"), list) else []
    names: dict[str, int] = {}
    for index, fleet in enumerate(fleets):
        if not isinstance(fleet, dict):
            continue
        if isinstance(fleet.get("name"), str):
            if fleet["name"] in names:
                problems.append(((("fleets", index, "name")),
                                 f"fleet names must be unique: {fleet['name']!r} is already used by fleets[{names[fleet['name']]}]"))
            else:
                names[fleet["name"]] = index
    problems += mac_problems(fleets)
    provisioning = data.get("provisioning") if isinstance(data.get("provisioning"), dict) else {}
    templates = provisioning.get("per_phone") if isinstance(provisioning.get("per_phone"), list) else []
    for index, template in enumerate(templates):
        wanted = template.get("fleets") if isinstance(template, dict) else None
        if isinstance(wanted, list):
            for position, name in enumerate(wanted):
                if name not in names:
                    problems.append((("provisioning", "per_phone", index, "fleets", position),
                                     f"no fleet is named {name!r}; fleets: {', '.join(names) or '(none named)'}"))
        problems += _encrypted_for_others(index, template, fleets)
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    network = data.get("network") if isinstance(data.get("network"), dict) else {}
    if services.get("dhcp") is None and network.get("dhcp_server") is None and network.get("interface") is None:
        problems.append(((), "no DHCP server: add services.dhcp, or network.dhcp_server for a real one"))
    problems += network_problems(network)  # where the run may send: loopback, or interface + allow
    problems += nothing_to_act_on(data, fleets)
    problems += stage_problems(data, fleets, read_file)
    return problems


# A per-phone template's way to encrypt its files -> the vendor whose phones read them.
ENCRYPTING_KEYS = {"yealink_aes_key": "yealink", "cisco_key": "cisco"}


def _encrypted_for_others(index: int, template, fleets: list) -> list[tuple[tuple, str]]:
    """A per-phone template encrypted for one vendor's phones (``yealink_aes_key``,
    ``cisco_key``) that makes files for a fleet of another vendor: those phones would get
    files they cannot read."""
    if not isinstance(template, dict):
        return []
    problems = []
    for field, vendor in ENCRYPTING_KEYS.items():
        if template.get(field) is None:
            continue
        wanted = template.get("fleets") if isinstance(template.get("fleets"), list) else None
        others = [f"{repr(fleet['name']) if fleet.get('name') else f'fleets[{number}]'} ({fleet['vendor']})"
                  for number, fleet in enumerate(fleets)
                  if isinstance(fleet, dict) and isinstance(fleet.get("vendor"), str) and fleet["vendor"] != vendor
                  and (wanted is None or fleet.get("name") in wanted)]
        if others:
            problems.append((("provisioning", "per_phone", index, field),
                             f"encrypts each file for {vendor.capitalize()} phones, but this template also makes "
                             f"files for {' and '.join(others)}, which could not read them: list only "
                             f"{vendor.capitalize()} fleets in its fleets:"))
    return problems


def _expectation_texts(data: dict):
    """(path, text) of every expectation-grammar string in the file: ``expect``, the lab's
    ``check`` (each a string or a {name, check}) and the timeline's ``when:`` conditions."""
    lab = data.get("lab") if isinstance(data.get("lab"), dict) else {}
    for path, items in ((("expect",), data.get("expect")), (("lab", "check"), lab.get("check"))):
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, str):
                yield path + (index,), item
            elif isinstance(item, dict) and isinstance(item.get("check"), str):
                yield path + (index, "check"), item["check"]
    timeline = data.get("timeline") if isinstance(data.get("timeline"), list) else []
    for index, entry in enumerate(timeline):
        if isinstance(entry, dict) and isinstance(entry.get("when"), str):
            yield ("timeline", index, "when"), entry["when"]


def stage_problems(data: dict, fleets: list, read_file=None) -> list[tuple[tuple, str]]:
    """A ``stage.<name>.<stat>`` no phone of the scenario times (``stage.mac_cgf.p95``):
    the run would judge it on no data and fail it, for the file's reason. The names
    allowed are every phone's stages and those of the fleets' vendors, with those a
    vendor's files name (Avaya's model file sections) as the scenario's copies of them
    give them; when it holds no copy, any name is allowed. ``read_file(path)``: the bytes
    of a file beside the scenario, or None (see ``copies_in_scenario``)."""
    if not fleets or not all(isinstance(fleet, dict) and isinstance(fleet.get("vendor"), str)
                             and fleet["vendor"] in VENDORS for fleet in fleets):
        return []  # no fleet, or a vendor the fleet's own check refuses (a mapping, a typo): nothing to judge by
    vendors = list(dict.fromkeys(fleet["vendor"] for fleet in fleets))
    allowed = list(dict.fromkeys(name for vendor in vendors for name in timed_stages(vendor)))
    copies_of = partial(copies_in_scenario, data, read_file)
    for fleet in fleets:
        in_files = getattr(VENDORS[fleet["vendor"]], "stages_in_files", None)
        for model in _models_of(fleet) if in_files else ():
            more = in_files(model, copies_of) if model in VENDORS[fleet["vendor"]].MODELS else None
            if more is None:
                return []  # its files are elsewhere, or the model is the fleet's own problem: any name may be timed
            allowed += [name for name in more if name not in allowed]
    problems = []
    for path, text in _expectation_texts(data):
        try:
            metric = parse_expectation(text).metric
        except BadExpectation:
            continue  # the expectation's own check says what is wrong with it
        parts = metric.split(".")
        if parts[0] == "stage" and parts[1] not in allowed:
            problems.append((path, f"no {' or '.join(vendors)} phone times a stage {parts[1]!r}"
                                   f"{did_you_mean(parts[1], allowed)}; the stages it times: {', '.join(allowed)}"))
    return problems


def _models_of(fleet: dict) -> list[str]:
    """A fleet's models as text: ``model``, or the keys of ``models``."""
    models = fleet["models"] if isinstance(fleet.get("models"), dict) else [fleet.get("model")]
    return [str(model) for model in models if model is not None]


def copies_in_scenario(data: dict, read_file, name: str) -> list[bytes]:
    """The texts the scenario may serve as provisioning file ``name``: from
    ``provisioning.files``, ``provisioning.directory`` (through ``read_file``, given a path
    relative to the scenario file; None when there is no file) and the timeline's
    ``replace_file`` actions."""
    provisioning = data.get("provisioning") if isinstance(data.get("provisioning"), dict) else {}
    files = provisioning.get("files") if isinstance(provisioning.get("files"), dict) else {}
    copies = [files[name]] if isinstance(files.get(name), str) else []
    directory = provisioning.get("directory")
    if read_file is not None and isinstance(directory, str) and name not in files:
        copies.append(read_file(posixpath.join(directory, name)))
    timeline = data.get("timeline") if isinstance(data.get("timeline"), list) else []
    for entry in timeline:
        actions = entry.get("do") if isinstance(entry, dict) else None
        for action in actions if isinstance(actions, list) else [actions]:
            replace = action.get("replace_file") if isinstance(action, dict) else None
            if isinstance(replace, dict) and replace.get("name") == name and isinstance(replace.get("text"), str):
                copies.append(replace["text"])
    return [copy.encode() if isinstance(copy, str) else copy for copy in copies if copy is not None]


def _fleet_names_and_models(fleets: list) -> tuple[set, set]:
    """The fleets' names (an unnamed one's as fleet.fleet_name gives it) and models."""
    names = {(fleet.get("name") if isinstance(fleet.get("name"), str) else f"fleet{index + 1}")
             for index, fleet in enumerate(fleets) if isinstance(fleet, dict)}
    models = set()
    for fleet in fleets:
        if isinstance(fleet, dict):
            models |= set(fleet["models"]) if isinstance(fleet.get("models"), dict) else {fleet.get("model")}
    return names, {str(model) for model in models if model is not None}


def _selection_problems(path: tuple, selection: dict, names: set, models: set) -> list[tuple[tuple, str]]:
    """A phone selection (a timeline action's, a flash check's) naming a fleet or a model
    the scenario has not: it would select no phone."""
    problems = []
    if isinstance(selection.get("fleet"), str) and selection["fleet"] not in names:
        problems.append((path + ("fleet",), f"no fleet is named {selection['fleet']!r}; fleets: {', '.join(sorted(names))}"))
    if selection.get("model") is not None and str(selection["model"]) not in models:
        problems.append((path + ("model",), f"no fleet has model {selection['model']!r}; models: "
                                            f"{', '.join(sorted(models))}"))
    return problems


_SERVICE_ACTIONS = ("stop_service", "start_service", "restart_service")
_PHONE_ACTIONS = ("power_cycle", "factory_reset", "check_sync")


def nothing_to_act_on(data: dict, fleets: list) -> list[tuple[tuple, str]]:
    """Timeline actions that would find nothing to act on (a service the scenario does
    not run, a fault no part of it names, a fleet or a model it has not), faults on a
    service the scenario does not run (but DHCP, whose faults act on the fleet's own DHCP
    link, a fault acts inside labsim's service, not on a real server's traffic), and
    flash checks that would select no phone. Each would
    run and do nothing, or fail for a reason that is the file's, so each is refused at
    its place."""
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    # A key that is no service name (66, a misplaced option) is the schema's problem to report.
    running = sorted(name for name, spec in services.items() if isinstance(name, str) and spec is not None)
    timeline = data.get("timeline") if isinstance(data.get("timeline"), list) else []
    fleet_names, models = _fleet_names_and_models(fleets)
    fault_names = {fault.get("name") for fault in (data.get("faults") if isinstance(data.get("faults"), list) else [])
                   if isinstance(fault, dict)}
    actions = []
    for index, entry in enumerate(timeline):
        steps = entry.get("do") if isinstance(entry, dict) else None
        for number, action in enumerate(steps if isinstance(steps, list) else [steps]):
            if isinstance(action, dict):
                path = ("timeline", index, "do") + ((number,) if isinstance(steps, list) else ())
                actions += [(path + (kind,), kind, value) for kind, value in action.items()]
    fault_names |= {value.get("name") for _, kind, value in actions if kind == "add_fault" and isinstance(value, dict)}
    problems = []
    faults = data.get("faults") if isinstance(data.get("faults"), list) else []
    for path, fault in [(("faults", index), fault) for index, fault in enumerate(faults)] + [
            (path, value) for path, kind, value in actions if kind == "add_fault"]:
        service = fault.get("service") if isinstance(fault, dict) else None
        # DHCP faults act on the fleet's DHCP link, for any server; the others inside labsim's service.
        if isinstance(service, str) and service in SERVICE_SOCKETS and service != "dhcp" and service not in running:
            problems.append((path + ("service",), f"the scenario runs no {service} service, and a {service} fault acts "
                                                  "inside labsim's own (only dhcp faults act on the fleet's side, for "
                                                  f"any server; services: {', '.join(running) or 'none'})"))
    for path, kind, value in actions:
        if kind in _SERVICE_ACTIONS and isinstance(value, str) and value not in running and value in SERVICE_SOCKETS:
            problems.append((path, f"the scenario runs no {value} service (services: {', '.join(running) or 'none'})"))
        elif kind == "remove_fault" and isinstance(value, str) and value != "all" and value not in fault_names:
            named = sorted(name for name in fault_names if isinstance(name, str))
            problems.append((path, f"no fault is named {value!r}; named faults: {', '.join(named) or 'none'} "
                                   "(faults[].name, or a timeline add_fault's name)"))
        elif kind in _PHONE_ACTIONS and isinstance(value, dict):
            problems += _selection_problems(path, value, fleet_names, models)
    # A flash check on a fleet or a model the scenario has not selects no phone (and fails).
    lab = data.get("lab") if isinstance(data.get("lab"), dict) else {}
    for key, items in (("expect", data.get("expect")), ("lab", lab.get("check"))):
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and isinstance(item.get("flash"), dict):
                path = (key, index, "flash") if key == "expect" else ("lab", "check", index, "flash")
                problems += _selection_problems(path, item["flash"], fleet_names, models)
    return problems


def mac_problems(fleets: list) -> list[tuple[tuple, str]]:
    """(path, message) for each fleet whose MACs run past the last one, into multicast
    addresses or into another fleet's. ``fleets``: the file's fleets (mappings), or a
    scaled scenario's as such (``scenario.sizing``)."""
    problems: list[tuple[tuple, str]] = []
    ranges: list[tuple[int, int, str]] = []
    for index, fleet in enumerate(fleets):
        if not isinstance(fleet, dict):
            continue
        label = fleet.get("name") if isinstance(fleet.get("name"), str) else f"fleets[{index}]"
        span = _mac_span(fleet)
        if span is None:
            continue
        start, end = span
        if end > MAC_SPACE:
            problems.append((("fleets", index, "first_mac"),
                             f"{end - start} MACs from {fleet['first_mac']} run past ff:ff:ff:ff:ff:ff"))
        elif not (start >> 40) & 1 and (end - 1) >> 40 != start >> 40:
            # Past xx:ff:ff:ff:ff:ff the first byte turns odd: group (multicast) addresses.
            problems.append((("fleets", index, "first_mac"),
                             f"{end - start} MACs from {fleet['first_mac']} run into multicast addresses "
                             f"({(start >> 40) + 1:02x}:00:00:00:00:00 ...)"))
        for other_start, other_end, other in ranges:
            if start < other_end and other_start < end:
                problems.append((("fleets", index, "first_mac"),
                                 f"fleet {label!r} has overlapping MAC ranges with fleet {other!r}"))
        ranges.append((start, end, label))
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


# --- services that would listen on the same socket -------------------------------------

# What each service's address:port binds. DNS binds both (RFC 7766: a client whose UDP
# answer was truncated retries over TCP on the same port). FTP's passive data ports and
# the interface sockets of DHCP and PnP (namespace labs, bound to a device) are not here.
SERVICE_SOCKETS = {
    "dhcp": (schema.DhcpService, ("UDP",)),
    "tftp": (schema.TftpService, ("UDP",)),
    "http": (schema.HttpService, ("TCP",)),  # HTTPS too: same service, tls on
    "ftp": (schema.FtpService, ("TCP",)),
    "pnp": (schema.PnpService, ("UDP",)),
    "dns": (schema.DnsService, ("UDP", "TCP")),
}
ANY_ADDRESS = "0.0.0.0"


def port_clashes(doc: MarkedDocument) -> list[tuple[tuple, str]]:
    """(path, message) for each pair of services that would bind the same transport,
    port and address (or one of them every address): the second to start fails with
    "address in use", or, for two UDP sockets that both set SO_REUSEADDR, they share
    the port and each gets part of the other's datagrams. Read from the raw data with
    the schema's defaults, so it runs even when another part of the file is invalid;
    a value of the wrong type is skipped here (the schema reports it)."""
    data = doc.data if isinstance(doc.data, dict) else {}
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    bound: list[tuple[str, str, int, tuple[str, ...]]] = []
    problems = []
    for name, (model, transports) in SERVICE_SOCKETS.items():
        spec = services.get(name)
        if not isinstance(spec, dict):
            continue
        address = spec.get("address", model.model_fields["address"].default)
        port = spec.get("port", model.model_fields["port"].default)
        if not isinstance(address, str) or type(port) is not int or not 0 < port < 65536:
            continue  # port 0 asks the kernel for a free one: it cannot clash
        for other, other_address, other_port, other_transports in bound:
            shared = [t for t in transports if t in other_transports]
            same_address = address == other_address or ANY_ADDRESS in (address, other_address)
            if not shared or port != other_port or not same_address:
                continue
            problems.append(_clash(doc, services, (name, address), (other, other_address), port, shared))
        bound.append((name, address, port, transports))
    return problems


def _clash(doc: MarkedDocument, services: dict, one: tuple[str, str], other: tuple[str, str], port: int,
           shared: list[str]) -> tuple[tuple, str]:
    """The problem placed at the port the user wrote (of the two, the later in the file),
    naming the other with its line, or "(default)" when the file does not set it."""
    def written(name: str) -> bool:
        return "port" in services[name]

    def line(name: str) -> int:
        mark = doc.mark_for(("services", name, "port"))
        return mark.line if mark else 0

    (here, here_address), (there, there_address) = sorted(
        (one, other), key=lambda service: (written(service[0]), line(service[0])), reverse=True)
    where = f"line {line(there)}" if written(there) else "its default"
    return (("services", here, "port"),
            f"port {port} clashes with services.{there}.port ({where}): both listen on {'/'.join(shared)} "
            f"{port} at {_address_text(here_address, there_address)}; give one of them another port or address")


def _address_text(one: str, other: str) -> str:
    if one == other:
        return one
    return f"{one} and {other} ({ANY_ADDRESS} is every address)"
