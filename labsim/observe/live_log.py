"""``labsim serve``'s live log: one line per DHCP exchange, TFTP request, HTTP request, FTP
login and transfer, DNS answer and PnP SUBSCRIBE.

The services only call an optional observer (``on_event``) that is None unless someone
listens, so a run without a live log formats nothing per packet. :class:`LiveLog`
attaches to whichever services a :class:`~labsim.services.lab.LabServices` started and
turns their events into lines like::

    12:00:01 dhcp ACK 10.1.0.12 to 00:15:65:aa:00:01 via 127.0.0.2 (vendor yealink, class yealink)
    12:00:01 tftp RRQ y000000000066.cfg from 127.0.0.1:40321: sending 210 bytes
    12:00:02 http GET /y000000000066.cfg 200 from 127.0.0.1 (mac 00:15:65:aa:00:01)
    12:00:02 pnp SUBSCRIBE from 10.99.7.2:5060 on veth1 (Yealink T46S 001565aa0001): NOTIFY http://10.99.7.1/
    12:00:02 ftp login phone from 127.0.0.1:40312: ok
    12:00:02 ftp RETR /y000000000066.cfg to 127.0.0.1:40312: 210 bytes in 0.001 s
    12:00:02 dns A prov.lab (udp): 127.0.0.1

The ``format_*`` functions are pure (event in, text out) and tested on their own. An
observer that fails never disturbs the service: the error is counted and the line dropped.
"""

from __future__ import annotations

import time
from typing import TextIO

from labsim.observe.log_text import client_text
from labsim.wire import sip_pnp
from labsim.wire import tftp as tftp_wire
from labsim.wire.dhcp import ACK, DECLINE, INFORM, MESSAGE_TYPE_NAMES, NAK, OFFER, RELEASE, DhcpMessage

ZERO_IP = "0.0.0.0"
OPT_REQUESTED_IP = 50
OPT_MESSAGE = 56
OPT_VENDOR_CLASS = 60


def _mac(raw: bytes) -> str:
    return raw.hex(":") if raw else "?"


def _text(raw: bytes | None, limit: int = 60) -> str:
    return client_text(raw.rstrip(b"\x00") if raw else b"", limit)


def format_dhcp(
    request: DhcpMessage, replies: list, *, via: str, class_name: str | None = None,
    note: str | None = None, show_offers: bool = False,
) -> list[str]:
    """Lines for one DHCP datagram and the server's answer to it.

    An exchange is logged where it ends: the ACK or NAK (OFFERs only with
    ``show_offers``), a RELEASE or DECLINE, or a DISCOVER nobody could answer."""
    client = _mac(request.chaddr)
    tags = []
    vendor = request.options.get(OPT_VENDOR_CLASS)
    if vendor:
        tags.append(f"vendor {_text(vendor)}")
    if class_name:
        tags.append(f"class {class_name}")
    suffix = f" ({', '.join(tags)})" if tags else ""
    lines = []
    for reply in replies:
        message = reply.message
        mtype = message.message_type
        if mtype == OFFER and not show_offers:
            continue
        name = MESSAGE_TYPE_NAMES.get(mtype, str(mtype))
        if mtype == NAK:
            why = _text(message.options.get(OPT_MESSAGE))
            lines.append(f"dhcp NAK to {client} via {via}{suffix}" + (f": {why}" if why else ""))
        elif mtype == ACK and request.message_type == INFORM:
            lines.append(f"dhcp ACK (inform, options only) to {request.ciaddr} {client} via {via}{suffix}")
        else:
            lines.append(f"dhcp {name} {message.yiaddr} to {client} via {via}{suffix}")
    mtype = request.message_type
    if mtype == RELEASE:
        lines.append(f"dhcp RELEASE {request.ciaddr} from {client} via {via}")
    elif mtype == DECLINE:
        declined = request.options.get(OPT_REQUESTED_IP)
        address = ".".join(str(b) for b in declined) if declined and len(declined) == 4 else "?"
        lines.append(f"dhcp DECLINE {address} from {client} via {via} (address in use)")
    if note:
        lines.append(f"dhcp no address for {client} via {via}{suffix}: {note}")
    return lines


