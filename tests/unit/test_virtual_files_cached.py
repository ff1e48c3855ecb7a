"""The in-memory lab's HTTP and TFTP services keep every file a fleet's passes read. On
sockets both keep 10,000 (a storm reads a phone's file once or twice); in memory every
pass reads every phone's file again, for days, and at 10,000 phones a cache of 10,000
was emptied and refilled on every pass (labsim/virtual/__init__.py)."""

from types import SimpleNamespace

import pytest

from labsim.services.http import CACHE_FILES_MAX
from labsim.services.tftp import CACHE_NAMES_MAX
from labsim.virtual import tftp as virtual_tftp
from labsim.virtual.clock import HeapClock
from labsim.virtual.http import VirtualHttp
from labsim.wire import tftp as wire

FILES = max(CACHE_FILES_MAX, CACHE_NAMES_MAX) + 1  # one more than the sockets' services keep


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """(root, names): a provisioning root with one file a phone (read only by the tests)."""
    root = tmp_path_factory.mktemp("fleet")
    names = [f"{n:012x}.cfg" for n in range(FILES)]
    for name in names:
        (root / name).write_bytes(b"#!version:1.0.0.1\naccount.1.user_name = %s\n" % name.encode())
    return root, names


def test_in_memory_http_reads_each_of_a_fleets_files_once_over_two_passes(fleet):
    tmp_path, names = fleet
    spec = SimpleNamespace(auth=[], directory_listing=False, uploads=False, upload_dir="uploads")
    http = VirtualHttp(spec, str(tmp_path), HeapClock(0.0), None)
    store, reads = http.site.files, []
    read = store.read
    store.read = lambda *args: reads.append(args[0]) or read(*args)
    for _ in range(2):  # two passes of the whole fleet
        for name in names:
            result = http.exchange(b"GET", f"http://127.0.0.1:8080/{name}", "Yealink SIP-T46S", None)
            assert result.ok and result.body.endswith(b"= %s\n" % name.encode())
    assert len(reads) == FILES  # each file read from disk once, not again on the second pass


def test_in_memory_tftp_keeps_each_of_a_fleets_files_over_two_passes(fleet):
    tmp_path, names = fleet
    spec = SimpleNamespace(blksize_max=1468, timeout_s=1.0, max_retransmits=5, uploads=False, upload_dir="uploads")
    handler = virtual_tftp.server_handler(spec, str(tmp_path), None)
    reads = []
    read = handler.files.read
    handler.files.read = lambda parts: reads.append(parts) or read(parts)
    for _ in range(2):
        for port, name in enumerate(names, start=1024):
            transfer = handler.handle(wire.encode_request(wire.RRQ, name, "octet", {}), ("127.0.0.1", port))
            assert transfer is not None and not hasattr(transfer, "code")  # a transfer, not a refusal
    assert len(reads) == FILES
