"""The files a service serves and the uploads it stores, seen through a small interface, so
a service core reads and writes without touching the disk itself.

``FileStore`` is what a core asks for: a file's bytes with a version (to tell a cached
copy is still current), that version again later, and a place to store an upload
atomically. ``labsim.services.disk_store.DiskFolder`` is the real one (a folder on disk,
confined: nothing outside it is ever read or written); ``MemoryFolder`` here holds files
in a dict, for tests and an in-memory lab.

Names are lists of path components, already free of ``""``, ``"."`` and ``".."`` (the
core checks its protocol's names before it asks).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol


class NoSuchFile(Exception):
    """Nothing by that name (the message is what to tell the client)."""


class NotAllowed(Exception):
    """A name that may not be read or written: outside the folder, not a regular file,
    unreadable, or a folder where a file would go (the message is what to tell the client)."""


class FileStore(Protocol):
    def read(self, parts: list[str]) -> tuple[bytes, Hashable, object]:
        """(the whole file, its version, a locator for ``version``); NoSuchFile or NotAllowed."""

    def version(self, locator: object) -> Hashable | None:
        """The file's version now (None: gone): equal to ``read``'s while it is unchanged."""

    def upload_target(self, parts: list[str]) -> object:
        """Where an upload of ``parts`` goes (folders made as needed); NotAllowed when it may not."""

    def store(self, target: object, data: bytes) -> None:
        """Write an upload whole (a reader never sees half of it); OSError when refused."""


class MemoryFolder:
    """A FileStore over a dict of name ("a/b.cfg") -> bytes. Each write makes a new version."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = {}
        self._versions: dict[str, int] = {}
        self._writes = 0
        for name, data in (files or {}).items():
            self.put(name, data)

    def put(self, name: str, data: bytes) -> None:
        self._writes += 1
        self.files[name] = data
        self._versions[name] = self._writes

    def read(self, parts: list[str]) -> tuple[bytes, Hashable, object]:
        name = "/".join(parts)
        if name not in self.files:
            if any(other.startswith(name + "/") for other in self.files):
                raise NotAllowed("Not a regular file")
            raise NoSuchFile("File not found")
        return self.files[name], self._versions[name], name

    def version(self, locator: object) -> Hashable | None:
        return self._versions.get(locator)

    def upload_target(self, parts: list[str]) -> object:
        name = "/".join(parts)
        if any(other.startswith(name + "/") for other in self.files):
            raise NotAllowed("Access violation")
        return name

    def store(self, target: object, data: bytes) -> None:
        self.put(target, data)
