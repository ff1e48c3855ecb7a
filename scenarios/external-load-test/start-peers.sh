#!/usr/bin/env bash
# Start the real servers this load test points at, on loopback only (root: ports 67, 69):
#   Kea (DHCP, answering the fleet's relay 127.0.0.2), tftpd-hpa (boot file), nginx (configs).
# Stop them with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p tmp
trap 'kill $(jobs -p) 2>/dev/null' EXIT
KEA_PIDFILE_DIR=$PWD/tmp KEA_LOCKFILE_DIR=$PWD/tmp kea-dhcp4 -c kea-dhcp4.json &
in.tftpd --foreground --listen --address 127.0.0.1:69 --user root --secure "$PWD/tftpboot" &
nginx -c "$PWD/nginx.conf" -p "$PWD" -g 'daemon off;' &
wait
