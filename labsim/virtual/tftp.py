"""TFTP in the in-memory lab: the phones' own TFTP client against the TFTP server's own
core, datagram by datagram.

The two ends are the same I/O-free state machines the socket adapters drive: the
phones' ``TftpReadSession``/``TftpWriteSession`` (``transport.tftp_client``, with the
options and timing ``transport.loopback`` gives them: ``blksize`` 1428, ``tsize``, 1 s
doubling to 8 s, five retransmissions) and the server's ``DiskTftpRequestHandler`` with
its ``ReadTransfer``/``WriteTransfer`` (``services.tftp``: the path checks, the file
cache, option negotiation, retransmissions, uploads only into ``upload_dir``, every
counter). Here only the adapters differ:

- Each datagram takes one hop (``LATENCY_S``) and passes the scenario's ``tftp`` faults
  as the socket server's link applies them: into the server ``in`` (the request and
  every ACK or DATA), out of it ``out`` (OACK, DATA, ACKs); the ERROR answering a
  request, and ERROR 5 to a stranger, go out directly, as the socket server sends them.
- Each side keeps one retransmission timer, as its adapter does: the client's is reset
  by every step that sets one; the server's fires at the last deadline its transfer set.
  A datagram due at the same moment as a timer is taken first (both adapters read their
  socket before acting on a late timer).
- A request retransmitted before the server's answer got through starts a second
  transfer from another TID, as on sockets (the client answers it with ERROR 5).
- A finished client answers a repeated last DATA with its last ACK for as long as its
  port lingers (10 s after the last datagram); a finished server transfer drops what
  still arrives for it (``late_packets``) for its quiet period, as the pool socket does.

One exchange is played out at once, on its own small queue, when the phone asks: the
phone gets its result at the simulated moment its session ended; the server's counters
(and the fault draws, made with each datagram's own simulated time) are those of the
whole exchange, including what the server does after the phone is done (a dally, the
retransmissions of a last DATA whose ACK was lost). What it does not see: a timeline
action that stops the service or edits a file in the middle of one transfer (it sees the
lab as it was when the request left; a transfer lasts milliseconds unless datagrams are
lost).
"""

from __future__ import annotations

import heapq
from itertools import count

from labsim.services.tftp import Reject, TftpServerConfig
from labsim.services.tftp_transfer import answer_stranger
from labsim.services.tftp_udp import DiskTftpRequestHandler, quiet_s
from labsim.transport.loopback import TFTP_LINGER_S, TFTP_TIMING, tftp_outcome
from labsim.transport.tftp_client import TftpReadSession, TftpWriteSession
from labsim.wire.tftp import Step

CLIENT_BLKSIZE = 1428  # what the phones' client asks for (transport.loopback)
PEER = ("127.0.0.1", 1)  # the phone's end of every transfer (one exchange at a time)
FIRST_TID = 2  # the server's transfer ports, counted up per exchange
INFINITY = float("inf")
DONE = Step(done=True)


def server_handler(spec, root: str, upload_root: str | None) -> DiskTftpRequestHandler:
    """The request handler a socket server of ``spec`` would have (``services.lab``)."""
    config = TftpServerConfig(root=root, blksize_max=spec.blksize_max, timeout_s=spec.timeout_s,
                              max_retransmits=spec.max_retransmits, uploads=spec.uploads,
                              upload_dir=spec.upload_dir, upload_root=upload_root)
    return DiskTftpRequestHandler(config)


def get_session(server: tuple[str, int], name: str) -> TftpReadSession:
    return TftpReadSession(server, name, blksize=CLIENT_BLKSIZE, tsize=True, **TFTP_TIMING)


def put_session(server: tuple[str, int], name: str, body: bytes) -> TftpWriteSession:
    return TftpWriteSession(server, name, body, blksize=CLIENT_BLKSIZE, tsize=True, **TFTP_TIMING)


