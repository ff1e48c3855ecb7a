"""Adding and removing IPv4 addresses on an interface, over rtnetlink (what ``ip addr
add/del`` does), without a process per address.

``source: leased`` puts each phone's leased address on the interface for the run, so its
downloads leave from that address and the kernel answers ARP for it; every address added
is removed at the end. Needs root or CAP_NET_ADMIN.
"""

from __future__ import annotations

import os
import socket
import struct

RTM_NEWADDR, RTM_DELADDR = 20, 21
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
IFA_ADDRESS, IFA_LOCAL = 1, 2
RT_SCOPE_UNIVERSE = 0
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefix length, flags, scope, interface index


class AddressTable:
    """The addresses this run added to one interface; ``remove_all`` takes them off again."""

    def __init__(self, interface: str):
        self.interface = interface
        self.index = socket.if_nametoindex(interface)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.sequence = 0
        self.added: set[str] = set()

    def add(self, address: str, prefix_len: int = 32) -> None:
        """Put ``address``/``prefix_len`` on the interface (already there: nothing done,
        and it is not removed at the end: it was not ours)."""
        if address in self.added:
            return
        error = self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, address, prefix_len)
        if error == 17:  # EEXIST
            return
        if error:
            raise OSError(error, f"cannot add {address} to {self.interface}: {os.strerror(error)}")
        self.added.add(address)

    def remove(self, address: str, prefix_len: int = 32) -> None:
        if address not in self.added:
            return
        self.added.discard(address)
        error = self._request(RTM_DELADDR, 0, address, prefix_len)
        if error and error != 99:  # EADDRNOTAVAIL: someone removed it already
            raise OSError(error, f"cannot remove {address} from {self.interface}: {os.strerror(error)}")

    def remove_all(self) -> int:
        count = 0
        for address in sorted(self.added):
            try:
                self.remove(address)
                count += 1
            except OSError:
                pass
        return count

    def close(self) -> None:
        self.sock.close()

    def _request(self, kind: int, flags: int, address: str, prefix_len: int) -> int:
        raw = socket.inet_aton(address)
        attrs = b"".join(struct.pack("=HH", 8, attr) + raw for attr in (IFA_LOCAL, IFA_ADDRESS))
        body = _IFADDR.pack(socket.AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE, self.index) + attrs
        self.sequence += 1
        message = _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self.sequence, 0)
        self.sock.send(message + body)
        while True:
            reply = self.sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(reply):
                length, reply_kind, _, sequence, _ = _HEADER.unpack_from(reply, offset)
                if reply_kind == NLMSG_ERROR and sequence == self.sequence:
                    return -struct.unpack_from("=i", reply, offset + _HEADER.size)[0]
                offset += max((length + 3) & ~3, _HEADER.size)
