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

The transfers are in ``labsim.services.tftp_transfer``. Files are read and uploads
stored through a ``FileStore`` (``labsim.services.file_store``): a folder on disk
(``DiskFolder``) in the real server, a dict (``MemoryFolder``) in tests.
labsim/services/tftp_udp.py owns the sockets and the clock. Every counter lives in one
``stats`` dict shared by the handler and its transfers.

Why the cache (measured on the benchmark's load, 4 KB files): resolving the name under
the root (realpath: one lstat per component) and reading the file cost ~26 us per
request; a cache hit costs one version check (on disk one ``os.stat``, ~2 us). Entries
are keyed by the name as requested and checked against the store's version (on disk:
device, inode, size, mtime, ctime) on every request, so a changed file is served fresh
at once, and bytes are only ever cached after the path that led to them was checked to
be inside the root. Small files' DATA packets are
encoded once per block size and then sent as they are: no slicing or header packing
per packet.
"""

from __future__ import annotations

from dataclasses import dataclass

from labsim.services.file_store import FileStore, NoSuchFile, NotAllowed
from labsim.services.tftp_transfer import (  # noqa: F401  (re-exported: the TFTP server's API)
    STAT_KEYS,
    ReadTransfer,
    WriteTransfer,
    answer_stranger,
    from_netascii,
    new_stats,
    to_netascii,
)
from labsim.wire import tftp as wire
from labsim.wire.tftp import Step

Address = tuple  # (host, port)

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
        parts = name_parts(self.upload_dir)
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


def name_parts(filename: str) -> list[str]:
    # Backslashes count as separators: Windows-style "..\\..\\x" must not slip through
    # on POSIX, where a backslash is an ordinary character.
    return [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".")]


class _CachedFile:
    """A file's bytes, where they came from (the store and its locator), the version they
    are, and its DATA packets per block size."""

    __slots__ = ("store", "locator", "key", "data", "packets", "cost")

    def __init__(self, store: FileStore, locator: object, key, data: bytes):
        self.store, self.locator = store, locator
        self.key = key
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

    def __init__(self, config: TftpServerConfig, stats: dict[str, int] | None = None, *,
                 files: FileStore, uploads: FileStore | None = None):
        """``files``: the root folder served; ``uploads``: where WRQs are stored (None:
        uploads are off, whatever the config says), also read back when
        ``config.upload_root`` says they live outside the root."""
        self.config = config
        self.stats = stats if stats is not None else new_stats()
        self.files = files
        self.uploads = uploads if config.uploads else None
        self._upload_parts = name_parts(config.upload_dir)
        self._cache: dict[str, _CachedFile] = {}
        self._cached_bytes = 0
        self.names_max = CACHE_NAMES_MAX  # names kept before the cache starts again (labsim.virtual keeps more)

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
            if self.uploads is None:
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

    def _file(self, filename: str) -> _CachedFile:
        """The file ``filename`` names: from the cache if unchanged, else from its store."""
        entry = self._cache.get(filename)
        if entry is not None:
            if entry.store.version(entry.locator) == entry.key:
                self.stats["cache_hits"] += 1
                return entry
            self._forget(filename)
        store, parts = self._where(filename)
        try:
            data, key, locator = store.read(parts)
        except NoSuchFile as exc:
            raise TftpRefusal(wire.ERR_NOT_FOUND, str(exc), "not_found") from None
        except NotAllowed as exc:
            raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, str(exc), "access_violation") from None
        entry = _CachedFile(store, locator, key, data)
        if len(data) <= CACHE_FILE_MAX:
            self._charge(entry, len(data) + 1)  # +1: an empty file still takes a name
            self._cache[filename] = entry
        return entry

    def _where(self, filename: str) -> tuple[FileStore, list[str]]:
        """(store, name in it) of a file to send. Absolute names are taken relative to the
        root (phones ask for "/cfg/x.cfg"); a ".." component is refused. The upload
        folder's files are read from where uploads are stored, which need not be inside
        the root."""
        parts = name_parts(filename)
        if not parts:
            raise TftpRefusal(wire.ERR_NOT_FOUND, "No file name", "not_found")
        if ".." in parts:
            raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation")
        prefix = self._upload_parts
        if (self.uploads is not None and self.config.upload_root is not None
                and len(parts) > len(prefix) and parts[: len(prefix)] == prefix):
            return self.uploads, parts[len(prefix):]
        return self.files, parts

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
        if self._cached_bytes + size > CACHE_TOTAL_MAX or len(self._cache) >= self.names_max:
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

    def _upload_target(self, filename: str) -> object:
        """Where a WRQ for ``filename`` (a path under the root) may write; ERROR 2 unless
        that is inside the upload folder. Missing folders below it are created."""
        parts = name_parts(filename)
        prefix = self._upload_parts
        if ".." in parts or len(parts) <= len(prefix) or parts[: len(prefix)] != prefix:
            raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, f"Uploads go to {'/'.join(prefix)}/ only", "access_violation")
        try:
            return self.uploads.upload_target(parts[len(prefix):])
        except NotAllowed as exc:
            raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, str(exc), "access_violation") from None

    def _store(self, target: object, data: bytes) -> None:
        """Write an upload whole; OSError when the store says no."""
        self.uploads.store(target, data)
