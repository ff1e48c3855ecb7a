"""One AF_PACKET socket on a real interface, for a whole fleet's DHCP and ARP.

Phones on a real segment broadcast DHCP from their own MAC: the Ethernet source and
``chaddr`` are the phone's, not the host's. A UDP socket cannot do that, so the fleet
writes whole Ethernet frames through one packet socket, and reads, through a BPF filter
the kernel runs, only the frames it needs: UDP to port 68 (OFFER, ACK, NAK for any
phone's MAC, broadcast or unicast) and ARP requests (a server asking who holds a leased
address). The interface is put in promiscuous mode so that frames unicast to a phone's
MAC are not dropped by the NIC.

The frames themselves are built and read in labsim/wire/ethernet.py. Needs root or
CAP_NET_RAW.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct
from dataclasses import dataclass

from twisted.internet.abstract import FileDescriptor

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_IGNORE_OUTGOING = 23
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFNETMASK, SIOCGIFHWADDR, SIOCGIFINDEX = 0x8913, 0x8915, 0x891B, 0x8927, 0x8933
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40


# The kernel's filter, classic BPF (what `tcpdump -dd 'udp dst port 68 or arp[6:2] = 1'`
# prints, written out so no tcpdump is needed): accept UDP to port 68 in unfragmented (or
# first-fragment) IPv4, and ARP requests; drop everything else before it is copied.
# (code, jt, jf, k)
_LDH_ABS, _LDB_ABS, _JEQ, _JSET, _LDXB_MSH, _LDH_IND, _RET = 0x28, 0x30, 0x15, 0x45, 0xB1, 0x48, 0x06
DHCP_AND_ARP_FILTER = [
    (_LDH_ABS, 0, 0, 12),        # 0: A = ethertype
    (_JEQ, 0, 7, ETH_P_IP),      # 1: IPv4? else to 9
    (_LDB_ABS, 0, 0, 23),        # 2: A = IP protocol
    (_JEQ, 0, 9, 17),            # 3: UDP? else drop (13)
    (_LDH_ABS, 0, 0, 20),        # 4: A = flags + fragment offset
    (_JSET, 7, 0, 0x1FFF),       # 5: a later fragment: drop
    (_LDXB_MSH, 0, 0, 14),       # 6: X = IP header length
    (_LDH_IND, 0, 0, 16),        # 7: A = UDP destination port
    (_JEQ, 3, 4, 68),            # 8: port 68: accept (12), else drop (13)
    (_JEQ, 0, 3, ETH_P_ARP),     # 9: ARP? else drop
    (_LDH_ABS, 0, 0, 20),        # 10: A = ARP operation
    (_JEQ, 0, 1, 1),             # 11: a request: accept, else drop
    (_RET, 0, 0, 0xFFFF),        # 12: accept
    (_RET, 0, 0, 0),             # 13: drop
]  # fmt: skip


@dataclass(frozen=True)
class InterfaceInfo:
    name: str
    index: int
    mac: bytes
    address: str | None  # primary IPv4 address
    netmask: str | None
    up: bool
    loopback: bool


def interface_info(name: str) -> InterfaceInfo:
    """What the kernel says about ``name``; ValueError if there is no such interface."""
    request = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fd = sock.fileno()
        try:
            flags = struct.unpack_from("H", fcntl.ioctl(fd, SIOCGIFFLAGS, request), 16)[0]
            index = struct.unpack_from("i", fcntl.ioctl(fd, SIOCGIFINDEX, request), 16)[0]
            mac = fcntl.ioctl(fd, SIOCGIFHWADDR, request)[18:24]
        except OSError as exc:
            raise ValueError(f"network.interface {name!r}: no such interface ({exc.strerror})") from None
        try:
            address = socket.inet_ntoa(fcntl.ioctl(fd, SIOCGIFADDR, request)[20:24])
            netmask = socket.inet_ntoa(fcntl.ioctl(fd, SIOCGIFNETMASK, request)[20:24])
        except OSError:
            address = netmask = None
    return InterfaceInfo(name, index, mac, address, netmask, bool(flags & IFF_UP) and bool(flags & IFF_RUNNING),
                         bool(flags & IFF_LOOPBACK))


# --- the socket ---------------------------------------------------------------------------


def open_packet_socket(interface: str, program=DHCP_AND_ARP_FILTER, recv_buffer: int = 8 << 20) -> socket.socket:
    """A non-blocking AF_PACKET socket on ``interface`` that receives only what
    ``program`` accepts (and never its own frames), the interface promiscuous."""
    # Protocol 0: nothing is received until bind(), so no frame slips in before the filter.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_filter(sock, program)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:  # Linux < 4.20: our own frames come back; the reader skips them
            pass
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, recv_buffer)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        sock.bind((interface, ETH_P_ALL))
        index = socket.if_nametoindex(interface)
        membership = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
    except Exception:
        sock.close()
        raise
    return sock


def attach_filter(sock: socket.socket, program) -> None:
    code = b"".join(struct.pack("HBBI", op, jt, jf, k) for op, jt, jf, k in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class PacketReader(FileDescriptor):
    """The packet socket in the reactor: each frame received goes to ``on_frame``;
    ``write_frame`` sends one at once (a full queue drops it and counts it, as a NIC
    would)."""

    MAX_PER_READ = 256  # frames per wake-up, so one busy socket cannot starve the reactor

    def __init__(self, reactor, sock: socket.socket, on_frame):
        super().__init__(reactor)
        self.sock = sock
        self.on_frame = on_frame
        self.stats = {"frames_in": 0, "frames_out": 0, "send_errors": 0}

    def fileno(self) -> int:
        return self.sock.fileno()

    def start(self) -> None:
        self.startReading()

    def doRead(self):
        recv = self.sock.recv
        for _ in range(self.MAX_PER_READ):
            try:
                frame = recv(65535)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    return None
                raise
            self.stats["frames_in"] += 1
            self.on_frame(frame)
        return None

    def write_frame(self, frame: bytes) -> bool:
        try:
            self.sock.send(frame)
        except OSError:
            self.stats["send_errors"] += 1
            return False
        self.stats["frames_out"] += 1
        return True

    def kernel_drops(self) -> int:
        """Frames the kernel dropped for a full receive queue since the last call
        (PACKET_STATISTICS); -1 if it cannot say."""
        try:
            _packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return -1
        return drops

    def close(self) -> None:
        self.stopReading()
        self.sock.close()

    def connectionLost(self, reason) -> None:  # FileDescriptor's hook, on reactor shutdown
        pass
