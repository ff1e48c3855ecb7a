"""One capture from several: the shards' pcap files merged in time order (as
Wireshark's mergecap does), for ``--workers`` and ``labsim merge --pcap``.

Every shard's capture counts time from the run's one shared start instant, so their
timestamps interleave correctly. Only classic little- or big-endian microsecond pcap
files of one link type are merged (what ``observe.pcap`` writes).
"""

from __future__ import annotations

import heapq
import os
import struct

_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}


class PcapMergeError(ValueError):
    pass


def _records(path: str, handle, order: str):
    header = struct.Struct(order + "IIII")
    while True:
        head = handle.read(16)
        if not head:
            return
        if len(head) < 16:
            raise PcapMergeError(f"{path}: truncated packet header")
        sec, usec, included, original = header.unpack(head)
        data = handle.read(included)
        if len(data) < included:
            raise PcapMergeError(f"{path}: truncated packet")
        yield (sec, usec), original, data


def merge_pcaps(inputs: list[str], output: str) -> int:
    """Writes ``output`` from ``inputs``; returns the number of packets."""
    handles, streams, global_header = [], [], None
    try:
        for path in inputs:
            handle = open(path, "rb")
            handles.append(handle)
            head = handle.read(24)
            order = _MAGICS.get(head[:4])
            if len(head) < 24 or order is None:
                raise PcapMergeError(f"{path}: not a classic pcap file")
            if global_header is None:
                global_header = (order, head)
            elif order != global_header[0] or head[20:24] != global_header[1][20:24]:
                raise PcapMergeError(f"{path}: a different link type or byte order than {inputs[0]}")
            streams.append(_records(path, handle, order))
        packets = 0
        order, head = global_header or ("<", struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        record = struct.Struct(order + "IIII")
        with open(output + ".tmp", "wb") as out:
            out.write(head)
            for (sec, usec), original, data in heapq.merge(*streams, key=lambda item: item[0]):
                out.write(record.pack(sec, usec, len(data), original))
                out.write(data)
                packets += 1
        os.replace(output + ".tmp", output)
        return packets
    finally:
        for handle in handles:
            handle.close()


def shard_capture_path(path: str, label: str) -> str:
    """``lab.pcap`` -> ``lab.shard-0-of-2.pcap``: each shard's own capture beside the merged one."""
    stem, dot, extension = path.rpartition(".")
    return f"{stem}.{label}.{extension}" if dot and "/" not in extension else f"{path}.{label}"