def format_tftp(datagram: bytes, addr, outcome) -> str | None:
    """The line for one request on the TFTP port (None for datagrams that are not one)."""
    try:
        request = tftp_wire.decode_request(datagram)
    except (tftp_wire.TftpDecodeError, ValueError):
        return None
    peer = f"{addr[0]}:{addr[1]}"
    kind = "WRQ" if request.opcode == tftp_wire.WRQ else "RRQ"
    name = client_text(request.filename)
    if outcome is None:
        return f"tftp {kind} {name} from {peer}: ignored"
    packet = getattr(outcome, "packet", None)
    if packet is not None:  # a Reject
        try:
            code, message = tftp_wire.decode_error(packet)
        except (tftp_wire.TftpDecodeError, ValueError):
            code, message = "?", "error"
        return f"tftp {kind} {name} from {peer}: refused ({code} {client_text(message)})"
    if kind == "WRQ":
        return f"tftp WRQ {name} from {peer}: receiving an upload"
    size = len(getattr(outcome, "data", b""))
    blksize = getattr(outcome, "blksize", tftp_wire.DEFAULT_BLKSIZE)
    return f"tftp RRQ {name} from {peer}: sending {size} bytes (blksize {blksize})"


def format_http(entry: dict) -> str:
    """The line for one access-log entry of the HTTP server."""
    line = (f"http {client_text(entry.get('method'))} {client_text(entry.get('path'))} {entry.get('status')} "
            f"from {entry.get('client')}")
    if entry.get("mac"):
        line += f" (mac {client_text(entry['mac'])})"
    return line


def format_pnp(datagram: bytes, source, replies: list, device: str | None) -> str | None:
    """The line for one ua-profile SUBSCRIBE on a PnP socket (None for other datagrams:
    the phones' 200 OKs to our NOTIFYs, stray SIP). ``device``: the interface of the group
    socket it came in on; None for the unicast socket."""
    try:
        request = sip_pnp.profile_request(sip_pnp.parse(datagram))
    except sip_pnp.SipParseError:
        return None
    if request is None:
        return None
    where = f"{source[0]}:{source[1]}" + (f" on {device}" if device else "")
    who = client_text(f"{request.vendor} {request.model} {request.mac}")
    notifies = [data for data, _ in replies if data.startswith(b"NOTIFY ")]
    if notifies:
        answer = f"NOTIFY {client_text(sip_pnp.notify_url(sip_pnp.parse(notifies[0])))}"
    elif replies:
        answer = "200 OK again (NOTIFY already acknowledged)"
    else:
        answer = "no answer (no URL for it)"
    return f"pnp SUBSCRIBE from {where} ({who}): {answer}"


def format_ftp(kind: str, client, detail: dict) -> str:
    """The line for one FTP login or transfer (labsim.services.ftp's observer)."""
    where = f"{client[0]}:{client[1]}"
    if kind == "login":
        return f"ftp login {client_text(detail['user'])} from {where}: {'ok' if detail['ok'] else 'refused'}"
    direction = "from" if detail["command"] in ("STOR", "STOU", "APPE") else "to"
    outcome = (f"{detail['bytes']} bytes in {detail['seconds']:.3f} s" if detail["completed"]
               else f"incomplete after {detail['bytes']} bytes")
    return f"ftp {client_text(detail['command'])} {client_text(detail['path'])} {direction} {where}: {outcome}"


def format_dns(query: bytes, reply: bytes, over_tcp: bool) -> str | None:
    """The line for one DNS answer: the question, then the records or the rcode (None
    for a reply with no question: nothing to say)."""
    from dnslib import QTYPE, RCODE, DNSRecord

    answer = DNSRecord.parse(reply)
    if not answer.questions:
        return None
    question = answer.q
    name = client_text(str(question.qname).rstrip("."))
    head = f"dns {QTYPE.get(question.qtype)} {name} ({'tcp' if over_tcp else 'udp'})"
    rcode = answer.header.rcode
    if rcode != RCODE.NOERROR:
        return f"{head}: {RCODE.get(rcode)}"
    values = [str(record.rdata) for record in answer.rr]
    shown = ", ".join(values[:4]) + (f" and {len(values) - 4} more" if len(values) > 4 else "")
    cut = "; truncated (TC): the client should ask again over TCP" if answer.header.tc else ""
    return f"{head}: {shown or 'no records'}{cut}"


