"""The scenario's services, started together on one reactor over one provisioning root."""

from __future__ import annotations

from twisted.internet import defer

from labsim.services.dhcp import DhcpServerConfig
from labsim.services.dhcp_udp import start_dhcp_server
from labsim.services.http import HttpServerConfig, start_http_server
from labsim.services.tftp import TftpServerConfig
from labsim.services.tftp_udp import start_tftp_server
from labsim.wire import dhcp_options


def dhcp_config(spec) -> DhcpServerConfig:
    options = {}
    for key, value in spec.options.items():
        code = dhcp_options.option_code(key)
        options[code] = dhcp_options.encode_option_value(code, value)
    reservations = {bytes.fromhex(mac.replace(":", "").replace("-", "")): ip for mac, ip in spec.reservations.items()}
    return DhcpServerConfig(
        server_id=spec.address,
        subnet=spec.subnet,
        pool_start=spec.pool.start,
        pool_end=spec.pool.end,
        lease_time_s=spec.lease_time_s,
        options=options,
        reservations=reservations,
    )


class LabServices:
    def __init__(self, reactor, spec, root: str, *, cert_dir: str | None = None):
        self.reactor = reactor
        self.spec = spec
        self.root = root
        self.cert_dir = cert_dir
        self.dhcp = None  # (protocol, port)
        self.tftp = None
        self.http = None

    def start(self):
        spec = self.spec
        if spec.dhcp is not None:
            self.dhcp = start_dhcp_server(self.reactor, dhcp_config(spec.dhcp), host=spec.dhcp.address, port=spec.dhcp.port)
        if spec.tftp is not None:
            config = TftpServerConfig(root=self.root, blksize_max=spec.tftp.blksize_max,
                                      timeout_s=spec.tftp.timeout_s, max_retransmits=spec.tftp.max_retransmits)
            self.tftp = start_tftp_server(self.reactor, config, host=spec.tftp.address, port=spec.tftp.port)
        if spec.http is not None:
            config = HttpServerConfig(root=self.root, directory_listing=spec.http.directory_listing,
                                      cert_dir=self.cert_dir)
            self.http = start_http_server(self.reactor, config, host=spec.http.address, port=spec.http.port)
        return defer.succeed(None)

    @property
    def dhcp_port(self) -> int:
        return self.dhcp[1].getHost().port

    def describe(self) -> str:
        parts = []
        if self.dhcp is not None:
            parts.append(f"DHCP {self.spec.dhcp.address}:{self.dhcp_port}")
        if self.tftp is not None:
            parts.append(f"TFTP {self.spec.tftp.address}:{self.tftp.port}")
        if self.http is not None:
            parts.append(f"HTTP {self.spec.http.address}:{self.http.port}")
        return ", ".join(parts)

    def stats(self) -> dict:
        result = {}
        if self.dhcp is not None:
            result["dhcp"] = dict(self.dhcp[0].stats)
        if self.tftp is not None:
            result["tftp"] = dict(self.tftp.stats)
        if self.http is not None:
            stats = self.http.stats
            result["http"] = {"requests": stats.requests, "bytes_sent": stats.bytes_sent,
                              "status": {str(code): n for code, n in sorted(stats.status.items())}}
        return result

    @defer.inlineCallbacks
    def stop(self):
        if self.dhcp is not None:
            yield self.dhcp[1].stopListening()
        if self.tftp is not None:
            yield self.tftp.stop()
        if self.http is not None:
            yield self.http.stop()
