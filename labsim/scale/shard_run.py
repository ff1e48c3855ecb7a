"""One shard of a run: ``labsim run FILE --shard i/N [--start-at T]``.

A shard runs only its phones (``labsim.fleet.shard``) and none of the scenario's
services: those run elsewhere, once for the whole fleet — ``labsim serve FILE`` or real
servers (a Kubernetes Job), or the parent of ``--workers``. The phones reach them at the
addresses the scenario gives (or ``targets`` a ``--workers`` parent sends, for ports it
bound itself). Every shard counts time from one shared start instant, so N shards are
one storm. Each shard relays DHCP from its own address (``relay_address_for``).

At the end a shard writes its report folder like a run does, plus ``shard.json``
(``observe.merge``), from which ``labsim merge`` builds the fleet's one report.

Standing alone, a shard cannot see the other shards' phones, so a timeline ``when:``
(judged on the whole fleet) or an action on the lab's services or files is refused
before anything starts; timed phone actions (``power_cycle``, ``factory_reset``,
``check_sync``) pick phones over the whole fleet exactly as one process would, and each
shard applies them to the picked phones it holds. Under ``--workers`` (``coordinated``)
the parent runs the timeline and decides when the run ends.
"""

from __future__ import annotations

import dataclasses
import os

from twisted.internet import defer

from labsim.fleet.fleet import build_fleets
from labsim.fleet.shard import relay_address_for, roster
from labsim.observe.merge import shard_record, shard_report_fields, write_shard_record
from labsim.run import ScenarioRun, _LabControl

PHONE_ACTIONS = ("power_cycle", "factory_reset", "check_sync")


def refuse_real_network(scenario, option: str) -> None:
    """Real-network mode (network.interface) under --workers: the parent's services and
    the phones' segment are not split yet. A --shard takes broadcast mode (its share of the
    rate cap, ``shard_share_of_rate``) but not relay mode, where every shard would relay
    from the interface's one address on a host."""
    network = scenario.network
    if not network.interface:
        return
    if option == "--workers":
        raise ValueError("--workers: network.interface (real-network mode) runs in one process, or in shards "
                         "(--shard i/N, each with its share of network.dhcp_rate)")
    if network.dhcp_mode == "relay":
        raise ValueError("--shard: network.dhcp_mode relay relays from the interface's address, which shards "
                         "on one host would share; use dhcp_mode broadcast, or run without --shard")


def shard_share_of_rate(loaded, shard):
    """The scenario a shard runs in real-network mode: network.dhcp_rate is the run's cap,
    so each of N shards sends at most 1/N of it (together, what one process would)."""
    network = loaded.scenario.network
    if not network.interface or shard.count == 1:
        return loaded
    shared = network.model_copy(update={"dhcp_rate": network.dhcp_rate / shard.count})
    return dataclasses.replace(loaded, scenario=loaded.scenario.model_copy(update={"network": shared}))


def refuse_uncoordinated_timeline(scenario) -> None:
    """A standalone shard's timeline may only act on phones, at set times."""
    for number, entry in enumerate(scenario.timeline, 1):
        label = f"timeline entry {number}" + (f" ({entry.name})" if entry.name else "")
        if entry.when is not None:
            raise ValueError(f"--shard: {label} waits for 'when: {entry.when}', a condition on the whole fleet, "
                             "which one shard cannot see; use --workers on one machine, or 'at:'")
        for action in entry.actions():
            if action.kind not in PHONE_ACTIONS:
                raise ValueError(f"--shard: {label} does {action.kind}, which acts on the lab's services or files; "
                                 "a shard runs none (they run once, elsewhere): use --workers, or run it without "
                                 "--shard")


def refuse_unknown_ports(scenario) -> None:
    """A service on ``port: 0`` gets its port when ``labsim serve`` starts: a standalone
    shard cannot know it (its phones would send to port 0)."""
    network = scenario.network
    overridden = {"dhcp": network.dhcp_server and network.dhcp_port, "dns": network.dns_server,
                  "pnp": network.pnp_server}
    for name in ("dhcp", "dns", "pnp"):
        spec = getattr(scenario.services, name, None)
        if spec is not None and spec.port == 0 and not overridden[name]:
            raise ValueError(f"--shard: services.{name}.port is 0, a port only the process serving it knows; "
                             f"give the port it listens on (see labsim serve --ports-file)")


class _ExternalServices:
    """Stands where LabServices would: the services run elsewhere."""

    root = None

    def start(self):
        return defer.succeed(None)

    def describe(self) -> str:
        return ""

    def stats(self) -> dict:
        return {}

    def stop(self):
        return defer.succeed(None)


class _Absent:
    """A phone of another shard: the timeline may pick it; this shard does not run it."""

    def __init__(self, entry):
        self.fleet, self.phone = entry.fleet, entry.phone

    def deliver(self, event) -> None:
        pass


