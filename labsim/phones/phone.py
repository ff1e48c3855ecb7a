"""The phone: one explicit state machine for the common provisioning cycle.

    off --PowerOn--> booting --boot timer--> dhcp --ACK--> provisioning
    provisioning --procedure ends--> ready | failed | rebooting
    rebooting --boot timer--> dhcp   (flash kept; the cycle runs again)
    ready | failed --resync timer--> provisioning   (the vendor's repeat/daily timers)
    provisioning | ready | failed --lease timers--> the same state (renewing, rebinding)
    provisioning | ready | failed --lease lost--> dhcp   (expiry or NAK: the address is gone,
        whatever the phone was doing fails; once it has a new lease it provisions again)

The vendor profile supplies what differs between vendors: how the phone identifies
itself in DHCP and HTTP, and its provisioning procedure, a generator that yields
``Download`` requests and receives ``FetchResult``s (and may yield ``Wait``,
``Upload`` to PUT a file, or ``PnpQuery`` to ask a PnP server for its URL over SIP).
The phone turns those into actions for a driver and never does I/O itself.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import Callable, Generator

from labsim.phones.dhcp_client import (
    INIT, REBINDING as REBINDING_LEASE, RENEWING as RENEWING_LEASE, DhcpClient, Lease, LEASE_TIMER,
    OFFER_WINDOW_TIMER, RETRANSMIT_TIMER, shared_identity,
)
from labsim.phones.dns_client import PhoneDns, new_dns_client
from labsim.phones.events import (
    CancelAllTimers,
    CancelTimer,
    CheckSync,
    FactoryReset,
    PowerCycle,
    DhcpReceived,
    Download,
    Fetch,
    FetchDone,
    FetchResult,
    OPTIONAL_MISSING,
    PnpQuery,
    PowerOn,
    ProvisioningOutcome,
    Put,
    SendSip,
    SipReceived,
    StartTimer,
    StateChanged,
    TimerFired,
    Upload,
    error_outcome,
)
from labsim.phones.flash import Flash
from labsim.phones.packed import EventList, PackedRecords, SharedValues, shared
from labsim.wire import sip_pnp

OFF, BOOTING, DHCP, PROVISIONING, REBOOTING, READY, FAILED = (
    "off", "booting", "dhcp", "provisioning", "rebooting", "ready", "failed",
)
STATES = (OFF, BOOTING, DHCP, PROVISIONING, REBOOTING, READY, FAILED)
SETTLED_STATES = (READY, FAILED)


def _dhcp_server(server_id: str) -> str:
    """The server that gave a lease (option 54) as a timing names it, for the report's
    per-server line: one string for the fleet (interned), not one per timing."""
    return sys.intern(f"dhcp://{server_id}") if server_id else ""


# The lease's upkeep, timed as stages (after the first lease's "dhcp"): a renewal from its
# first unicast REQUEST at T1, a rebinding from its first broadcast one at T2.
LEASE_EXCHANGE_STAGES = {RENEWING_LEASE: "dhcp_renew", REBINDING_LEASE: "dhcp_rebind"}
# The stages every phone times, whatever its vendor (whose own are kit.VendorProfile.STAGES):
# its lease, the lease's upkeep, and the wait for a PnP NOTIFY.
PHONE_STAGES = ("dhcp", *LEASE_EXCHANGE_STAGES.values(), "pnp")
UNTIL_STAGES = ("dhcp", "config", "ready")  # where a fleet's phones may stop (scenario: fleets[].until)

BOOT_TIMER = "boot"
WAIT_TIMER = "wait"
RESYNC_TIMER = "resync"
PNP_TIMER = "pnp"  # how long the phone waits for the PnP NOTIFY
PNP_RETRANSMIT_TIMER = "pnp_retransmit"
SIP_T1, SIP_T2 = 0.5, 4.0  # RFC 3261 17.1.2.2: a non-INVITE request is resent after T1, 2T1 ... capped at T2


@dataclass(frozen=True, slots=True)
class Wait:
    """Yielded by a provisioning procedure: resume me after this many seconds."""

    seconds: float


@dataclass(slots=True)
class StageTiming:
    stage: str
    started: float
    ended: float
    status: str  # a download's FetchResult status, an "error" by its kind (events.error_outcome)
    server: str = ""  # scheme://host:port the stage talked to (per-server statistics)


class StageList(PackedRecords):
    """A phone's download timings, packed (phones/packed.py): two floats and a shared
    (stage, status, server) a timing; read back as ``StageTiming``s."""

    __slots__ = ()
    WIDTH = 2

    def append(self, timing: StageTiming) -> None:
        self.add(timing.stage, timing.started, timing.ended, timing.status, timing.server)

    def add(self, stage: str, started: float, ended: float, status: str, server: str = "") -> None:
        """``append(StageTiming(...))`` without making the StageTiming (a download's hot path)."""
        times = self._times
        times.append(started)
        times.append(ended)
        self._texts.append(shared((stage, status, server)))

    def _record(self, index: int) -> StageTiming:
        stage, status, server = self._texts[index]
        return StageTiming(stage, self._times[2 * index], self._times[2 * index + 1], status, server)


Procedure = Generator[object, FetchResult | None, ProvisioningOutcome]


class Phone:
    # No per-instance __dict__: ~1.3 KiB less per phone (a 100,000-phone run keeps
    # every one of them for its whole length).
    __slots__ = (
        "mac", "mac_bytes", "model", "profile", "rng", "flash", "boot_time_s", "until", "state", "reboots",
        "power_cycles", "powered_on_at", "ready_at", "failure", "failures_in_a_row", "events", "events_dropped",
        "journal", "stages", "lease",
        "dhcp", "_procedure", "_pending", "server_source", "fetch_error", "_next_request", "_dhcp_started", "now",
        "trigger", "pnp_reachable", "pnp_url", "_pnp", "window_draw", "dns", "vendor_ram",
    )

    def __init__(
        self,
        mac: str,
        model: str,
        profile,
        *,
        rng: random.Random,
        flash: Flash | None = None,
        boot_time_s: float = 1.0,
        firmware: str | None = None,
        until: str = "ready",
    ):
        self.mac = mac.lower()
        self.mac_bytes = bytes.fromhex(self.mac.replace(":", ""))
        self.model = model
        self.profile = profile
        self.rng = rng
        self.flash = flash or Flash(firmware=firmware or profile.default_firmware(model))
        self.boot_time_s = boot_time_s
        # The stage at which this phone is done (ready) and stops: "dhcp" (leased),
        # "config" (its first provisioning pass is over, no reboot) or "ready".
        if until not in UNTIL_STAGES:
            raise ValueError(f"until must be one of {', '.join(UNTIL_STAGES)}, not {until!r}")
        self.until = until
        self.state = OFF
        self.reboots = 0
        self.power_cycles = 0
        self.powered_on_at: float | None = None
        self.ready_at: float | None = None
        self.failure = ""
        # Failed passes since the phone was last ready or (re)booted (Snom's back-off
        # reads it; kept apart from ``events``, which a long run trims).
        self.failures_in_a_row = 0
        # The timeline: (time, state, detail, kind); kind "state" for a state change,
        # "step" for a step inside a state (a download, a retry, the server found).
        # Packed (phones/packed.py): a fleet keeps them for the whole run.
        self.events = EventList()
        self.events_dropped = 0  # events let go of in a long run (written to events.jsonl first)
        # Where the run records every event as it happens (observe.events_log.EventLog), or
        # None; it may trim ``events`` to their first and last ones.
        self.journal = None
        self.stages = StageList()
        self.lease: Lease | None = None
        self.dhcp = DhcpClient(self.mac_bytes, shared_identity(profile.dhcp_identity(self)), rng)
        self._procedure: Procedure | None = None
        self._pending: dict[int, tuple[Download | Upload, float, str]] = {}  # request id -> (request, started, server)
        # Why a pass went wrong, for the report's grouped problems: where the phone got
        # its server this pass, and the last download that failed since one succeeded.
        self.server_source: tuple[str, str] | None = None  # (server, "DHCP option 66")
        self.fetch_error: tuple[str, str, str] | None = None  # (url, status, detail)
        self._next_request = 0
        self._dhcp_started = 0.0
        self.now = 0.0
        self.trigger = "power_on"  # what started the current provisioning pass
        # PnP: whether a SUBSCRIBE can reach a PnP server on this network (the driver
        # says; on loopback only when the fleet names one), and what it answered this boot.
        self.pnp_reachable = False
        self.pnp_url: str | None = None
        self._pnp: _PnpWait | None = None
        # The phone's own moment in its next provisioning window (a vendor's daily or
        # weekly window "with a random offset per phone"): (day, fraction), drawn once
        # per window by ``kit.next_window_moment_s``.
        self.window_draw: tuple[int, float] | None = None
        # Its DNS client (phones.dns_client): the answers it holds, each for its records'
        # TTL, which the lookups of its downloads read and fill (transport.dns_lookup), and
        # its vendor's timing. RAM: every boot makes a new one.
        self.dns = PhoneDns()
        # What the vendor's procedure keeps from one pass to the next in RAM (Cisco: its
        # upgrade failures in a row): a dict made on first use, lost at every boot.
        self.vendor_ram: dict | None = None

    # The transition table: (state, event kind) -> handler. Anything else is ignored,
    # as a real phone ignores a stray reply for a transaction it has left behind.
    def handle(self, event, now: float) -> list:
        # The key: (state, event type), or (state, "timer:NAME") for a timer.
        handler = _TRANSITIONS.get((self.state, "timer:" + event.name if type(event) is TimerFired
                                    else type(event)))
        if handler is None and self.state != OFF:
            handler = _IN_ANY_STATE.get(type(event))
        if handler is None:
            return []
        self.now = now
        return handler(self, event, now)

    @property
    def settled(self) -> bool:
        return self.state in SETTLED_STATES

    # --- handlers -----------------------------------------------------------------

    def _power_on(self, event: PowerOn, now: float) -> list:
        self.powered_on_at = now
        return self._enter(BOOTING, now, "power on") + [StartTimer(BOOT_TIMER, self.boot_time_s)]

    def _booted(self, event: TimerFired, now: float) -> list:
        self._dhcp_started = now
        self.trigger = "power_on"
        self.server_source, self.fetch_error = None, None
        self.pnp_url, self._pnp = None, None  # PnP is asked again at every boot
        self.dns = new_dns_client(self)  # and every name looked up again
        self.vendor_ram = None  # RAM: nothing kept from before the boot
        # Flash may have changed what the phone says about itself (e.g. its option 60).
        self.dhcp.identity = shared_identity(self.profile.dhcp_identity(self))
        return self._enter(DHCP, now) + self.dhcp.boot(now)

    def _dhcp_message(self, event: DhcpReceived, now: float) -> list:
        actions = self.dhcp.on_message(event.message, now)
        if self.dhcp.lease is None:
            return actions
        self.lease = self.dhcp.lease
        self.stages.append(StageTiming("dhcp", self._dhcp_started, now, "ok", _dhcp_server(self.lease.server_id)))
        detail = f"lease {self.lease.address} from {self.lease.server_id}"
        if self.until == "dhcp":
            return actions + self._done(now, f"{detail}; stops here (until: dhcp)")
        actions += self._enter(PROVISIONING, now, detail)
        self._procedure = self.profile.provision(self)
        return actions + self._resume(None, now)

    def _dhcp_timer(self, event: TimerFired, now: float) -> list:
        return self.dhcp.on_timer(event.name, now)

    # --- the lease while the phone works: renew, rebind, or lose it -------------------

    def _lease_message(self, event: DhcpReceived, now: float) -> list:
        before, started = self.dhcp.state, self.dhcp.started_at
        actions = self.dhcp.on_message(event.message, now)
        if self.dhcp.state == INIT:
            if before in LEASE_EXCHANGE_STAGES:  # a NAK: the server answered no
                self._lease_exchange(before, started, now, "denied", self.lease.server_id)
            return self._lease_lost(now)
        if self.dhcp.lease is not self.lease and self.dhcp.lease is not None:
            self.lease = self.dhcp.lease  # renewed: its options are what later passes read
            if before in LEASE_EXCHANGE_STAGES:
                self._lease_exchange(before, started, now, "ok", self.lease.server_id)
            self.note(f"lease {self.lease.address} {'renewed' if before == RENEWING_LEASE else 'rebound'} "
                      f"from {self.lease.server_id}")
        return actions

    def _lease_timer(self, event: TimerFired, now: float) -> list:
        before, started = self.dhcp.state, self.dhcp.started_at
        actions = self.dhcp.on_timer(event.name, now)
        if before in LEASE_EXCHANGE_STAGES and self.dhcp.state != before:  # its deadline (T2, expiry) came first
            self._lease_exchange(before, started, now, "timeout", self.lease.server_id)
        if self.dhcp.state == INIT:
            return self._lease_lost(now)
        if self.dhcp.state != before and self.dhcp.state == REBINDING_LEASE:
            self.note(f"lease {self.lease.address}: no answer to the renewal by T2, rebinding")
        return actions

    def _lease_exchange(self, state: str, started: float, now: float, status: str, server_id: str) -> None:
        """A renewal or a rebinding ended: a timing like the first lease's, from its first
        REQUEST to the ACK, the NAK or the deadline that ended it, so the report's
        per-server line counts the lease's upkeep (most of what a server with short
        leases answers) and its latency, and an unanswered one as a timeout."""
        self.stages.add(LEASE_EXCHANGE_STAGES[state], started, now, status, _dhcp_server(server_id))

    def _lease_lost(self, now: float) -> list:
        """No address any more: downloads under way fail (their late results are ignored),
        timers stop, and the phone starts over from DHCP, as after a boot but without one."""
        self._procedure = None
        self._pending.clear()
        self._pnp = None
        self.lease = None
        self._dhcp_started = now
        self.trigger = "new_lease"
        return [CancelAllTimers()] + self._enter(DHCP, now, self.dhcp.lost_reason) + self.dhcp.start(now)

    def _fetch_done(self, event: FetchDone, now: float) -> list:
        pending = self._pending.pop(event.request_id, None)
        if pending is None:
            return []
        if not self._pending:
            self._pending.clear()  # an emptied dict keeps its table; cleared, it lets go of it
        request, started, server = pending
        # Stage and server names are the same for thousands of phones: one string each
        # (interned), not one per download in every phone's ``stages``.
        result = event.result
        status = result.status
        if status == "error":  # counted by kind (error HTTP 503, error connection refused …)
            status = _error_outcomes(result.detail)
        elif status == "not_found" and request.optional:  # a file it only looked for: no error
            status = OPTIONAL_MISSING
        self.stages.add(sys.intern(request.stage), started, now, status, server)
        if result.ok:
            self.fetch_error = None
        elif status != OPTIONAL_MISSING:  # what a report blames a failed phone on
            self.fetch_error = (request.url, result.status, result.detail)
        return self._resume(event.result, now)

    def _wait_over(self, event: TimerFired, now: float) -> list:
        return self._resume(None, now)

    def _resync(self, event: TimerFired, now: float) -> list:
        """The vendor's timer says provision again: no reboot, no new DHCP."""
        return self._provision_again("schedule", now, "scheduled re-provisioning")

    def _check_sync(self, event: CheckSync, now: float) -> list:
        action = self.profile.check_sync_action(self, event.reboot)
        if action == "ignore":
            self.note("check-sync ignored")
            return []
        if action == "reboot":
            self.reboots += 1
            return ([CancelTimer(RESYNC_TIMER), CancelTimer(LEASE_TIMER)]
                    + self._enter(REBOOTING, now, "check-sync: reboot") + [StartTimer(BOOT_TIMER, self.boot_time_s)])
        return [CancelTimer(RESYNC_TIMER)] + self._provision_again("check_sync", now, "check-sync: re-provisioning")

    def _power_cycle(self, event: PowerCycle, now: float) -> list:
        """Whatever it was doing is lost; flash stays. Late replies for the old
        transactions are ignored (their request ids and DHCP xid are gone)."""
        self.power_cycles += 1
        self._procedure = None
        self._pending.clear()
        self.dhcp.state = "INIT"
        return [CancelAllTimers()] + self._enter(BOOTING, now, "power cycle") + [StartTimer(BOOT_TIMER, self.boot_time_s)]

    def _factory_reset(self, event: FactoryReset, now: float) -> list:
        self.flash.factory_reset(firmware=self.flash.firmware)
        self.dhcp.forget()
        self.note("factory reset: flash cleared")
        return self._power_cycle(event, now)

    def _provision_again(self, trigger: str, now: float, detail: str) -> list:
        self.trigger = trigger
        self.server_source, self.fetch_error = None, None
        actions = self._enter(PROVISIONING, now, detail)
        self._procedure = self.profile.provision(self)
        return actions + self._resume(None, now)

    # --- the vendor's procedure ---------------------------------------------------

    def _resume(self, value: FetchResult | None, now: float) -> list:
        try:
            request = self._procedure.send(value)
        except StopIteration as stop:
            return self._finish(stop.value, now)
        except Exception as exc:  # a bug in a vendor procedure must not hang the phone silently
            self.failure = f"internal error in the {getattr(self.profile, 'VENDOR', 'vendor')} procedure: {exc!r}"
            self._procedure = None
            return self._enter(FAILED, now, self.failure)
        if isinstance(request, Download):  # the common request first
            self._next_request += 1
            request_id = self._next_request
            self._pending[request_id] = (request, now, _server_of(request.url))
            return [Fetch(request_id, request.url, self.profile.user_agent(self), request.credentials,
                          self._name_servers(), self.dns)]
        if isinstance(request, Wait):
            return [StartTimer(WAIT_TIMER, request.seconds)]
        if isinstance(request, Upload):
            self._next_request += 1
            request_id = self._next_request
            self._pending[request_id] = (request, now, _server_of(request.url))
            return [Put(request_id, request.url, request.body, self.profile.user_agent(self), request.credentials,
                        self._name_servers(), self.dns)]
        if isinstance(request, PnpQuery):
            return self._pnp_subscribe(request, now)
        raise TypeError(f"a provisioning procedure yielded {request!r}")

    def _name_servers(self) -> tuple[str, ...]:
        """The DNS servers of the phone's lease (option 6), which it looks host names up
        with; () without a lease or the option. Real phones can also be given them in
        flash for a static address, which labsim's phones do not model."""
        lease = self.lease
        return lease.name_servers if lease is not None else ()

    # --- PnP: SUBSCRIBE, wait for the NOTIFY, answer it --------------------------------

    def _pnp_subscribe(self, query: PnpQuery, now: float) -> list:
        if not self.pnp_reachable:
            return self._resume(None, now)  # nobody to ask: on to the next source at once
        address = self.lease.address if self.lease else "0.0.0.0"
        token = f"{self.rng.getrandbits(64):016x}"
        message = sip_pnp.build_subscribe(
            mac=self.mac, vendor=query.vendor, model=query.model, version=query.version, local=(address, 5060),
            call_id=f"{token}@{address}", tag=token[:8], branch=sip_pnp.BRANCH_MAGIC + token[8:],
            user_agent=self.profile.user_agent(self))
        self._pnp = _PnpWait(message, now, SIP_T1)
        return [SendSip(message), StartTimer(PNP_TIMER, query.wait_s), StartTimer(PNP_RETRANSMIT_TIMER, SIP_T1)]

    def _sip_message(self, event: SipReceived, now: float) -> list:
        wait, message = self._pnp, event.message
        if wait is None or message.call_id != wait.subscribe.call_id:
            return []  # not for the PnP exchange under way
        if not message.is_request:
            if message.cseq[1] != "SUBSCRIBE" or message.status < 200:
                return []
            if message.status < 300:
                return [CancelTimer(PNP_RETRANSMIT_TIMER)]  # accepted: stop resending, wait for the NOTIFY
            return self._pnp_done(None, now, f"PnP: SUBSCRIBE refused ({message.status} {message.reason})", "denied")
        if message.method != "NOTIFY":
            return []
        reply = [SendSip(sip_pnp.build_response(message, 200, "OK"), event.source)]
        try:
            url = sip_pnp.notify_url(message)
        except sip_pnp.SipParseError as exc:
            return reply + self._pnp_done(None, now, f"PnP: NOTIFY without a usable URL ({exc})", "error")
        self.pnp_url = url
        return reply + self._pnp_done(url, now, f"PnP: {url} from {event.source[0]}:{event.source[1]}", "ok")

    def _pnp_retransmit(self, event: TimerFired, now: float) -> list:
        if self._pnp is None:
            return []
        self._pnp.interval = min(self._pnp.interval * 2, SIP_T2)
        return [SendSip(self._pnp.subscribe), StartTimer(PNP_RETRANSMIT_TIMER, self._pnp.interval)]

    def _pnp_timeout(self, event: TimerFired, now: float) -> list:
        if self._pnp is None:
            return []
        return self._pnp_done(None, now, f"PnP: no NOTIFY within {now - self._pnp.started:g}s", "timeout")

    def _pnp_done(self, url: str | None, now: float, detail: str, status: str) -> list:
        self.stages.append(StageTiming("pnp", self._pnp.started, now, status))
        self._pnp = None
        self.note(detail)
        return [CancelTimer(PNP_TIMER), CancelTimer(PNP_RETRANSMIT_TIMER)] + self._resume(url, now)

    def _finish(self, outcome: ProvisioningOutcome, now: float) -> list:
        self._procedure = None
        if outcome.reboot and self.until == "config":
            self.failure = ""
            return self._done(now, f"{outcome.reason}; stops here without the reboot (until: config)")
        if outcome.reboot:
            self.reboots += 1
            return (self._enter(REBOOTING, now, outcome.reason)
                    + [CancelTimer(LEASE_TIMER), StartTimer(BOOT_TIMER, self.boot_time_s)])
        if outcome.result == "failed":
            self.failure = outcome.reason
            actions = self._enter(FAILED, now, outcome.reason)
        else:
            self.failure = ""
            if self.ready_at is None:
                self.ready_at = now
            actions = self._enter(READY, now, outcome.reason or outcome.result)
        if outcome.next_check_s is not None:
            actions.append(StartTimer(RESYNC_TIMER, outcome.next_check_s))
        return actions

    def _done(self, now: float, detail: str) -> list:
        """Ready at the fleet's ``until`` stage: nothing more is done this boot."""
        if self.ready_at is None:
            self.ready_at = now
        return self._enter(READY, now, detail)

    def _enter(self, state: str, now: float, detail: str = "") -> list:
        old, self.state = self.state, state
        if state == FAILED:
            self.failures_in_a_row += 1
        elif state in (READY, BOOTING, REBOOTING):
            self.failures_in_a_row = 0
        detail = sys.intern(detail)
        count = self.events.add(now, state, detail, "state")
        if self.journal is not None:
            self.journal.phone_event(self, (now, state, detail, "state"), count)
        return [_state_changes((old, state, detail))]

    # --- things a procedure may ask of its phone ------------------------------------

    def ram(self) -> dict:
        """``vendor_ram``, made on first use: what the vendor's procedure keeps from one
        pass to the next until the next boot."""
        if self.vendor_ram is None:
            self.vendor_ram = {}
        return self.vendor_ram

    def note(self, detail: str) -> None:
        """Record a step inside the current state (shown in the phone's timeline)."""
        # Interned: most steps read the same for a whole fleet ("downloaded y000000000000.cfg
        # (228 bytes)"), kept once instead of once a phone.
        detail = sys.intern(detail)
        count = self.events.add(self.now, self.state, detail, "step")
        if self.journal is not None:
            self.journal.phone_event(self, (self.now, self.state, detail, "step"), count)

    def server_from(self, server, source: str, noun: str = "server") -> None:
        """The procedure found its provisioning server (``source``: "DHCP option 66",
        "flash", "PnP" ...): noted in the timeline and kept for the report's problems."""
        text = str(server)
        self.server_source = (text, source)
        self.note(f"{noun} {text} from {source}")


@dataclass(slots=True)
class _PnpWait:
    subscribe: sip_pnp.SipMessage
    started: float
    interval: float  # until the next retransmission


# Events that act the same in every state but off.
_IN_ANY_STATE: dict[type, Callable] = {}


def _work_out_server(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return sys.intern(f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}")


# A fleet asks for the same URLs every pass, each phone its own one or two besides the
# shared ones: sized for fleets of ~10,000 (at 4,096 entries a 10,000-phone fleet's own
# URLs pushed the shared ones out: half the lookups missed). Bounded: past 131,072 URLs
# (a 100,000-phone run) it starts again, and working one out again costs ~1 µs.
_server_of = SharedValues(1 << 17, _work_out_server).one


# A StateChanged is frozen: one per (old, new, detail) serves every phone that changes so
# (a fleet's passes read alike; a frozen dataclass costs ~1 µs to make, a lookup ~0.05).
_state_changes = SharedValues(4096, lambda key: StateChanged(*key)).one
_error_outcomes = SharedValues(4096, error_outcome).one  # a failed download's detail -> its counted outcome


_TRANSITIONS: dict[tuple[str, object], Callable] = {
    (OFF, PowerOn): Phone._power_on,
    (BOOTING, "timer:" + BOOT_TIMER): Phone._booted,
    (REBOOTING, "timer:" + BOOT_TIMER): Phone._booted,
    (DHCP, DhcpReceived): Phone._dhcp_message,
    (DHCP, "timer:" + RETRANSMIT_TIMER): Phone._dhcp_timer,
    (DHCP, "timer:" + OFFER_WINDOW_TIMER): Phone._dhcp_timer,
    (PROVISIONING, FetchDone): Phone._fetch_done,
    (PROVISIONING, "timer:" + WAIT_TIMER): Phone._wait_over,
    (PROVISIONING, SipReceived): Phone._sip_message,
    (PROVISIONING, "timer:" + PNP_TIMER): Phone._pnp_timeout,
    (PROVISIONING, "timer:" + PNP_RETRANSMIT_TIMER): Phone._pnp_retransmit,
    (READY, "timer:" + RESYNC_TIMER): Phone._resync,
    (FAILED, "timer:" + RESYNC_TIMER): Phone._resync,
    (READY, CheckSync): Phone._check_sync,
    (FAILED, CheckSync): Phone._check_sync,
}
for _state in (PROVISIONING, READY, FAILED):  # the phone holds an address in these
    _TRANSITIONS[(_state, DhcpReceived)] = Phone._lease_message
    _TRANSITIONS[(_state, "timer:" + LEASE_TIMER)] = Phone._lease_timer

_IN_ANY_STATE.update({
    PowerCycle: Phone._power_cycle,
    FactoryReset: Phone._factory_reset,
})
