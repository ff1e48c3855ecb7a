"""Long fuzz runs: every target in tests/fuzz/targets.py in turn, a slice of seconds each,
until the time is up; counts inputs per target and records every crash (the input, in
hex, and the traceback). ``scripts/fuzz --minutes N [--seed S] [--json FILE]``; exit 1
if anything crashed."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback

from tests.fuzz.targets import TARGETS, random_input

SLICE_S = 5.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None, help="the same seed, the same inputs (default: the time)")
    parser.add_argument("--only", nargs="*", help="target names (default: all)")
    parser.add_argument("--json", help="also write the counts and crashes here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    chosen = [t for t in TARGETS if not args.only or t.name in args.only]
    built = {t.name: t.build() for t in chosen}
    counts = {t.name: 0 for t in chosen}
    crashes: list[dict] = []
    started = time.monotonic()
    deadline = started + args.minutes * 60
    print(f"fuzz: {len(chosen)} targets, {args.minutes:g} min, seed {seed}", flush=True)
    while time.monotonic() < deadline:
        for target in chosen:
            seeds, max_size, check = built[target.name]
            slice_end = min(time.monotonic() + SLICE_S, deadline)
            done = 0
            while True:
                data = random_input(rng, seeds, max_size)
                try:
                    check(data)
                except Exception:  # noqa: BLE001 - a crash: recorded, and the run goes on
                    crashes.append({"target": target.name, "input_hex": data.hex(), "traceback": traceback.format_exc()})
                    print(f"CRASH in {target.name}: {data[:80]!r}\n{traceback.format_exc()}", flush=True)
                done += 1
                if done % 64 == 0 and time.monotonic() >= slice_end:
                    break
            counts[target.name] += done
            if time.monotonic() >= deadline:
                break
        elapsed = time.monotonic() - started
        print(f"  {elapsed / 60:5.1f} min  {sum(counts.values()):>10,} inputs  "
              + "  ".join(f"{name} {count:,}" for name, count in counts.items()), flush=True)
    total = sum(counts.values())
    print(f"fuzz: {total:,} inputs in {(time.monotonic() - started) / 60:.1f} min, {len(crashes)} crash(es); seed {seed}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"seed": seed, "minutes": args.minutes, "inputs": counts, "total": total, "crashes": crashes},
                      handle, indent=2)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
