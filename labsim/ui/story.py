"""One phone's story for the dashboard: its timeline in plain words, its lease with the
DHCP options decoded, each download (URL, protocol, status, bytes, MD5, time) and its flash.

Built on demand when a page opens the phone, from what the run records anyway (the
phone's own timeline, the event log's DHCP and download rows): nothing extra on the hot path.
"""

from __future__ import annotations

import ipaddress
import shlex
from urllib.parse import urlsplit

from labsim.observe.events_log import DHCP_TYPES
from labsim.observe.log_text import client_text
from labsim.observe.problems import phone_cause
from labsim.observe.story_words import dhcp_words, fetch_words
from labsim.wire import dhcp_options

MAX_TIMELINE_ROWS = 2000  # a phone that re-provisions all day keeps its latest rows


# Options the server sets itself, which the scenario's option names do not cover.
_SERVER_OPTIONS = {51: "lease time", 53: "message type", 54: "server identifier"}


def option_name(code: int) -> str:
    return f"option {code} ({_SERVER_OPTIONS[code]})" if code in _SERVER_OPTIONS else dhcp_options.option_label(code)


def decode_option(code: int, raw: bytes) -> str:
    """An option's value as a person reads it (addresses, numbers, text; hex otherwise)."""
    try:
        if code in dhcp_options.SINGLE_ADDRESS_OPTIONS or code in dhcp_options.ADDRESS_LIST_OPTIONS:
            if raw and len(raw) % 4 == 0:
                return ", ".join(str(ipaddress.IPv4Address(raw[i:i + 4])) for i in range(0, len(raw), 4))
        if code == 53 and len(raw) == 1:
            return DHCP_TYPES.get(raw[0], str(raw[0]))
        if code in dhcp_options.INTEGER_OPTIONS:
            width, signed = dhcp_options.INTEGER_OPTIONS[code]
            if len(raw) == width:
                value = int.from_bytes(raw, "big", signed=signed)
                return f"{value} s" if code in (51, 58, 59) else str(value)
        text = raw.rstrip(b"\x00").decode("ascii")
        if text.isprintable():
            return text
    except (UnicodeDecodeError, ValueError):
        pass
    return "hex " + raw.hex()


def lease_of(phone) -> dict | None:
    lease = phone.lease
    if lease is None:
        return None
    return {"address": lease.address, "server": lease.server_id, "lease_time_s": lease.lease_time_s,
            "options": [{"code": code, "name": option_name(code), "value": decode_option(code, raw)}
                        for code, raw in sorted(lease.options.items())]}


def story(member, rows, *, capture_on: bool = False, report_dir: str | None = None) -> dict:
    """Everything the page shows about one phone. ``rows``: the event log's rows of this phone.
    ``report_dir``: where the run writes its events.jsonl, for ``history`` (the command that
    reads every line of the phone, when a long run left some out of ``events``)."""
    phone = member.phone
    # The exchanges first, so that at the same instant the ACK comes before the state it leads to.
    timeline = []
    fetches = []
    for row in rows:
        kind = row[2]
        if kind == "dhcp":
            _, _, _, direction, message_type, xid, yiaddr = row
            words = dhcp_words(DHCP_TYPES.get(message_type, str(message_type)), direction, yiaddr, f"0x{xid:08x}")
            timeline.append({"t": round(row[0], 4), "kind": "dhcp", "state": "dhcp", "text": words})
        elif kind in ("fetch", "upload"):
            t, _, _, url, status, size, latency, detail, md5 = row
            url, detail = client_text(url, 2000), client_text(detail, 2000)  # what the network said, made safe
            fetches.append({"t": round(t, 4), "kind": kind, "url": url, "protocol": urlsplit(url).scheme,
                            "status": status, "bytes": size, "md5": md5, "latency_s": round(latency, 6),
                            "detail": detail})
            timeline.append({"t": round(t, 4), "kind": kind, "state": "provisioning",
                             "text": fetch_words(kind, url, status, size, latency, detail, md5)})
    timeline += [{"t": round(t, 4), "kind": kind, "state": state,
                  "text": (f"{state}" + (f": {detail}" if detail else "")) if kind == "state" else detail}
                 for t, state, detail, kind in ((t, s, client_text(d, 2000), k) for t, s, d, k in phone.events)]
    timeline.sort(key=lambda item: item["t"])
    flash = phone.flash
    return {
        "mac": phone.mac, "vendor": member.vendor, "model": phone.model, "fleet": member.fleet,
        "state": phone.state, "failure": client_text(phone.failure, 2000) or None, "cause": phone_cause(phone),
        "reboots": phone.reboots, "power_cycles": phone.power_cycles,
        "lease": lease_of(phone),
        "timeline": timeline[-MAX_TIMELINE_ROWS:], "fetches": fetches[-MAX_TIMELINE_ROWS:],
        "flash": {**flash.summary(), "settings": dict(sorted(flash.settings.items()))},
        "capture": capture_on,
        # A long run keeps a phone's first and last events (and its latest exchanges) in
        # memory; events.jsonl has every line, which the page points to.
        "events_dropped": getattr(phone, "events_dropped", 0),
        "history": f"labsim story {shlex.quote(report_dir)} {phone.mac}" if report_dir else None,
    }


def phone_story(run, member) -> dict:
    """One phone's story from the run that holds it (one process, or a --workers shard
    answering its parent): the phone itself and its rows of the run's event log."""
    rows = run._events.phone_rows(member.phone.mac)  # its recent exchanges (older ones are in events.jsonl)
    return story(member, rows, capture_on=run._capture is not None, report_dir=getattr(run, "report_dir", None))
