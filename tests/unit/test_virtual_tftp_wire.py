"""The in-memory TFTP wire (labsim.virtual.tftp): the phones' client session against the
server's handler and transfers on labsim's simulated clock, every datagram its own call
on it, with the socket adapters' timer rules; datagrams lost or held on purpose, the
server stopped or restarted in the middle of a transfer."""

from types import SimpleNamespace

import pytest

from labsim.virtual import tftp as virtual_tftp
from labsim.virtual.clock import HeapClock
from labsim.wire import tftp as wire

SERVER = ("127.0.0.1", 6969)
HOP = 0.001
BACKOFF_S = 1 + 2 + 4 + 8 + 8 + 8  # the phones' client: five retransmissions, 1 s doubling up to 8 s


class Faults:
    """A fault set that loses the n-th datagram of a direction (1-based) or holds it
    back ``held[direction][n]`` seconds; nothing else."""

    def __init__(self, lost=None, held=None):
        self._by_service = {"tftp": [object()]}
        self.lost = lost or {}
        self.held = held or {}
        self.seen = {"in": 0, "out": 0}
        self.kinds = {"in": [], "out": []}

    def plan(self, service, direction, data, now):
        self.seen[direction] += 1
        number = self.seen[direction]
        self.kinds[direction].append(wire.opcode_of(data))
        if number in self.lost.get(direction, ()):
            return []
        return [(self.held.get(direction, {}).get(number, 0.0), data)]


class Lab:
    """One TFTP server (restartable) and the wire to it, on a HeapClock from 0."""

    def __init__(self, root, faults=None, hop=HOP, **spec):
        self.root = str(root)
        self.spec = dict(blksize_max=1468, timeout_s=1.0, max_retransmits=5, uploads=False, upload_dir="uploads")
        self.spec.update(spec)
        self.clock = HeapClock(0.0)
        self.server = None
        self.start()
        self.wire = virtual_tftp.TftpWire(self.clock, faults, hop, lambda: self.server)
        self.results = []  # (simulated time, request, FetchResult)

    def start(self):
        handler = virtual_tftp.server_handler(SimpleNamespace(**self.spec), self.root, None)
        self.server = virtual_tftp.VirtualTftpServer(handler, SERVER[0], SERVER[1])

    def stop(self):
        self.server.stop()
        self.server = None

    @property
    def stats(self):
        return self.server.stats

    def deliver(self, request, result):
        self.results.append((self.clock.seconds(), request, result))

    def get(self, name="a.cfg", request="get"):
        return self.wire.get(SERVER, name, request, self.deliver)

    def put(self, name, body, request="put"):
        return self.wire.put(SERVER, name, body, request, self.deliver)

    def run(self, until=None):
        while True:
            due = self.clock.next_time()
            if due is None or (until is not None and due > until):
                break
            self.clock.run_until(due)
        if until is not None:
            self.clock.run_until(until)

    def only_result(self):
        assert len(self.results) == 1, self.results
        when, _, result = self.results[0]
        return when, result


@pytest.fixture
def root(tmp_path):
    (tmp_path / "a.cfg").write_bytes(b"x" * 100)
    (tmp_path / "big.cfg").write_bytes(bytes(range(256)) * 40)  # 10,240 bytes: 21 blocks of 512
    return tmp_path


def test_a_clean_download_is_four_hops_and_the_final_ack_reaches_the_server_after(root):
    lab = Lab(root)
    lab.get()
    lab.run(until=4 * HOP)
    when, result = lab.only_result()
    assert result.ok and result.body == b"x" * 100 and when == pytest.approx(4 * HOP)  # RRQ OACK ACK0 DATA1
    assert lab.stats["transfers_ok"] == 0 and lab.stats["active"] == 1  # its final ACK is still on the wire
    lab.run()
    assert lab.stats["transfers_ok"] == 1 and lab.stats["active"] == 0 and lab.stats["packets_sent"] == 2
    assert lab.clock.seconds() == pytest.approx(5 * HOP) and not lab.clock.getDelayedCalls()  # both timers cancelled


def test_two_transfers_go_datagram_by_datagram_side_by_side(root):
    lab = Lab(root, blksize_max=512)
    lab.get("big.cfg", "first")
    lab.get("a.cfg", "second")
    lab.run(until=HOP)
    assert lab.stats["rrq"] == 2 and lab.stats["transfers_started"] == 2  # the first is not played out first
    lab.run()
    (short_at, short, short_result), (long_at, long, long_result) = lab.results
    assert (short, long) == ("second", "first")
    assert short_at == pytest.approx(4 * HOP) and long_at == pytest.approx((2 + 2 * 21) * HOP)
    assert long_result.body == bytes(range(256)) * 40 and short_result.body == b"x" * 100


