"""The shards' events.jsonl merged while the shards still write them (observe.events_merge,
``--clock virtual --workers N``) give the bytes of the merge of the finished files
(``labsim merge``), and both are the line-by-line merge by time, ties in shard order."""

from __future__ import annotations

import heapq
import json
import os
import random

import pytest

from labsim.observe.events_merge import EventsMerge
from labsim.observe.merge import merge_event_files


def _text(line: dict) -> str:
    return json.dumps(line, separators=(", ", ": ")) + "\n"


def _shard_lines(rng, index: int, end: float) -> list[dict]:
    """A shard's events in time order: times on a coarse grid (many ties, within the shard
    and across shards), the timeline's action lines, then its run line."""
    times = sorted(rng.choice([0.0, 0.5, 0.5, 1.0]) + rng.randrange(int(end)) for _ in range(400))
    lines = [{"t": t, "mac": f"00:15:65:00:00:{index:02x}", "kind": "state", "state": f"s{number}", "detail": ""}
             for number, t in enumerate(times)]
    for at in (10.0, 30.0, 50.0):  # every shard logs the same actions (those before its end)
        if at < end:
            position = next((n for n, line in enumerate(lines) if line["t"] > at), len(lines))
            lines.insert(position, {"t": at, "mac": None, "kind": "action", "entry": 1, "action": "power_cycle",
                                    "outcome": "power cycle: 2 phone(s)"})
    return lines


def _reference(streams: list[list[dict]], actions_of_first_only: bool) -> list[str]:
    """heapq.merge by time: on ties, the earlier shard first, then each file's order."""
    kept = [[(line["t"], _text(line)) for line in lines
             if not (actions_of_first_only and position and line["kind"] == "action")]
            for position, lines in enumerate(streams)]
    return [text for _, text in heapq.merge(*kept, key=lambda item: item[0])]


