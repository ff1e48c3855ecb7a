"""Start real third-party servers on loopback for interop tests, and always stop them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time

from tests.peers import require_binary, require_root, wait_for_tcp, wait_for_udp


@contextlib.contextmanager
def running(args: list[str], *, env=None, ready=None, name: str = "peer"):
    """Run a peer in the foreground of its own process group; kill the group on exit."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        if ready is not None:
            ready()
        else:
            time.sleep(0.5)
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace")
            raise RuntimeError(f"{name} exited at start ({proc.returncode}): {output[-2000:]}")
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


# Ports 67 (DHCP: Kea, dnsmasq, and the fleet's relay socket on 127.0.0.2) and 69
# (dnsmasq's TFTP) are fixed. Tests run one at a time in CI, but on a shared machine two
# pytest processes may not: a lock file makes them take turns instead of failing with
# EADDRINUSE or, worse, answering each other's phones. flock is released by the kernel
# when the holder dies, so a crashed test never leaves it taken.
PORTS_LOCK = "/tmp/labsim-interop-ports-67-69.lock"
_ports_held = 0  # nesting depth in this process: a second flock on a new file would wait for ourselves


@contextlib.contextmanager
def privileged_ports(timeout_s: float = 90.0):
    """Hold loopback ports 67 and 69 for this test (re-entrant within one process)."""
    global _ports_held
    if _ports_held:
        _ports_held += 1
        try:
            yield
        finally:
            _ports_held -= 1
        return
    # Read-only is enough for flock, and works for any user whoever created the file.
    handle = os.open(PORTS_LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ports 67/69 still held by another test after {timeout_s:g}s ({PORTS_LOCK})")
                time.sleep(0.1)
        _ports_held = 1
        try:
            yield
        finally:
            _ports_held = 0
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


def kea_config(tmp, *, subnet: str, pool: str, relay: str | list[str], options: list[dict],
               timers: dict | None = None) -> str:
    """``relay``: the relay address(es) the subnet serves (one per shard); ``timers``: Kea's
    lease settings to override (valid-lifetime, renew-timer, rebind-timer)."""
    config = {
        "Dhcp4": {
            "interfaces-config": {"interfaces": ["lo"], "dhcp-socket-type": "udp"},
            "lease-database": {"type": "memfile", "persist": False},
            "valid-lifetime": 3600,
            **(timers or {}),
            "subnet4": [{
                "id": 1, "subnet": subnet, "pools": [{"pool": pool}],
                "relay": {"ip-addresses": relay if isinstance(relay, list) else [relay]},
                "option-data": options,
            }],
            "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "WARN"}],
        }
    }
    path = os.path.join(tmp, "kea-dhcp4.json")
    with open(path, "w") as handle:
        json.dump(config, handle)
    return path


@contextlib.contextmanager
def kea(tmp, **config):
    """kea-dhcp4 on lo, answering the fleet's relay (Kea 2.2 answers relays on port 67)."""
    binary = require_binary("kea-dhcp4")
    require_root("Kea listens on port 67 and answers the relay on port 67")
    path = kea_config(str(tmp), **config)
    env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp), KEA_LOCKFILE_DIR=str(tmp), KEA_LOG_CHECK_VERBOSE="0")
    with privileged_ports(), running([binary, "-c", path], env=env, name="kea-dhcp4",
                                     ready=lambda: wait_for_udp(67)) as proc:
        if proc.poll() is not None:
            raise RuntimeError("kea-dhcp4 exited: " + proc.stdout.read().decode(errors="replace")[-2000:])
        yield proc


@contextlib.contextmanager
def tftpd_hpa(root: str, port: int):
    binary = require_binary("in.tftpd")
    require_root("in.tftpd drops privileges to a user")
    with running([binary, "--foreground", "--listen", "--address", f"127.0.0.1:{port}", "--user", "root",
                  "--secure", root], name="in.tftpd", ready=lambda: wait_for_udp(port)) as proc:
        yield proc


