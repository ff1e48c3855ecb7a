"""A phone's flash ("FFS"): what survives a reboot or power cycle.

Only a factory reset clears it. It is plain data so that a run can save it and the
next run can load it (``--state-dir``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from labsim.phones.packed import md5_hex


@dataclass(slots=True)
class Flash:
    settings: dict[str, str] = field(default_factory=dict)
    file_md5: dict[str, str] = field(default_factory=dict)  # file name -> MD5 last applied
    versions: dict[str, str] = field(default_factory=dict)  # Avaya: section -> VERSION last applied
    firmware: str = ""
    provisioning_url: str = ""
    profiles: dict[str, str] = field(default_factory=dict)  # Avaya server profiles: role -> file
    kept_files: dict[str, str] = field(default_factory=dict)  # files read later: Yealink's AutoDST.xml -> its text

    def factory_reset(self, firmware: str) -> None:
        self.settings.clear()
        self.file_md5.clear()
        self.versions.clear()
        self.profiles.clear()
        self.kept_files.clear()
        self.provisioning_url = ""
        self.firmware = firmware

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Flash":
        return cls(**data)

    def summary(self) -> dict:
        return {
            "firmware": self.firmware,
            "file_md5": dict(self.file_md5),
            "versions": dict(self.versions),
            "provisioning_url": self.provisioning_url,
            "profiles": dict(self.profiles),
            "kept_files": {name: md5_hex(text.encode()) for name, text in self.kept_files.items()},
            "settings_count": len(self.settings),
        }


def changed_keys(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The settings a provisioning pass set, changed or removed: ``before`` is a copy of
    ``flash.settings`` taken when the pass began."""
    return [key for key in {**before, **after} if before.get(key) != after.get(key)]
