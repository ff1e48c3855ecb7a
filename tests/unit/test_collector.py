"""While phones power on, CPython's full collections wait and its generation-1 passes come
after every young pass or two (labsim.fleet.collector): a full pass over a storm's objects
stalls the reactor for tens of ms, a generation-1 pass over ten young passes' survivors
for several."""

import gc

import weakref

from labsim.fleet.collector import FullCollectionsHeld, SurvivorsFrozen


def passes_while_allocating(survivors: int) -> list[int]:
    """The generation of each collection while ``survivors`` containers are made and kept
    (so each young pass promotes them), from a clean start."""
    passes = []

    def counted(phase, info):
        if phase == "start":
            passes.append(info["generation"])

    kept = []
    gc.freeze()  # the test process's own objects out of the way: the oldest generation starts empty,
    gc.collect()  # and CPython's count of long-lived objects (a full pass needs 25 % more) with it
    gc.callbacks.append(counted)
    try:
        kept.extend([] for _ in range(survivors))
    finally:
        gc.callbacks.remove(counted)
        gc.unfreeze()
    return passes


def full_collections_while_allocating(survivors: int) -> int:
    return passes_while_allocating(survivors).count(2)


def test_full_collections_wait_while_held_and_the_thresholds_come_back():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    try:
        # ~140 young passes, 14 of generation 1: CPython's own thresholds make a full pass ...
        assert full_collections_while_allocating(100_000) >= 1
        held = FullCollectionsHeld(threshold=100, middle=10)
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


def test_while_held_generation_1_is_collected_after_every_young_pass_or_two():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    try:
        default = passes_while_allocating(100_000)
        assert default.count(1) <= len(default) // 10  # one in eleven: ten young passes' survivors each
        held = FullCollectionsHeld()
        held.hold()
        assert gc.get_threshold() == (700, 1, 400)
        held_passes = passes_while_allocating(100_000)
        held.release()
        assert gc.get_threshold() == (700, 10, 10)
        assert held_passes.count(2) == 0
        assert held_passes.count(1) >= len(held_passes) // 3 - 1  # one in three
        runs = "".join(map(str, held_passes)).split("1")  # young passes between two of generation 1
        assert max(len(run) for run in runs) <= 2
    finally:
        gc.set_threshold(*saved)


class Node:
    """A container that can be part of a cycle and be watched by a weak reference."""

    def __init__(self):
        self.other = None


def dead_cycle() -> weakref.ref:
    """A two-node cycle that survives one full collection (frozen by it, if frozen ones
    are) and is garbage after: the weak reference says when it is freed."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    watch = weakref.ref(first)
    gc.collect()  # alive here: a survivor
    return watch


def test_what_survives_a_full_collection_is_frozen_and_every_tenth_walks_everything():
    frozen = SurvivorsFrozen(rescan_every=10)
    frozen.install()
    frozen.install()  # once is enough: one callback
    try:
        gc.unfreeze()
        gc.collect()  # full collection 1
        assert gc.get_freeze_count() > 0  # its survivors (the test process's objects) are frozen
        kept = [Node() for _ in range(1000)]
        before = gc.get_freeze_count()
        gc.collect(1)  # a middle pass freezes nothing
        assert gc.get_freeze_count() == before
        watch = dead_cycle()  # full collection 2 froze the cycle
        assert gc.get_freeze_count() >= before + len(kept) + 2
        for _ in range(3, 10):  # full collections 3..9 walk only what is new: the frozen cycle stays
            gc.collect()
            assert watch() is not None
        gc.collect()  # the tenth walks everything and frees it
        assert watch() is None
        assert frozen.full_collections == 10
    finally:
        frozen.remove()
        gc.unfreeze()
    assert frozen._on_collection not in gc.callbacks
    gc.collect()  # removed: nothing is frozen any more
    assert gc.get_freeze_count() == 0


def test_without_it_a_dead_cycle_goes_at_the_next_full_collection():
    gc.unfreeze()
    watch = dead_cycle()
    gc.collect()
    assert watch() is None
