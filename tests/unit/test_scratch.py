"""Where a run writes its provisioning tree: tmpfs when the tree fits, else the usual place."""

import os
import tempfile

import pytest

from labsim import scratch
from labsim.scenario.loader import LoadedScenario, parse_scenario_text

SCENARIO = """\
name: scratch
services:
  dhcp: {{port: 6767, subnet: 10.0.0.0/16, pool: {{start: 10.0.0.10, end: 10.0.250.250}}}}
  http: {{port: 8080}}
provisioning:
  {directory}files:
    common.cfg: "0123456789"
  per_phone:
    - name: "{{mac}}.cfg"
      text: "account = {{index}}"
fleets:
  - vendor: yealink
    model: T46S
    count: {phones}
    first_mac: "00:15:65:00:00:01"
"""


def loaded(tmp_path, phones=10, directory=None):
    text = SCENARIO.format(phones=phones, directory=f"directory: {directory}\n  " if directory else "")
    return LoadedScenario(scenario=parse_scenario_text(text), path=str(tmp_path / "scratch.yaml"))


@pytest.fixture
def shared_memory(tmp_path, monkeypatch):
    """A stand-in for /dev/shm with ``free`` bytes of room."""
    folder = tmp_path / "shm"
    folder.mkdir()
    monkeypatch.setattr(scratch, "SHARED_MEMORY", str(folder))
    monkeypatch.setattr(scratch, "_is_tmpfs", lambda path: path == str(folder))
    monkeypatch.delenv("TMPDIR", raising=False)
    room = {"free": 1 << 30}
    monkeypatch.setattr(scratch, "_memory_available", lambda: room["free"])
    return folder, room


def test_the_tree_counts_the_folder_the_inline_files_and_every_phones_files(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "fw.bin").write_bytes(b"x" * 100_000)
    page = scratch.PER_FILE_OVERHEAD
    per_phone = len("account = {index}") + 64 + page
    assert scratch.tree_bytes(loaded(tmp_path, phones=10)) == (10 + page) + 10 * per_phone
    assert scratch.tree_bytes(loaded(tmp_path, phones=1000, directory="tree")) == (
        100_000 + page + 10 + page + 1000 * per_phone)


def test_a_tree_that_fits_goes_on_tmpfs(tmp_path, shared_memory):
    folder, _ = shared_memory
    made = scratch.scratch_folder(loaded(tmp_path))
    assert os.path.dirname(made) == str(folder) and os.path.isdir(made)
    assert os.path.basename(made).startswith("labsim-")


def test_a_tree_larger_than_a_quarter_of_the_free_memory_goes_where_tempfile_puts_it(tmp_path, shared_memory):
    folder, room = shared_memory
    needed = scratch.tree_bytes(loaded(tmp_path, phones=1000))
    room["free"] = needed * 4 - 1
    made = scratch.scratch_folder(loaded(tmp_path, phones=1000))
    try:
        assert os.path.dirname(made) == tempfile.gettempdir()
    finally:
        os.rmdir(made)
    room["free"] = needed * 4
    assert os.path.dirname(scratch.scratch_folder(loaded(tmp_path, phones=1000))) == str(folder)


def test_a_tmpdir_the_user_set_is_used_as_it_is(tmp_path, shared_memory, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    monkeypatch.setenv("TMPDIR", str(mine))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile reads TMPDIR again
    assert os.path.dirname(scratch.scratch_folder(loaded(tmp_path))) == str(mine)


def test_no_tmpfs_or_no_room_to_write_is_the_usual_place(tmp_path, shared_memory, monkeypatch):
    folder, _ = shared_memory
    monkeypatch.setattr(scratch, "_is_tmpfs", lambda path: False)
    made = scratch.scratch_folder(loaded(tmp_path))
    assert os.path.dirname(made) == tempfile.gettempdir()
    os.rmdir(made)


def test_tmpfs_is_read_from_the_mount_table():
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        table = [line.split() for line in mounts]
    tmpfs = [fields[1] for fields in table if fields[2] == "tmpfs"]
    other = [fields[1] for fields in table if fields[2] not in ("tmpfs",) and fields[1] not in tmpfs]
    assert other and not scratch._is_tmpfs(other[0])
    if tmpfs:
        assert scratch._is_tmpfs(tmpfs[0])
    assert not scratch._is_tmpfs("/no/such/mount")
    assert scratch._memory_available() > 0


def test_a_folder_on_tmpfs_names_its_process_and_folders_of_dead_runs_are_swept(tmp_path, shared_memory):
    import subprocess
    import sys

    folder, _ = shared_memory
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has exited (its id is not reused within this test)
    space = scratch._pid_namespace()
    assert space.isdigit() and space != "0"  # Linux: /proc/self/ns/pid
    left = folder / f"labsim-{space}-{dead}-abc123"
    (left / "provisioning").mkdir(parents=True)
    (left / "provisioning" / "001565000001.cfg").write_text("x")
    alive = folder / f"labsim-{space}-{os.getppid()}-def456"  # the test runner's parent: alive
    alive.mkdir()
    elsewhere = folder / f"labsim-1{space}-{dead}-ghi789"  # another namespace's: its ids are not ours to judge
    elsewhere.mkdir()
    other = folder / "someone-elses"
    other.mkdir()
    made = scratch.scratch_folder(loaded(tmp_path))
    assert os.path.basename(made).startswith(f"labsim-{space}-{os.getpid()}-")
    assert not left.exists() and alive.is_dir() and elsewhere.is_dir() and other.is_dir()


def test_a_scratch_folder_is_made_once_and_removed_with_what_it_holds(tmp_path, shared_memory):
    scratch_run = scratch.ScratchFolder(loaded(tmp_path))
    assert scratch_run.path is None  # nothing is made before the run asks
    made = scratch_run.make()
    assert scratch_run.make() == made and os.path.isdir(made)
    os.makedirs(os.path.join(made, "provisioning", "sub"))
    scratch_run.remove()
    assert not os.path.exists(made) and scratch_run.path is None
    scratch_run.remove()  # again: nothing to do
