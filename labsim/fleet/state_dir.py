"""``--state-dir``: the fleet's flash saved at the end of a run and loaded at the start
of the next, so a second run continues where the first stopped (one JSON file).

The file is the flash of every phone that ever ran with it: a run saves its own phones'
and keeps the others' as they were (a smaller run, ``--phones 50`` or another scenario,
does not wipe the flash of the phones it did not boot, as a real phone powered off keeps
its own). Before a run, ``state_note`` says what the run takes from the file.

Flash belongs to a device, and a device is a MAC of one vendor and model: each saved
phone carries its vendor and model, and a run whose phone at that MAC is another device
(another scenario on the same MACs, or ``--phones`` on a fleet of mixed models, which
gives each model a smaller block of MACs) starts that phone from the scenario's flash
and says so, instead of handing a T46S's settings to a T48S."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from labsim.phones.flash import Flash

STATE_FILE = "flash.json"
FORMAT = 2  # 1: MAC -> flash, no device; 2: MAC -> {vendor, model, flash}
READABLE_FORMATS = (1, 2)


class StateDirError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SavedPhone:
    vendor: str  # "" when the file is format 1, which did not say
    model: str
    flash: Flash

    def is_device(self, device: tuple[str, str]) -> bool:
        """Whether this flash was saved by ``device`` (vendor, model); a format-1 entry,
        saved without its device, is taken as the same one, as it always was."""
        return not self.vendor or (self.vendor, self.model) == device

    @property
    def device_text(self) -> str:
        return f"{self.vendor} {self.model}"


def load_saved(state_dir: str) -> dict[str, SavedPhone]:
    """Every phone the file holds (StateDirError naming the file for one that is not a
    state file)."""
    path = os.path.join(state_dir, STATE_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("format") not in READABLE_FORMATS:
            raise StateDirError(f"{path}: format {data.get('format')!r}, this labsim reads formats "
                                f"{', '.join(map(str, READABLE_FORMATS))}")
        return {mac: SavedPhone(entry["vendor"], entry["model"], Flash.from_dict(entry["flash"]))
                for mac, entry in _entries(data).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, StateDirError):
            raise
        raise StateDirError(f"{path}: not a labsim flash state file ({exc})") from None


def load_flash(state_dir: str, devices: dict[str, tuple[str, str]]) -> dict[str, Flash]:
    """The saved flash a run of ``devices`` (MAC -> (vendor, model)) starts its phones
    from: only a phone's own, saved by the same device."""
    return {mac: saved.flash for mac, saved in load_saved(state_dir).items()
            if mac in devices and saved.is_device(devices[mac])}


def save_flash(state_dir: str, members) -> str:
    """Writes the flash of ``members`` (with their vendor and model) to the state file,
    keeping what it holds of phones that are not among them."""
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, STATE_FILE)
    phones = _saved_phones(path)
    phones.update((m.phone.mac, {"vendor": m.vendor, "model": m.phone.model, "flash": m.phone.flash.to_dict()})
                  for m in members)
    data = {"format": FORMAT, "phones": phones}
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data))  # the C encoder (json.dump encodes in pure Python)
    os.replace(temporary, path)
    return path


def _saved_phones(path: str) -> dict:
    """The file's phones as saved (MAC -> entry as JSON, in this format), to keep those a
    run did not boot; {} when there is no readable file (it was read at the run's start: a
    file broken since then is replaced, not merged)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("format") not in READABLE_FORMATS or not isinstance(data["phones"], dict):
            return {}
        return dict(_entries(data))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _entries(data: dict) -> dict:
    """A readable file's phones as this format writes them (MAC -> {vendor, model,
    flash}): format 1's flash alone, with no device."""
    if data["format"] == 1:
        return {mac: {"vendor": "", "model": "", "flash": flash} for mac, flash in data["phones"].items()}
    return data["phones"]


def state_note(state_dir: str, devices: dict[str, tuple[str, str]]) -> str:
    """What a run of the phones ``devices`` (MAC -> (vendor, model)) takes from
    ``state_dir`` (StateDirError for a file that is not a state file: said before
    anything starts)."""
    path = os.path.join(state_dir, STATE_FILE)
    saved = load_saved(state_dir)
    if not saved:
        return (f"{path}: no saved flash yet: every phone starts from the scenario's flash, and the fleet's "
                "is saved there at the end")
    ours = [mac for mac in devices if mac in saved]
    other_device = [mac for mac in ours if not saved[mac].is_device(devices[mac])]
    kept = len(ours) - len(other_device)
    text = f"{path}: the saved flash of {kept:,} of this run's {len(devices):,} phones"
    if kept < len(devices):
        text += f"; {len(devices) - kept:,} start from the scenario's flash"
    if other_device:
        first = other_device[0]
        vendor, model = devices[first]
        text += (f", {len(other_device):,} of them because the file's flash at their MAC is another device's "
                 f"(e.g. {first}: saved by a {saved[first].device_text}, a {vendor} {model} in this run)")
    others = len(saved) - len(ours)
    if others:
        text += f"; {others:,} other saved phone(s) are not in this run and keep their flash in the file"
    return text
