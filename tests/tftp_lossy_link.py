"""Two I/O-free TFTP state machines, a client session and labsim's server-side transfer,
wired through a link that drops, duplicates and reorders datagrams (seeded): what a
lossy network does to a download or an upload, without sockets or time."""

from __future__ import annotations

import random

from labsim.wire import tftp as wire

# The server's transfer port, as the client sees it, and the client's, as the server does.
SERVER_TID = ("127.0.0.1", 50123)
CLIENT = ("127.0.0.1", 40000)


def run_over_lossy_link(client, start_server, request_opcode: int, rng: random.Random, loss: float) -> None:
    """Run until ``client.finished`` (or 20,000 events). ``start_server(request)`` makes
    the server's transfer from the client's decoded request (RRQ or WRQ: ``request_opcode``)
    when the first one gets through; each quiet moment makes both sides time out."""
    server = None
    in_flight: list[tuple[bytes, bool]] = []  # (datagram, towards the server)
    request = request_opcode.to_bytes(2, "big")

    def post(step, to_server: bool) -> None:
        for packet, _ in step.send:
            if rng.random() >= loss:
                in_flight.append((packet, to_server))
                if rng.random() < 0.1:
                    in_flight.append((packet, to_server))  # duplicated

    post(client.start(), True)
    for _ in range(20000):
        if client.finished:
            return
        if not in_flight:  # quiet link: whoever is waiting times out
            post(client.timer_expired(), True)
            if server is not None:
                post(server.timer_expired(), False)
            continue
        packet, to_server = in_flight.pop(rng.randrange(len(in_flight)))  # reordered too
        if not to_server:
            post(client.datagram_received(packet, SERVER_TID), True)
        elif server is None and packet[:2] == request:
            server = start_server(wire.decode_request(packet))
            post(server.start(), False)
        elif server is not None and packet[:2] != request:
            post(server.datagram_received(packet, CLIENT), False)
