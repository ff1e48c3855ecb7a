"""What the dashboard knows about a running lab, and what it may do to it.

``Dashboard`` sits beside a ``ScenarioRun`` (``run --ui``) or a ``LabServices`` alone
(``serve --ui``). Its hook into the run is one listener on the run's state counter (the
same run-level source the progress line reads), so it costs the fleet one dict store per
state change; everything else (a phone's story, the services view, /metrics) is built
when a page or Prometheus asks.
"""

from __future__ import annotations

import secrets
import time
from collections import deque

from twisted.internet import task

from labsim.ui.feed import FLUSH_INTERVAL_S, ChangeFeed
from labsim.ui.metrics import LabCollector, registry_for

LOG_LINES = 200  # the services view's recent live-log lines
LOG_IDLE_S = 10.0  # the live log is formatted only while a page shows the services view


class _RingStream:
    """A text stream that keeps the last lines (the live log's target)."""

    def __init__(self, size: int):
        self.lines: deque[str] = deque(maxlen=size)

    def write(self, text: str) -> None:
        self.lines.extend(line for line in text.splitlines() if line)

    def flush(self) -> None:
        pass


class Dashboard:
    def __init__(self, reactor, *, run=None, services=None, scenario=None, token: str | None = None, clock=None):
        self.reactor = reactor  # the page's timers (the feed's frames, the live log's idle time): the wall clock
        # The lab's time, which the frames, rates and leases are told in: the reactor's, or a
        # paced virtual run's simulated clock (labsim.virtual.paced).
        self.clock = clock if clock is not None else reactor
        self.run = run
        self._services = services
        self.scenario = run.scenario if run is not None else scenario
        self.token = token or secrets.token_urlsafe(18)
        members = run.members if run is not None else []
        self.feed = ChangeFeed([{"mac": m.phone.mac, "vendor": m.vendor, "model": m.phone.model, "fleet": m.fleet}
                                for m in members], totals=self.request_totals)
        self.metrics_registry = registry_for(LabCollector(members=lambda: members, services=self._service_stats))
        self._capture_indexes: dict = {}  # capture path -> labsim.ui.packets.CaptureIndex
        self._epoch = self.clock.seconds()
        self._flusher = task.LoopingCall(self._flush)
        self._flusher.clock = reactor
        self.on_frame = []  # adapters: called after each flush
        self._log = _RingStream(LOG_LINES)
        self._live = None
        self._log_wanted_until = 0.0
        self.status = "starting"
        if run is not None:
            self._keep_stories()
            run.counter.listeners.append(self._state_changed)
            # Writing a big report blocks the reactor for seconds: the pages get the last changes first.
            run.before_report.append(self._flush)

    @property
    def services(self):
        return self.run._services if self.run is not None else self._services

    def _keep_stories(self) -> None:
        """Each phone's exchanges stay readable for its story after events.jsonl has them."""
        self.run._events.keep_for_story()

    # --- the change feed ------------------------------------------------------------

    def _state_changed(self, driver, old: str, new: str) -> None:
        self.feed.phone_changed(self.feed.index_of[driver.phone.mac], new)

    def start(self) -> None:
        if self.run is not None and self.run._epoch:
            self._epoch = self.run._epoch
        self._flusher.start(FLUSH_INTERVAL_S, now=False)

    def stop(self) -> None:
        if self._flusher.running:
            self._flusher.stop()
        self._stop_log()

    def set_status(self, status: str) -> None:
        self.status = status
        self.feed.extra["status"] = status

    def _flush(self) -> None:
        if self.run is not None:
            self.feed.extra["faults"] = sorted(self.run.faults.faults)
            report = self.run.report
            self.set_status("lab closed" if self.run.closed else "running" if report is None
                            else f"{report['end_reason']}: report written; the lab stays open")
        else:
            self.set_status("serving")
        if self._live is not None and self.reactor.seconds() > self._log_wanted_until:
            self._stop_log()
        frame = self.feed.flush(self.clock.seconds() - self._epoch)
        if frame is not None:
            for deliver in self.on_frame:
                deliver()

    def request_totals(self) -> dict[str, int]:
        """Requests per service so far (DHCP messages the phones sent, downloads by URL
        scheme): the chart of requests per second is drawn from them (labsim.ui.feed)."""
        if self.run is None:
            return {}
        return {service: sum(seconds) for service, seconds in self.run.series.per_second.items()}

    def capture_on(self) -> bool:
        return self.run is not None and self.run._capture is not None

    # --- what the pages ask for ----------------------------------------------------

    def info(self, control: bool) -> dict:
        scenario = self.scenario
        lab = getattr(scenario, "lab", None)
        from labsim.observe.html_report import SERVICE_COLORS, STATE_COLORS

        return {
            "name": scenario.name, "description": scenario.description, "status": self.status,
            "colors": STATE_COLORS, "service_colors": SERVICE_COLORS,
            "control": control, "mode": "run" if self.run is not None else "serve",
            "lab": lab.public() if lab is not None else None,
            "capture": self.capture_on(),
            "services": sorted(self._service_stats()),
            "fleets": sorted({m.fleet for m in self.run.members}) if self.run is not None else [],
        }

    def story(self, mac: str) -> dict | None:
        from labsim.ui.story import phone_story

        if self.run is None:
            return None
        mac = mac.lower().replace("-", ":")
        index = self.feed.index_of.get(mac)
        if index is None:
            return None
        return phone_story(self.run, self.run.members[index])

    def phone_capture(self, mac: str):
        """(pcap header, frames) of one phone from the run's --pcap capture, or None."""
        capture = self.run._capture if self.run is not None else None
        mac = mac.lower().replace("-", ":")
        if capture is None or mac not in self.feed.index_of:
            return None
        capture.flush()  # the writer buffers: what the phone did so far goes to the file
        return self.frames_in(capture.path, mac)

    def frames_in(self, path: str, mac: str):
        """(pcap header, frames) of ``mac`` in the capture at ``path``, through that
        file's index (built at the first click, brought up to date at each one after)."""
        from labsim.ui.packets import CaptureIndex

        index = self._capture_indexes.get(path)
        if index is None:
            index = self._capture_indexes[path] = CaptureIndex(path, self.feed.index_of)
        return index.phone_frames(mac)

    def packets(self, mac: str) -> list[dict] | None:
        from labsim.ui.packets import packet_rows

        found = self.phone_capture(mac)
        return None if found is None else packet_rows(found[1], self._epoch)

    def _service_stats(self) -> dict:
        services = self.services
        return services.stats() if services is not None else {}

    def services_view(self) -> dict:
        """Counters, recent live-log lines, DHCP leases, faults in force. Asking for it
        turns the live log on for the next LOG_IDLE_S seconds."""
        self._want_log()
        faults = []
        if self.run is not None:
            for fault in self.run.faults.faults.values():
                faults.append({key: (sorted(value) if isinstance(value, frozenset) else value)
                               for key, value in vars(fault).items() if not key.startswith("_")})
        return {"counters": self._service_stats(), "log": list(self._log.lines), "leases": self._leases(),
                "faults": faults, "timeline": [vars(r) for r in self.run.timeline.log]
                if self.run is not None and self.run.timeline is not None else []}

    def _dhcp_server(self):
        """The running DHCP server (its leases), or None."""
        services = self.services
        return services.dhcp[0].server if services is not None and services.dhcp is not None else None

    def _leases(self) -> list[dict]:
        server = self._dhcp_server()
        if server is None:
            return []
        now = self.clock.seconds()
        rows = [{"mac": lease.mac.hex(":") if lease.mac else None, "ip": lease.ip, "state": lease.state,
                 "expires_in_s": round(lease.expires - now, 1)} for lease in server.leases.clients()]
        return sorted(rows, key=lambda row: row["ip"])[:5000]

    def _want_log(self) -> None:
        self._log_wanted_until = self.reactor.seconds() + LOG_IDLE_S
        if self._live is None and self.services is not None:
            from labsim.observe.live_log import LiveLog

            self._live = LiveLog(self._log, self.reactor)
            self._live.attach(self.services)

    def _stop_log(self) -> None:
        if self._live is not None:
            self._live.detach()
            self._live = None

    def act(self, text: str) -> list[dict]:
        from labsim.ui.controls import ControlError, carry_out

        if self.run is None:
            raise ControlError(["dashboard: trainer controls act on a run (labsim run --ui), not on serve"])
        return carry_out(text, self.run)

    def check(self) -> list[dict]:
        """The exercise's check: its expectations judged on the lab as it is now."""
        from labsim.ui.exercise import run_check

        return run_check(self.run)

    def now_text(self) -> str:
        return time.strftime("%H:%M:%S")