@contextlib.contextmanager
def nginx(root: str, port: int, tmp, *, put_folder: str | None = None, connections_log: str | None = None):
    """nginx serving ``root`` on 127.0.0.1:port. With ``put_folder`` (e.g. ``uploads``),
    HTTP PUT is allowed into that folder only (the dav module; nginx-light has it). With
    ``connections_log``, a line per request there: its connection's serial number, the
    request's number on that connection, the URI and the status."""
    binary = require_binary("nginx")
    put = ""
    if put_folder is not None:
        folder = put_folder.strip("/")
        put = (f"location /{folder}/ {{ dav_methods PUT; create_full_put_path on; "
               f"dav_access user:rw group:r all:r; }}")
    access_log = "access_log off;"
    if connections_log is not None:
        access_log = (f"log_format connections '$connection $connection_requests $request_uri $status'; "
                      f"access_log {connections_log} connections;")
    conf = os.path.join(str(tmp), "nginx.conf")
    with open(conf, "w") as handle:
        # pytest's temporary folders are private to root: let the worker read them.
        user = "user root;" if os.geteuid() == 0 else ""
        handle.write(f"""
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    {access_log}
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    server {{ listen 127.0.0.1:{port}; root {root}; {put} }}
}}
""")
    with running([binary, "-c", conf, "-g", "daemon off;"], name="nginx",
                 ready=lambda: wait_for_tcp("127.0.0.1", port)) as proc:
        yield proc


# vsftpd's configuration for loopback tests (also used by test_ftp_interop.py). Fields:
# port, root (anonymous root), empty (an empty folder for secure_chroot_dir), anonymous
# and local (YES/NO). The sandbox and network isolation are off: they need namespaces
# and seccomp filters that a container may refuse.
VSFTPD_CONF = """\
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
background=NO
anonymous_enable={anonymous}
anon_root={root}
no_anon_password=YES
local_enable={local}
write_enable=NO
pasv_enable=YES
secure_chroot_dir={empty}
xferlog_enable=NO
seccomp_sandbox=NO
isolate_network=NO
delay_failed_login=0
"""

# With a log: every command and reply ("FTP command: ... USER ftp") and every login
# ("OK LOGIN: Client "127.0.0.1", anon password "...""), in vsftpd's own format.
VSFTPD_LOG = """\
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
vsftpd_log_file={log}
"""


@contextlib.contextmanager
def vsftpd(root: str, port: int, tmp, *, anonymous: bool = True, local: bool = False, log: str | None = None,
           ask_password: bool = False):
    """vsftpd on 127.0.0.1:port serving ``root`` to anonymous logins (user ``anonymous``
    or ``ftp``, any password). Local (system) users need PAM and an account: not made
    here. With ``ask_password`` vsftpd asks anonymous users for a password (331), so the
    client's PASS reaches it and ``log`` shows it; otherwise it logs in after USER.
    The anonymous session runs as the ``ftp`` user, so ``root`` is made world-readable
    (and must not be writable by it: vsftpd refuses that)."""
    binary = require_binary("vsftpd")
    require_root("vsftpd starts as root to chroot anonymous sessions and drop to the ftp user")
    empty = os.path.join(str(tmp), "vsftpd-empty")
    os.makedirs(empty, exist_ok=True)
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    text = VSFTPD_CONF.format(port=port, root=root, empty=empty, anonymous="YES" if anonymous else "NO",
                              local="YES" if local else "NO")
    if ask_password:
        text = text.replace("no_anon_password=YES", "no_anon_password=NO")
    if log is not None:
        text = text.replace("xferlog_enable=NO\n", "") + VSFTPD_LOG.format(log=log)
    conf = os.path.join(str(tmp), "vsftpd.conf")
    with open(conf, "w") as handle:
        handle.write(text)
    with running([binary, conf], name="vsftpd", ready=lambda: wait_for_tcp("127.0.0.1", port, timeout=5)) as proc:
        yield proc


