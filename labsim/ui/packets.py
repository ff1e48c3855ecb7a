"""One phone's packets from the run's ``--pcap`` capture: a list like Wireshark's, and a
pcap file of only that phone's frames.

The capture (``observe.pcap``) writes every frame with the phone's own MAC as the
Ethernet source or destination, so a phone's frames are the ones whose MAC matches.
The run does nothing more while it captures: the file is indexed when a page first asks
(``CaptureIndex``: where each phone's frames are), and each later click reads only what
the capture wrote since, then the phone's own records. A 10,000-phone capture is read
once, not once per click.
"""

from __future__ import annotations

import os
import struct
from array import array

from labsim.wire.numbers import is_number

GLOBAL_HEADER = 24
RECORD_HEADER = struct.Struct("<IIII")  # ts_sec, ts_usec, incl_len, orig_len (little-endian, as scapy writes)
MAX_ROWS = 3000
READ_CHUNK = 4 * 1024 * 1024  # the index reads a large capture in parts of this size
_DHCP_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}
_TCP_FLAGS = ((0x02, "SYN"), (0x10, "ACK"), (0x08, "PSH"), (0x01, "FIN"), (0x04, "RST"))


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "").replace("-", ""))


def phone_frames(path: str, mac: str):
    """(pcap global header, [(ts_sec, ts_usec, frame)]) for the frames to or from ``mac``,
    reading the whole file (``CaptureIndex`` reads it once for every phone)."""
    return CaptureIndex(path, {mac}).phone_frames(mac)


class CaptureIndex:
    """Where each phone's records are in a growing pcap file: for every MAC (of ``macs``,
    the lab's phones, or every MAC when None), the file offsets of the records it sent or
    received, 8 bytes each. ``update`` reads only what was written since the last call
    (a record cut off by the writer is read next time); a file that shrank (a new
    capture at the same path) is indexed again from its start."""

    def __init__(self, path: str, macs=None):
        self.path = path
        self.macs = None if macs is None else {_mac_bytes(mac) for mac in macs}
        self.header = b""
        self.offset = 0  # the file is indexed up to here (a record boundary)
        self.records: dict[bytes, array] = {}
        self.bytes_read = 0  # of the file, over every update (a click after the first reads only what is new)

    def update(self) -> None:
        if os.path.getsize(self.path) < self.offset:
            self.header, self.offset, self.records = b"", 0, {}
        with open(self.path, "rb") as handle:
            if not self.header:
                header = handle.read(GLOBAL_HEADER)
                self.bytes_read += len(header)
                if len(header) < GLOBAL_HEADER:
                    return
                self.header, self.offset = header, GLOBAL_HEADER
            handle.seek(self.offset)
            rest = b""
            while True:
                chunk = handle.read(READ_CHUNK)
                if not chunk:
                    break
                self.bytes_read += len(chunk)
                data = rest + chunk
                used = self._index(data, self.offset)
                self.offset += used
                rest = data[used:]

    def _index(self, data: bytes, base: int) -> int:
        """Index the whole records in ``data`` (which starts at file offset ``base``);
        returns how many bytes they take."""
        position, size, unpack, records, wanted = 0, len(data), RECORD_HEADER.unpack_from, self.records, self.macs
        while position + RECORD_HEADER.size <= size:
            length = unpack(data, position)[2]
            end = position + RECORD_HEADER.size + length
            if end > size:
                break
            frame = position + RECORD_HEADER.size
            destination, source = data[frame:frame + 6], data[frame + 6:frame + 12]
            for mac in (destination, source) if destination != source else (source,):
                if wanted is None or mac in wanted:
                    found = records.get(mac)
                    if found is None:
                        found = records[mac] = array("Q")
                    found.append(base + position)
            position = end
        return position

    def phone_frames(self, mac: str):
        """(pcap global header, [(ts_sec, ts_usec, frame)]) of ``mac``, the capture as it
        is now (the caller flushes the writer first)."""
        self.update()
        frames = []
        with open(self.path, "rb") as handle:
            for offset in self.records.get(_mac_bytes(mac), ()):
                handle.seek(offset)
                sec, usec, length, _ = RECORD_HEADER.unpack(handle.read(RECORD_HEADER.size))
                frames.append((sec, usec, handle.read(length)))
        return self.header, frames


