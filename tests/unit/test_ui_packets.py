"""The Packets view's capture index: one phone's frames from a growing pcap file, the
file read once however many clicks (labsim.ui.packets.CaptureIndex)."""

from __future__ import annotations

import struct

from labsim.observe.pcap import PcapCapture, udp_frame
from labsim.ui.packets import GLOBAL_HEADER, RECORD_HEADER, CaptureIndex, pcap_bytes

SERVER = bytes.fromhex("020000000001")
PHONES = ["00:15:65:00:00:%02x" % n for n in range(1, 6)]


def frame(phone: str, n: int, outgoing: bool = True) -> bytes:
    mac = bytes.fromhex(phone.replace(":", ""))
    src, dst = (mac, SERVER) if outgoing else (SERVER, mac)
    return udp_frame(src, dst, "10.0.0.1", "10.0.0.2", 1000 + n, 69, b"payload %d" % n)


def write_capture(path, frames) -> None:
    capture = PcapCapture(str(path))
    for t, data in frames:
        capture._write(t, data)
    capture.close()


def scan(path, mac: str) -> list[bytes]:
    """Every frame to or from ``mac``, read the plain way (record by record)."""
    wanted, found = bytes.fromhex(mac.replace(":", "")), []
    data = open(path, "rb").read()
    position = GLOBAL_HEADER
    while position + RECORD_HEADER.size <= len(data):
        length = RECORD_HEADER.unpack_from(data, position)[2]
        body = data[position + RECORD_HEADER.size:position + RECORD_HEADER.size + length]
        if wanted in (body[0:6], body[6:12]):
            found.append(body)
        position += RECORD_HEADER.size + length
    return found


def test_a_phones_frames_are_the_ones_it_sent_or_received_in_order(tmp_path):
    path = tmp_path / "lab.pcap"
    frames = [(1.0 + i / 10, frame(PHONES[i % 5], i, outgoing=i % 2 == 0)) for i in range(60)]
    write_capture(path, frames)
    index = CaptureIndex(str(path), PHONES)
    for mac in PHONES:
        header, got = index.phone_frames(mac)
        assert header == open(path, "rb").read(GLOBAL_HEADER)
        assert [data for _, _, data in got] == scan(path, mac) and len(got) == 12
    assert [(sec, usec) for sec, usec, _ in index.phone_frames(PHONES[0])[1]][:2] == [(1, 0), (1, 500000)]
    assert index.phone_frames("00:15:65:00:00:99")[1] == []
    # The server's MAC is in every frame but is not a phone: not indexed.
    assert set(index.records) == {bytes.fromhex(mac.replace(":", "")) for mac in PHONES}


def test_each_click_reads_only_what_the_capture_wrote_since(tmp_path):
    path = tmp_path / "lab.pcap"
    write_capture(path, [(1.0, frame(PHONES[0], 0)), (1.1, frame(PHONES[1], 1))])
    size = path.stat().st_size
    index = CaptureIndex(str(path), PHONES)
    assert len(index.phone_frames(PHONES[0])[1]) == 1
    assert index.bytes_read == size
    index.phone_frames(PHONES[1])
    assert index.bytes_read == size  # nothing new: nothing read but the phone's own record

    # The capture goes on: one whole record and half of the next one (the writer mid-record).
    more = frame(PHONES[0], 2)
    last = frame(PHONES[0], 3)
    with open(path, "ab") as handle:
        handle.write(RECORD_HEADER.pack(2, 0, len(more), len(more)) + more)
        handle.write(RECORD_HEADER.pack(3, 0, len(last), len(last)) + last[:10])
    got = index.phone_frames(PHONES[0])[1]
    assert [data for _, _, data in got] == [frame(PHONES[0], 0), more]
    assert index.bytes_read == path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(last[10:])
    assert [data for _, _, data in index.phone_frames(PHONES[0])[1]][-1] == last


def test_a_new_capture_at_the_same_path_is_indexed_again(tmp_path):
    path = tmp_path / "lab.pcap"
    write_capture(path, [(1.0 + i, frame(PHONES[0], i)) for i in range(5)])
    index = CaptureIndex(str(path), PHONES)
    assert len(index.phone_frames(PHONES[0])[1]) == 5
    write_capture(path, [(1.0, frame(PHONES[1], 9))])
    assert index.phone_frames(PHONES[0])[1] == []
    assert [data for _, _, data in index.phone_frames(PHONES[1])[1]] == [frame(PHONES[1], 9)]


def test_the_phones_pcap_is_a_valid_capture_of_its_frames(tmp_path):
    from scapy.utils import rdpcap

    path = tmp_path / "lab.pcap"
    write_capture(path, [(1.0 + i, frame(PHONES[i % 2], i)) for i in range(6)])
    out = tmp_path / "phone.pcap"
    out.write_bytes(pcap_bytes(*CaptureIndex(str(path), PHONES).phone_frames(PHONES[1])))
    packets = rdpcap(str(out))
    assert [bytes(p) for p in packets] == scan(path, PHONES[1]) and len(packets) == 3
    assert struct.unpack("<I", out.read_bytes()[:4])[0] == 0xA1B2C3D4
