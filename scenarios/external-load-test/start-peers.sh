#!/usr/bin/env bash
# Start the real servers this load test points at, on loopback only (root: ports 67, 69):
#   Kea (DHCP, answering the fleet's relay 127.0.0.2), tftpd-hpa (boot file), nginx (configs).
# Stop them with Ctrl-C.
#
# Nothing is written into the checkout: Kea's pid/lock files, nginx's pid, logs and temp
# folders, and a copy of the files served go to a temporary folder, removed on exit. The
# served copy is world-readable, so nginx's workers (user nobody) can read it even when
# the checkout sits in a root-only folder such as /root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/labsim-peers.XXXXXX")"
chmod 755 "$work"
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cp -r "$here/www" "$here/tftpboot" "$here/nginx.conf" "$work/"
mkdir -p "$work/tmp"
chmod -R a+rX "$work"
echo "start-peers: Kea, tftpd-hpa and nginx on 127.0.0.1; their files in $work (removed on exit)"
KEA_PIDFILE_DIR="$work/tmp" KEA_LOCKFILE_DIR="$work/tmp" kea-dhcp4 -c "$here/kea-dhcp4.json" &
in.tftpd --foreground --listen --address 127.0.0.1:69 --user root --secure "$work/tftpboot" &
nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;' &
wait