class LiveLog:
    """Writes the services' events to ``stream`` as they happen, each line stamped with
    the local wall-clock time of ``clock.seconds()``."""

    def __init__(self, stream: TextIO, clock, *, show_offers: bool = False):
        self.stream = stream
        self.clock = clock
        self.show_offers = show_offers
        self.lines = 0
        self.observer_errors = 0
        self._detach: list = []

    def write(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock.seconds()))
        # Each formatter escapes what the client sent; this catches any it missed.
        self.stream.write(f"{stamp} {client_text(text, limit=4000)}\n")
        self.stream.flush()
        self.lines += 1

    def attach(self, services) -> None:
        """Listen to every service ``services`` (a started LabServices) runs."""
        if services.dhcp is not None:
            self.attach_dhcp(services.dhcp[1])
        if services.tftp is not None:
            self.attach_tftp(services.tftp)
        if services.http is not None:
            self.attach_http(services.http)
        if getattr(services, "pnp", None) is not None:
            self.attach_pnp(services.pnp)
        if getattr(services, "ftp", None) is not None:
            self.attach_ftp(services.ftp)
        if getattr(services, "dns", None) is not None:
            self.attach_dns(services.dns)

    def attach_dhcp(self, listening) -> None:
        listening.set_observer(self._dhcp_event)
        self._detach.append(lambda: listening.set_observer(None))

    def attach_tftp(self, handle) -> None:
        handle.on_event = self._tftp_event
        self._detach.append(lambda: setattr(handle, "on_event", None))

    def attach_http(self, handle) -> None:
        handle.site.on_event = self._http_event
        self._detach.append(lambda: setattr(handle.site, "on_event", None))

    def attach_pnp(self, handle) -> None:
        handle.set_observer(self._pnp_event)
        self._detach.append(lambda: handle.set_observer(None))

    def attach_ftp(self, handle) -> None:
        handle.set_observer(self._ftp_event)
        self._detach.append(lambda: handle.set_observer(None))

    def attach_dns(self, handle) -> None:
        handle.set_observer(self._dns_event)
        self._detach.append(lambda: handle.set_observer(None))

    def detach(self) -> None:
        for undo in self._detach:
            undo()
        self._detach.clear()

    # -- the observers: never raise into a service --

    def _dhcp_event(self, protocol, request: DhcpMessage, replies: list, note: str | None) -> None:
        try:
            via = request.giaddr if request.giaddr != ZERO_IP else (protocol.device or "direct")
            found = protocol.server.classify(request)
            for line in format_dhcp(request, replies, via=via, class_name=found.name if found else None,
                                    note=note, show_offers=self.show_offers):
                self.write(line)
        except Exception:
            self.observer_errors += 1

    def _tftp_event(self, datagram: bytes, addr, outcome) -> None:
        try:
            line = format_tftp(datagram, addr, outcome)
            if line is not None:
                self.write(line)
        except Exception:
            self.observer_errors += 1

    def _pnp_event(self, protocol, datagram: bytes, source, replies: list) -> None:
        try:
            line = format_pnp(datagram, source, replies, protocol.device)
            if line is not None:
                self.write(line)
        except Exception:
            self.observer_errors += 1

    def _ftp_event(self, kind: str, client, detail: dict) -> None:
        try:
            self.write(format_ftp(kind, client, detail))
        except Exception:
            self.observer_errors += 1

    def _dns_event(self, query: bytes, reply: bytes, over_tcp: bool) -> None:
        try:
            line = format_dns(query, reply, over_tcp)
            if line is not None:
                self.write(line)
        except Exception:
            self.observer_errors += 1

    def _http_event(self, entry: dict) -> None:
        try:
            self.write(format_http(entry))
        except Exception:
            self.observer_errors += 1


def format_counters(stats: dict) -> str:
    """LabServices.stats() as readable lines: one per service, the non-zero counters."""
    lines = ["counters:"]
    for service, counters in stats.items():
        flat = []
        for key, value in sorted(counters.items()):
            if isinstance(value, dict):
                flat.extend(f"{key}.{k}={v}" for k, v in sorted(value.items()) if v)
            elif value:
                flat.append(f"{key}={value}")
        lines.append(f"  {service}: {' '.join(flat) if flat else '(nothing)'}")
    return "\n".join(lines)
