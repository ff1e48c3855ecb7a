"""A phone's DNS client: the answers it keeps and how it asks. The network's resolver
(``transport.dns_lookup.LabResolver``) does the asking with them; the phone makes a new
one at every boot (its answers are RAM, its timing read from flash then).

A vendor profile that documents its phones' DNS timing says so with a ``dns_client``
function (Yealink: ``static.network.dns.query_timeout``, ``retry_times``); the others
ask as labsim's default does: three tries a second apart (unverified)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TIMEOUT_S = 1.0
DEFAULT_TRIES = 3


@dataclass(slots=True)
class PhoneDns:
    """``timeout_s``: how long the phone waits for an answer before it asks again;
    ``tries``: how many times it asks in all; ``answers``: name -> (expiry, addresses),
    each kept for its records' TTL; with ``negative_caching`` (RFC 2308), also name ->
    (expiry, why): a "no such name" or "no address" answer the server's SOA lets it
    keep, for as long as the SOA says."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    tries: int = DEFAULT_TRIES
    answers: dict[str, tuple[float, tuple[str, ...] | str]] = field(default_factory=dict)
    negative_caching: bool = False


def new_dns_client(phone) -> PhoneDns:
    """The DNS client ``phone`` boots with: its vendor's (``dns_client``), else the default."""
    made_by = getattr(phone.profile, "dns_client", None)
    return made_by(phone) if made_by is not None else PhoneDns()
