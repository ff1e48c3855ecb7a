"""Benchmark: the dashboard's Packets view on a 10,000-phone capture, per click.

Writes a capture like a 10,000-phone storm's (``--phones`` phones, ``--frames`` frames
each, interleaved as a storm interleaves them, through labsim's own PcapCapture), then
times opening the packets of ``--clicks`` phones two ways: reading the whole file for
each click (what the view did before the index: ``phone_frames``), and through one
``CaptureIndex`` (the first click indexes the file, each later one reads only what is
new and the phone's own records). CPU time per click is printed beside wall time (a
shared machine).

    python benchmarks/bench_packets_view.py --phones 10000 --frames 40 --clicks 20
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labsim.observe.pcap import PcapCapture, udp_frame  # noqa: E402
from labsim.ui.packets import CaptureIndex, phone_frames  # noqa: E402

SERVER = bytes.fromhex("020000000001")


def write_capture(path: str, phones: list[str], frames: int) -> None:
    capture = PcapCapture(path)
    payload = b"x" * 260  # about a DHCP message or a small HTTP segment
    for round_number in range(frames):
        for number, mac in enumerate(phones):
            raw = bytes.fromhex(mac.replace(":", ""))
            src, dst = (raw, SERVER) if round_number % 2 == 0 else (SERVER, raw)
            capture._write(round_number + number / len(phones),
                           udp_frame(src, dst, "10.0.0.1", "10.0.0.2", 1024 + round_number, 69, payload))
    capture.close()


def timed(call):
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args()
    phones = ["00:15:65:%02x:%02x:%02x" % (n >> 16 & 255, n >> 8 & 255, n & 255) for n in range(1, args.phones + 1)]
    with tempfile.TemporaryDirectory(prefix="bench-packets-") as folder:
        path = os.path.join(folder, "storm.pcap")
        write_capture(path, phones, args.frames)
        print(f"capture: {args.phones} phones x {args.frames} frames, {os.path.getsize(path) / 2**20:.1f} MiB; "
              f"load average {os.getloadavg()[0]:.1f}")
        clicked = random.Random(1).sample(phones, args.clicks)
        whole = []
        for mac in clicked[:max(1, args.clicks // 4)]:  # slow: a few clicks tell
            found, wall, cpu = timed(lambda: phone_frames(path, mac))
            assert len(found[1]) == args.frames
            whole.append((wall, cpu))
        index = CaptureIndex(path, phones)
        found, first_wall, first_cpu = timed(lambda: index.phone_frames(clicked[0]))
        assert len(found[1]) == args.frames
        later = []
        for mac in clicked[1:]:
            found, wall, cpu = timed(lambda: index.phone_frames(mac))
            assert len(found[1]) == args.frames
            later.append((wall, cpu))
    print(f"whole file read per click: median {statistics.median(w for w, _ in whole) * 1000:8.1f} ms wall, "
          f"{statistics.median(c for _, c in whole) * 1000:8.1f} ms CPU ({len(whole)} clicks)")
    print(f"index, first click:        {first_wall * 1000:8.1f} ms wall, {first_cpu * 1000:8.1f} ms CPU "
          f"(indexes the file; {index.bytes_read / 2**20:.1f} MiB read)")
    print(f"index, later clicks:       median {statistics.median(w for w, _ in later) * 1000:8.2f} ms wall, "
          f"{statistics.median(c for _, c in later) * 1000:8.2f} ms CPU ({len(later)} clicks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
