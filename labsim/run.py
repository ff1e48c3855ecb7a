"""One run of a scenario: start the services, boot the fleet, judge, report.

Everything happens on one reactor in one process. The run ends when every phone has
settled (ready or failed), when the time limit passes, or on Ctrl-C / SIGTERM; the
report is written in every case, marked incomplete when the run did not finish.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone

from twisted.internet import defer

from labsim.fleet.fleet import build_fleets
from labsim.observe.progress import ProgressPrinter, StateCounter
from labsim.observe.report import RunRecord, build_report, judge, summary_table, write_report
from labsim.services.lab import LabServices
from labsim.transport.driver import PhoneDriver
from labsim.transport.loopback import LoopbackNetwork

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def materialize_provisioning(loaded, into: str, members=()) -> str:
    """The provisioning root the services serve: the scenario's folder, then its inline
    files written over it, then the per-phone files made from templates."""
    spec = loaded.scenario.provisioning
    root = os.path.join(into, "provisioning")
    if spec.directory:
        source = os.path.join(loaded.base_dir, spec.directory)
        shutil.copytree(source, root, symlinks=True)
    else:
        os.makedirs(root)
    for name, text in spec.files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    for template in spec.per_phone:
        wanted = set(template.fleets) if template.fleets else None
        counters: dict[str, int] = {}
        for member in members:
            index = counters[member.fleet] = counters.get(member.fleet, 0) + 1
            if wanted is not None and member.fleet not in wanted:
                continue
            bare = member.phone.mac.replace(":", "")
            values = {"mac": bare, "MAC": bare.upper(), "mac_colons": member.phone.mac,
                      "model": member.phone.model, "fleet": member.fleet, "index": index}
            path = os.path.join(root, template.name.format(**values))
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(template.text.format(**values))
    return root


class ScenarioRun:
    def __init__(self, reactor, loaded, *, report_dir: str, stream=sys.stdout, interactive: bool | None = None):
        self.reactor = reactor
        self.loaded = loaded
        self.scenario = loaded.scenario
        self.report_dir = report_dir
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.members = build_fleets(self.scenario)
        self.counter = StateCounter(len(self.members))
        self.counter.listeners.append(self._on_state_change)
        self.unsettled = len(self.members)
        self.finished = defer.Deferred()
        self.report: dict | None = None
        self._drivers: list[PhoneDriver] = []
        self._workdir = tempfile.mkdtemp(prefix="labsim-")
        self._services: LabServices | None = None
        self._network: LoopbackNetwork | None = None
        self._deadline = None
        self._progress = None
        self._epoch = 0.0
        self._started_wall = ""
        self._started_monotonic = 0.0

    @defer.inlineCallbacks
    def start(self):
        """Start everything; ``self.finished`` fires with the exit code."""
        root = materialize_provisioning(self.loaded, self._workdir, self.members)
        self._services = LabServices(self.reactor, self.scenario.services, root, cert_dir=self.report_dir)
        yield self._services.start()
        server = self._dhcp_target()
        self._network = LoopbackNetwork(self.reactor, dhcp_server=server,
                                        relay_address=self.scenario.network.relay_address)
        self._epoch = self.reactor.seconds()
        self._started_wall = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._started_monotonic = time.monotonic()
        self.stream.write(
            f"labsim: {self.scenario.name}: {len(self.members)} phones; services: "
            f"{self._services.describe() or 'none (external servers)'}; DHCP via relay "
            f"{self.scenario.network.relay_address} -> {server[0]}:{server[1]}\n"
        )
        for member in self.members:
            driver = PhoneDriver(member.phone, self.reactor, self._network, epoch=self._epoch, observer=self.counter)
            self._drivers.append(driver)
            self.reactor.callLater(member.power_on_at, driver.power_on)
        self._deadline = self.reactor.callLater(self.scenario.time_limit_s, self._time_up)
        self._progress = ProgressPrinter(self.counter, self.stream, self.reactor, self._epoch,
                                         interactive=self.interactive)
        self._progress.start()
        if not self.members:
            self._end("no phones")

    def _dhcp_target(self) -> tuple[str, int]:
        network, dhcp = self.scenario.network, self.scenario.services.dhcp
        host = network.dhcp_server or dhcp.address
        port = network.dhcp_port or (self._services.dhcp_port if dhcp is not None else 67)
        return host, port

    def _on_state_change(self, driver, old: str, new: str) -> None:
        was = old in ("ready", "failed")
        now = new in ("ready", "failed")
        if was != now:
            self.unsettled += -1 if now else 1
        if self.unsettled == 0:
            # Let the phone finish its own step before the run tears things down.
            self.reactor.callLater(0, self._end_if_settled)

    def _end_if_settled(self) -> None:
        if self.unsettled == 0:
            self._end("all phones settled")

    def _time_up(self) -> None:
        self._end(f"time limit of {self.scenario.time_limit_s:g}s reached", complete=False)

    def interrupt(self, why: str = "interrupted") -> int:
        """Stop now and write the report (Ctrl-C, SIGTERM). Returns the exit code."""
        self._end(why, complete=False)
        return self.exit_code

    def _end(self, reason: str, complete: bool = True) -> None:
        if self.report is not None:
            return
        for driver in self._drivers:
            driver.stop()
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        if self._progress is not None:
            self._progress.stop()
        record = RunRecord(
            scenario_name=self.scenario.name,
            scenario_file=self.loaded.path,
            seed=self.scenario.seed,
            started=self._started_wall,
            duration_s=time.monotonic() - self._started_monotonic if self._started_monotonic else 0.0,
            members=self.members,
            expectations=self.scenario.expectations(),
            services=self._services.stats() if self._services else {},
            network={"relay": dict(self._network.relay.stats), **self._network.stats} if self._network else {},
            complete=complete,
            end_reason=reason,
        )
        verdicts = judge(record)
        self.report = build_report(record, verdicts)
        path = write_report(self.report, self.report_dir)
        self.stream.write(summary_table(self.report) + f"\n  report: {path}\n")
        self.stream.flush()
        self.exit_code = EXIT_PASSED if self.report["passed"] and complete else EXIT_FAILED
        shutil.rmtree(self._workdir, ignore_errors=True)
        if not self.finished.called:
            self.finished.callback(self.exit_code)

    @defer.inlineCallbacks
    def close(self):
        if self._network is not None:
            yield self._network.close()
        if self._services is not None:
            yield self._services.stop()
