"""'did you mean ...?' for a misspelt name in a scenario: a key, a vendor, a model, a
metric. The allowed list that follows can be long (a DHCP service has a dozen keys, a
Yealink two dozen models); the closest one or two, put first, are what a newcomer who
typed ``lease_tme_s`` or ``yealnk`` is looking for."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)', or '' when nothing is close. Case is ignored in the
    comparison (``t46s`` is close to ``T46S``) but the candidates are quoted as spelt."""
    spelt = {candidate.lower(): candidate for candidate in candidates}
    typed = str(name).lower()
    scores = {lower: difflib.SequenceMatcher(None, typed, lower).ratio() for lower in spelt}
    best = max(scores.values(), default=0.0)
    if best < 0.75:
        return ""
    # The best, and a second only when it is as close (T46X: T46S or T46U).
    close = sorted((lower for lower, score in scores.items() if score >= best - 0.01), key=lambda c: -scores[c])[:2]
    return f" (did you mean {' or '.join(repr(spelt[c]) for c in close)}?)"


def unknown(kind: str, name: str, allowed: Iterable[str], allowed_text: str | None = None) -> str:
    """"unknown KIND 'name' (did you mean 'x'?); allowed: a, b, c"."""
    allowed = list(allowed)
    listed = allowed_text if allowed_text is not None else ", ".join(allowed)
    return f"unknown {kind} {name!r}{did_you_mean(name, allowed)}" + (f"; allowed: {listed}" if listed else "")
