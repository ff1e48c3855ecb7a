"""FTP in the in-memory lab: the phones' own FTP client against labsim's own FTP server,
every segment of the control and the passive data connections a call on the simulated
clock (``virtual.tcp``).

The two ends are the code a run on sockets uses; only the adapters differ:

- the server is ``services.ftp``'s handler class for the scenario's service (pyftpdlib's
  ``FTPHandler``/``DTPHandler`` with labsim's counters, fault hooks and pacing, its
  filesystem view with the upload folder, its authorizer), accepted by pyftpdlib's own
  ``FTPServer`` (connection limits, the 220 greeting) from a listening socket of the lab,
  its IO loop a ``MemoryLoop`` (timers on the simulated clock: the idle timeout, the
  delayed 530, held commands, pacing). Two adapter choices differ from the socket server:
  the passive data port is a listening socket of the lab (``_LabPassiveDTP``: pyftpdlib's
  ``PassiveDTP`` with its socket made here), numbered deterministically (from
  ``passive_ports`` when the scenario sets them, else 30000 up) where pyftpdlib would let
  the kernel or ``random`` choose; and ``sendfile`` is off (there is no descriptor to
  send from);
- the client is ``transport.ftp_fetch`` (Twisted's ``FTPClient``: USER, PASS, TYPE I,
  PASV, RETR or STOR, QUIT) with a reactor whose clock is the run's and whose
  ``connectTCP`` goes through the lab (``virtual.tcp.LabReactor``), its 30 s time limit a
  timer on that clock.

So everything the protocol shows is there in memory as on sockets: the reply texts, the
227 and the data connection it names, the order of replies, and where the ``ftp`` faults
act, inside the server: ``down`` closes a new connection before the greeting, a delay
holds each command the server reads (the QUIT too: drawn and counted, then the client's
close ends the session), ``bandwidth_kbps`` paces the data connection on the clock. A timeline action or a
fault window lands in the middle of an exchange: a stopped server closes every
connection (the client reads the close and reports the error it reports on sockets) and
forgets its data ports; a restarted one is a new server that knows none of the old
sessions. Times are the lab's: every segment takes one hop (``latency_s``), so an
exchange lasts its round trips (a download 12 hops: SYN, SYN-ACK and 220, USER, PASS,
TYPE I and PASV with their replies, the RETR beside the data connection's SYN, the file
and the 226) plus what the server holds.
"""

from __future__ import annotations

try:
    from pyftpdlib.handlers.ftp.dispatchers import PassiveDTP
except ImportError:  # pyftpdlib 1.5: one handlers module
    from pyftpdlib.handlers import PassiveDTP
from pyftpdlib.servers import FTPServer

from labsim.services.ftp import FtpServerConfig, handler_class, new_stats
from labsim.virtual.tcp import ListeningSocket, MemoryLoop, PortTable

BACKLOG = 1024  # as start_ftp_server listens


class _LabPassiveDTP(PassiveDTP):
    """pyftpdlib's passive data listener, its socket one of the lab's (the rest of PASV,
    the 227 and who may connect, is pyftpdlib's)."""

    def create_socket(self, family, type):
        server = self.cmd_channel.server.lab_server
        self.set_socket(ListeningSocket(server.loop, server.host, server.ports))


class VirtualFtpServer:
    """One start of the FTP service in memory: pyftpdlib's server and sessions on a
    ``MemoryLoop``, and the ports it listens on."""

    def __init__(self, spec, root: str, upload_root: str | None, clock, link=None):
        self.config = FtpServerConfig(root=root, users=dict(spec.users), anonymous=spec.anonymous,
                                      uploads=spec.uploads, upload_dir=spec.upload_dir, upload_root=upload_root,
                                      idle_timeout_s=spec.idle_timeout_s,
                                      max_connections_per_address=spec.max_connections_per_address or 0)
        self.stats = new_stats()
        self.host, self.port = spec.address, spec.port
        self.loop = MemoryLoop(clock, self.stats)
        self.ports = PortTable(*spec.passive_ports) if spec.passive_ports else PortTable()
        handler = handler_class(self.config, clock, self.stats)
        handler = type("LabFtpHandlerInMemory", (handler,), {"passive_dtp": _LabPassiveDTP, "use_sendfile": False})
        handler.fault_link = link
        listener = ListeningSocket(self.loop, self.host, self.ports)
        listener.bind((self.host, self.port))
        self.server = FTPServer(listener, handler, ioloop=self.loop, backlog=BACKLOG)
        self.server.lab_server = self
        self.server.max_cons = self.config.max_connections
        self.server.max_cons_per_ip = self.config.max_connections_per_address

    def listener_at(self, port: int) -> ListeningSocket | None:
        return self.ports.listening.get(port)

    def stop(self) -> None:
        """Close the listener and every session, as the socket server's ``stop`` does."""
        if not self.loop.closed:
            self.loop.close()