def pcap_bytes(header: bytes, frames) -> bytes:
    out = [header]
    for sec, usec, frame in frames:
        out.append(RECORD_HEADER.pack(sec, usec, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def describe(frame: bytes) -> dict:
    """Source, destination, protocol and a one-line summary, as Wireshark's list shows them."""
    row = {"length": len(frame), "protocol": "?", "source": frame[6:12].hex(":"),
           "destination": frame[0:6].hex(":"), "info": ""}
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return row
    ihl = (frame[14] & 0x0F) * 4
    proto = frame[23]
    src_ip = ".".join(str(b) for b in frame[26:30])
    dst_ip = ".".join(str(b) for b in frame[30:34])
    l4 = frame[14 + ihl:]
    if proto == 17 and len(l4) >= 8:
        sport, dport = struct.unpack("!HH", l4[:4])
        payload = l4[8:]
        row.update(source=f"{src_ip}:{sport}", destination=f"{dst_ip}:{dport}", protocol="UDP")
        if {sport, dport} & {67, 68}:
            row["protocol"] = "DHCP"
            row["info"] = _dhcp_info(payload)
        elif 5060 in (sport, dport):
            row["protocol"], row["info"] = "SIP", _first_line(payload)
        elif 69 in (sport, dport) or len(payload) >= 2 and payload[0] == 0 and 1 <= payload[1] <= 6:
            row["protocol"], row["info"] = "TFTP", _tftp_info(payload)
    elif proto == 6 and len(l4) >= 20:
        sport, dport, seq, ack = struct.unpack("!HHII", l4[:12])
        offset = (l4[12] >> 4) * 4
        flags = l4[13]
        payload = l4[offset:]
        names = ",".join(name for bit, name in _TCP_FLAGS if flags & bit)
        row.update(source=f"{src_ip}:{sport}", destination=f"{dst_ip}:{dport}", protocol="TCP",
                   info=f"[{names}] seq={seq} ack={ack} len={len(payload)}")
        line = _first_line(payload)
        if line and (line.startswith(("GET ", "PUT ", "HTTP/")) or is_number(line[:3]) or line.isupper()):
            row["protocol"] = "HTTP" if line.startswith(("GET ", "PUT ", "HTTP/")) else "FTP"
            row["info"] = line
    return row


def _first_line(payload: bytes) -> str:
    line = payload.split(b"\r\n", 1)[0][:120]
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return ""
    return text if text.isprintable() else ""


def _dhcp_info(payload: bytes) -> str:
    if len(payload) < 240:
        return "BOOTP"
    yiaddr = ".".join(str(b) for b in payload[16:20])
    options, kind = payload[240:], None
    index = 0
    while index + 1 < len(options) and options[index] != 255:
        code = options[index]
        if code == 0:
            index += 1
            continue
        size = options[index + 1]
        if code == 53 and size == 1 and index + 2 < len(options):
            kind = options[index + 2]
        index += 2 + size
    text = f"DHCP {_DHCP_TYPES.get(kind, kind)} xid 0x{payload[4:8].hex()}"
    return text + (f" yiaddr {yiaddr}" if yiaddr != "0.0.0.0" else "")


def _tftp_info(payload: bytes) -> str:
    if len(payload) < 4:
        return "TFTP"
    opcode = payload[1]
    if opcode in (1, 2):
        return ("RRQ " if opcode == 1 else "WRQ ") + payload[2:].split(b"\0", 1)[0].decode("latin-1")
    if opcode in (3, 4):
        return ("DATA" if opcode == 3 else "ACK") + f" block {int.from_bytes(payload[2:4], 'big')}"
    if opcode == 5:
        return "ERROR " + payload[4:].split(b"\0", 1)[0].decode("latin-1")
    return "OACK" if opcode == 6 else "TFTP"


def packet_rows(frames, epoch_wall: float) -> list[dict]:
    rows = []
    for sec, usec, frame in frames[-MAX_ROWS:]:
        rows.append({"t": round(sec + usec / 1e6 - epoch_wall, 6), **describe(frame)})
    return rows
