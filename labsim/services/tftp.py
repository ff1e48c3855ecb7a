"""labsim's TFTP server logic, without I/O (RFC 1350; options RFC 2347/2348/2349/7440).

Three pieces, all plain objects that take datagrams and timer expiries and return a
``Step`` (what to send, whether to (re)arm the retransmission timer, whether it is over):

- ``TftpRequestHandler`` answers what arrives on the well-known port: it decodes the
  request, confines the file name to the root, gets the file (from its cache when the
  file is unchanged), negotiates options and returns a transfer to run from a port
  other than the well-known one (a TID, RFC 1350 section 4; the adapter's pool) or an
  ERROR to send.
- ``ReadTransfer`` is one download: OACK or the first window, then a window of DATA
  (one block unless RFC 7440's windowsize was negotiated) per ACK, retransmitting the
  outstanding packets on timeout up to a cap.
- ``WriteTransfer`` is one upload (WRQ), only when ``TftpServerConfig.uploads`` is on
  and only into ``upload_dir``: ACK per DATA, the file stored when the short block
  arrives, then a dally so a lost final ACK can be repeated.

labsim/services/tftp_udp.py owns the sockets and the clock. Every counter lives in one
``stats`` dict shared by the handler and its transfers.

Why the cache (measured on the benchmark's load, 4 KB files): resolving the name under
the root (realpath: one lstat per component) and reading the file cost ~26 us per
request; a cache hit costs one ``os.stat`` (~2 us). Entries are keyed by the name as
requested and checked against (device, inode, size, mtime, ctime) on every request, so
a changed file is served fresh at once, and bytes are only ever cached after the path
that led to them was checked to be inside the root. Small files' DATA packets are
encoded once per block size and then sent as they are: no slicing or header packing
per packet.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass
from typing import Callable

from labsim.wire import tftp as wire
from labsim.wire.tftp import Step

NO_STEP = Step()
Address = tuple  # (host, port)
MOD = wire.BLOCK_MODULO
# Step(send, timer, False) without the Python-level __new__ NamedTuple generates (a
# frame per call): used where every ACK passes.
_new_tuple = tuple.__new__

# Files up to this size are cached in memory (with their encoded DATA packets); the
# cache as a whole is emptied when it would pass CACHE_TOTAL_MAX bytes or
# CACHE_NAMES_MAX names. A provisioning tree is small; firmware is the large part and
# is read from disk per request.
CACHE_FILE_MAX = 1 << 20
CACHE_TOTAL_MAX = 64 << 20
CACHE_NAMES_MAX = 10_000
# Pre-encode a file's DATA packets only up to this many blocks per block size (a 1 MB
# file at blksize 512); beyond, packets are built as they go out.
PREENCODE_BLOCKS_MAX = 2048

STAT_KEYS = (
    "rrq",  # read requests that decoded
    "wrq",  # write requests (refused unless uploads are on)
    "transfers_started",
    "transfers_ok",  # download: last block acknowledged; upload: file stored
    "transfers_failed",  # timed out, client sent ERROR, or client broke protocol
    "active",  # transfers running now (the adapter keeps this one)
    "not_found",
    "access_violation",  # outside the root (or the upload folder), not a regular file, unreadable
    "illegal_op",  # WRQ while uploads are off, bad opcode, unsupported mode
    "option_refused",
    "disk_full",  # an upload too large or that could not be written (ERROR 3)
    "unknown_tid",  # datagrams from a stranger to a transfer socket (answered ERROR 5)
    "late_packets",  # from a client whose transfer on that socket just ended: dropped
    "malformed",  # undecodable datagrams, dropped
    "stray_errors",  # ERROR packets that arrived where none was expected, dropped
    "client_errors",  # ERROR packets that ended a transfer
    "duplicate_acks",  # ignored, never answered (Sorcerer's Apprentice, RFC 1123 4.2.3.1)
    "duplicate_data",  # upload DATA we already had (re-ACKed) or out of order (dropped)
    "packets_sent",
    "bytes_sent",  # DATA payload bytes put on the wire, retransmissions included
    "bytes_received",  # upload payload bytes accepted
    "uploads",  # files stored by WRQ
    "retransmits",  # timeouts that resent the outstanding packet(s)
    "window_resends",  # RFC 7440 windows restarted at once: the receiver repeated its last ACK
    "timeouts",  # transfers given up after max_retransmits
    "cache_hits",  # requests served from the file cache
    "send_errors",  # the adapter's socket refused a datagram
    "socket_errors",  # the adapter could not open a transfer socket (fd limit ...)
    "internal_errors",  # a bug: caught by the adapter so no exception leaves a callback
)


def new_stats() -> dict[str, int]:
    return dict.fromkeys(STAT_KEYS, 0)


def answer_stranger(datagram: bytes, addr: Address, stats: dict[str, int]) -> Step:
    """RFC 1350 section 4: a datagram for a transfer socket from an address that has no
    transfer there gets ERROR 5, unless it is itself an ERROR (no error answers an error)."""
    stats["unknown_tid"] += 1
    if wire.opcode_of(datagram) == wire.ERROR:
        return NO_STEP
    return Step(send=((wire.encode_error(wire.ERR_UNKNOWN_TID, "Unknown transfer ID"), (addr[0], addr[1])),))


@dataclass
class TftpServerConfig:
    root: str  # provisioning root folder
    blksize_max: int = 1468  # fits a 1500-byte Ethernet MTU with IPv4+UDP+TFTP headers
    timeout_s: float = 1.0  # retransmission timeout (clients may negotiate with the timeout option)
    max_retransmits: int = 5  # the cap (DESIGN.md: an uncapped loop once corrupted another test)
    windowsize_max: int = 64  # RFC 7440: a larger windowsize asked for is lowered to this
    uploads: bool = False  # accept WRQ, into upload_dir only (off: ERROR 4 as RFC 1350 allows)
    upload_dir: str = "uploads"  # relative to root; created when uploads are on
    upload_max: int = 16 << 20  # bytes; a phone's log or backup is kilobytes (ERROR 3 beyond)
    # Where upload_dir's files really live, when not inside root (labsim serve/run serve a
    # temporary copy of the provisioning folder; uploads must outlive it). None: root/upload_dir.
    upload_root: str | None = None

    def __post_init__(self) -> None:
        if not wire.MIN_BLKSIZE <= self.blksize_max <= wire.MAX_BLKSIZE:
            raise ValueError(f"blksize_max must be {wire.MIN_BLKSIZE}..{wire.MAX_BLKSIZE}")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_retransmits < 0:
            raise ValueError("max_retransmits must be >= 0")
        if not wire.MIN_WINDOWSIZE <= self.windowsize_max <= wire.MAX_WINDOWSIZE:
            raise ValueError(f"windowsize_max must be {wire.MIN_WINDOWSIZE}..{wire.MAX_WINDOWSIZE}")
        if self.upload_max < 0:
            raise ValueError("upload_max must be >= 0")
        parts = _name_parts(self.upload_dir)
        if self.upload_dir.startswith(("/", "\\")) or not parts or ".." in parts:
            raise ValueError(f"upload_dir {self.upload_dir!r} must be a relative folder inside the root")


class TftpRefusal(Exception):
    """A request answered with an ERROR packet."""

    def __init__(self, code: int, message: str, stat_key: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.stat_key = stat_key


# --- file names ------------------------------------------------------------------------


def _name_parts(filename: str) -> list[str]:
    # Backslashes count as separators: Windows-style "..\\..\\x" must not slip through
    # on POSIX, where a backslash is an ordinary character.
    return [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".")]


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real + os.sep)


def resolve_under_root(root_real: str, filename: str) -> str:
    """The real path ``filename`` names under ``root_real`` (itself a realpath).

    Absolute names are taken relative to the root (phones ask for "/cfg/x.cfg"), and
    backslashes count as separators. Raises TftpRefusal with code 2 for anything that
    could leave the root: a ".." component, or a symlink whose target is outside.
    """
    parts = _name_parts(filename)
    if not parts:
        raise TftpRefusal(wire.ERR_NOT_FOUND, "No file name", "not_found")
    if ".." in parts:
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation")
    try:
        real = os.path.realpath(os.path.join(root_real, *parts))
        inside = os.path.commonpath([real, root_real]) == root_real
    except ValueError:  # an embedded NUL; cannot come out of a decoded RRQ, but be safe
        inside = False
    if not inside:
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation")
    return real


def _read_file(path: str) -> tuple[bytes, os.stat_result]:
    """The whole file and the stat of what was opened; TftpRefusal for missing (1) or
    non-regular / unreadable (2) files.

    Only regular files: opening a FIFO or a device would block the reactor (hence the
    stat before the open, and the fstat after it for the cache key).
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise TftpRefusal(wire.ERR_NOT_FOUND, "File not found", "not_found") from None
    except OSError:
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation") from None
    if not stat.S_ISREG(st.st_mode):
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Not a regular file", "access_violation")
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # swapped for something else since the stat
                raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Not a regular file", "access_violation")
            return f.read(), st
    except FileNotFoundError:
        raise TftpRefusal(wire.ERR_NOT_FOUND, "File not found", "not_found") from None
    except OSError:
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation") from None


