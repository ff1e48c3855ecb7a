"""The --workers protocol's values that can grow past AMP's 64 KiB a value: they travel in
parts (``protocol.LongText``) and arrive whole."""

from __future__ import annotations

import json
import random

from twisted.protocols import amp

from labsim.scale.protocol import Changes, JudgeFlash


def round_trip(command, arguments: dict, direction: str = "arguments") -> dict:
    if direction == "arguments":
        box = amp.AmpBox(command.makeArguments(arguments, None))
    else:
        box = amp.AmpBox(command.makeResponse(arguments, None))
    parsed = _parse(box.serialize())  # serialize raises amp.TooLong for a value over 65,535 bytes
    if direction == "arguments":
        return command.parseArguments(parsed, None)
    return command.parseResponse(parsed, None)


def _parse(wire: bytes) -> dict:
    """One AMP box off the wire: 2-byte lengths before each key and value, an empty key ends it."""
    box, at = {}, 0
    while True:
        length = int.from_bytes(wire[at:at + 2], "big")
        at += 2
        if length == 0:
            return box
        key = wire[at:at + length]
        at += length
        length = int.from_bytes(wire[at:at + 2], "big")
        at += 2
        box[key] = wire[at:at + length]
        at += length


def test_a_storms_stage_latencies_pass_in_one_changes_message():
    rng = random.Random(7)
    counters = {"dhcp": 5, "requests": {"http": 12},
                "stage_latencies": {"mac_cfg": [rng.uniform(0, 3) for _ in range(6000)]}}
    text = json.dumps(counters)
    assert len(text) > 100_000
    got = round_trip(Changes, {"shard": 1, "phones": "[]", "counters": text})
    assert json.loads(got["counters"]) == counters and got["shard"] == 1


def test_every_workers_flash_answer_arrives_whole():
    results = [[5000, [f"00:15:65:00:{i >> 8:02x}:{i & 255:02x}" for i in range(5000)]], [3, []]]
    text = json.dumps(results)
    assert len(text) > 65_535
    assert json.loads(round_trip(JudgeFlash, {"results": text}, "response")["results"]) == results
