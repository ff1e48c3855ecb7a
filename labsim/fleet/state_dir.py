"""``--state-dir``: the fleet's flash saved at the end of a run and loaded at the start
of the next, so a second run continues where the first stopped (one JSON file)."""

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
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, STATE_FILE)
    data = {"format": FORMAT, "phones": {m.phone.mac: m.phone.flash.to_dict() for m in members}}
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data))  # the C encoder (json.dump encodes in pure Python)
    os.replace(temporary, path)
    return path
