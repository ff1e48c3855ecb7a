"""``--state-dir``: the fleet's flash saved at the end of a run and loaded at the start
of the next, so a second run continues where the first stopped (one JSON file).

The file is the flash of every phone that ever ran with it: a run saves its own phones'
and keeps the others' as they were (a smaller run, ``--phones 50`` or another scenario,
does not wipe the flash of the phones it did not boot, as a real phone powered off keeps
its own). Before a run, ``state_note`` says what the run takes from the file."""

from __future__ import annotations

import json
import os

from labsim.phones.flash import Flash

STATE_FILE = "flash.json"
FORMAT = 1


class StateDirError(ValueError):
    pass


def load_flash(state_dir: str) -> dict[str, Flash]:
    path = os.path.join(state_dir, STATE_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("format") != FORMAT:
            raise StateDirError(f"{path}: format {data.get('format')!r}, expected {FORMAT}")
        return {mac: Flash.from_dict(flash) for mac, flash in data["phones"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, StateDirError):
            raise
        raise StateDirError(f"{path}: not a labsim flash state file ({exc})") from None


def save_flash(state_dir: str, members) -> str:
    """Writes the flash of ``members`` to the state file, keeping what it holds of phones
    that are not among them."""
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, STATE_FILE)
    phones = _saved_phones(path)
    phones.update((m.phone.mac, m.phone.flash.to_dict()) for m in members)
    data = {"format": FORMAT, "phones": phones}
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data))  # the C encoder (json.dump encodes in pure Python)
    os.replace(temporary, path)
    return path


def _saved_phones(path: str) -> dict:
    """The file's phones as saved (MAC -> flash as JSON), to keep those a run did not
    boot; {} when there is no readable file (it was read at the run's start: a file
    broken since then is replaced, not merged)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        phones = data["phones"] if data.get("format") == FORMAT else {}
        return dict(phones) if isinstance(phones, dict) else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def state_note(state_dir: str, macs: list[str]) -> str:
    """What a run of the phones ``macs`` takes from ``state_dir`` (StateDirError for a
    file that is not a state file: said before anything starts)."""
    path = os.path.join(state_dir, STATE_FILE)
    saved = load_flash(state_dir)
    if not saved:
        return (f"{path}: no saved flash yet: every phone starts from the scenario's flash, and the fleet's "
                "is saved there at the end")
    kept = sum(1 for mac in macs if mac in saved)
    text = f"{path}: the saved flash of {kept:,} of this run's {len(macs):,} phones"
    if kept < len(macs):
        text += f"; {len(macs) - kept:,} start from the scenario's flash"
    others = len(saved) - kept
    if others:
        text += f"; {others:,} other saved phone(s) are not in this run and keep their flash in the file"
    return text