class ShardOfTheFleet:
    """What shard ``i`` of ``N`` does differently from a whole run, on either clock (mixed
    in before ScenarioRun or VirtualScenarioRun): it builds only its phones, leaves the
    flash and (for a --workers shard) the judging to the merge of every shard."""

    EVENTS_INDEX = True  # the merge copies this shard's events.jsonl by its index (observe.events_index)

    def _build_members(self, saved_flash):
        return build_fleets(self.scenario, saved_flash, shard=self.shard)

    def _save_state(self) -> None:
        pass  # the merge saves the whole fleet's flash (labsim merge --state-dir)

    def _report(self, record) -> str:
        if not self.light_outputs:
            return super()._report(record)
        self.report = shard_report_fields(record)  # the parent judges the whole fleet from shard.json
        return ""


class ShardRun(ShardOfTheFleet, ScenarioRun):
    def __init__(self, reactor, loaded, *, shard, start_at: float | None = None, targets: dict | None = None,
                 relay_address: str | None = None, coordinated: bool = False, light_outputs: bool = False,
                 lab: dict | None = None, **kw):
        self.shard = shard
        self.lab = lab  # a --workers worker: the file services it serves too (scale/shared_services.py)
        self.lab_services = None
        self.start_at = start_at
        self.targets = targets or {}
        self.coordinated = coordinated
        self.ends_at_its_duration = not coordinated  # under --workers the parent ends the run, at the duration too
        self.light_outputs = light_outputs  # a --workers shard: the parent writes junit and HTML
        self.changes = None  # a coordinated shard's listener: (driver, old, new)
        refuse_real_network(loaded.scenario, "--workers" if coordinated else "--shard")
        loaded = shard_share_of_rate(loaded, shard)
        if not coordinated:
            refuse_uncoordinated_timeline(loaded.scenario)
            refuse_unknown_ports(loaded.scenario)
        super().__init__(reactor, loaded, **kw)
        self.relay_address = relay_address or relay_address_for(self.scenario.network.relay_address, shard)
        self.counter.listeners.append(self._changed)

    def start_lab_services(self) -> None:
        """A --workers worker joins the parent's file service ports before it says Hello."""
        if self.lab:
            from labsim.scale.shared_services import start_worker_services

            self.lab_services = start_worker_services(self, self.lab)

    def _start_services(self):
        self._services = self.lab_services or _ExternalServices()
        return defer.succeed(None)

    def _start_instant(self) -> float:
        now = self.reactor.seconds()
        if self.start_at is None:
            return now
        if self.start_at < now - 1.0:
            self.stream.write(f"labsim: shard {self.shard}: the start instant passed {now - self.start_at:.1f}s "
                              "ago: phones due by now power on at once\n")
        return self.start_at

    def _make_timeline(self):
        if self.coordinated or not self.scenario.timeline:
            return None
        return self._timeline(_ShardControl(self))

    def _target(self, name: str, spec_address, spec_port):
        if name in self.targets:
            host, port = self.targets[name]
            return host, int(port)
        if spec_address is None:
            return None
        return spec_address, spec_port

    def _dhcp_target(self) -> tuple[str, int]:
        network, dhcp = self.scenario.network, self.scenario.services.dhcp
        if "dhcp" in self.targets:
            return self._target("dhcp", None, None)
        return network.dhcp_server or dhcp.address, network.dhcp_port or (dhcp.port if dhcp is not None else 67)

    def _dns_target(self):
        from labsim.scenario.schema import parse_host_port

        if self.scenario.network.dns_server:
            return parse_host_port(self.scenario.network.dns_server, 53)
        dns = self.scenario.services.dns
        return self._target("dns", dns and dns.address, dns and dns.port)

    def _pnp_target(self):
        from labsim.scenario.schema import parse_host_port

        if self.scenario.network.pnp_server:
            return parse_host_port(self.scenario.network.pnp_server, 5060)
        pnp = self.scenario.services.pnp
        return self._target("pnp", pnp and pnp.address, pnp and pnp.port)

    def _changed(self, driver, old: str, new: str) -> None:
        if self.changes is not None:
            self.changes(driver, old, new)

    def _end_if_settled(self) -> None:
        if not self.coordinated:  # under --workers the parent decides when the run ends
            super()._end_if_settled()

    def _write_outputs(self, table: str) -> None:
        end_t = self.reactor.seconds() - self._epoch if self._epoch else 0.0
        record = shard_record(shard=self.shard, scenario=self.scenario, scenario_file=self.loaded.path,
                              members=self.members, report=self.report, start_at=self._epoch, end_t=end_t,
                              series_bucket_s=self.series.bucket_s, notes=self.loaded.notes)
        record["pcap"] = os.path.abspath(self.pcap_path) if self.pcap_path else None
        write_shard_record(record, self.report_dir)
        if not self.light_outputs:
            super()._write_outputs(table)
            return
        self._write_event_file(end_t)
        if self._capture is not None:  # a lab a dashboard keeps open keeps capturing
            self._capture.close() if self.closed else self._capture.flush()


class _ShardControl(_LabControl):
    """A standalone shard's timeline: phones picked over the whole fleet, as one process
    would pick them (same order, same random stream); only its own are acted on."""

    def __init__(self, run: ShardRun):
        super().__init__(run)
        own = {driver.phone.mac: driver for driver in run._drivers}
        self._fleet = [own.get(entry.phone.mac) or _Absent(entry)
                       for entry in roster(run.scenario, run.shard.count)]

    def drivers(self):
        return self._fleet

