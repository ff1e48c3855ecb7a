"""Ethernet frames for phones on a real segment: IPv4/UDP around a DHCP message, and ARP.

A ``struct`` codec (DESIGN.md: scapy costs ~55-180 µs a packet; the tests check these
frames against scapy's layers). No I/O: labsim/net/packet.py moves the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from socket import inet_aton, inet_ntoa

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")


# --- frames -----------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071). The ones'-complement sum of the 16-bit words is
    the whole message, read as one big number, modulo 0xFFFF (2**16 = 1 mod 0xFFFF): one
    int.from_bytes instead of a loop over words (~1 µs for a DHCP frame, not ~10)."""
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and any(data):
        total = 0xFFFF  # a non-zero sum that folds to 0xFFFF (ones' complement "negative zero")
    return ~total & 0xFFFF


def udp_frame(src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, src_port: int, dst_port: int,
              payload: bytes, ident: int = 0) -> bytes:
    """Ethernet + IPv4 (TTL 64, DF clear) + UDP around ``payload``, checksums filled in."""
    src, dst = inet_aton(src_ip), inet_aton(dst_ip)
    udp_len = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    udp_sum = _checksum(pseudo + _UDP.pack(src_port, dst_port, udp_len, 0) + payload) or 0xFFFF
    ip_header = _IP.pack(0x45, 0, 20 + udp_len, ident & 0xFFFF, 0, 64, 17, 0, src, dst)
    ip_header = ip_header[:10] + struct.pack("!H", _checksum(ip_header)) + ip_header[12:]
    return _ETH.pack(dst_mac, src_mac, ETH_P_IP) + ip_header + _UDP.pack(src_port, dst_port, udp_len, udp_sum) + payload


@dataclass(frozen=True, slots=True)
class UdpFrame:
    dst_mac: bytes
    src_mac: bytes
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    payload: bytes


def parse_udp_frame(frame: bytes) -> UdpFrame | None:
    """The UDP datagram in an Ethernet/IPv4 frame; None for anything else or a cut one."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":
        return None
    header_len = (frame[14] & 0x0F) * 4
    if frame[14] >> 4 != 4 or header_len < 20 or frame[23] != 17:
        return None
    total = struct.unpack_from("!H", frame, 16)[0]
    udp = 14 + header_len
    if len(frame) < udp + 8 or total < header_len + 8:
        return None
    src_port, dst_port, length, _ = _UDP.unpack_from(frame, udp)
    end = min(udp + length, 14 + total, len(frame))
    if length < 8:
        return None
    return UdpFrame(frame[0:6], frame[6:12], inet_ntoa(frame[26:30]), inet_ntoa(frame[30:34]),
                    src_port, dst_port, frame[udp + 8:end])


def udp_payload_to(frame: bytes, port: int) -> bytes | None:
    """The payload of a UDP datagram to ``port`` in an Ethernet/IPv4 frame, else None: the
    receive hot path (no addresses decoded, nothing allocated but the payload)."""
    if len(frame) < 42 or frame[12] != 8 or frame[13] != 0 or frame[23] != 17:
        return None
    udp = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < udp + 8 or frame[udp + 2] != port >> 8 or frame[udp + 3] != port & 0xFF:
        return None
    length = (frame[udp + 4] << 8) | frame[udp + 5]
    if length < 8:
        return None
    return frame[udp + 8:udp + length]


@dataclass(frozen=True, slots=True)
class ArpRequest:
    sender_mac: bytes
    sender_ip: str
    target_ip: str


def parse_arp_request(frame: bytes) -> ArpRequest | None:
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(frame, 14)
    if (htype, ptype, hlen, plen, op) != (1, ETH_P_IP, 6, 4, 1):
        return None
    return ArpRequest(sha, inet_ntoa(spa), inet_ntoa(tpa))


def arp_reply(request: ArpRequest, our_mac: bytes, our_ip: str) -> bytes:
    """'our_ip is at our_mac', unicast to the asker (RFC 826)."""
    body = _ARP.pack(1, ETH_P_IP, 6, 4, 2, our_mac, inet_aton(our_ip), request.sender_mac,
                     inet_aton(request.sender_ip))
    return _ETH.pack(request.sender_mac, our_mac, ETH_P_ARP) + body + bytes(18)  # padded to 60 bytes
