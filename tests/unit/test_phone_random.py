"""A phone's small random generator: reproducible per (seed, MAC), distinct across phones,
the ranges random.Random promises, and a fraction of its memory."""

import sys
import random
import statistics

import pytest

from labsim.phones.phone_random import PhoneRandom


def test_the_same_seed_gives_the_same_numbers_and_another_mac_others():
    one, again, other = PhoneRandom("1:00:15:65:00:00:01"), PhoneRandom("1:00:15:65:00:00:01"), \
        PhoneRandom("1:00:15:65:00:00:02")
    first = [one.getrandbits(32) for _ in range(100)]
    assert first == [again.getrandbits(32) for _ in range(100)]
    assert first != [other.getrandbits(32) for _ in range(100)]


@pytest.mark.parametrize("bits", [0, 1, 16, 32, 64, 65, 128])
def test_getrandbits_stays_within_its_width_and_uses_it(bits):
    rng = PhoneRandom(f"bits:{bits}")
    values = [rng.getrandbits(bits) for _ in range(2000)]
    assert all(0 <= value < (1 << bits) for value in values)
    if bits >= 16:
        assert max(values) >= 1 << (bits - 2)  # the top bits are used too


def test_uniform_covers_its_range_evenly():
    rng = PhoneRandom("uniform")
    values = [rng.uniform(2.0, 6.0) for _ in range(20000)]
    assert all(2.0 <= value < 6.0 for value in values)
    assert statistics.mean(values) == pytest.approx(4.0, abs=0.05)
    assert statistics.pstdev(values) == pytest.approx(4 / 12 ** 0.5, abs=0.05)


def test_it_costs_a_fraction_of_a_random_random():
    assert sys.getsizeof(PhoneRandom("x")) + sys.getsizeof(1 << 63) < sys.getsizeof(random.Random("x")) / 20
