"""``DiskFolder``: the FileStore (labsim.services.file_store) over a real folder.

Confinement: a name is joined under the folder and resolved (``realpath``, so symlinks
are followed); anything that ends up outside is refused, for reading and for writing.
Only regular files are read: opening a FIFO or a device would block the reactor (hence
the stat before the open, and the fstat after it for the version). An upload is written
to a temporary name in its folder and renamed over the target, so a reader never sees
half a file.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat

from labsim.services.file_store import NoSuchFile, NotAllowed


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real + os.sep)


def _version(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DiskFolder:
    def __init__(self, root: str, *, create: bool = False):
        if create:
            os.makedirs(root, exist_ok=True)
        self.root_real = os.path.realpath(root)
        if not os.path.isdir(self.root_real):
            raise ValueError(f"{root!r} is not a directory")

    def resolve(self, parts: list[str]) -> str:
        """The real path ``parts`` names; NotAllowed if that is outside the folder."""
        try:
            real = os.path.realpath(os.path.join(self.root_real, *parts))
            inside = os.path.commonpath([real, self.root_real]) == self.root_real
        except ValueError:  # an embedded NUL
            inside = False
        if not inside:
            raise NotAllowed("Access violation")
        return real

    def read(self, parts: list[str]) -> tuple[bytes, tuple, str]:
        real = self.resolve(parts)
        try:
            st = os.stat(real)
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchFile("File not found") from None
        except OSError:
            raise NotAllowed("Access violation") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotAllowed("Not a regular file")
        try:
            with open(real, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):  # swapped for something else since the stat
                    raise NotAllowed("Not a regular file")
                return f.read(), _version(st), real
        except FileNotFoundError:
            raise NoSuchFile("File not found") from None
        except OSError:
            raise NotAllowed("Access violation") from None

    def version(self, locator: str) -> tuple | None:
        try:
            return _version(os.stat(locator))
        except OSError:
            return None

    def upload_target(self, parts: list[str]) -> str:
        folder = os.path.join(self.root_real, *parts[:-1])
        try:
            os.makedirs(folder, exist_ok=True)
            folder = os.path.realpath(folder)
        except OSError:
            raise NotAllowed("Access violation") from None
        # A symlink in the way must not lead the write out of the folder.
        target = os.path.join(folder, parts[-1])
        if not _inside(folder, self.root_real) or os.path.isdir(target):
            raise NotAllowed("Access violation")
        return target

    def store(self, target: str, data: bytes) -> None:
        folder = os.path.dirname(target)
        if not _inside(os.path.realpath(folder), self.root_real):
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
