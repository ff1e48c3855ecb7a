"""TFTP uploads (WRQ) in the in-memory lab: the TFTP server's own request handler and
write transfer (``services.tftp``, ``services.tftp_transfer``: uploads only into
``upload_dir``, stored on disk where a run on sockets stores them) fed the phone's
upload block by block, as the phones' client sends it (``blksize`` 1428, ``tsize``); the
outcome read as that client reads it (ERROR 2 ``denied``, any other ERROR ``error``).
Datagram faults are drawn per exchange by the caller, as for downloads.
"""

from __future__ import annotations

from labsim.phones.events import FetchResult
from labsim.services.tftp import Reject, TftpServerConfig
from labsim.services.tftp_udp import DiskTftpRequestHandler
from labsim.wire import tftp as wire

CLIENT_BLKSIZE = 1428  # what the phones' client asks for (transport.loopback)
PEER = ("127.0.0.1", 1)  # the phone's transfer ID: the handler only checks it stays the same


def upload_handler(spec, root: str, upload_root: str | None) -> DiskTftpRequestHandler:
    config = TftpServerConfig(root=root, blksize_max=spec.blksize_max, uploads=spec.uploads,
                              upload_dir=spec.upload_dir, upload_root=upload_root)
    return DiskTftpRequestHandler(config)


def put(handler: DiskTftpRequestHandler, name: str, body: bytes) -> FetchResult:
    """A WRQ of ``name`` with ``body``, carried to its end."""
    request = wire.encode_request(wire.WRQ, name, "octet", {"blksize": CLIENT_BLKSIZE, "tsize": len(body)})
    transfer = handler.handle(request, PEER)
    if transfer is None:
        return FetchResult("timeout", detail="TFTP: no answer")
    if isinstance(transfer, Reject):
        return _refused(transfer.packet)
    transfer.start()
    blksize = transfer.blksize
    for index in range(len(body) // blksize + 1):
        step = transfer.datagram_received(wire.encode_data((index + 1) % 65536, body[index * blksize:(index + 1) * blksize]),
                                          PEER)
        for packet, _ in step.send:
            if wire.opcode_of(packet) == wire.ERROR:
                return _refused(packet)
    if transfer.succeeded:
        return FetchResult("ok")
    return FetchResult("error", detail=f"TFTP: {transfer.reason}")


def _refused(packet: bytes) -> FetchResult:
    code, message = wire.decode_error(packet)
    return FetchResult("denied" if code == 2 else "error", detail=f"TFTP: TFTP error {code}: {message}")