@pytest.mark.parametrize("actions_of_first_only", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_merge_while_the_shards_write_is_the_merge_of_the_finished_files(tmp_path, seed, actions_of_first_only):
    """Three shards write their files under events.jsonl.tmp in pieces that cut lines;
    shard 1 ends early (at 40 of 100 s, its last line without a newline and no run line:
    a shard that was stopped), shard 2 opens its file late; each renames its file when it
    ends. The merge reads as they write and writes what is final; at the end the same
    bytes as the merge of the finished files, and the line-by-line merge."""
    rng = random.Random(seed)
    ends = [100.0, 40.0, 100.0]
    streams = [_shard_lines(rng, index, end) for index, end in enumerate(ends)]
    contents = []
    for index, lines in enumerate(streams):
        text = "".join(_text(line) for line in lines)
        if index == 1:
            text = text[:-1]  # stopped: no run line, the last line without its newline
        else:
            text += _text({"t": ends[index], "mac": None, "kind": "run", "complete": True, "end_reason": "d",
                           "events": len(lines)})
        contents.append(text.encode())
    directories = [tmp_path / f"shard-{index}" for index in range(3)]
    for directory in directories:
        directory.mkdir()
    written = [0, 0, 0]
    running = [True, True, True]
    merge = EventsMerge([str(d) for d in directories], str(tmp_path / "live"),
                        writing=[lambda i=i: running[i] for i in range(3)], chunk_bytes=rng.choice([13, 200, 4096]))
    merged_before_the_end = 0
    rounds = 0
    while any(running):
        rounds += 1
        for index, directory in enumerate(directories):
            if not running[index] or (index == 2 and rounds < 5):  # shard 2 has not opened its file yet
                continue
            piece = contents[index][written[index]:written[index] + rng.randrange(1, 2500)]
            with open(directory / "events.jsonl.tmp", "ab") as handle:
                handle.write(piece)
            written[index] += len(piece)
            if written[index] == len(contents[index]):  # the shard ends: renamed, then gone
                os.replace(directory / "events.jsonl.tmp", directory / "events.jsonl")
                running[index] = False
        if rng.random() < 0.8:  # as far as is final now (else: the merge fell behind this round)
            while merge.step():
                pass
        if any(running):
            merged_before_the_end = merge.written
    assert merged_before_the_end > sum(map(len, streams)) / 2, "the merge waited for the last shard"
    live = merge.finish(complete=False, end_reason="interrupted", end_t=100.0,
                        actions_of_first_only=actions_of_first_only)
    after = merge_event_files([{"directory": str(d)} for d in directories], str(tmp_path / "after"), complete=False,
                              end_reason="interrupted", end_t=100.0, actions_of_first_only=actions_of_first_only)
    with open(live, "rb") as handle:
        live_bytes = handle.read()
    with open(after, "rb") as handle:
        assert live_bytes == handle.read()
    lines = live_bytes.decode().splitlines(keepends=True)
    assert lines[:-1] == _reference(streams, actions_of_first_only)
    assert json.loads(lines[-1]) == {"t": 100.0, "mac": None, "kind": "run", "complete": False,
                                     "end_reason": "interrupted", "events": len(lines) - 1}
    assert not os.path.exists(live + ".tmp")


def test_a_shard_that_has_not_written_holds_the_merge_back(tmp_path):
    """Nothing is final while one shard has written nothing: it may still write t = 0."""
    zero, one = tmp_path / "s0", tmp_path / "s1"
    zero.mkdir(), one.mkdir()
    (zero / "events.jsonl.tmp").write_text("".join(_text({"t": float(t), "mac": "a", "kind": "state"})
                                                   for t in range(5)))
    running = [True, True]
    merge = EventsMerge([str(zero), str(one)], str(tmp_path / "out"), writing=[lambda: running[0],
                                                                              lambda: running[1]])
    assert not merge.step() and merge.written == 0
    (one / "events.jsonl.tmp").write_text(_text({"t": 2.0, "mac": "b", "kind": "state"}))
    assert merge.step() and merge.written == 2  # t 0 and 1 of shard 0: before shard 1's 2.0
    assert not merge.step()
    running[:] = [False, False]
    path = merge.finish(complete=True, end_reason="done", end_t=4.0, actions_of_first_only=True)
    assert [(line["t"], line["mac"]) for line in map(json.loads, open(path))][:-1] == [
        (0.0, "a"), (1.0, "a"), (2.0, "a"), (2.0, "b"), (3.0, "a"), (4.0, "a")]


def test_a_shard_that_ended_without_its_file_is_named(tmp_path):
    from labsim.observe.events_merge import EventsMergeError

    (tmp_path / "s0").mkdir()
    merge = EventsMerge([str(tmp_path / "s0")], str(tmp_path / "out"), writing=[lambda: False])
    with pytest.raises(EventsMergeError, match=r"s0/events.jsonl: missing"):
        merge.step()
    merge.abandon()
    assert not os.path.exists(tmp_path / "out" / "events.jsonl.tmp")


def _merged_bytes(tmp_path, files: list[bytes], chunk_bytes: int) -> bytes:
    directories = []
    for index, data in enumerate(files):
        directory = tmp_path / f"s{index}"
        directory.mkdir()
        (directory / "events.jsonl").write_bytes(data)
        directories.append(str(directory))
    merge = EventsMerge(directories, str(tmp_path / "out"), chunk_bytes=chunk_bytes)
    merge.run_to_end()
    path = merge.finish(complete=True, end_reason="done", end_t=9.0, actions_of_first_only=True)
    return open(path, "rb").read()


@pytest.mark.parametrize("chunk_bytes", [64, 1 << 22])  # lines cut across reads, and one read
def test_a_line_holding_a_bare_carriage_return_stays_one_line(tmp_path, chunk_bytes):
    """Blocks are cut into lines at newlines only (a bare CR, which labsim's JSON never
    writes, is not a line end: bytes.splitlines would make it one)."""
    zero = b"".join(_text({"t": float(t), "mac": "a", "kind": "state", "detail": "x"}).encode() for t in range(4))
    odd = b'{"t": 1.5, "mac": "b", "kind": "state", "detail": "half\rway"}\n'
    one = _text({"t": 0.5, "mac": "b", "kind": "state"}).encode() + odd
    merged = _merged_bytes(tmp_path, [zero, one], chunk_bytes)
    assert odd in merged and merged.count(b"\n") == 7  # six lines and the run line
    assert merged.index(odd) < merged.index(b'{"t": 2.0')


@pytest.mark.parametrize("chunk_bytes", [64, 1 << 22])
def test_a_line_labsim_did_not_write_is_named_by_file_and_line(tmp_path, chunk_bytes):
    from labsim.observe.events_merge import EventsMergeError

    good = b"".join(_text({"t": float(t), "mac": "a", "kind": "state"}).encode() for t in range(3))
    bad = good + b'{"mac": "a", "t": "three"}\n' + _text({"t": 4.0, "mac": "a", "kind": "state"}).encode()
    with pytest.raises(EventsMergeError, match=r"s1/events.jsonl:4: not an events.jsonl line"):
        _merged_bytes(tmp_path, [good, bad], chunk_bytes)


# --- shards that write events.jsonl.index (observe.events_index) -------------------------


def _indexed_shards(tmp_path, rng, count: int) -> list:
    """``count`` shards' files written by the stream a shard run uses (``index=True``):
    state and step lines, flushed in blocks, phones of all shards at times that collide
    once written to the microsecond though they differ as recorded (a shard's 2.0000004
    is written 2.0, as another's 1.9999996 is), a detail with non-ASCII text (its bytes
    are not its characters), and every shard's action lines. Returns the staging folders."""
    from types import SimpleNamespace

    from labsim.observe.events_log import EventLog
    from labsim.observe.events_stream import EventStream

    folders = []
    for index in range(count):
        folder = tmp_path / f"staged-{index}"
        log = EventLog()
        stream = EventStream(str(folder), log, index=True)
        actions = []
        for block in range(6):
            for _ in range(rng.randrange(0, 120)):
                phone = SimpleNamespace(mac=f"00:15:65:00:{index:02x}:{rng.randrange(256):02x}", events=[],
                                        events_dropped=0)
                t = block * 10 + rng.choice([0, 2, 2, 5]) + rng.choice([0.0, 4e-7, -4e-7, 0.25, 0.5000004])
                detail = rng.choice(["", "downloaded y000000000066.cfg (131 bytes)", "Grüße \u00e9t\u00e9 ✓"])
                log.phone_event(phone, (max(t, 0.001), "provisioning", detail, rng.choice(["state", "step"])))
            if block in (2, 4):  # the timeline's actions, logged alike by every shard
                actions.append(SimpleNamespace(t=block * 10 + 2.0, entry=block, action="power_cycle",
                                               outcome="power cycle: 2 phone(s)"))
            stream.flush(actions)
        stream.close(end_t=60.0, complete=True, end_reason="duration of 1m reached", actions=actions)
        folders.append(folder)
    return folders


def _merged_with_and_without_index(tmp_path, folders, chunk: int, actions_of_first_only: bool = True):
    """(merged bytes, lines each shard's file had read from their text), with the index
    and with it deleted."""
    results = []
    for name, files in (("indexed", ("events.jsonl", "events.jsonl.index")), ("plain", ("events.jsonl",))):
        merge = EventsMerge(_copy_folders(folders, tmp_path / name, files), str(tmp_path / name / "out"),
                            chunk_bytes=chunk)
        path = merge.finish(complete=True, end_reason="done", end_t=60.0, actions_of_first_only=actions_of_first_only)
        results.append((open(path, "rb").read(), [source.parsed for source in merge.sources]))
    return results


def _copy_folders(folders, target, names=("events.jsonl", "events.jsonl.index")) -> list[str]:
    out = []
    for index, folder in enumerate(folders):
        directory = target / f"s{index}"
        directory.mkdir(parents=True)
        for name in names:
            (directory / name).write_bytes((folder / name).read_bytes())
        out.append(str(directory))
    return out


@pytest.mark.parametrize("actions_of_first_only", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_shards_with_an_index_merge_to_the_bytes_of_the_line_by_line_merge(tmp_path, seed, actions_of_first_only):
    """With their index the shards' bytes are copied in runs, ordered by the recorded
    times rounded at the runs' edges; without it (the same files, the index deleted) each
    line's time is parsed from its text. Both give the same bytes, and those are the
    reference merge of the lines by their written time, ties in shard order."""
    rng = random.Random(seed)
    count = rng.choice([2, 3])
    folders = _indexed_shards(tmp_path, rng, count)
    chunk = rng.choice([97, 4096, 1 << 22])
    (indexed, parsed), (plain, _) = (_merged_with_and_without_index(tmp_path, folders, chunk, actions_of_first_only))
    assert parsed == [1] * count  # with the index only the run line is read from its text
    assert indexed == plain
    results = [indexed]
    streams = [[json.loads(line) for line in (folder / "events.jsonl").read_text("utf-8").splitlines()][:-1]
               for folder in folders]
    expected = [json.loads(text) for text in _reference(streams, actions_of_first_only)]
    assert [json.loads(line) for line in results[0].decode("utf-8").splitlines()[:-1]] == expected
    assert "Grüße" in results[0].decode("utf-8")
    written = [line["t"] for line in expected]
    assert any(a == b for a, b in zip(written, written[1:])), "no tie once written"


@pytest.mark.parametrize("seed", [5, 6])
def test_a_merge_while_indexed_shards_write_is_the_merge_of_the_finished_files(tmp_path, seed):
    """Each shard's events.jsonl and index arrive in pieces that cut lines and records
    (either file ahead of the other); the merge reads as they come and, at the end, has
    written the bytes of the merge of the finished files."""
    rng = random.Random(seed)
    folders = _indexed_shards(tmp_path, rng, 2)
    contents = [[(folder / name).read_bytes() for name in ("events.jsonl", "events.jsonl.index")]
                for folder in folders]
    directories = [tmp_path / "live" / f"s{index}" for index in range(2)]
    for directory in directories:
        directory.mkdir(parents=True)
        (directory / "events.jsonl.index.tmp").write_bytes(b"")  # a stream opens its index first
        (directory / "events.jsonl.tmp").write_bytes(b"")
    done = [[0, 0], [0, 0]]
    running = [True, True]
    merge = EventsMerge([str(d) for d in directories], str(tmp_path / "live" / "out"),
                        writing=[lambda i=i: running[i] for i in range(2)], chunk_bytes=rng.choice([61, 5000]))
    while any(running):
        for index, directory in enumerate(directories):
            if not running[index]:
                continue
            which = rng.randrange(2)
            name = ("events.jsonl.tmp", "events.jsonl.index.tmp")[which]
            data = contents[index][which]
            piece = data[done[index][which]:done[index][which] + rng.randrange(1, 3000)]
            with open(directory / name, "ab") as handle:
                handle.write(piece)
            done[index][which] += len(piece)
            if done[index] == [len(contents[index][0]), len(contents[index][1])]:
                os.replace(directory / "events.jsonl.index.tmp", directory / "events.jsonl.index")
                os.replace(directory / "events.jsonl.tmp", directory / "events.jsonl")
                running[index] = False
        while merge.step():
            pass
    live = merge.finish(complete=True, end_reason="done", end_t=60.0, actions_of_first_only=True)
    after = merge_event_files([{"directory": str(folder)} for folder in folders], str(tmp_path / "after"),
                              complete=True, end_reason="done", end_t=60.0, actions_of_first_only=True)
    assert open(live, "rb").read() == open(after, "rb").read()


def test_an_index_that_does_not_match_its_file_is_named(tmp_path):
    from labsim.observe.events_merge import EventsMergeError

    folders = _indexed_shards(tmp_path, random.Random(7), 2)
    directories = _copy_folders(folders, tmp_path / "bad")
    events = os.path.join(directories[1], "events.jsonl")
    data = open(events, "rb").read()
    with open(events, "wb") as handle:  # a line one byte longer than its index says
        handle.write(data.replace(b'"provisioning"', b'"provisioning "', 1))
    merge = EventsMerge(directories, str(tmp_path / "out"))
    with pytest.raises(EventsMergeError, match=r"s1/events.jsonl:\d+: the lines do not match .*events.jsonl.index"):
        merge.run_to_end()
    merge.abandon()


def test_a_stopped_shard_past_its_index_is_read_line_by_line(tmp_path):
    """A shard stopped mid-block: its events.jsonl goes on past what its index names and
    ends without a newline, as a stopped shard's file does: the lines past the index are
    read from their text, and merged as without an index."""
    folders = _indexed_shards(tmp_path, random.Random(8), 2)
    index_bytes = (folders[1] / "events.jsonl.index").read_bytes()
    (folders[1] / "events.jsonl.index").write_bytes(index_bytes[:len(index_bytes) // 2])  # cut mid-record
    events = (folders[1] / "events.jsonl").read_bytes()
    (folders[1] / "events.jsonl").write_bytes(events[:events.rindex(b"\n", 0, len(events) - 1)])  # no run line
    (indexed, parsed), (plain, plain_parsed) = _merged_with_and_without_index(tmp_path, folders, 300)
    assert indexed == plain and indexed.count(b"\n") > 100
    assert parsed[0] == 1 and 1 < parsed[1] < plain_parsed[1]  # the lines past the index only
