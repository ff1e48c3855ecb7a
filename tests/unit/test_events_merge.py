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