def dnsmasq_config(tmp, *, relay: str, network: str, dhcp_range: str, options: dict[int, str],
                   tftp_root: str | None = None, log: str | None = None, omit: tuple[str, ...] = ()) -> str:
    """A dnsmasq configuration that serves a relay on loopback (see docs/interop.md).

    ``network`` is the subnet the range is in (``10.60.0.0``) and ``dhcp_range``
    ``start,end,netmask[,lease]``: a relayed request is matched by its giaddr, and
    ``shared-network`` says the relay's 127.0.0.2 serves that subnet (else dnsmasq logs
    "no address range available for DHCP request via 127.0.0.2" and stays silent).
    ``omit`` drops the lines with these keywords (tests that show why a line is there).
    """
    lines = [
        "port=0",  # no DNS: nothing here asks it, and port 53 may be someone else's
        "interface=lo",
        "listen-address=127.0.0.1",
        # Without it dnsmasq binds 0.0.0.0:67 exclusively and the fleet's relay socket
        # (127.0.0.2:67, where replies to a relay go) cannot bind: EADDRINUSE.
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "user=root",  # pytest's temporary folders are private to root: let it read them
        # Without it dnsmasq pings every address before offering it: 3 s per new lease,
        # and ICMP to a pool that is not loopback (a 127/8 pool answers every ping, so
        # every address would look taken).
        "no-ping",
        "dhcp-lease-max=100000",  # the default 1,000 caps a bigger fleet
        f"dhcp-leasefile={os.path.join(str(tmp), 'dnsmasq.leases')}",
        f"pid-file={os.path.join(str(tmp), 'dnsmasq.pid')}",
        f"shared-network={relay},{network}",
        f"dhcp-range={dhcp_range}",
    ]
    lines += [f'dhcp-option={code},"{value}"' for code, value in options.items()]
    if tftp_root is not None:
        lines += ["enable-tftp", f"tftp-root={tftp_root}"]  # always port 69
    if log is not None:
        lines.append(f"log-facility={log}")
    lines = [line for line in lines if line.split("=", 1)[0] not in omit]
    path = os.path.join(str(tmp), "dnsmasq.conf")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def dnsmasq(tmp, **config):
    """dnsmasq in the foreground with only our configuration (``-C``: not /etc's),
    holding ports 67 (and 69 with a TFTP root) on loopback."""
    binary = require_binary("dnsmasq")
    require_root("dnsmasq binds ports 67 and 69")
    log = config.setdefault("log", os.path.join(str(tmp), "dnsmasq.log"))
    path = dnsmasq_config(tmp, **config)

    wanted = "TFTP root is" if config.get("tftp_root") else "DHCP, IP range"
    with privileged_ports(), running([binary, "-C", path, "--keep-in-foreground"], name="dnsmasq",
                                     ready=lambda: None) as proc:
        # dnsmasq binds its sockets before it logs the DHCP range (and the TFTP root).
        deadline = time.monotonic() + 5
        while not _logged(log, wanted):
            if proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited ({proc.returncode}): "
                                   + proc.stdout.read().decode(errors="replace")[-2000:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"dnsmasq did not log {wanted!r} within 5s")
            time.sleep(0.02)
        yield proc


@contextlib.contextmanager
def dnsmasq_dns(tmp, *, port: int, addresses: dict[str, str], local_ttl: int, log: str, zone: str | None = None,
                authoritative: bool = False):
    """dnsmasq as a DNS server only (no DHCP, no upstream, no /etc/hosts) on
    127.0.0.1:``port``, answering ``addresses`` (name -> IPv4) with ``local_ttl`` as the
    records' TTL (dnsmasq's default for its own records is 0: not to be kept), and
    logging every query to ``log``.

    ``zone`` (``lab``): a name in it that ``addresses`` lacks gets NXDOMAIN (else
    REFUSED: dnsmasq has no upstream to ask). A bare NXDOMAIN, which a resolver may not
    keep; ``authoritative``: dnsmasq is the zone's authoritative server instead, and its
    negative answers carry the zone's SOA (TTL and MINIMUM both ``local_ttl``, its
    auth-ttl), which lets a resolver keep them that long (RFC 2308)."""
    binary = require_binary("dnsmasq")
    lines = [f"port={port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts",
             "user=root", f"local-ttl={local_ttl}", "log-queries", f"log-facility={log}",
             f"pid-file={os.path.join(str(tmp), 'dnsmasq-dns.pid')}"]
    if authoritative:
        lines += [f"auth-server=ns.{zone},127.0.0.1", f"auth-zone={zone}", f"auth-ttl={local_ttl}",
                  f"auth-soa=1,hostmaster.{zone},1200,120,1209600"]
        lines += [f"host-record={name},{address}" for name, address in addresses.items()]
    else:
        lines += [f"address=/{name}/{address}" for name, address in addresses.items()]
        lines += [f"local=/{zone}/"] if zone else []
    path = os.path.join(str(tmp), "dnsmasq-dns.conf")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with running([binary, "-C", path, "--keep-in-foreground"], name="dnsmasq",
                 ready=lambda: wait_for_udp(port, timeout=5, hosts=("127.0.0.1",))) as proc:
        yield proc


def _logged(path: str, text: str) -> bool:
    try:
        with open(path, errors="replace") as handle:
            return text in handle.read()
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def labsim_service(module: str, *args: str, listening: str):
    """``python -m labsim.services.MODULE ARGS`` in its own process group; yields the first
    match of the regular expression ``listening`` in the line it prints when ready (its
    address); always stopped."""
    import re
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", f"labsim.services.{module}", *args], cwd=repo,
                            env=dict(os.environ, PYTHONPATH=repo), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()  # blocks until the service says where it listens
        match = re.search(listening, line)
        assert match, f"labsim {module} did not start: {line}{proc.stdout.read() if proc.poll() is not None else ''}"
        yield match.group(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