def test_nobody_answering_times_out_as_the_phones_client_backs_off(root):
    lab = Lab(root)
    lab.server = None
    lab.get()
    lab.run()
    when, result = lab.only_result()
    assert (result.status, result.detail) == ("timeout", "TFTP: no answer") and when == pytest.approx(BACKOFF_S)


def test_a_server_stopped_mid_transfer_leaves_the_phone_to_time_out(root):
    lab = Lab(root, blksize_max=512)
    stats = lab.stats
    lab.get("big.cfg")
    lab.run(until=10.5 * HOP)  # blocks 1-4 acknowledged, ACK 4 on its way
    lab.stop()
    lab.run()
    when, result = lab.only_result()
    # The client's last ACK (sent at 10 hops) is retransmitted five times, then it gives up.
    assert (result.status, result.detail) == ("timeout", "TFTP: no answer")
    assert when == pytest.approx(10 * HOP + BACKOFF_S)
    assert stats["transfers_started"] == 1 and stats["transfers_ok"] == stats["transfers_failed"] == 0
    assert stats["packets_sent"] == 5 and stats["active"] == 0  # OACK, DATA 1-4; no timer of it ran after


def test_a_restarted_server_has_forgotten_the_transfer_and_the_phone_asks_again(root):
    lab = Lab(root, blksize_max=512)
    lab.get("big.cfg")
    lab.run(until=10.5 * HOP)
    lab.stop()
    lab.start()
    lab.run()
    _, result = lab.only_result()
    assert result.status == "timeout"  # its ACKs went to a port the new server never had: dropped
    assert lab.stats["unknown_tid"] == lab.stats["late_packets"] == lab.stats["rrq"] == 0
    lab.results.clear()
    lab.get("big.cfg")
    lab.run()
    assert lab.only_result()[1].body == bytes(range(256)) * 40 and lab.stats["transfers_ok"] == 1


def test_a_request_reads_the_file_as_it_is_when_the_request_arrives(root):
    lab = Lab(root, faults=Faults(held={"in": {1: 0.5}}))
    lab.get()
    lab.run(until=0.2)
    (root / "a.cfg").write_bytes(b"changed while the request was on its way")
    lab.run()
    when, result = lab.only_result()
    assert result.body == b"changed while the request was on its way" and when == pytest.approx(0.5 + 4 * HOP)


def test_a_datagram_due_with_a_timer_is_taken_first(root):
    # The OACK, held back, arrives exactly when the client's 1 s timer comes due: as
    # both socket adapters read their socket before acting on a late timer, the client
    # takes the OACK and never resends its RRQ.
    faults = Faults(held={"out": {1: 0.5}})
    lab = Lab(root, faults=faults, hop=0.25)
    lab.get()
    lab.run()
    when, result = lab.only_result()
    assert result.ok and when == 1.5 and lab.stats["rrq"] == 1 and faults.kinds["in"][:2] == [wire.RRQ, wire.ACK]


def test_a_lost_final_ack_is_answered_again_from_the_finished_client(root):
    faults = Faults(lost={"in": [3]})  # RRQ, ACK 0, then the final ACK is lost
    lab = Lab(root, faults=faults)
    lab.get()
    lab.run()
    when, result = lab.only_result()
    assert result.ok and when == pytest.approx(4 * HOP)  # the phone is done at once
    # The server resent DATA 1 after its 1 s; the client's lingering port answered it.
    assert lab.stats["retransmits"] == 1 and lab.stats["transfers_ok"] == 1
    assert faults.kinds["in"] == [wire.RRQ, wire.ACK, wire.ACK, wire.ACK]


def test_a_lost_oack_makes_a_second_transfer_the_client_refuses(root):
    lab = Lab(root, faults=Faults(lost={"out": [1]}))
    lab.get()
    lab.run()
    when, result = lab.only_result()
    assert result.ok and 1.0 < when < 1.01
    stats = lab.stats
    # The client resent its RRQ at 1 s; the server started a second transfer on another
    # TID (as on sockets), the client locked on to whichever answered first and told the
    # other ERROR 5.
    assert stats["rrq"] == 2 and stats["transfers_started"] == 2
    assert stats["transfers_ok"] == 1 and stats["client_errors"] == 1


def test_errors_and_refusals_are_the_servers(root):
    lab = Lab(root)
    lab.get("nope.cfg", "missing")
    lab.get("../a.cfg", "escape")
    lab.run()
    results = {request: result for _, request, result in lab.results}
    assert (results["missing"].status, results["missing"].detail) == ("not_found", "TFTP: TFTP error 1: File not found")
    assert (results["escape"].status, results["escape"].detail) == ("denied", "TFTP: TFTP error 2: Access violation")
    assert lab.stats["not_found"] == 1 and lab.stats["access_violation"] == 1


