"""A phone's own random numbers, deterministic from the run's seed and its MAC, in a few
bytes instead of a ``random.Random`` each.

A ``random.Random`` carries the Mersenne Twister's 624-word state: ~2.5 KiB per phone,
the largest single item of a phone's memory at 5,000 phones (issue 12, tracemalloc).
A phone draws a handful of numbers per boot (DHCP xids, retry jitter, PnP tokens, a
moment in a resync window), so a SplitMix64 sequence (Steele, Lea and Flood, "Fast
splittable pseudorandom number generators", 2014; the seeder of xoshiro) is plenty: one
64-bit integer of state, each phone's stream seeded from a hash of seed and MAC, so a run
is reproducible and no two phones share a stream. Not for cryptography.
"""

from __future__ import annotations

import hashlib

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TO_UNIT = 1.0 / (1 << 53)


class PhoneRandom:
    """The methods of ``random.Random`` that phones use: random, uniform, getrandbits."""

    __slots__ = ("_state",)

    def __init__(self, seed: str):
        self._state = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "big")

    def _next64(self) -> int:
        state = self._state = (self._state + _GOLDEN) & _MASK
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        """A float in [0, 1), 53 random bits."""
        return (self._next64() >> 11) * _TO_UNIT

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        value, have = 0, 0
        while have < k:
            value = (value << 64) | self._next64()
            have += 64
        return value >> (have - k)
