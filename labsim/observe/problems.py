"""Why phones failed or got stuck, in one line per group.

A phone's ``failure`` says what went wrong in its own words ("no configuration file
could be downloaded"); the cause a trainer needs is elsewhere: the server the phone
used, where it got that server (DHCP option 66, flash, PnP ...), and the error of the
download that failed. The phone keeps both (``server_source``, ``fetch_error``); here
phones with the same reason, server and error are counted together:

    10 failed: no configuration file could be downloaded — http://127.0.0.1:8008/ (from DHCP option 66): connection refused
"""

from __future__ import annotations

import re

from labsim.observe.log_text import client_text
from labsim.phones.phone import DHCP, FAILED, READY

# Twisted's and the fetchers' words for an error, and the short form people say.
_PLAIN_ERRORS = (
    ("connection refused", "connection refused"),
    ("connection was refused", "connection refused"),
    ("no route to host", "no route to host"),
    ("timed out", "timed out"),
)


_STUCK = {"off": "not powered on yet", "booting": "still booting", "rebooting": "still rebooting",
          "dhcp": "no DHCP lease yet", "provisioning": "still provisioning"}


def plain_error(status: str, detail: str) -> str:
    """A failed download's error in a few plain words ("connection refused", "HTTP 404")."""
    lowered = detail.lower()
    for needle, words in _PLAIN_ERRORS:
        if needle in lowered:
            return words
    if detail:
        return detail.rstrip(".")
    return {"not_found": "not found", "denied": "access denied", "timeout": "no answer"}.get(status, status)


def phone_cause(phone) -> dict | None:
    """The cause of a failed or stuck phone: reason, server, where from, error. None for a ready phone."""
    if phone.state == READY:
        return None
    if phone.state == DHCP:
        # Looking for a lease: the provisioning server of its last pass is not the cause.
        return {"reason": _why_no_lease(phone), "server": None, "server_from": None, "error": None}
    if phone.state == FAILED:
        reason = phone.failure or "failed"
    else:
        reason = _STUCK.get(phone.state, f"still {phone.state}")
    server, source = phone.server_source or (None, None)
    error = url = None
    if phone.fetch_error is not None:
        url, status, detail = phone.fetch_error
        error = plain_error(status, detail)
        if server is None or not url.startswith(_origin(server)):
            server, source = url, source if server is None else None
    # A server, its source and an error are what the network said: made safe as every log line is.
    return {"reason": client_text(reason, 2000), "server": server and client_text(server, 2000),
            "server_from": source and client_text(source), "error": error and client_text(error, 2000)}


_LEASE_OF = re.compile(r"^lease of \S+ ")


def _why_no_lease(phone) -> str:
    """A phone that had a lease and lost it says how in the event that took it back to
    DHCP ("lease of 10.9.0.39 expired", "… refused (NAK) while renewing"; a boot's has no
    detail): said without the address, so the phones that lost theirs alike are one group."""
    events = phone.events
    for index in range(len(events) - 1, -1, -1):
        _, state, detail, kind = events[index]
        if kind == "state":
            if state == DHCP and _LEASE_OF.match(detail):
                return f"lease {_LEASE_OF.sub('', detail)}, no DHCP lease since"
            break
    return _STUCK[DHCP]


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def group_problems(members) -> list[dict]:
    """Failed and stuck phones grouped by (state, reason, server, source, error), largest first."""
    groups: dict[tuple, dict] = {}
    for member in members:
        phone = member.phone
        cause = phone_cause(phone)
        if cause is None:
            continue
        key = (phone.state, cause["reason"], cause["server"], cause["server_from"], cause["error"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"state": phone.state, "count": 0, **cause, "macs": []}
        group["count"] += 1
        if len(group["macs"]) < 5:
            group["macs"].append(phone.mac)
    return sorted(groups.values(), key=lambda g: (-g["count"], g["state"], g["reason"]))


def problem_line(problem: dict) -> str:
    """``10 failed: <reason> — <server> (from <source>): <error>``"""
    line = f"{problem['count']} {problem['state'] if problem['state'] == FAILED else 'stuck'}: {problem['reason']}"
    where = problem["server"] or ""
    if where and problem["server_from"]:
        where += f" (from {problem['server_from']})"
    if where or problem["error"]:
        line += " — " + ": ".join(part for part in (where, problem["error"]) if part)
    return line
