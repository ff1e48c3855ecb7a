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
    """``python -m labsim.services.http_web --port 0 ARGS``; yields its base URL; always stops it."""
    return labsim_service("http_web", "--port", "0", *args, listening=r"(https?://[\d.]+:\d+)/")


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


# --- validators, conditional requests and ranges, as curl uses them ------------------------------


def curl_exchange(tmp_path, *args: str, out: Path | None = None) -> tuple[int, dict[str, str], bytes]:
    """(the status the server really sent, its header fields lower-cased, the body file's
    bytes). Read from curl's header dump, not ``%{http_code}``: for ``-z`` curl reports
    304 by itself when a 200's Last-Modified is not newer ("time condition not met")."""
    dump = tmp_path / "headers.txt"
    if out is None:
        out = tmp_path / "body.bin"
        out.unlink(missing_ok=True)  # curl leaves the file alone when there is no body (304)
    done = subprocess.run([require_binary("curl"), "-sS", "--max-time", "10", "-D", str(dump), "-o", str(out), *args],
                          capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    block = dump.read_text("latin-1").strip().split("\r\n\r\n")[-1]  # the last response (after any 100)
    status_line, *lines = block.splitlines()
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, out.read_bytes() if out.exists() else b""


@pytest.fixture
def files(tree):
    """The tree plus a firmware image large enough to stream (past the server's cache)."""
    (tree / "fw.rom").write_bytes(os.urandom(3 << 20))
    old = os.stat(tree / "y000000000066.cfg").st_mtime - 3600  # an hour ago: safely in the past
    os.utime(tree / "y000000000066.cfg", (old, old))
    return tree


def test_curl_ranges(files, tmp_path):
    with labsim_http("--root", str(files)) as url:
        status, headers, body = curl_exchange(tmp_path, "-r", "0-99", f"{url}/y000000000066.cfg")
        assert (status, body, headers["content-range"]) == (206, BODY[:100], f"bytes 0-99/{len(BODY)}")
        assert curl_exchange(tmp_path, "-r", "-50", f"{url}/y000000000066.cfg")[::2] == (206, BODY[-50:])
        firmware = (files / "fw.rom").read_bytes()
        status, headers, body = curl_exchange(tmp_path, "-r", "1000000-1999999", f"{url}/fw.rom")
        assert (status, body) == (206, firmware[1000000:2000000])
        assert headers["content-range"] == f"bytes 1000000-1999999/{len(firmware)}"
        # several disjoint ranges: answered with the whole file (documented: no multipart)
        assert curl_exchange(tmp_path, "-r", "0-9,20-29", f"{url}/y000000000066.cfg")[::2] == (200, BODY)
        status, headers, _ = curl_exchange(tmp_path, "-r", f"{len(BODY)}-", f"{url}/y000000000066.cfg")
        assert (status, headers["content-range"]) == (416, f"bytes */{len(BODY)}")


def test_curl_time_conditions(files, tmp_path):
    """``curl -z FILE`` sends If-Modified-Since with the file's mtime, ``-z DATE`` that date,
    ``-z -DATE`` If-Unmodified-Since."""
    local = tmp_path / "local.cfg"
    local.write_bytes(b"stale copy")
    served = os.stat(files / "y000000000066.cfg").st_mtime
    os.utime(local, (served, served))
    with labsim_http("--root", str(files)) as url:
        status, headers, body = curl_exchange(tmp_path, "-z", str(local), f"{url}/y000000000066.cfg")
        assert (status, body) == (304, b"") and headers["etag"].startswith('"')
        status, _, body = curl_exchange(tmp_path, "-z", "Sat, 01 Jan 2000 00:00:00 GMT", f"{url}/y000000000066.cfg")
        assert (status, body) == (200, BODY)
        status, _, _ = curl_exchange(tmp_path, "-z", "-Sat, 01 Jan 2000 00:00:00 GMT", f"{url}/y000000000066.cfg")
        assert status == 412
        os.utime(local, (served - 60, served - 60))  # our copy is older than the server's
        assert curl_exchange(tmp_path, "-z", str(local), f"{url}/y000000000066.cfg")[::2] == (200, BODY)


def test_curl_etag_save_and_compare(files, tmp_path):
    etags = tmp_path / "etag.txt"
    with labsim_http("--root", str(files)) as url:
        status, headers, body = curl_exchange(tmp_path, "--etag-save", str(etags), f"{url}/y000000000066.cfg")
        assert (status, body) == (200, BODY) and etags.read_text().strip() == headers["etag"]
        status, _, body = curl_exchange(tmp_path, "--etag-compare", str(etags), f"{url}/y000000000066.cfg")
        assert (status, body) == (304, b"")
        (files / "y000000000066.cfg").write_bytes(BODY + b"account.2.enable = 1\n")  # a new version
        status, headers, body = curl_exchange(tmp_path, "--etag-compare", str(etags), f"{url}/y000000000066.cfg")
        assert (status, body) == (200, BODY + b"account.2.enable = 1\n")
        assert headers["etag"] != etags.read_text().strip()


@pytest.mark.parametrize("name, cut", [("fw.rom", 1234567), ("y000000000066.cfg", 1000)])
def test_curl_resumes_a_download(files, tmp_path, name, cut):
    """``curl -C -`` asks for the rest from the partial file's length (``Range: bytes=N-``)
    of a streamed and of a cached file; the joined file is the server's, byte for byte."""
    whole = (files / name).read_bytes()
    partial = tmp_path / "partial"
    partial.write_bytes(whole[:cut])
    with labsim_http("--root", str(files)) as url:
        status, headers, _ = curl_exchange(tmp_path, "-C", "-", f"{url}/{name}", out=partial)
        assert (status, headers["content-range"]) == (206, f"bytes {cut}-{len(whole) - 1}/{len(whole)}")
        assert partial.read_bytes() == whole


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