def read_regular_file(path: str) -> bytes:
    """The whole file; TftpRefusal for missing (1) or non-regular / unreadable (2) files."""
    return _read_file(path)[0]


def to_netascii(data: bytes) -> bytes:
    """RFC 764 NVT line endings, as tftp-hpa sends them: LF -> CR LF, a bare CR -> CR NUL."""
    return data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")


def from_netascii(data: bytes) -> bytes:
    """The reverse of ``to_netascii``: CR LF -> LF, CR NUL -> CR."""
    return data.replace(b"\r\n", b"\n").replace(b"\r\x00", b"\r")


def _file_key(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _CachedFile:
    """A file's bytes, where they came from, and its DATA packets per block size."""

    __slots__ = ("real", "key", "data", "packets", "cost")

    def __init__(self, real: str, st: os.stat_result, data: bytes):
        self.real = real
        self.key = _file_key(st)
        self.data = data
        self.packets: dict[int, tuple[bytes, ...]] = {}
        self.cost = 0  # bytes it holds in the cache; 0: not cached (too large)


def encode_all_blocks(data: bytes, blksize: int) -> tuple[bytes, ...]:
    """DATA 1 .. n for ``data`` (the last one short, possibly empty)."""
    encode = wire.encode_data
    return tuple(encode(i + 1, data[i * blksize : (i + 1) * blksize]) for i in range(len(data) // blksize + 1))


# --- options ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Negotiated:
    blksize: int
    timeout_s: float
    oack: dict[str, str]  # empty: no OACK, DATA 1 (or ACK 0 for a WRQ) goes out directly
    windowsize: int = 1


def negotiate(options: dict[str, str], size: int, config: TftpServerConfig, *, write: bool = False) -> Negotiated:
    """Apply RFC 2348 (blksize), 2349 (timeout, tsize) and 7440 (windowsize).

    blksize outside 8..65464 or not a number is refused with ERROR 8 (RFC 2347 lets a
    server refuse; a silent 512 would hide a client bug). A blksize above our maximum is
    lowered (RFC 2348 allows the server a smaller value), and so is a windowsize above
    ``windowsize_max`` (RFC 7440 likewise). An unusable timeout, tsize or windowsize is
    left out of the OACK (that is how a server declines an option). Unknown options are
    ignored (RFC 2347).

    ``size`` is the file's size for a read. For a write (``write``) the client's tsize
    is its file's size: echoed, or refused with ERROR 3 above ``upload_max`` (RFC
    2349). windowsize is declined for writes: labsim's receive side ACKs every block.
    """
    blksize = wire.DEFAULT_BLKSIZE
    timeout_s = config.timeout_s
    windowsize = 1
    oack: dict[str, str] = {}
    if "blksize" in options:
        try:
            asked = int(options["blksize"])
        except ValueError:
            asked = -1
        if asked < wire.MIN_BLKSIZE:
            raise TftpRefusal(
                wire.ERR_OPTION_REFUSED, f"blksize {options['blksize'][:16]!r} out of range", "option_refused"
            )
        blksize = min(asked, config.blksize_max, wire.MAX_BLKSIZE)
        oack["blksize"] = str(blksize)
    if "timeout" in options:
        try:
            asked_timeout = int(options["timeout"])
        except ValueError:
            asked_timeout = 0
        if wire.MIN_TIMEOUT_S <= asked_timeout <= wire.MAX_TIMEOUT_S:
            timeout_s = float(asked_timeout)
            oack["timeout"] = str(asked_timeout)
    if "tsize" in options:
        try:
            announced = int(options["tsize"])
        except ValueError:
            announced = -1
        if announced >= 0:
            if write and announced > config.upload_max:
                raise TftpRefusal(wire.ERR_DISK_FULL, "File too large", "disk_full")
            oack["tsize"] = str(announced if write else size)
    if "windowsize" in options and not write:
        try:
            asked_window = int(options["windowsize"])
        except ValueError:
            asked_window = 0
        if wire.MIN_WINDOWSIZE <= asked_window <= wire.MAX_WINDOWSIZE:
            windowsize = min(asked_window, config.windowsize_max)
            oack["windowsize"] = str(windowsize)
    return Negotiated(blksize, timeout_s, oack, windowsize)


# --- the well-known port ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer the request with this ERROR packet (from a fresh TID) and nothing else."""

    packet: bytes


class TftpRequestHandler:
    """Turns a datagram that arrived on the server port into a transfer, an ERROR, or nothing."""

    def __init__(self, config: TftpServerConfig, stats: dict[str, int] | None = None):
        self.config = config
        self.stats = stats if stats is not None else new_stats()
        self.root_real = os.path.realpath(config.root)
        if not os.path.isdir(self.root_real):
            raise ValueError(f"TFTP root {config.root!r} is not a directory")
        self.upload_root: str | None = None
        self._upload_parts = _name_parts(config.upload_dir)
        if config.uploads:
            upload_root = os.path.realpath(os.path.join(self.root_real, *self._upload_parts))
            if not _inside(upload_root, self.root_real) or upload_root == self.root_real:
                raise ValueError(f"upload_dir {config.upload_dir!r} must be a folder inside the TFTP root")
            os.makedirs(upload_root, exist_ok=True)
            if config.upload_root is not None:
                os.makedirs(config.upload_root, exist_ok=True)
                upload_root = os.path.realpath(config.upload_root)
            self.upload_root = upload_root
        self._cache: dict[str, _CachedFile] = {}
        self._cached_bytes = 0

    def handle(self, datagram: bytes, addr: Address) -> "ReadTransfer | WriteTransfer | Reject | None":
        stats = self.stats
        opcode = wire.opcode_of(datagram)
        if opcode == wire.RRQ:
            try:
                request = wire.decode_request(datagram)
            except wire.TftpDecodeError as exc:
                return self._malformed_request(exc)
            stats["rrq"] += 1
            try:
                return self._start_read(request, addr)
            except TftpRefusal as refusal:
                stats[refusal.stat_key] += 1
                return Reject(wire.encode_error(refusal.code, refusal.message))
        if opcode == wire.ERROR:
            # Never answer an ERROR with an ERROR: two confused peers would ping-pong.
            stats["stray_errors"] += 1
            return None
        if opcode == wire.WRQ:
            stats["wrq"] += 1
            if self.upload_root is None:
                stats["illegal_op"] += 1
                return Reject(wire.encode_error(wire.ERR_ILLEGAL_OPERATION, "Uploads are disabled"))
            try:
                request = wire.decode_request(datagram)
            except wire.TftpDecodeError as exc:
                return self._malformed_request(exc)
            try:
                return self._start_write(request, addr)
            except TftpRefusal as refusal:
                stats[refusal.stat_key] += 1
                return Reject(wire.encode_error(refusal.code, refusal.message))
        if opcode is None or len(datagram) < 4:
            stats["malformed"] += 1
            return None
        stats["illegal_op"] += 1
        return Reject(wire.encode_error(wire.ERR_ILLEGAL_OPERATION, "Illegal TFTP operation"))

    def _malformed_request(self, exc: Exception) -> "Reject":
        """A request that cannot be read (an embedded NUL splitting the name, a name that
        is not UTF-8, an option without a value): RFC 1350 answers errors with an ERROR
        packet, so the client learns at once instead of timing out."""
        self.stats["malformed"] += 1
        return Reject(wire.encode_error(wire.ERR_ILLEGAL_OPERATION, str(exc)[:100]))

    # -- downloads

    def _start_read(self, request: wire.Request, addr: Address) -> "ReadTransfer":
        mode = request.mode
        if mode != "octet" and mode != "netascii":
            raise TftpRefusal(wire.ERR_ILLEGAL_OPERATION, f"Unsupported mode {mode[:16]!r}", "illegal_op")
        entry = self._file(request.filename)
        data = entry.data
        if mode == "netascii":
            data = to_netascii(data)
        terms = negotiate(request.options, len(data), self.config)
        return ReadTransfer(
            addr,
            data,
            blksize=terms.blksize,
            timeout_s=terms.timeout_s,
            max_retransmits=self.config.max_retransmits,
            oack=terms.oack,
            stats=self.stats,
            windowsize=terms.windowsize,
            packets=self._packets(entry, terms.blksize) if mode == "octet" else None,
        )

    def _resolve(self, filename: str) -> str:
        """The real path of a file to send: the upload folder's files are read from where
        uploads are stored, which need not be inside the root."""
        parts = _name_parts(filename)
        prefix = self._upload_parts
        if self.upload_root is not None and len(parts) > len(prefix) and parts[: len(prefix)] == prefix:
            return resolve_under_root(self.upload_root, "/".join(parts[len(prefix):]))
        return resolve_under_root(self.root_real, filename)

    def _file(self, filename: str) -> _CachedFile:
        """The file ``filename`` names: from the cache if unchanged, else from disk."""
        entry = self._cache.get(filename)
        if entry is not None:
            try:
                st = os.stat(entry.real)
            except OSError:
                st = None
            if st is not None and _file_key(st) == entry.key:
                self.stats["cache_hits"] += 1
                return entry
            self._forget(filename)
        real = self._resolve(filename)
        data, st = _read_file(real)
        entry = _CachedFile(real, st, data)
        if len(data) <= CACHE_FILE_MAX:
            self._charge(entry, len(data) + 1)  # +1: an empty file still takes a name
            self._cache[filename] = entry
        return entry

    def _packets(self, entry: _CachedFile, blksize: int) -> tuple[bytes, ...] | None:
        """The file's DATA packets for ``blksize``, encoded once; None for files not in
        the cache or with too many blocks (built per packet instead)."""
        packets = entry.packets.get(blksize)
        if packets is not None or not entry.cost:
            return packets
        count = len(entry.data) // blksize + 1
        if count > PREENCODE_BLOCKS_MAX or len(entry.packets) >= 4:
            return None
        packets = encode_all_blocks(entry.data, blksize)
        entry.packets[blksize] = packets
        self._charge(entry, len(entry.data) + 4 * count)
        return packets

    def _charge(self, entry: _CachedFile, size: int) -> None:
        if self._cached_bytes + size > CACHE_TOTAL_MAX or len(self._cache) >= CACHE_NAMES_MAX:
            # Simple and bounded: start over (a provisioning tree fits many times over).
            self.clear_cache()
        entry.cost += size
        self._cached_bytes += size

    def _forget(self, filename: str) -> None:
        old = self._cache.pop(filename, None)
        if old is not None:
            self._cached_bytes -= old.cost

    def clear_cache(self) -> None:
        self._cache.clear()
        self._cached_bytes = 0

    # -- uploads

    def _start_write(self, request: wire.Request, addr: Address) -> "WriteTransfer":
        mode = request.mode
        if mode != "octet" and mode != "netascii":
            raise TftpRefusal(wire.ERR_ILLEGAL_OPERATION, f"Unsupported mode {mode[:16]!r}", "illegal_op")
        target = self._upload_target(request.filename)
        terms = negotiate(request.options, 0, self.config, write=True)
        return WriteTransfer(
            addr,
            lambda data: self._store(target, data),
            blksize=terms.blksize,
            timeout_s=terms.timeout_s,
            max_retransmits=self.config.max_retransmits,
            oack=terms.oack,
            stats=self.stats,
            max_size=self.config.upload_max,
            netascii=mode == "netascii",
        )

    def _upload_target(self, filename: str) -> str:
        """Where a WRQ for ``filename`` (a path under the root) may write; ERROR 2 unless
        that is inside the upload folder. Missing folders below it are created."""
        parts = _name_parts(filename)
        prefix = self._upload_parts
        if ".." in parts or len(parts) <= len(prefix) or parts[: len(prefix)] != prefix:
            raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, f"Uploads go to {'/'.join(prefix)}/ only", "access_violation")
        folder = os.path.join(self.upload_root, *parts[len(prefix) : -1])
        try:
            os.makedirs(folder, exist_ok=True)
            folder = os.path.realpath(folder)
        except OSError:
            raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation") from None
        # A symlink in the way must not lead the write out of the upload folder.
        target = os.path.join(folder, parts[-1])
        if not _inside(folder, self.upload_root) or os.path.isdir(target):
            raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation")
        return target

    def _store(self, target: str, data: bytes) -> None:
        """Write an upload: to a temporary name, then renamed, so a reader never sees
        half a file. OSError when the disk (or a symlink swapped in meanwhile) says no."""
        folder = os.path.dirname(target)
        if not _inside(os.path.realpath(folder), self.upload_root):
            raise PermissionError(errno.EACCES, "upload folder moved outside the upload root")
        temporary = os.path.join(folder, f".{os.path.basename(target)}.part-{secrets.token_hex(4)}")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, target)
        except OSError:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise


# --- one download ----------------------------------------------------------------------


class ReadTransfer:
    """The sending side of one RRQ, on its own TID.

    Blocks go out in windows of ``windowsize`` (RFC 7440; 1 is RFC 1350's lockstep). An
    ACK for any block of the outstanding window acknowledges everything up to it and
    starts the next window right after it; an ACK for an older block, or one never sent,
    is a duplicate and is ignored rather than answered: answering is the Sorcerer's
    Apprentice bug that doubles traffic on every delayed ACK. A block lost inside a
    window is recovered when the receiver ACKs the block before it (go-back-N); one lost
    where the receiver cannot notice (the window's last, or an ACK) costs one timeout,
    after which the whole outstanding window is resent.

    Two refinements, both found with atftp (tests/interop/test_tftp_interop.py):

    - When the FIRST block of a window is lost, an RFC 7440 receiver repeats the ACK we
      already have (RFC 7440 section 4: it ACKs the last block it got in order, and the
      sender should restart the window after it). That repeat restarts the window at
      once (``window_resends``) instead of costing a whole timeout, unless the ACKed
      block (0: the OACK) or a later one already went out twice (``_resent_max``): the
      repeat may then only answer such a copy, and answering it is the Apprentice.
    - A receiver that gets a block twice ACKs again (atftp does, for any block out of
      order). So an ACK at or below a block we resent because an ACK asked for it
      (``_echo_max``) may only answer that copy: it moves the window on but resends
      nothing, only blocks never sent go out. Going back N there made every later window
      go out twice after a single duplicated DATA (measured with atftp: 39 DATA for a
      20-block file).

    ``packets`` (optional) are the file's DATA packets already encoded for ``blksize``;
    they must be ``encode_all_blocks(data, blksize)``.
    """

    __slots__ = (
        "peer",
        "data",
        "blksize",
        "timeout_s",
        "max_retransmits",
        "windowsize",
        "stats",
        "_oack",
        "_oack_packet",
        "_packets",
        "_acked",
        "_sent",
        "_retries",
        "_last_block",
        "_resent_max",
        "_echo_max",
        "finished",
        "succeeded",
        "reason",
    )

    def __init__(
        self,
        peer: Address,
        data: bytes,
        *,
        blksize: int = wire.DEFAULT_BLKSIZE,
        timeout_s: float = 1.0,
        max_retransmits: int = 5,
        oack: dict[str, str] | None = None,
        stats: dict[str, int] | None = None,
        windowsize: int = 1,
        packets: tuple[bytes, ...] | None = None,
    ):
        self.peer = (peer[0], peer[1])
        self.data = data
        self.blksize = blksize
        self.timeout_s = timeout_s
        self.max_retransmits = max_retransmits
        self.windowsize = windowsize
        self.stats = stats if stats is not None else new_stats()
        self._oack = oack or {}
        self._oack_packet = b""  # while not empty: the OACK is out, waiting for ACK 0
        self._packets = packets
        # Blocks 1.._acked are acknowledged; _acked+1.._sent are out, unacknowledged.
        self._acked = 0
        self._sent = 0
        # A file of exactly n*blksize bytes ends with an empty DATA n+1 (RFC 1350: a
        # short block ends the transfer, and an empty one is the only short one left).
        self._last_block = len(data) // blksize + 1
        self._retries = 0
        # Full block counts (0: the OACK; -1: none yet), see the class doc: the highest
        # block that went out more than once for any reason, and the highest resent
        # because an ACK asked for it.
        self._resent_max = -1
        self._echo_max = -1
        self.finished = False
        self.succeeded = False
        self.reason = ""

    def start(self) -> Step:
        self.stats["transfers_started"] += 1
        if self._oack:
            self._oack_packet = wire.encode_oack(self._oack)
            self.stats["packets_sent"] += 1
            return Step(send=((self._oack_packet, self.peer),), timer=self.timeout_s)
        return self._send_window(True)

    def datagram_received(self, datagram: bytes, addr: Address) -> Step:
        if self.finished:
            return NO_STEP
        peer = self.peer
        if addr != peer and (addr[0] != peer[0] or addr[1] != peer[1]):  # (IPv6 addresses have 4 items)
            return answer_stranger(datagram, addr, self.stats)  # the transfer goes on
        if len(datagram) >= 4 and datagram[1] == 4 and datagram[0] == 0:  # an ACK
            block = (datagram[2] << 8) | datagram[3]
            if self._oack_packet:
                if block == 0:
                    self._oack_packet = b""
                    return self._send_window(True)
            else:
                acked = self._acked
                ahead = (block - acked) % MOD  # how far past the last ACK, modulo 2**16
                if 0 < ahead <= self._sent - acked:
                    acked += ahead
                    self._acked = acked
                    if acked == self._last_block:
                        return self._finish(True, "ok")
                    packets = self._packets
                    if self.windowsize == 1 and packets is not None:
                        # The lockstep case, inlined (~every packet of a boot storm).
                        self._retries = 0
                        self._sent = acked + 1
                        packet = packets[acked]
                        stats = self.stats
                        stats["packets_sent"] += 1
                        stats["bytes_sent"] += len(packet) - 4
                        return _new_tuple(Step, (((packet, peer),), self.timeout_s, False))
                    return self._window_after(acked)
                if ahead == 0 and acked > self._resent_max and self.windowsize > 1:
                    return self._restart_window()
            self.stats["duplicate_acks"] += 1
            return NO_STEP
        return self._not_an_ack(datagram)

    def timer_expired(self) -> Step:
        if self.finished:
            return NO_STEP
        stats = self.stats
        if self._retries >= self.max_retransmits:
            stats["timeouts"] += 1
            return self._finish(False, "timeout")
        self._retries += 1
        stats["retransmits"] += 1
        self._resent_max = self._sent  # (0 while the OACK is what goes again)
        if self._oack_packet:
            stats["packets_sent"] += 1
            return Step(send=((self._oack_packet, self.peer),), timer=self.timeout_s)
        # Go back to the first unacknowledged block and resend the window.
        return self._send_window(False)

    # -- internals

    def _window_after(self, acked: int) -> Step:
        """ACK ``acked`` (news: above the last one) moved the window on."""
        if acked <= self._echo_max:
            # Maybe only the receiver's answer to a block we resent: the blocks after it
            # that are out stay out (their copies are on the way), only new ones go.
            return self._send_window(True, self._sent + 1)
        if acked < self._sent:
            # Mid-window: the receiver lacks acked+1 (RFC 7440 section 4), go back to it.
            self._echo_max = self._resent_max = self._sent
        return self._send_window(True)

    def _restart_window(self) -> Step:
        """The receiver repeated the ACK we had: it lacks the window's first block (RFC
        7440 section 4). Resend the window now, without spending a retry."""
        self._echo_max = self._resent_max = self._sent
        self.stats["window_resends"] += 1
        return self._send_window(False)

    def _send_window(self, progress: bool, first: int = 0) -> Step:
        """Send blocks ``first`` (default _acked+1) .. _acked+windowsize; arm the timer.
        ``progress``: the peer acknowledged something, so the retry budget starts afresh."""
        if progress:
            self._retries = 0
        if not first:
            first = self._acked + 1
        last = self._acked + self.windowsize
        if last > self._last_block:
            last = self._last_block
        if first > last:  # all of the window is out already
            return Step((), self.timeout_s)
        self._sent = last
        stats = self.stats
        peer = self.peer
        if first == last:  # one block (windowsize 1, the common case): kept short
            packet = self._packets[first - 1] if self._packets is not None else self._block(first)
            stats["packets_sent"] += 1
            stats["bytes_sent"] += len(packet) - 4
            return _new_tuple(Step, (((packet, peer),), self.timeout_s, False))
        send = []
        for block in range(first, last + 1):
            packet = self._block(block)
            stats["bytes_sent"] += len(packet) - 4
            send.append((packet, peer))
        stats["packets_sent"] += len(send)
        return Step(tuple(send), self.timeout_s)

    def _block(self, block: int) -> bytes:
        if self._packets is not None:
            return self._packets[block - 1]
        start = (block - 1) * self.blksize
        return wire.encode_data(block, self.data[start : start + self.blksize])

    def _not_an_ack(self, datagram: bytes) -> Step:
        stats = self.stats
        opcode = wire.opcode_of(datagram)
        if opcode == wire.ERROR:
            stats["client_errors"] += 1
            try:
                code, message = wire.decode_error(datagram)
                reason = f"client error {code}: {message}"
            except wire.TftpDecodeError:
                reason = "client error"
            return self._finish(False, reason)
        if opcode is None or len(datagram) < 4:
            stats["malformed"] += 1
            return NO_STEP
        # DATA, RRQ, OACK or an unknown opcode from our own peer: it broke the protocol.
        stats["illegal_op"] += 1
        self._finish(False, f"illegal opcode {opcode}")
        return Step(send=((wire.encode_error(wire.ERR_ILLEGAL_OPERATION, "Illegal TFTP operation"), self.peer),), done=True)

    def _finish(self, ok: bool, reason: str) -> Step:
        self.finished = True
        self.succeeded = ok
        self.reason = reason
        self.stats["transfers_ok" if ok else "transfers_failed"] += 1
        self._oack_packet = b""
        return Step(done=True)


# --- one upload ------------------------------------------------------------------------


class WriteTransfer:
    """The receiving side of one WRQ, on its own TID.

    ACK 0 (or the OACK) first, then one ACK per DATA in order. A repeat of the block
    just acknowledged is ACKed again (our ACK was lost), without re-arming the timer so
    the retransmission cap still bounds the transfer; anything out of order is dropped.
    The short block completes the upload: ``store(data)`` writes it (OSError: ERROR 3
    or 2 instead of the final ACK). Then the transfer dallies one timeout (RFC 1350
    section 6) to repeat the final ACK if the client resends the last block.
    """

    __slots__ = (
        "peer",
        "store",
        "blksize",
        "timeout_s",
        "max_retransmits",
        "max_size",
        "netascii",
        "stats",
        "_oack",
        "_outstanding",
        "_received",
        "_chunks",
        "_size",
        "_retries",
        "_dallying",
        "finished",
        "succeeded",
        "reason",
        "size",
    )

    def __init__(
        self,
        peer: Address,
        store: Callable[[bytes], None],
        *,
        blksize: int = wire.DEFAULT_BLKSIZE,
        timeout_s: float = 1.0,
        max_retransmits: int = 5,
        oack: dict[str, str] | None = None,
        stats: dict[str, int] | None = None,
        max_size: int = 16 << 20,
        netascii: bool = False,
    ):
        self.peer = (peer[0], peer[1])
        self.store = store
        self.blksize = blksize
        self.timeout_s = timeout_s
        self.max_retransmits = max_retransmits
        self.max_size = max_size
        self.netascii = netascii
        self.stats = stats if stats is not None else new_stats()
        self._oack = oack or {}
        self._outstanding = b""  # what a timeout resends: the OACK or the last ACK
        self._received = 0  # blocks accepted so far (full count; the wire has it modulo 2**16)
        self._chunks: list[bytes] = []
        self._size = 0
        self._retries = 0
        self._dallying = False
        self.finished = False
        self.succeeded = False
        self.reason = ""
        self.size = 0  # bytes stored, once succeeded

    def start(self) -> Step:
        self.stats["transfers_started"] += 1
        return self._send(wire.encode_oack(self._oack) if self._oack else wire.encode_ack(0))

    def datagram_received(self, datagram: bytes, addr: Address) -> Step:
        stats = self.stats
        peer = self.peer
        if addr[0] != peer[0] or addr[1] != peer[1]:
            if self.finished and not self._dallying:
                return NO_STEP
            return answer_stranger(datagram, addr, stats)
        if self.finished:
            if self._dallying and len(datagram) >= 4 and datagram[1] == wire.DATA and datagram[0] == 0:
                if (datagram[2] << 8) | datagram[3] == self._received % MOD:
                    stats["duplicate_data"] += 1
                    stats["packets_sent"] += 1
                    return Step(send=((self._outstanding, peer),))
            return NO_STEP
        if len(datagram) >= 4 and datagram[1] == wire.DATA and datagram[0] == 0:
            return self._on_data((datagram[2] << 8) | datagram[3], datagram[4:])
        opcode = wire.opcode_of(datagram)
        if opcode == wire.ERROR:
            stats["client_errors"] += 1
            try:
                code, message = wire.decode_error(datagram)
                reason = f"client error {code}: {message}"
            except wire.TftpDecodeError:
                reason = "client error"
            return self._fail(reason)
        if opcode is None or len(datagram) < 4:
            stats["malformed"] += 1
            return NO_STEP
        stats["illegal_op"] += 1
        return self._fail(f"illegal opcode {opcode}", wire.ERR_ILLEGAL_OPERATION, "Illegal TFTP operation")

    def timer_expired(self) -> Step:
        if self._dallying:
            self._dallying = False
            return Step(done=True)
        if self.finished:
            return NO_STEP
        if self._retries >= self.max_retransmits:
            self.stats["timeouts"] += 1
            return self._fail("timeout")
        self._retries += 1
        self.stats["retransmits"] += 1
        self.stats["packets_sent"] += 1
        return Step(send=((self._outstanding, self.peer),), timer=self.timeout_s)

    # -- internals

    def _on_data(self, block: int, payload: bytes) -> Step:
        stats = self.stats
        if block != (self._received + 1) % MOD:
            stats["duplicate_data"] += 1
            if self._received and block == self._received % MOD:
                stats["packets_sent"] += 1
                return Step(send=((self._outstanding, self.peer),))
            return NO_STEP
        if len(payload) > self.blksize:
            stats["illegal_op"] += 1
            return self._fail(f"block of {len(payload)} bytes > blksize {self.blksize}",
                              wire.ERR_ILLEGAL_OPERATION, "Block larger than blksize")
        if self._size + len(payload) > self.max_size:
            stats["disk_full"] += 1
            return self._fail("too large", wire.ERR_DISK_FULL, "File too large")
        self._received += 1
        self._size += len(payload)
        stats["bytes_received"] += len(payload)
        if payload:
            self._chunks.append(payload)
        ack = wire.encode_ack(block)
        if len(payload) == self.blksize:
            return self._send(ack)
        return self._complete(ack)

    def _complete(self, final_ack: bytes) -> Step:
        data = b"".join(self._chunks)
        self._chunks = []
        if self.netascii:
            data = from_netascii(data)
        try:
            self.store(data)
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            self.stats["disk_full" if full else "access_violation"] += 1
            code = wire.ERR_DISK_FULL if full else wire.ERR_ACCESS_VIOLATION
            return self._fail(f"store failed: {exc}", code, "Disk full or allocation exceeded" if full else "Access violation")
        self.finished = True
        self.succeeded = True
        self.reason = "ok"
        self.size = len(data)
        self.stats["transfers_ok"] += 1
        self.stats["uploads"] += 1
        self._dallying = True
        self._outstanding = final_ack
        self.stats["packets_sent"] += 1
        return Step(send=((final_ack, self.peer),), timer=self.timeout_s)

    def _send(self, packet: bytes) -> Step:
        self._outstanding = packet
        self._retries = 0
        self.stats["packets_sent"] += 1
        return Step(send=((packet, self.peer),), timer=self.timeout_s)

    def _fail(self, reason: str, code: int | None = None, message: str = "") -> Step:
        self.finished = True
        self.succeeded = False
        self.reason = reason
        self._chunks = []
        self._outstanding = b""
        self.stats["transfers_failed"] += 1
        if code is None:
            return Step(done=True)
        self.stats["packets_sent"] += 1
        return Step(send=((wire.encode_error(code, message), self.peer),), done=True)
