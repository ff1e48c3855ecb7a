"""The scenario's ``faults:``: what goes wrong on which service's link, and when.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from labsim.scenario.fields import Strict


Probability = Annotated[float, Field(ge=0, le=1)]


# Which services each fault key applies to: what the transport allows and labsim builds.
# Datagram faults need datagrams: TCP (http, ftp, dns over TCP) delivers every byte, in
# order, or none. dns takes them on its UDP side; on its TCP side only down and delays.
DATAGRAM_FAULT_SERVICES = ("dhcp", "tftp", "dns", "pnp")
FAULT_SERVICES = ("dhcp", "tftp", "http", "dns", "pnp", "ftp")
FAULT_KEY_SERVICES = {
    "loss": DATAGRAM_FAULT_SERVICES + ("http",),
    "delay_s": FAULT_SERVICES,
    "jitter_s": FAULT_SERVICES,
    "duplicate": DATAGRAM_FAULT_SERVICES,
    "reorder": DATAGRAM_FAULT_SERVICES,
    "corrupt": DATAGRAM_FAULT_SERVICES,
    "bandwidth_kbps": DATAGRAM_FAULT_SERVICES + ("ftp",),
    "drop_dhcp": ("dhcp",),
    "http_status": ("http",),
    "path": ("http",),
    "slow_s": ("http", "ftp"),
    "down": FAULT_SERVICES,
}
# Why a key does not fit a service, where the reason is not obvious.
_NOT_FOR = {
    ("loss", "ftp"): "a TCP stream delivers every byte or none",
    ("duplicate", "ftp"): "a TCP stream delivers every byte once",
    ("duplicate", "http"): "a TCP stream delivers every byte once",
    ("reorder", "ftp"): "a TCP stream delivers bytes in order",
    ("reorder", "http"): "a TCP stream delivers bytes in order",
    ("corrupt", "ftp"): "TCP checksums every segment",
    ("corrupt", "http"): "TCP checksums every segment",
    ("bandwidth_kbps", "http"): "not built for http",
    ("slow_s", "dns"): "use delay_s: it delays UDP datagrams and TCP answers",
}


# Keys that act on datagrams alone: on dns they reach its UDP side only.
_UDP_ONLY_ON_DNS = ("loss", "duplicate", "reorder", "corrupt", "bandwidth_kbps")


def _for(key: str, what: str) -> str:
    services = ["dns over UDP" if name == "dns" and key in _UDP_ONLY_ON_DNS else name
                for name in FAULT_KEY_SERVICES[key]]
    return f"{what} ({', '.join(services)})"


class Fault(Strict):
    """A fault between the phones and one service. Direction is seen from the service:
    'in' is requests towards it, 'out' its replies. Each key says the services it applies
    to; any other is an error. Datagram services (dhcp, tftp, pnp, and dns over UDP) take
    the faults per datagram and direction. Stream services (ftp, and dns over TCP) take
    down (a new connection is closed at once), delays (each answer held delay_s + jitter_s
    + slow_s, whatever the direction) and, for ftp, bandwidth_kbps on the data connection
    (out: downloads, in: uploads). http takes a forced status, slow answers, loss (answered
    503) and down (503)."""

    name: str | None = None
    service: Literal["dhcp", "tftp", "http", "dns", "pnp", "ftp"]
    direction: Literal["in", "out", "both"] = Field(
        "both", description="datagrams and ftp's bandwidth in this direction; http: out or both")
    loss: Probability = Field(0.0, description=_for("loss", "probability a datagram is lost; http: answered 503"))
    delay_s: float = Field(
        0.0, ge=0, description=_for("delay_s", "datagrams, or each answer on a stream, this much later"))
    jitter_s: float = Field(0.0, ge=0, description=_for("jitter_s", "delay_s varies by up to this much either way"))
    duplicate: Probability = Field(0.0, description=_for("duplicate", "probability a datagram arrives twice"))
    reorder: Probability = Field(
        0.0, description=_for("reorder", "probability a datagram is held back for later ones to overtake"))
    corrupt: Probability = Field(0.0, description=_for("corrupt", "probability a datagram has one bit flipped"))
    bandwidth_kbps: float | None = Field(
        None, gt=0,
        description=_for("bandwidth_kbps", "a line this fast: datagrams queue; ftp's data connection is paced"))
    drop_dhcp: list[Literal["DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM"]] = Field(
        default_factory=list, description=_for("drop_dhcp", "drop every message of these types"))
    http_status: int | None = Field(
        None, ge=100, le=599, description=_for("http_status", "answer this status instead"))
    path: str = Field("*", description=_for("path", "the paths (glob) the fault applies to, e.g. '/*.cfg'"))
    slow_s: float = Field(
        0.0, ge=0, description=_for("slow_s", "answer each request (ftp: each command) this much later"))
    down: bool = Field(False, description=_for(
        "down", "the service answers nothing: datagrams dropped; TCP connections closed at once; http 503"))

    @field_validator(*FAULT_KEY_SERVICES)
    @classmethod
    def _fits_service(cls, value, info: ValidationInfo):
        """A key given (not its default) for a service it does not apply to is an error
        at that key, naming the services it does apply to."""
        service = info.data.get("service")  # absent when the service itself was invalid
        key = info.field_name
        if service is None or value == cls.model_fields[key].get_default(call_default_factory=True):
            return value
        allowed = FAULT_KEY_SERVICES[key]
        if service not in allowed:
            why = _NOT_FOR.get((key, service))
            services = f"service {allowed[0]}" if len(allowed) == 1 else f"services {', '.join(allowed)}"
            raise ValueError(f"{key} applies to {services} only, not {service}"
                             + (f" ({why})" if why else ""))
        return value

    @field_validator("direction")
    @classmethod
    def _direction_fits_service(cls, value, info: ValidationInfo):
        if value == "in" and info.data.get("service") == "http":
            raise ValueError("direction 'in' does not apply to http: its faults act on the answers (out or both)")
        return value
