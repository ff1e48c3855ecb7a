"""The file services of ``labsim run --workers``: one port, several processes (SO_REUSEPORT).

The first process ("open") gets the clear "address already in use" of one process and a
free port for port 0; the others ("join") bind the same ports; a stranger that does not
share is still refused; a restart joins again; a service whose limit counts connections
across clients stays in one process."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request

from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from labsim.net.reuseport import shared_socket
from labsim.scale.shared_services import served_by_workers
from labsim.scenario.loader import load_scenario
from labsim.services.lab import LabServices, ServiceStartError

SCENARIO = """\
name: shared
network: {dhcp_server: 127.0.0.1}
services:
  tftp: {port: 0}
  http: {port: 0}
  ftp: {port: 0, anonymous: true}
  dns: {port: 0, records: [{name: prov.lab, type: A, value: 127.0.0.1}]}
provisioning:
  files: {a.cfg: "x"}
fleets:
  - {vendor: yealink, models: {T46S: 1}, first_mac: "00:15:65:00:00:01"}
"""

KINDS = {"tftp": [socket.SOCK_DGRAM], "http": [socket.SOCK_STREAM], "ftp": [socket.SOCK_STREAM],
         "dns": [socket.SOCK_DGRAM, socket.SOCK_STREAM]}


class SharedPortTests(unittest.TestCase):
    def _spec(self, text: str = SCENARIO):
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write(text)
        return load_scenario(path).scenario.services

    def _root(self) -> str:
        root = self.mktemp()
        os.makedirs(root)
        with open(os.path.join(root, "a.cfg"), "w") as handle:
            handle.write("x")
        return root

    @defer.inlineCallbacks
    def test_two_labs_serve_the_same_ports_and_a_stranger_is_refused(self):
        spec, root = self._spec(), self._root()
        first = LabServices(reactor, spec, root, share_ports="open")
        yield first.start()
        self.addCleanup(first.stop)
        ports = first.ports()
        self.assertTrue(all(ports.values()), ports)
        joined = spec.model_copy(update={name: getattr(spec, name).model_copy(update={"port": port})
                                         for name, port in ports.items()})
        second = LabServices(reactor, joined, root, share_ports="join")
        yield second.start()
        self.addCleanup(second.stop)
        self.assertEqual(second.ports(), ports)
        for name, port in ports.items():  # a socket that does not share cannot take the port
            for kind in KINDS[name]:
                with socket.socket(socket.AF_INET, kind) as stranger:
                    with self.assertRaises(OSError, msg=name):
                        stranger.bind(("127.0.0.1", port))
        # The first hands HTTP over: the second still answers on the port.
        yield first.hand_over(["http"])
        self.assertNotIn("http", first.running)
        body = yield threads.deferToThread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/a.cfg", timeout=5).read())
        self.assertEqual(body, b"x")
        self.assertEqual(second.stats()["http"]["requests"], 1)
        # A restart (the timeline) joins the port again.
        second.control("restart", "tftp")
        yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(second.ports()["tftp"], ports["tftp"])

    @defer.inlineCallbacks
    def test_opening_a_port_someone_holds_is_the_usual_clear_error(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            # Another lab that shares its port (a --workers run already going): joining it
            # would split its traffic without a word.
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind(("127.0.0.1", 0))
            port = holder.getsockname()[1]
            spec = self._spec(SCENARIO.replace("tftp: {port: 0}", f"tftp: {{port: {port}}}"))
            lab = LabServices(reactor, spec, self._root(), share_ports="open")
            with self.assertRaises(ServiceStartError) as caught:
                yield lab.start()
            self.addCleanup(lab.stop)
        self.assertIn(f"TFTP cannot listen on 127.0.0.1:{port}: address already in use", str(caught.exception))
        self.assertIn("services.tftp.port", str(caught.exception))

    def test_a_port_shared_by_other_sockets_is_not_handed_out_for_port_zero(self):
        sockets = [shared_socket(socket.SOCK_DGRAM, "127.0.0.1", 0, "open") for _ in range(200)]
        try:
            ports = [s.getsockname()[1] for s in sockets]
            self.assertEqual(len(set(ports)), len(ports))
        finally:
            for s in sockets:
                s.close()

    def _scenario(self, text: str):
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write(text)
        return load_scenario(path).scenario

    def test_a_limit_over_all_clients_keeps_that_service_in_one_process(self):
        self.assertEqual(served_by_workers(self._scenario(SCENARIO)), ("tftp", "http", "ftp", "dns"))
        limited = SCENARIO.replace("anonymous: true}", "anonymous: true, max_connections_per_address: 4}")
        self.assertEqual(served_by_workers(self._scenario(limited)), ("tftp", "http", "dns"))
        # One line's bandwidth: in the scenario's faults, or added by the timeline.
        capped = SCENARIO + "faults:\n  - {service: tftp, bandwidth_kbps: 64}\n"
        self.assertEqual(served_by_workers(self._scenario(capped)), ("http", "ftp", "dns"))
        later = SCENARIO + "timeline:\n  - at: 5\n    do: {add_fault: {service: dns, bandwidth_kbps: 8}}\n"
        self.assertEqual(served_by_workers(self._scenario(later)), ("tftp", "http", "ftp"))


DIGEST_LAB = SCENARIO.replace("http: {port: 0}", 'http: {port: 0, auth: [{path: "*.cfg", scheme: digest, '
                                                 'users: {alice: s3cret}}]}')


def _get(port: int, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/a.cfg", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, dict(answer.headers)
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers)


def _digest(challenge: str, user: str, password: str, uri: str) -> str:
    import hashlib
    import re

    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    ha1, ha2, cnonce = md5(f"{user}:{params['realm']}:{password}"), md5(f"GET:{uri}"), "0a4f113b"
    response = md5(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}")
    return (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", uri="{uri}", '
            f'qop=auth, nc=00000001, cnonce="{cnonce}", response="{response}", opaque="{params["opaque"]}"')


class SharedDigestKeyTests(unittest.TestCase):
    """A phone that got its Digest nonce from one process may send its next request on a
    connection another process accepted: the worker signs nonces with the parent's key."""

    @defer.inlineCallbacks
    def test_a_nonce_from_the_parent_is_good_at_a_worker(self):
        import json
        import types

        from labsim.scale.shared_services import start_worker_services, worker_lab

        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write(DIGEST_LAB)
        loaded = load_scenario(path)
        root = self.mktemp()
        os.makedirs(root)
        with open(os.path.join(root, "a.cfg"), "w") as handle:
            handle.write("x")
        parent = LabServices(reactor, loaded.scenario.services, root, share_ports="open", shared=("http",))
        parent.auth_secret = os.urandom(32)
        yield parent.start()
        self.addCleanup(parent.stop)
        lab = json.loads(worker_lab(parent, loaded.scenario.services, ("http",), report_dir=self.mktemp(),
                                    uploads_override=None))
        run = types.SimpleNamespace(scenario=loaded.scenario, loaded=loaded, reactor=reactor, faults=None)
        worker = start_worker_services(run, lab)
        self.addCleanup(worker.stop)
        port = parent.ports()["http"]
        authenticator = parent.http.site.resource.files.auth
        challenge = authenticator.digest_challenge(authenticator.rules[0])  # what the parent would send
        yield parent.hand_over(["http"])  # from now on only the worker answers on the port
        authorization = _digest(challenge, "alice", "s3cret", "/a.cfg")
        status, _ = yield threads.deferToThread(_get, port, {"Authorization": authorization})
        self.assertEqual(status, 200)
        self.assertEqual(worker.stats()["http"]["status"], {"200": 1})


class WorkerJoinTests(unittest.TestCase):
    def test_a_worker_that_cannot_join_a_port_says_which_service_and_port(self):
        """A port taken by a socket that does not share it (not the parent's): the worker
        cannot start, and says so naming the service, the port and the key to change (the
        parent shows a worker's words when it ends while starting)."""
        import types

        from labsim.scale.shared_services import start_worker_services

        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write(SCENARIO)
        loaded = load_scenario(path)
        root = self.mktemp()
        os.makedirs(root)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.bind(("127.0.0.1", 0))
            port = holder.getsockname()[1]
            lab = {"root": root, "report_dir": self.mktemp(), "uploads": None, "ports": {"tftp": port}}
            run = types.SimpleNamespace(scenario=loaded.scenario, loaded=loaded, reactor=reactor, faults=None)
            with self.assertRaises(ServiceStartError) as caught:
                start_worker_services(run, lab)
        self.assertIn(f"TFTP cannot listen on 127.0.0.1:{port}: address already in use", str(caught.exception))
