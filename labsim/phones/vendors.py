"""The vendor profiles a fleet can name. Each profile is one module that reads like
that vendor's manual and provides: MODELS, default_firmware(model),
dhcp_identity(phone), user_agent(phone) and provision(phone) (a generator)."""

from labsim.phones import yealink

VENDORS = {
    yealink.VENDOR: yealink,
}
