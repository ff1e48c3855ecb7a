"""The TFTP server's pool of TID sockets (labsim/services/tftp_udp.py): many transfers
share a few server ports, told apart by the client's address, and RFC 1350's TID rules
still hold — consecutive transfers get different ports, and a client's late packets
never reach a later transfer of the same client port."""

from __future__ import annotations

import os
import struct

from twisted.internet import defer, reactor, task
from twisted.trial import unittest as trial

from labsim.services import tftp_udp
from labsim.services.tftp import TftpServerConfig
from labsim.services.tftp_udp import TID_SOCKETS, quiet_s, start_tftp_server
from labsim.wire import tftp as wire
from tests.peers import missing
from tests.udp_socket import BareUdpSocket, settle

BLOCK = 512


def rrq(name: str) -> bytes:
    return b"\x00\x01" + name.encode() + b"\x00octet\x00"


def ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class TidPool(trial.TestCase):
    timeout = 30

    def setUp(self):
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.content = os.urandom(3 * BLOCK + 100)  # 4 DATA packets
        with open(os.path.join(self.root, "a.cfg"), "wb") as f:
            f.write(self.content)
        self.clients: list[BareUdpSocket] = []

    def client(self) -> BareUdpSocket:
        client = BareUdpSocket()
        self.clients.append(client)
        self.addCleanup(client.close)
        return client

    def serve(self, clock=None, **kw):
        server = start_tftp_server(reactor, TftpServerConfig(self.root, **kw), "127.0.0.1", 0, clock=clock)
        self.addCleanup(server.stop)
        return server

    @defer.inlineCallbacks
    def receive(self, client: BareUdpSocket, count: int = 1, seconds: float = 2.0) -> list:
        got = []
        for _ in range(int(seconds / 0.005)):
            got += client.drain()
            if len(got) >= count:
                break
            yield settle(0.005)
        return got

    @defer.inlineCallbacks
    def download(self, client: BareUdpSocket, server) -> tuple[bytes, tuple]:
        """A lockstep download of a.cfg; returns the bytes and the server's TID."""
        client.sock.sendto(rrq("a.cfg"), ("127.0.0.1", server.port))
        data, tid = b"", None
        while True:
            (packet, source), = yield self.receive(client)
            tid = tid or source
            self.assertEqual(source, tid)  # one TID for the whole transfer
            block, payload = wire.decode_data(packet)
            data += payload
            client.sock.sendto(ack(block), tid)
            if len(payload) < BLOCK:
                return data, tid

    @defer.inlineCallbacks
    def test_many_concurrent_transfers_share_the_pool_and_all_arrive_whole(self):
        server = self.serve()
        clients = [self.client() for _ in range(5 * TID_SOCKETS)]
        before = open_descriptors()
        for client in clients:
            client.sock.sendto(rrq("a.cfg"), ("127.0.0.1", server.port))
        firsts = []
        for client in clients:
            firsts += (yield self.receive(client))
        self.assertEqual(server.stats["active"], len(clients))
        # 40 transfers in flight hold the pool's descriptors, not one each (a few more
        # may be the reactor's own).
        self.assertLessEqual(open_descriptors() - before, TID_SOCKETS + 3)
        ports = {tid[1] for _, tid in firsts}
        self.assertEqual(len(ports), TID_SOCKETS)
        self.assertNotIn(server.port, ports)
        results = []
        for client, (packet, tid) in zip(clients, firsts):
            data = wire.decode_data(packet)[1]
            client.sock.sendto(ack(1), tid)
            results.append((client, tid, data))
        for block in (2, 3, 4):
            for i, (client, tid, data) in enumerate(results):
                (packet, source), = yield self.receive(client)
                self.assertEqual(source, tid)  # each transfer keeps its TID
                number, payload = wire.decode_data(packet)
                self.assertEqual(number, block)
                client.sock.sendto(ack(block), tid)
                results[i] = (client, tid, data + payload)
        self.assertTrue(all(data == self.content for _, _, data in results))
        yield settle()
        self.assertEqual((server.stats["transfers_ok"], server.stats["active"]), (len(clients), 0))

    @defer.inlineCallbacks
    def test_consecutive_transfers_get_different_ports(self):
        server = self.serve()
        tids = []
        for _ in range(2 * TID_SOCKETS):
            _, tid = yield self.download(self.client(), server)
            tids.append(tid[1])
        self.assertTrue(all(a != b for a, b in zip(tids, tids[1:])), tids)

    @defer.inlineCallbacks
    def test_a_late_packet_of_an_ended_transfer_never_reaches_the_next_one_from_the_same_port(self):
        clock = task.Clock()
        server = self.serve(clock=clock, timeout_s=1.0, max_retransmits=2)
        client = self.client()
        data, first = yield self.download(client, server)
        yield settle()
        # Same client port asks again at once: it must get another TID ...
        client.sock.sendto(rrq("a.cfg"), ("127.0.0.1", server.port))
        (packet, second), = yield self.receive(client)
        self.assertNotEqual(second, first)
        self.assertEqual(wire.decode_data(packet)[0], 1)
        # ... and the first transfer's late final ACK, to the old TID, is dropped quietly:
        # no ERROR to a client that is busy with its next transfer, no effect on it.
        client.sock.sendto(ack(4), first)
        yield settle()
        self.assertEqual(client.drain(), [])
        self.assertEqual((server.stats["late_packets"], server.stats["unknown_tid"]), (1, 0))
        client.sock.sendto(ack(1), second)
        (packet, source), = yield self.receive(client)
        self.assertEqual((source, wire.decode_data(packet)[0]), (second, 2))

    @defer.inlineCallbacks
    def test_after_the_quiet_period_the_old_client_is_a_stranger_and_gets_error_5(self):
        clock = task.Clock()
        config = dict(timeout_s=1.0, max_retransmits=2)
        server = self.serve(clock=clock, **config)
        client = self.client()
        _, tid = yield self.download(client, server)
        yield settle()  # the final ACK is in: the transfer has ended
        clock.advance(quiet_s(TftpServerConfig(self.root, **config)) + 0.1)
        client.sock.sendto(ack(4), tid)
        (packet, source), = yield self.receive(client)
        self.assertEqual(source, tid)
        self.assertEqual(wire.decode_error(packet)[0], wire.ERR_UNKNOWN_TID)
        self.assertEqual((server.stats["late_packets"], server.stats["unknown_tid"]), (0, 1))

    @defer.inlineCallbacks
    def test_a_stranger_to_a_busy_pool_socket_gets_error_5_and_the_transfer_goes_on(self):
        server = self.serve()
        client, stranger = self.client(), self.client()
        client.sock.sendto(rrq("a.cfg"), ("127.0.0.1", server.port))
        (_, tid), = yield self.receive(client)
        stranger.sock.sendto(ack(1), tid)
        (packet, source), = yield self.receive(stranger)
        self.assertEqual((source, wire.decode_error(packet)[0]), (tid, wire.ERR_UNKNOWN_TID))
        self.assertEqual(client.drain(), [])  # the stranger's ACK moved nothing
        client.sock.sendto(ack(1), tid)
        (packet, _), = yield self.receive(client)
        self.assertEqual(wire.decode_data(packet)[0], 2)

    @defer.inlineCallbacks
    def test_one_client_port_asking_again_and_again_never_shares_a_socket_it_used_lately(self):
        clock = task.Clock()
        server = self.serve(clock=clock)
        client = self.client()
        tids = []
        for _ in range(TID_SOCKETS + 3):
            _, tid = yield self.download(client, server)
            tids.append(tid)
        # Every socket of the pool was resting from this client: the pool grew.
        self.assertEqual(len(set(tids)), len(tids))
        self.assertEqual(len(server._pool), TID_SOCKETS + 3)

    @defer.inlineCallbacks
    def test_clients_whose_quiet_period_is_over_are_forgotten(self):
        clock = task.Clock()
        config = dict(timeout_s=1.0, max_retransmits=2)
        server = self.serve(clock=clock, **config)

        def remembered() -> int:
            return sum(len(tid.quiet_until) for tid in server._pool)

        for _ in range(TID_SOCKETS):  # one transfer per pool socket
            yield self.download(self.client(), server)
        yield settle()
        self.assertEqual(remembered(), TID_SOCKETS)
        clock.advance(quiet_s(TftpServerConfig(self.root, **config)) + 0.1)
        for _ in range(TID_SOCKETS):  # the next round: each socket forgets its expired client
            yield self.download(self.client(), server)
        yield settle()
        self.assertEqual(remembered(), TID_SOCKETS)

    @defer.inlineCallbacks
    def test_errors_go_out_from_a_pool_socket_without_opening_one(self):
        server = self.serve()
        client = self.client()
        yield self.download(client, server)  # the pool has its first socket
        pool_ports = {tid.port for tid in server._pool}
        for _ in range(TID_SOCKETS):
            self.client()  # (any later socket of the test is opened before counting)
        before = open_descriptors()
        for asker in self.clients[1:]:
            asker.sock.sendto(rrq("missing.cfg"), ("127.0.0.1", server.port))
        for asker in self.clients[1:]:
            (packet, source), = yield self.receive(asker)
            self.assertEqual(wire.decode_error(packet)[0], wire.ERR_NOT_FOUND)
            self.assertNotEqual(source[1], server.port)
        self.assertLessEqual(open_descriptors() - before, TID_SOCKETS - len(pool_ports))
        self.assertEqual(server.stats["not_found"], TID_SOCKETS)

    @defer.inlineCallbacks
    def test_three_thousand_transfers_in_flight_at_once(self):
        # Issue 3: 3,000 or more concurrent transfers. Every client asks, and only when
        # all 3,000 hold their first block (all in flight at once) do they ACK on.
        import resource
        import select

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        count = 3000
        if hard != resource.RLIM_INFINITY and hard < count + 200:
            missing(f"needs {count + 200} descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 200), hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        server = self.serve(timeout_s=10.0)
        clients = [self.client() for _ in range(count)]
        by_fd = {client.sock.fileno(): client for client in clients}
        ready = select.epoll()
        self.addCleanup(ready.close)
        for fd in by_fd:
            ready.register(fd, select.EPOLLIN)
        got: dict[int, list] = {fd: [] for fd in by_fd}

        @defer.inlineCallbacks
        def collect(expected: int):
            for _ in range(2000):
                for fd, _event in ready.poll(0):
                    got[fd] += by_fd[fd].drain()
                if all(len(packets) >= expected for packets in got.values()):
                    return
                yield settle(0.005)
            missing = sum(len(packets) < expected for packets in got.values())
            self.fail(f"{missing} of {count} clients have fewer than {expected} packets")

        for start in range(0, count, 250):  # in bursts, as phones after a power cut
            for client in clients[start : start + 250]:
                client.sock.sendto(rrq("a.cfg"), ("127.0.0.1", server.port))
            yield settle(0.01)
        for block in range(1, 5):
            yield collect(block)
            if block == 1:
                self.assertEqual(server.stats["active"], count)  # all of them at once
            for fd, client in by_fd.items():
                packet, tid = got[fd][block - 1]
                self.assertEqual(wire.decode_data(packet)[0], block)
                client.sock.sendto(ack(block), tid)
        # The last 3,000 ACKs take the server a moment; on a loaded machine much more than
        # a fixed 50 ms (440 transfers were still open then, seen under Python 3.13).
        for _ in range(400):
            if server.stats["active"] == 0:
                break
            yield settle(0.025)
        content = {b"".join(wire.decode_data(packet)[1] for packet, _ in packets) for packets in got.values()}
        self.assertEqual(content, {self.content})
        self.assertEqual((server.stats["transfers_ok"], server.stats["active"], server.stats["retransmits"]),
                         (count, 0, 0))
        self.assertLessEqual(len(server._pool), TID_SOCKETS)

    def test_the_quiet_period_is_the_whole_retransmission_window(self):
        self.assertEqual(quiet_s(TftpServerConfig(self.root, timeout_s=2.0, max_retransmits=4)), 10.0)
        self.assertGreater(tftp_udp.RECEIVE_BUFFER, 212992)  # above Linux's default queue
