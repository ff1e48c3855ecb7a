"""The vendor profiles a fleet can name. Each profile is one module that reads like
that vendor's manual and provides: MODELS, default_firmware(model),
dhcp_identity(phone), user_agent(phone) and provision(phone) (a generator)."""

import functools
import inspect

from labsim.phones import avaya, cisco, grandstream, polycom, snom, yealink

VENDORS = {
    yealink.VENDOR: yealink,
    avaya.VENDOR: avaya,
    polycom.VENDOR: polycom,
    cisco.VENDOR: cisco,
    grandstream.VENDOR: grandstream,
    snom.VENDOR: snom,
}


class BoundProfile:
    """A vendor profile with a fleet's behaviour settings bound in: the phone calls
    ``provision(phone)``, and the module's functions receive the behaviour too."""

    def __init__(self, module, behaviour):
        self.module = module
        self.behaviour = behaviour
        for name in ("provision", "user_agent", "dhcp_identity", "check_sync_action"):
            function = getattr(module, name, None)
            if function is not None and "behaviour" in inspect.signature(function).parameters:
                setattr(self, name, functools.partial(function, behaviour=behaviour))

    def __getattr__(self, name):
        return getattr(self.module, name)


def behaviour_for(vendor: str, overrides: dict):
    """The vendor's behaviour dataclass with ``overrides``; ValueError names bad knobs."""
    import dataclasses

    module = VENDORS[vendor]
    default = getattr(module, "DEFAULT_BEHAVIOUR", None)
    if default is None:
        if overrides:
            raise ValueError(f"{vendor} phones have no behaviour settings")
        return None
    fields = {f.name: f for f in dataclasses.fields(default)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown {vendor} behaviour {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}")
    for name, value in overrides.items():
        expected = type(getattr(default, name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"{vendor} behaviour {name}: expected {expected.__name__}, got {value!r}")
    return dataclasses.replace(default, **overrides)


def profile_for(vendor: str, overrides: dict | None = None):
    module = VENDORS[vendor]
    behaviour = behaviour_for(vendor, overrides or {})
    return module if behaviour is None else BoundProfile(module, behaviour)