def test_an_upload_is_stored_and_the_server_dallies_after_the_phone_is_done(root):
    lab = Lab(root, uploads=True, blksize_max=512)
    lab.put("uploads/phone.log", b"L" * 1500)  # three DATA: 512, 512, 476
    lab.run(until=8 * HOP)
    when, result = lab.only_result()
    assert result.ok and when == pytest.approx(8 * HOP)  # WRQ OACK DATA1 ACK1 DATA2 ACK2 DATA3 ACK3
    assert (root / "uploads" / "phone.log").read_bytes() == b"L" * 1500
    assert lab.stats["uploads"] == 1 and lab.stats["active"] == 1  # dallying for a lost final ACK
    lab.run()
    assert lab.stats["active"] == 0 and lab.stats["retransmits"] == 0


def test_a_server_stopped_mid_upload_stores_nothing_and_the_phone_times_out(root):
    lab = Lab(root, uploads=True, blksize_max=512)
    lab.put("uploads/phone.log", b"L" * 5000)  # ten DATA
    lab.run(until=6.5 * HOP)  # DATA 1 and 2 acknowledged, DATA 3 on its way
    lab.stop()
    lab.run()
    when, result = lab.only_result()
    assert result.status == "timeout" and when == pytest.approx(6 * HOP + BACKOFF_S)  # DATA 3 went out at 6 hops
    assert not (root / "uploads" / "phone.log").exists()  # a WRQ stores only a whole file


def test_late_datagrams_for_an_ended_transfer_are_dropped_then_answered_with_error_5(root):
    lab = Lab(root)
    client = lab.get()
    lab.run()
    (tid,) = lab.server.quiet_until  # the transfer's port, quiet for the server's retransmission window
    ack = wire.encode_ack(1)
    lab.clock.callLater(1.0, virtual_tftp.TftpWire._at_server, lab.wire, ack, tid, client)
    lab.run()
    assert lab.stats["late_packets"] == 1 and lab.stats["unknown_tid"] == 0
    lab.clock.callLater(lab.server.quiet_s, virtual_tftp.TftpWire._at_server, lab.wire, ack, tid, client)
    lab.run()
    assert lab.stats["late_packets"] == 1 and lab.stats["unknown_tid"] == 1  # the pool socket answers a stranger
    assert lab.only_result()[1].ok  # the phone's download long done; its port ignores the ERROR


def test_what_a_fault_holds_when_the_server_stops_is_dropped_as_by_the_socket_server(root):
    # The faults act inside the server, where its socket link does: DATA 1, held 0.5 s
    # on its way out, and a request held 0.5 s on its way in, both outlive the server.
    lab = Lab(root, faults=Faults(held={"out": {2: 0.5}, "in": {3: 0.5}}), blksize_max=512)
    stats = lab.stats
    lab.get("big.cfg", "held data")  # in: RRQ (1), ACK 0 (2)
    lab.clock.callLater(0.05, lab.get, "a.cfg", "held request")  # in: its RRQ (3)
    lab.run(until=0.1)
    lab.stop()
    lab.run()
    results = {request: (when, result.status) for when, request, result in lab.results}
    # Neither heard anything after the stop: timeouts 31 s after ACK 0 (2 hops) and the RRQ (0.05 s).
    assert results["held data"][1] == results["held request"][1] == "timeout"
    assert results["held data"][0] == pytest.approx(2 * HOP + BACKOFF_S)
    assert results["held request"][0] == pytest.approx(0.05 + BACKOFF_S)
    # The held request was read by the stopped server (counted), never answered.
    assert stats["rrq"] == 2 and stats["transfers_started"] == 1 and stats["packets_sent"] == 2  # OACK, DATA 1


def test_at_most_limit_transfers_to_a_server_at_once_the_rest_wait_with_their_clocks_stopped(root):
    # The socket network's TransferGate (512 a server): a waiting session has sent nothing
    # and its timers have not started; it starts the moment one in flight ends.
    lab = Lab(root)
    lab.wire.limit = 2
    lab.server = None  # nobody answers: the first two time out after 31 s
    lab.get("a.cfg", "first")
    lab.get("a.cfg", "second")
    lab.get("a.cfg", "third")
    lab.run(until=1.5)
    assert [client.session.retransmits for client in lab.wire._gates[SERVER[1]].waiting] == [0]
    lab.start()  # back at 1.5 s: the first two's next retries (at 3 s) are answered
    lab.run()
    times = {request: when for when, request, _ in lab.results}
    assert all(result.ok for _, _, result in lab.results)
    assert times["first"] == times["second"] == pytest.approx(3 + 4 * HOP)
    assert times["third"] == pytest.approx(times["first"] + 4 * HOP)  # started when the first ended
    assert lab.wire._gates[SERVER[1]].running == 0
