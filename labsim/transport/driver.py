"""The Twisted edge of one phone: carries out the actions its state machine returns.

Time comes from an ``IReactorTime`` (the reactor, or ``task.Clock`` in tests) and the
network from a ``PhoneNetwork``, so a whole boot cycle runs in a unit test with no
sockets at all.
"""

from __future__ import annotations

from twisted.internet import defer

from labsim.phones.dhcp_client import REPLY_TIMERS
from labsim.phones.events import (
    CancelAllTimers,
    CancelTimer,
    DhcpReceived,
    Fetch,
    FetchDone,
    FetchResult,
    PowerOn,
    Put,
    SendDhcp,
    SendSip,
    SipReceived,
    StartTimer,
    StateChanged,
    TimerFired,
)
from labsim.wire.provisioning_url import url_problem


class PhoneDriver:
    # No per-instance __dict__: one a phone for the whole run. ``fleet``: the fleet's name
    # (set by the run; the timeline's selections read it).
    __slots__ = ("phone", "clock", "network", "epoch", "observer", "_timers", "_read_waiting", "_fetch_into", "fleet")

    def __init__(self, phone, clock, network, *, epoch: float | None = None, observer=None):
        self.phone = phone
        self.clock = clock
        self.network = network
        self.epoch = clock.seconds() if epoch is None else epoch
        self.observer = observer
        self.fleet: str | None = None
        self._timers: dict[str, object] = {}
        # A network whose replies may be waiting unread when a timer fires (sockets): it
        # can read them first (see _fire). None for networks that deliver at once.
        self._read_waiting = getattr(network, "read_waiting", None)
        # Whether a PnP SUBSCRIBE can reach a responder here (no multicast on loopback).
        phone.pnp_reachable = bool(getattr(network, "pnp_reachable", False))
        network.attach(self)
        # A network that answers on the clock without a Deferred (in memory): it calls
        # fetch_into(request, deliver) -> deliver(request, result) later. A week of a fleet
        # in virtual time makes millions of downloads; a Deferred each was a tenth of it.
        self._fetch_into = getattr(network, "fetch_into", None)

    def now(self) -> float:
        return self.clock.seconds() - self.epoch

    def power_on(self) -> None:
        self.deliver(PowerOn())

    def dhcp_received(self, message) -> None:
        self.deliver(DhcpReceived(message))

    def sip_received(self, message, source: tuple[str, int], data: bytes | None = None) -> None:
        # ``data`` (the datagram as received) is for recorders between the network and
        # the driver (observe.events_log); the phone reads the parsed message.
        self.deliver(SipReceived(message, source))

    def deliver(self, event) -> None:
        # The phone's time read here rather than through now(), and each action carried
        # out by its entry in _CARRY_OUT: a week of a fleet delivers ~5 events a pass.
        for action in self.phone.handle(event, self.clock.seconds() - self.epoch):
            carry_out = _CARRY_OUT.get(type(action))
            if carry_out is None:
                raise TypeError(f"unknown phone action {action!r}")
            carry_out(self, action)

    def stop(self) -> None:
        """Cancel every timer (the end of a run)."""
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()

    # --- the actions a phone returns, one method each (the table _CARRY_OUT) -----------

    def _send_dhcp(self, action: SendDhcp) -> None:
        self.network.send_dhcp(self, action.message)

    def _send_sip(self, action: SendSip) -> None:
        self.network.send_sip(self, action.message, action.to)

    def _start_timer(self, action: StartTimer) -> None:
        self._cancel(action.name)
        self._timers[action.name] = self.clock.callLater(action.delay_s, self._fire, action.name)

    def _cancel_timer(self, action: CancelTimer) -> None:
        self._cancel(action.name)

    def _cancel_all_timers(self, action: CancelAllTimers) -> None:
        self.stop()

    def _fetch(self, action: Fetch) -> None:
        if self._refused_url(action):
            return
        if self._fetch_into is not None:
            self._fetch_into(action, self._answered)
            return
        deferred = self.network.fetch(action)
        deferred.addErrback(lambda failure: FetchResult("error", detail=failure.getErrorMessage()))
        deferred.addCallback(self._fetched, action.request_id)

    def _refused_url(self, action: Fetch | Put) -> bool:
        """A URL no network can split fails its request at once, as a real phone's would,
        instead of raising out of the network's fetch (every network splits it)."""
        problem = url_problem(action.url)
        if problem:
            self.clock.callLater(0.0, self._fetched, FetchResult("error", detail=problem), action.request_id)
        return bool(problem)

    def _put(self, action: Put) -> None:
        if self._refused_url(action):
            return
        # A network that cannot upload answers like a server that refuses the PUT.
        upload = getattr(self.network, "upload", None)
        deferred = upload(action) if upload is not None else defer.succeed(
            FetchResult("error", detail="this network does not carry uploads"))
        deferred.addErrback(lambda failure: FetchResult("error", detail=failure.getErrorMessage()))
        deferred.addCallback(self._fetched, action.request_id)

    def _state_changed(self, action: StateChanged) -> None:
        if self.observer is not None:
            self.observer.state_changed(self, action.old, action.new)

    def _fetched(self, result: FetchResult, request_id: int) -> None:
        self.deliver(FetchDone(request_id, result))

    def _answered(self, request: Fetch, result: FetchResult) -> None:
        self.deliver(FetchDone(request.request_id, result))

    def _fire(self, name: str) -> None:
        if self._read_waiting is not None and name in REPLY_TIMERS:
            # A reactor turn runs its due timers before it reads sockets: under load a
            # retransmission timer fires late with the reply already waiting. Read what
            # waits first; if it moved the phone on (this timer restarted or cancelled),
            # the firing is stale and the phone never sees it. (Reading only for timers
            # more than 20 ms late was tried: a 10,000-phone quickstart then sent 5,966-
            # 7,754 DHCP retransmissions instead of 228, answers waiting unread.) Only the
            # DHCP client's timers: a reply cannot make a boot or resync timer stale, and
            # an empty read before each of a storm's boot timers cost ~7.7 µs a phone.
            self._timers[name] = _FIRING
            self._read_waiting()
            if self._timers.get(name) is not _FIRING:
                return
        self._timers.pop(name, None)
        self.deliver(TimerFired(name))

    def _cancel(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()


class _Firing:
    """Stands in ``_timers`` for a timer that is firing while waiting replies are read."""

    @staticmethod
    def active() -> bool:
        return False

    @staticmethod
    def cancel() -> None:
        pass


_FIRING = _Firing()

_CARRY_OUT = {
    SendDhcp: PhoneDriver._send_dhcp,
    SendSip: PhoneDriver._send_sip,
    StartTimer: PhoneDriver._start_timer,
    CancelTimer: PhoneDriver._cancel_timer,
    CancelAllTimers: PhoneDriver._cancel_all_timers,
    Fetch: PhoneDriver._fetch,
    Put: PhoneDriver._put,
    StateChanged: PhoneDriver._state_changed,
}
