"""curl, a real HTTP client, against labsim's HTTP server run as its own process; and
labsim's phone HTTP client against nginx and that server."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path

import pytest
from twisted.internet import defer, reactor
from twisted.trial import unittest as trial

from tests.interop import realservers
from tests.interop.realservers import labsim_service
from tests.peers import free_tcp_port, require_binary

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
BODY = b"#!version:1.0.0.1\naccount.1.enable = 1\n" * 100
UA = "Yealink SIP-T46S 66.85.0.5 00:15:65:00:00:01"


def labsim_http(*args: str):
    """``python -m labsim.services.http --port 0 ARGS``; yields its base URL; always stops it."""
    return labsim_service("http", "--port", "0", *args, listening=r"(https?://[\d.]+:\d+)/")


def curl(*args: str) -> tuple[int, bytes, str]:
    """(HTTP status, body, curl's stderr)."""
    binary = require_binary("curl")
    done = subprocess.run(
        [binary, "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        timeout=20,
    )
    body, _, code = done.stdout.rpartition(b"\n")
    return int(code or 0), body, done.stderr.decode(errors="replace")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    for sub in ("secure", "digest"):
        (root / sub).mkdir(parents=True)
    (root / "y000000000066.cfg").write_bytes(BODY)
    (root / "secure" / "a.cfg").write_bytes(b"basic protected")
    (root / "digest" / "b.cfg").write_bytes(b"digest protected")
    (tmp_path / "secret.txt").write_bytes(b"outside the root")
    return root


def test_plain_get_head_and_keepalive(tree):
    with labsim_http("--root", str(tree)) as url:
        status, body, _ = curl(f"{url}/y000000000066.cfg")
        assert (status, body) == (200, BODY)
        status, _, _ = curl(f"{url}/missing.cfg")
        assert status == 404
        status, _, _ = curl(f"{url}/")
        assert status == 403  # no listing
        head = subprocess.run(
            [require_binary("curl"), "-sS", "-I", f"{url}/y000000000066.cfg"], capture_output=True, timeout=20
        ).stdout.decode()
        assert re.search(rf"(?im)^content-length: {len(BODY)}\r?$", head), head
        # two URLs in one curl run share one connection (HTTP/1.1 keep-alive)
        verbose = subprocess.run(
            [require_binary("curl"), "-sS", "-v", "-o", "/dev/null", "-o", "/dev/null",
             f"{url}/y000000000066.cfg", f"{url}/y000000000066.cfg"],
            capture_output=True,
            timeout=20,
        ).stderr.decode()
        assert re.search(r"(?i)re-?using", verbose), verbose


def test_basic_and_digest(tree):
    with labsim_http(
        "--root", str(tree), "--auth", "/secure/*:basic:admin:s3cret", "--auth", "/digest/*:digest:phone:pw"
    ) as url:
        assert curl(f"{url}/secure/a.cfg")[0] == 401
        assert curl("--basic", "-u", "admin:s3cret", f"{url}/secure/a.cfg")[:2] == (200, b"basic protected")
        assert curl("--basic", "-u", "admin:wrong", f"{url}/secure/a.cfg")[0] == 401
        assert curl(f"{url}/digest/b.cfg")[0] == 401
        assert curl("--digest", "-u", "phone:pw", f"{url}/digest/b.cfg")[:2] == (200, b"digest protected")
        assert curl("--digest", "-u", "phone:nope", f"{url}/digest/b.cfg")[0] == 401
        # curl's Digest with a query string in the URI
        assert curl("--digest", "-u", "phone:pw", f"{url}/digest/b.cfg?mac=001565000000")[0] == 200


def test_https_self_signed(tree, tmp_path):
    certs = tmp_path / "certs"
    with labsim_http("--root", str(tree), "--tls", "--cert-dir", str(certs)) as url:
        assert url.startswith("https://")
        assert curl("-k", f"{url}/y000000000066.cfg")[:2] == (200, BODY)
        # the generated certificate verifies for 127.0.0.1 when trusted explicitly
        assert curl("--cacert", str(certs / "cert.pem"), f"{url}/y000000000066.cfg")[0] == 200
        # and curl refuses it without -k or the CA: a real TLS server, not plain text on 443
        status, _, err = curl(f"{url}/y000000000066.cfg")
        assert status == 0 and re.search(r"(?i)certificate", err), err


def test_traversal_with_path_as_is(tree):
    corpus = ["/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/secure/../../secret.txt", "/..%2fsecret.txt"]
    with labsim_http("--root", str(tree)) as url:
        for path in corpus:
            status, body, _ = curl("--path-as-is", url + path)
            assert status in (403, 404), path
            assert b"outside the root" not in body, path
        assert curl("--path-as-is", f"{url}/secure/../y000000000066.cfg")[0] == 404  # '..' never resolved


# --- labsim's phone client (HttpFetcher) against real servers ------------------------------------


class PhoneClientInteropTests(trial.TestCase):
    """The phones' HTTP client against nginx and against labsim's server run as its own
    process: status mapping, keep-alive reuse, a cap on connections, Digest, HTTPS."""

    timeout = 30

    def setUp(self):
        self.tmp = os.path.abspath(self.mktemp())
        self.root = os.path.join(self.tmp, "root")
        os.makedirs(os.path.join(self.root, "folder"))
        os.makedirs(os.path.join(self.root, "digest"))
        Path(self.root, "y000000000066.cfg").write_bytes(BODY)
        Path(self.root, "fw.rom").write_bytes(os.urandom(3 << 20))  # several reads' worth
        Path(self.root, "digest", "b.cfg").write_bytes(b"digest protected")
        for folder in (self.tmp, self.root):
            os.chmod(folder, 0o755)
        self.stack = contextlib.ExitStack()
        self.addCleanup(self.stack.close)

    def fetcher(self, **kw):
        from labsim.transport.http_fetch import HttpFetcher

        fetcher = HttpFetcher(reactor, timeout_s=10, **kw)
        self.addCleanup(fetcher.close)
        return fetcher

    @defer.inlineCallbacks
    def test_against_nginx(self):
        port = free_tcp_port()
        self.stack.enter_context(realservers.nginx(self.root, port, self.tmp))
        fetcher = self.fetcher(max_per_host=4)
        base = f"http://127.0.0.1:{port}"
        result = yield fetcher.get(f"{base}/y000000000066.cfg", UA)
        self.assertEqual((result.status, result.body), ("ok", BODY))
        result = yield fetcher.get(f"{base}/missing.cfg", UA)
        self.assertEqual((result.status, result.detail), ("not_found", "HTTP 404"))
        result = yield fetcher.get(f"{base}/folder/", UA)  # no index, no autoindex
        self.assertEqual((result.status, result.detail), ("denied", "HTTP 403"))
        result = yield fetcher.put(f"{base}/up.log", b"log", UA)  # nginx's static module refuses PUT
        self.assertEqual((result.status, result.detail), ("error", "HTTP 405"))
        result = yield fetcher.get(f"{base}/fw.rom", UA)
        self.assertEqual(result.body, Path(self.root, "fw.rom").read_bytes())
        self.assertEqual(fetcher.stats["connections"], 1)  # all of it over one keep-alive connection
        results = yield defer.gatherResults([fetcher.get(f"{base}/y000000000066.cfg", UA) for _ in range(40)])
        self.assertTrue(all(r.ok and r.body == BODY for r in results))
        self.assertEqual(fetcher.stats["connections"], 4)  # the cap

    @defer.inlineCallbacks
    def test_against_labsim_http_in_its_own_process_with_digest_and_tls(self):
        url = self.stack.enter_context(labsim_http("--root", self.root, "--tls", "--auth",
                                                   "/digest/*:digest:phone:pw"))
        from labsim.phones.events import Credentials

        fetcher = self.fetcher()
        result = yield fetcher.get(f"{url}/y000000000066.cfg", UA)
        self.assertEqual((result.status, result.body), ("ok", BODY))
        result = yield fetcher.get(f"{url}/digest/b.cfg", UA, Credentials("phone", "pw"))
        self.assertEqual((result.status, result.body), ("ok", b"digest protected"))
        result = yield fetcher.get(f"{url}/digest/b.cfg", UA, Credentials("phone", "no"))
        self.assertEqual((result.status, result.detail), ("denied", "HTTP 401"))
        self.assertEqual(fetcher.stats["connections"], 1)