def exchange(session, handler: DiskTftpRequestHandler | None, faults, now: float, latency_s: float):
    """(the phone's FetchResult, seconds until its session ended) of ``session`` (not
    started) played against ``handler`` (None: nobody answers, as when the server is
    stopped) from simulated time ``now``, through ``faults`` (a FaultSet, or None)."""
    faulty = faults is not None and bool(faults._by_service.get("tftp"))
    server = session.server
    queue: list = []  # (due, order, to_server, datagram, destination or source)
    order = count()
    transfers: dict = {}  # server TID -> [transfer, deadline, ended at (None: running)]
    tids = count(FIRST_TID)
    stats = handler.stats if handler is not None else None
    client_deadline = INFINITY
    ended = None  # when the client's session ended (relative to now)
    last_heard = 0.0  # when the finished client's port last heard something (its linger)

    def carry(to_server: bool, packet: bytes, address, t: float) -> None:
        if not faulty:
            heapq.heappush(queue, (t + latency_s, next(order), to_server, packet, address))
            return
        for delay, data in faults.plan("tftp", "in" if to_server else "out", packet, now + t):
            heapq.heappush(queue, (t + latency_s + delay, next(order), to_server, data, address))

    def client_step(step, t: float) -> None:
        nonlocal client_deadline, ended, last_heard
        for packet, address in step.send:
            carry(True, packet, address, t)
        if step.done:
            client_deadline = INFINITY
            if ended is None:
                ended = last_heard = t
        elif step.timer is not None:
            client_deadline = t + step.timer

    def server_step(tid, step, t: float) -> None:
        entry = transfers[tid]
        for packet, _ in step.send:
            carry(False, packet, tid, t)
        if step.done:
            entry[1], entry[2] = INFINITY, t
        elif step.timer is not None:
            entry[1] = t + step.timer

    def at_server(datagram: bytes, destination, t: float) -> None:
        if destination == server:  # the well-known port: a request (or a stray)
            outcome = handler.handle(datagram, PEER)
            if outcome is None:
                return
            tid = (server[0], next(tids))
            if isinstance(outcome, Reject):
                heapq.heappush(queue, (t + latency_s, next(order), False, outcome.packet, tid))
                return
            transfers[tid] = [outcome, INFINITY, None]
            server_step(tid, outcome.start(), t)
            return
        entry = transfers.get(destination)
        if entry is None:
            return
        if entry[2] is not None:  # that transfer is over: its pool socket drops or refuses it
            if t < entry[2] + quiet:
                stats["late_packets"] += 1
            else:
                for packet, _ in answer_stranger(datagram, PEER, stats).send:
                    heapq.heappush(queue, (t + latency_s, next(order), False, packet, destination))
            return
        try:
            step = entry[0].datagram_received(datagram, PEER)
        except Exception:  # as the socket adapter: a bug ends the transfer, never the run
            stats["internal_errors"] += 1
            step = DONE
        server_step(destination, step, t)

    def at_client(datagram: bytes, source, t: float) -> None:
        nonlocal last_heard
        if ended is None:
            client_step(session.datagram_received(datagram, source), t)
        elif t <= last_heard + TFTP_LINGER_S:  # the port still held: only the finished answers
            last_heard = t
            for packet, address in session.after_finish(datagram, source).send:
                carry(True, packet, address, t)

    quiet = quiet_s(handler.config) if handler is not None else 0.0
    client_step(session.start(), 0.0)
    while True:
        timer_due, timer_tid = client_deadline, None
        for tid, entry in transfers.items():
            if entry[1] < timer_due:
                timer_due, timer_tid = entry[1], tid
        if queue and queue[0][0] <= timer_due:
            t, _, to_server, datagram, address = heapq.heappop(queue)
            if not to_server:
                at_client(datagram, address, t)
            elif handler is not None:
                at_server(datagram, address, t)
        elif timer_due == INFINITY:
            break
        elif timer_tid is None:
            client_step(session.timer_expired(), timer_due)
        else:
            server_step(timer_tid, transfers[timer_tid][0].timer_expired(), timer_due)
    return tftp_outcome(session.result, session.error), ended
