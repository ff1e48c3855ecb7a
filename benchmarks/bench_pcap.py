"""Benchmark: what a ``--pcap`` capture costs, and what building its frames through scapy's
layers would cost instead of labsim's ``struct`` builders (issue 14: a capture of a
10,000-phone storm must not slow the run by more than 20 %).

1. Per frame, in this process: ``labsim.observe.pcap.udp_frame``/``tcp_frame`` against the
   same frames built as ``bytes(Ether()/IP()/UDP()/Raw())`` (and TCP), checked equal.
2. The quickstart storm (benchmarks/bench_quickstart.py's scenario) run without and with
   ``--pcap``: wall time, and the frames the capture holds. Frames x the per-frame
   difference is what scapy would add to the run.

Run: ``python benchmarks/bench_pcap.py [--phones 10000] [--frames 20000]``. Numbers on a
shared machine are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_quickstart import scaled_scenario  # noqa: E402

MAC_A, MAC_B = bytes.fromhex("001565000001"), bytes.fromhex("02000000000a")


def per_frame_us(frames: int) -> tuple[float, float, float, float]:
    """(struct UDP, scapy UDP, struct TCP, scapy TCP), microseconds a frame."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    from labsim.observe.pcap import tcp_frame, udp_frame

    payload = bytes(300)
    ours = udp_frame(MAC_A, MAC_B, "10.1.0.10", "127.0.0.1", 68, 67, payload, ident=7)
    theirs = bytes(Ether(src="00:15:65:00:00:01", dst="02:00:00:00:00:0a") /
                   IP(src="10.1.0.10", dst="127.0.0.1", id=7, flags="DF", ttl=64) /
                   UDP(sport=68, dport=67) / Raw(payload))
    assert ours == theirs, "the scapy frame differs from labsim's: the comparison would be unfair"

    def timed(build) -> float:
        started = time.perf_counter()
        for i in range(frames):
            build(i)
        return (time.perf_counter() - started) / frames * 1e6

    struct_udp = timed(lambda i: udp_frame(MAC_A, MAC_B, "10.1.0.10", "127.0.0.1", 68, 67, payload, ident=i))
    scapy_udp = timed(lambda i: bytes(Ether(src="00:15:65:00:00:01", dst="02:00:00:00:00:0a") /
                                      IP(src="10.1.0.10", dst="127.0.0.1", id=i & 0xFFFF, flags="DF", ttl=64) /
                                      UDP(sport=68, dport=67) / Raw(payload)))
    body = bytes(1460)
    struct_tcp = timed(lambda i: tcp_frame(MAC_A, MAC_B, "10.1.0.10", "127.0.0.1", 40000, 80, i, 1, 0x18, body, i))
    scapy_tcp = timed(lambda i: bytes(Ether(src="00:15:65:00:00:01", dst="02:00:00:00:00:0a") /
                                      IP(src="10.1.0.10", dst="127.0.0.1", id=i & 0xFFFF, flags="DF", ttl=64) /
                                      TCP(sport=40000, dport=80, seq=i, ack=1, flags="PA", window=65535) /
                                      Raw(body)))
    return struct_udp, scapy_udp, struct_tcp, scapy_tcp


def storm(phones: int, pcap: bool) -> tuple[float, int]:
    """(wall seconds of ``labsim run``, frames captured)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(scaled_scenario(phones))
        command = [sys.executable, "-m", "labsim", "run", path, "--report-dir", tmp]
        capture = os.path.join(tmp, "storm.pcap")
        if pcap:
            command += ["--pcap", capture]
        started = time.monotonic()
        subprocess.run(command, capture_output=True, text=True)
        wall = time.monotonic() - started
        frames = 0
        if pcap:
            from scapy.utils import RawPcapReader

            frames = sum(1 for _ in RawPcapReader(capture))
        return wall, frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=20_000, help="frames per builder in the micro-benchmark")
    args = parser.parse_args()
    struct_udp, scapy_udp, struct_tcp, scapy_tcp = per_frame_us(args.frames)
    print(f"per frame, UDP 300 B:  struct {struct_udp:6.1f} us   scapy layers {scapy_udp:6.1f} us "
          f"({scapy_udp / struct_udp:.0f}x)")
    print(f"per frame, TCP 1460 B: struct {struct_tcp:6.1f} us   scapy layers {scapy_tcp:6.1f} us "
          f"({scapy_tcp / struct_tcp:.0f}x)")
    plain, _ = storm(args.phones, pcap=False)
    captured, frames = storm(args.phones, pcap=True)
    extra = frames * (max(scapy_udp, scapy_tcp) - min(struct_udp, struct_tcp)) / 1e6
    print(f"{args.phones} phones: run {plain:.1f} s without --pcap, {captured:.1f} s with it "
          f"({(captured / plain - 1) * 100:+.0f} %); {frames} frames captured")
    print(f"scapy layers would add about {frames} x {max(scapy_udp, scapy_tcp) - min(struct_udp, struct_tcp):.0f} us "
          f"= {extra:.1f} s on the reactor: {(captured + extra) / plain * 100 - 100:+.0f} % over the run without a capture")
    return 0


if __name__ == "__main__":
    sys.exit(main())
