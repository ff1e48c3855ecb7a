"""Benchmark: CPU time per 4 KB keep-alive GET through labsim's whole HTTP site, in process.

The request bytes go into the site's protocol over a ``StringTransport`` (no sockets, no
client): what is measured is twisted.web's parsing plus labsim's resource and response
writing, as process CPU time, so other processes on a shared machine barely move it
(unlike ``bench_http.py``'s requests per second). Compare two checkouts by running it
under each one's PYTHONPATH, one after the other:

    PYTHONPATH=old python benchmarks/bench_http_cpu.py; PYTHONPATH=new python benchmarks/bench_http_cpu.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from labsim.services.http import HttpAuthenticator, HttpServerConfig

try:
    from labsim.services.http_static import StaticRoot
    from labsim.services.http_web import ProvisioningSite
except ImportError:  # a checkout from before services/http.py was split (issue 14)
    from labsim.services.http import ProvisioningSite, StaticRoot

REQUEST = b"GET /a.cfg HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Yealink SIP-T46S 66.85.0.5 00:15:65:00:00:01\r\n\r\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="per round")
    parser.add_argument("--rounds", type=int, default=9, help="the best round is printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "a.cfg"), "wb") as handle:
            handle.write(b"x" * 4096)
        clock = Clock()
        site = ProvisioningSite(StaticRoot(HttpServerConfig(root=root), HttpAuthenticator([], clock.seconds)), clock, 100)
        protocol = site.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        rounds = []
        for _ in range(args.rounds):
            transport.clear()
            started = time.process_time()
            for _ in range(args.requests):
                protocol.dataReceived(REQUEST)
            rounds.append((time.process_time() - started) / args.requests * 1e6)
            answered = transport.value().count(b"HTTP/1.1 200 OK")
            if answered != args.requests:
                print(f"only {answered} of {args.requests} requests answered 200", file=sys.stderr)
                return 1
    print(f"CPU per 4 KB keep-alive GET, in process: best {min(rounds):.1f} us, median "
          f"{sorted(rounds)[len(rounds) // 2]:.1f} us ({args.rounds} rounds of {args.requests})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
