"""While phones power on, CPython's full collections wait (labsim.fleet.collector): a
full pass over a storm's objects stalls the reactor for tens of ms."""

import gc

from labsim.fleet.collector import FullCollectionsHeld


def full_collections_while_allocating(survivors: int) -> int:
    """Full collections while ``survivors`` containers are made and kept (so each young
    pass promotes them), counted from a clean start."""
    full = []

    def counted(phase, info):
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    kept = []
    gc.freeze()  # the test process's own objects out of the way: the oldest generation starts empty,
    gc.collect()  # and CPython's count of long-lived objects (a full pass needs 25 % more) with it
    gc.callbacks.append(counted)
    try:
        kept.extend([] for _ in range(survivors))
    finally:
        gc.callbacks.remove(counted)
        gc.unfreeze()
    return len(full)


def test_full_collections_wait_while_held_and_the_thresholds_come_back():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    try:
        # ~140 young passes, 14 of generation 1: CPython's own thresholds make a full pass ...
        assert full_collections_while_allocating(100_000) >= 1
        held = FullCollectionsHeld(threshold=100)
        held.hold()
        held.hold()  # twice: still the one saved value to put back
        assert held.held and gc.get_threshold() == (700, 10, 100)
        # ... held, the same allocations make none
        assert full_collections_while_allocating(100_000) == 0
        held.release()
        held.release()
        assert not held.held and gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*saved)
