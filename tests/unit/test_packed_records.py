"""A phone's events and download timings are kept packed (labsim/phones/packed.py) and
read back exactly as the lists of tuples and StageTimings they replace."""

import random

import pytest

from labsim.phones.packed import EventList
from labsim.phones.phone import StageList, StageTiming

STATES = ("off", "booting", "dhcp", "provisioning", "rebooting", "ready", "failed")


def random_event(rng: random.Random) -> tuple:
    return (rng.random() * 1000, rng.choice(STATES), rng.choice(["", "power on", f"lease 10.0.0.{rng.randrange(255)}"]),
            rng.choice(["state", "step"]))


def random_timing(rng: random.Random) -> StageTiming:
    started = rng.random() * 1000
    return StageTiming(rng.choice(["dhcp", "common_cfg", "mac_cfg"]), started, started + rng.random(),
                       rng.choice(["ok", "not_found", "timeout"]), rng.choice(["", "http://127.0.0.1:8080"]))


@pytest.mark.parametrize("packed, make", [(EventList, random_event), (StageList, random_timing)])
def test_a_packed_list_reads_like_the_list_it_replaces(packed, make):
    rng = random.Random(7)
    for _ in range(30):
        reference, records = [], packed()
        for _ in range(rng.randrange(60)):
            record = make(rng)
            reference.append(record)
            records.append(record)
            if rng.random() < 0.1 and reference:  # what EventLog.phone_event and StageArchive.take do
                start = rng.randrange(len(reference))
                stop = rng.randrange(start, len(reference) + 1)
                del reference[start:stop]
                del records[start:stop]
        assert len(records) == len(reference) and list(records) == reference and records == reference
        assert list(reversed(records)) == reference[::-1]
        for index in range(-len(reference), len(reference)):
            assert records[index] == reference[index]
        for cut in (slice(None, 3), slice(-5, None), slice(2, -2), slice(None, None, 2)):
            assert records[cut] == reference[cut]
        assert packed(reference) == reference
        with pytest.raises(IndexError):
            records[len(reference)]
        if reference:
            del records[-1], reference[-1]
            assert list(records) == reference


def test_an_event_keeps_its_float_time_exactly_and_its_texts():
    events = EventList([(0.1 + 0.2, "dhcp", "lease 10.0.0.1 from 10.0.0.254", "step")])
    assert events[0] == (0.1 + 0.2, "dhcp", "lease 10.0.0.1 from 10.0.0.254", "step")
    assert events[-1][0] == 0.30000000000000004


def test_md5_hex_is_hashlibs_for_remembered_and_other_bodies():
    import hashlib

    from labsim.phones import packed

    bodies = [b"", b"#!version:1.0.0.1\n", b"x" * packed.BODY_REMEMBERED_MAX, b"y" * (packed.BODY_REMEMBERED_MAX + 1),
              bytearray(b"#!version:1.0.0.1\n"), memoryview(b"abc")]
    bodies += [n.to_bytes(3, "big") * (n % 50) for n in range(40_000)]  # more than the table holds: it starts again
    for _ in range(2):
        for body in bodies:
            assert packed.md5_hex(body) == hashlib.md5(body).hexdigest()


def test_a_body_table_is_bounded_by_entries_and_by_bytes():
    from labsim.phones.packed import BodyValues

    made = []
    table = BodyValues(4, 100, lambda body: made.append(body) or len(body))
    assert [table.one(b"a" * 40), table.one(b"b" * 40), table.one(b"a" * 40)] == [40, 40, 40]
    assert made == [b"a" * 40, b"b" * 40] and table.held == 80
    table.one(b"c" * 30)  # 110 bytes: starts again with this one
    assert len(table) == 1 and table.held == 30
    for n in range(4):
        table.one(bytes([n]))
    assert len(table) == 1 and table.held == 1  # c and three bytes held; the fifth entry started it again
