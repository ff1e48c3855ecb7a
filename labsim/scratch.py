"""Where a run writes the provisioning tree its services serve (``materialize_provisioning``):
a folder of its own, deleted at the end.

A fleet's per-phone files are thousands of small files, written before any phone powers
on, by every ``--workers`` shard again. Creating a file on a disk filesystem costs far more
than writing its bytes: on the 2-core VM these numbers come from (ext4), 10,000 per-phone
files took 0.6-4.0 s of system time, and 0.17 s on tmpfs (docs/performance.md). So the
folder goes on tmpfs (``/dev/shm``) when there is one with room to spare for the tree,
else where ``tempfile`` puts it. A ``TMPDIR`` the user set is theirs: it is used as it is.

tmpfs is memory until the machine restarts: a run killed before it could delete its folder
(SIGKILL, a crash) would hold it there. So a folder on tmpfs is named with its run's
process id (and the process-id namespace it counts in: containers sharing ``/dev/shm``
number their processes apart), and the next run there deletes the folders, of its own
namespace, of runs whose process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

SHARED_MEMORY = "/dev/shm"
PER_FILE_OVERHEAD = 4096  # tmpfs gives each small file a page
# tmpfs is memory: the tree may take at most this share of what is free there (a
# container's default /dev/shm is 64 MiB; phones, servers and the report need memory too).
SHARE_OF_FREE = 0.25


def tree_bytes(loaded) -> int:
    """About what the run's provisioning tree will take: the scenario's folder, its inline
    files and every phone's per-phone files, a page each at least."""
    spec = loaded.scenario.provisioning
    total = 0
    if spec.directory:
        for folder, _, names in os.walk(os.path.join(loaded.base_dir, spec.directory)):
            for name in names:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size + PER_FILE_OVERHEAD
                except OSError:
                    pass
    total += sum(len(text.encode()) + PER_FILE_OVERHEAD for text in spec.files.values())
    phones = sum(fleet.total for fleet in loaded.scenario.fleets)
    # A template's text grows by what replaces its fields ({mac}, {index} …): 64 bytes is plenty.
    total += sum((len(template.text.encode()) + 64 + PER_FILE_OVERHEAD) * phones for template in spec.per_phone)
    return total


def scratch_folder(loaded, prefix: str = "labsim-") -> str:
    """A new folder for the run's provisioning tree: on tmpfs when it fits (see above)."""
    if "TMPDIR" not in os.environ and _fits_in_shared_memory(tree_bytes(loaded)):
        _sweep_left_behind(SHARED_MEMORY, prefix)
        try:
            return tempfile.mkdtemp(prefix=f"{prefix}{_pid_namespace()}-{os.getpid()}-", dir=SHARED_MEMORY)
        except OSError:
            pass  # not writable after all: the usual place
    return tempfile.mkdtemp(prefix=prefix)


class ScratchFolder:
    """One run's scratch folder: ``make()`` makes it (``scratch_folder``) and says where,
    ``remove()`` deletes it with what it holds; both may be called again."""

    def __init__(self, loaded, prefix: str = "labsim-"):
        self.loaded = loaded
        self.prefix = prefix
        self.path: str | None = None

    def make(self) -> str:
        if self.path is None:
            self.path = scratch_folder(self.loaded, self.prefix)
        return self.path

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def _pid_namespace() -> str:
    """This process's process-id namespace (``/proc/self/ns/pid``'s inode), "0" if unknown."""
    try:
        return re.sub(r"\D", "", os.readlink("/proc/self/ns/pid")) or "0"
    except OSError:
        return "0"


def _sweep_left_behind(folder: str, prefix: str) -> None:
    """Delete ``<prefix><namespace>-<pid>-*`` folders in ``folder`` that this user owns, of
    this process's namespace, whose process no longer exists (a live process of that id,
    even another program, keeps its folder: a reused id only delays the sweep)."""
    named = re.compile(re.escape(f"{prefix}{_pid_namespace()}-") + r"(\d+)-")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = named.match(entry.name)
        try:
            if (match is None or not entry.is_dir(follow_symlinks=False)
                    or entry.stat(follow_symlinks=False).st_uid != os.getuid() or _alive(int(match.group(1)))):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _fits_in_shared_memory(needed: int) -> bool:
    try:
        if not _is_tmpfs(SHARED_MEMORY) or not os.access(SHARED_MEMORY, os.W_OK | os.X_OK):
            return False
        stats = os.statvfs(SHARED_MEMORY)
    except OSError:
        return False
    free = min(stats.f_bavail * stats.f_frsize, _memory_available())
    return needed <= free * SHARE_OF_FREE


def _is_tmpfs(path: str) -> bool:
    """Whether ``path`` is a tmpfs mount point (``/proc/self/mounts``; False without one)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            return any(fields[1] == path and fields[2] == "tmpfs"
                       for fields in (line.split() for line in mounts) if len(fields) > 2)
    except OSError:
        return False


def _memory_available() -> int:
    """MemAvailable from ``/proc/meminfo`` in bytes (tmpfs's limit is not memory that is free); 0 if unknown."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
