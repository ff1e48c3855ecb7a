"""What happens to a phone (events in) and what a phone asks for (actions out).

The phone logic never touches a socket or a clock: a driver feeds it events with the
current time and carries out the actions it returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from labsim.phones.dns_client import PhoneDns
from labsim.wire.dhcp import DhcpMessage
from labsim.wire.sip_pnp import SipMessage


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PowerOn:
    pass


@dataclass(frozen=True, slots=True)
class TimerFired:
    name: str


@dataclass(frozen=True, slots=True)
class DhcpReceived:
    message: DhcpMessage


@dataclass(frozen=True, slots=True)
class PowerCycle:
    """Power off and on again (a user pulls the plug; a power cut): flash is kept."""


@dataclass(frozen=True, slots=True)
class FactoryReset:
    """Flash cleared to factory state, then the phone restarts."""


@dataclass(frozen=True, slots=True)
class SipReceived:
    """A SIP message for this phone (PnP: the 200 OK to its SUBSCRIBE, the NOTIFY)."""

    message: SipMessage
    source: tuple[str, int]


@dataclass(frozen=True, slots=True)
class CheckSync:
    """A remote resync request (SIP NOTIFY ``Event: check-sync``, ``;reboot=true`` or not)."""

    reboot: bool = False


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one download. ``status`` is one of FETCH_STATUSES."""

    status: str
    body: bytes | None = None
    detail: str = ""
    # Worked out once: asked twice a download (the phone's record of it and its procedure),
    # and in memory one result serves every download of a file (virtual.http).
    ok: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", self.status == "ok")


FETCH_STATUSES = ("ok", "not_found", "denied", "error", "timeout", "refused", "dns")
# A file the phone only looks for ("Download.optional": a Yealink's boot files, a Polycom's
# <mac>.cfg before 000000000000.cfg) that the server does not have: its timing is counted
# with this status, not "not_found", and it is no error in the per-server statistics. A
# Yealink asks for two boot files a pass that most deployments never write: their 404s
# were half of a healthy fleet's requests, and the report called them errors.
OPTIONAL_MISSING = "optional_missing"
# What an expectation may count of the fleet's downloads (``downloads.<outcome>``, with
# ``downloads.requests`` and ``downloads.errors``): every status, an error of any kind
# (``error HTTP 503``) as ``error``.
DOWNLOAD_OUTCOMES = ("ok", "not_found", OPTIONAL_MISSING, "denied", "error", "timeout", "refused", "dns")
# "dns": the URL's host name did not resolve, so the request never left the phone: the
# server named in the URL saw nothing of it (its latency statistics leave it out).
NEVER_SENT = frozenset({"dns"})

# An "error" download's kind, for the per-server statistics: a load test needs to tell a
# server answering 503 from one resetting connections. A detail has addresses, names and
# the server's own words in it, so only these kinds are kept: a bounded set of outcomes.
_ERROR_KINDS = (
    (re.compile(r"\bHTTP (\d{3})\b"), "HTTP {}"),
    (re.compile(r"\bTFTP error (\d+)\b"), "TFTP {}"),
    (re.compile(r"^FTP: (\d{3})\b"), "FTP {}"),
    (re.compile(r"refused", re.IGNORECASE), "connection refused"),
    (re.compile(r"timed out|timeout", re.IGNORECASE), "timed out"),
    (re.compile(r"lost|reset|closed|aborted", re.IGNORECASE), "connection lost"),
    (re.compile(r"not supported", re.IGNORECASE), "not supported"),
)


def error_outcome(detail: str) -> str:
    """An "error" download as its outcome is counted: ``error HTTP 503``, ``error
    connection refused``, ``error TFTP 0``, ``error FTP 553``, ``error connection
    lost`` …, or plain ``error`` when the detail says none of these."""
    for pattern, words in _ERROR_KINDS:
        match = pattern.search(detail)
        if match:
            return "error " + words.format(*match.groups())
    return "error"


@dataclass(frozen=True, slots=True)
class FetchDone:
    request_id: int
    result: FetchResult


# --- actions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendDhcp:
    """``to`` None: broadcast (or, on loopback, through the fleet's relay); else the
    server's address, for a renewal (RFC 2131 4.4.5: unicast to the server that gave
    the lease; a loopback relay still carries it, with ``ciaddr`` set)."""

    message: DhcpMessage
    to: str | None = None


@dataclass(frozen=True, slots=True)
class SendSip:
    """Send a SIP message. ``to`` None: the PnP multicast group 224.0.1.75:5060, which a
    loopback network replaces with the fleet's PnP server."""

    message: SipMessage
    to: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class StartTimer:
    name: str
    delay_s: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class CancelAllTimers:
    pass


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str


# The FTP login of a phone given no credentials (RFC 1635: the password is conventionally
# an e-mail address). The FTP client logs in with it and the capture shows it.
ANONYMOUS = ("anonymous", "labsim@")


@dataclass(frozen=True, slots=True)
class Fetch:
    """Download ``url``. ``name_servers``: the DNS servers the phone's lease gave it (DHCP
    option 6), which a host name in the URL is looked up with: () none, so it cannot be;
    None: not said (a caller other than a phone), the lab's DNS. ``dns``: the phone's own
    DNS client (``phones.dns_client.PhoneDns``: its answers, which the lookup reads and
    adds to, and its timing); None: not a phone's."""

    request_id: int
    url: str
    user_agent: str = ""
    credentials: Credentials | None = None
    name_servers: tuple[str, ...] | None = None
    dns: PhoneDns | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Put:
    """Upload ``body`` to ``url`` (HTTP PUT): a phone's logs and its overrides file.
    Answered with a ``FetchDone`` like a ``Fetch``."""

    request_id: int
    url: str
    body: bytes
    user_agent: str = ""
    credentials: Credentials | None = None
    name_servers: tuple[str, ...] | None = None  # as a Fetch's
    dns: PhoneDns | None = field(default=None, compare=False, repr=False)  # as a Fetch's


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: str
    new: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Download:
    """What a vendor's provisioning procedure yields: fetch this, give me the result."""

    url: str
    credentials: Credentials | None = None
    stage: str = "file"  # a name for latency statistics: "common_cfg", "mac_cfg", ...
    # The phone only looks for this file: a deployment need not have it, and the phone goes
    # on as designed when it is not there (not found: counted as OPTIONAL_MISSING).
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Upload:
    """What a vendor's procedure yields to upload a file (Polycom's ``<mac>-app.log``):
    the phone sends it as a ``Put`` and resumes the procedure with the ``FetchResult``."""

    url: str
    body: bytes
    credentials: Credentials | None = None
    stage: str = "upload"
    optional: ClassVar[bool] = False  # as a Download's: an upload is never only a look


@dataclass(frozen=True, slots=True)
class PnpQuery:
    """What a vendor's procedure yields to ask PnP for its provisioning URL: the phone
    sends a ua-profile SUBSCRIBE and resumes the procedure with the NOTIFY's URL, or
    with None when none came within ``wait_s`` (or no PnP server is reachable)."""

    vendor: str  # as the Event header's vendor parameter says it ("Yealink")
    model: str
    version: str  # the firmware version
    wait_s: float = 2.0


@dataclass
class ProvisioningOutcome:
    """How a provisioning pass ended, returned by a vendor's procedure."""

    result: str  # "applied", "unchanged", "failed"
    reboot: bool = False
    reason: str = ""
    changed_keys: list[str] = field(default_factory=list)
    # When the vendor's timers say to provision again (repeat, daily or weekly window,
    # retry after a failure): seconds from now, or None for never.
    next_check_s: float | None = None
