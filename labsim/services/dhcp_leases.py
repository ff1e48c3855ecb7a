"""The DHCP server's address book, without I/O: lease states, the free-address pool and
the lease table with its expiry heap (``labsim.services.dhcp`` decides with them; the
lease file stores ``LeaseRecord`` lines)."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from socket import inet_aton, inet_ntoa

# Lease states.
OFFERED = "offered"  # held for the client for offer_hold_s after an OFFER
BOUND = "bound"  # ACKed; held until the lease time runs out
FREE = "free"  # released or expired: kept in by-MAC memory to give the client the same address again
DECLINED = "declined"  # a client found the address in use; set aside for decline_hold_s



@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """One line of the lease file (:mod:`labsim.services.lease_file` reads and writes it)."""

    state: str  # "bound", "free" or "declined"
    mac: bytes | None  # None only for "declined"
    ip: str
    expires: float  # 0 for "free"


@dataclass(slots=True)
class Lease:
    ip: str
    mac: bytes | None  # None for a declined address
    state: str  # OFFERED, BOUND, FREE or DECLINED
    expires: float
    # When its entry in the expiry heap comes up (-1: none). A lease held again for longer
    # keeps that entry, which schedules it anew when it comes, instead of adding one
    # (every ACK added one that stayed for the lease time: issue 12 §5).
    due: float = field(default=-1.0, compare=False, repr=False)


def ip_int(ip: str) -> int:
    return int.from_bytes(inet_aton(ip), "big")


def _int_ip(value: int) -> str:
    return inet_ntoa(value.to_bytes(4, "big"))


def normalise_mac(mac: bytes | str) -> bytes:
    """A MAC as 6 bytes, from bytes or text like '00:15:65:aa:bb:cc' / '001565aabbcc'."""
    if isinstance(mac, bytes):
        raw = mac
    else:
        try:
            raw = bytes.fromhex(mac.replace(":", "").replace("-", "").replace(".", ""))
        except ValueError:
            raise ValueError(f"not a MAC address: {mac!r}") from None
    if len(raw) != 6:
        raise ValueError(f"a MAC address is 6 bytes, {mac!r} is {len(raw)}")
    return raw


class AddressPool:
    """Hands out free addresses of [start, end] without scanning the pool.

    New addresses come from a cursor that walks the range once; addresses given back
    queue up behind it. Either source may name an address that has since been taken
    (a client asked for it by number), so ``take`` checks ``is_free`` and skips those:
    each stale entry is skipped once, so the cost stays O(1) amortised.
    """

    def __init__(self, start: int, end: int, excluded: set[str], is_free: Callable[[str], bool]):
        self.start, self.end = start, end
        self._excluded = excluded
        self._is_free = is_free
        self._cursor = start
        self._returned: deque[str] = deque()

    def __contains__(self, ip: str) -> bool:
        return self.start <= ip_int(ip) <= self.end and ip not in self._excluded

    @property
    def size(self) -> int:
        return self.end - self.start + 1 - sum(1 for ip in self._excluded if self.start <= ip_int(ip) <= self.end)

    def take(self) -> str | None:
        """A free address, or None when the pool is exhausted."""
        while self._cursor <= self.end:
            ip = _int_ip(self._cursor)
            self._cursor += 1
            if ip not in self._excluded and self._is_free(ip):
                return ip
        returned = self._returned
        while returned:
            ip = returned.popleft()
            if self._is_free(ip):
                return ip
        return None

    def give_back(self, ip: str) -> None:
        if ip in self:
            self._returned.append(ip)


class LeaseTable:
    """Leases by MAC and by address, with expiry in time order."""

    def __init__(self) -> None:
        # MAC -> its lease, including FREE ones (the address it had last).
        self._by_mac: dict[bytes, Lease] = {}
        # address -> the lease holding it (OFFERED, BOUND or DECLINED; never FREE).
        self._by_ip: dict[str, Lease] = {}
        # (expires, seq, lease); entries go stale when a lease is renewed or freed and
        # are dropped when they reach the top.
        self._expiry: list[tuple[float, int, Lease]] = []
        self._seq = 0

    # -- lookups (the public view) --
    def by_mac(self, mac: bytes) -> Lease | None:
        """The client's lease while it holds an address (OFFERED or BOUND)."""
        lease = self._by_mac.get(mac)
        return lease if lease is not None and lease.state != FREE else None

    def by_ip(self, ip: str) -> Lease | None:
        """Whatever holds the address: an OFFERED/BOUND lease or a DECLINED marker."""
        return self._by_ip.get(ip)

    def bound(self) -> Iterator[Lease]:
        return (lease for lease in self._by_ip.values() if lease.state == BOUND)

    def __len__(self) -> int:
        """Addresses currently held (offered, bound or declined)."""
        return len(self._by_ip)

    def is_free(self, ip: str) -> bool:
        return ip not in self._by_ip

    def clients(self) -> Iterator[Lease]:
        """Every client's lease, FREE ones (its last address) included."""
        return iter(self._by_mac.values())

    def declined(self) -> Iterator[Lease]:
        return (lease for lease in self._by_ip.values() if lease.state == DECLINED)

    # -- changes (the server's) --
    def record(self, mac: bytes) -> Lease | None:
        """The client's lease in any state, FREE included."""
        return self._by_mac.get(mac)

    def hold(self, mac: bytes, ip: str, state: str, expires: float) -> tuple[Lease, Lease | None]:
        """Give ``ip`` to ``mac`` in ``state`` until ``expires``.

        Returns the lease and, if the client moved to a new address, its old lease (now
        FREE; its address is for the caller to return to the pool)."""
        lease = self._by_mac.get(mac)
        moved = None
        if lease is None or lease.ip != ip:
            if lease is not None and lease.state != FREE:
                self._unhold(lease)
                moved = lease
            lease = Lease(ip, mac, state, expires)
            self._by_mac[mac] = lease
        else:
            lease.state = state
            lease.expires = expires
        self._by_ip[ip] = lease
        self._schedule(lease)
        return lease, moved

    def free(self, lease: Lease) -> None:
        """Released or expired: the address is free, the client's memory of it stays."""
        self._unhold(lease)

    def remember(self, mac: bytes, ip: str) -> None:
        """Note the address a client had last without holding it (a restored FREE lease)."""
        self._by_mac[mac] = Lease(ip, mac, FREE, 0.0)

    def set_aside(self, ip: str, until: float) -> None:
        """Keep ``ip`` out of use until ``until`` (a restored DECLINED marker)."""
        marker = Lease(ip, None, DECLINED, until)
        self._by_ip[ip] = marker
        self._schedule(marker)

    def decline(self, lease: Lease, until: float) -> Lease:
        """Set the lease's address aside and forget the client had it."""
        if self._by_mac.get(lease.mac) is lease:
            del self._by_mac[lease.mac]
        marker = Lease(lease.ip, None, DECLINED, until)
        self._by_ip[lease.ip] = marker
        self._schedule(marker)
        return marker

    def next_expiry(self) -> float | None:
        """When the next lease or offer may run out (possibly earlier: a renewed lease's
        old time stays queued until it is reached), or None."""
        return self._expiry[0][0] if self._expiry else None

    def pop_expired(self, now: float) -> Iterator[Lease]:
        """Free every lease whose time has come, yielding each."""
        heap = self._expiry
        while heap and heap[0][0] <= now:
            when, _, lease = heapq.heappop(heap)
            if lease.due == when:
                lease.due = -1.0
            if self._by_ip.get(lease.ip) is not lease:
                continue
            if lease.expires <= now:
                self._unhold(lease)
                yield lease
            else:
                self._schedule(lease)  # held longer since: its new time

    def _unhold(self, lease: Lease) -> None:
        if self._by_ip.get(lease.ip) is lease:
            del self._by_ip[lease.ip]
        if lease.state == DECLINED:
            return
        lease.state = FREE

    def _schedule(self, lease: Lease) -> None:
        if 0.0 <= lease.due <= lease.expires:
            return  # an entry comes up by then, and schedules it again (pop_expired)
        lease.due = lease.expires
        self._seq += 1
        heapq.heappush(self._expiry, (lease.expires, self._seq, lease))
