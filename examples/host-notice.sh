#!/bin/sh
# Tell one guest it was restored, from the hypervisor host, without Node: send the host channel's
# RESTORED notice with 64 fresh bytes from this host's RNG, then wait until every watcher in the guest has
# re-adjusted (docs/backends/host.md). Needs socat and od.
#   host-notice.sh serial PATH [MIN]             a QEMU chardev socket bound to the virtio-serial port
#   host-notice.sh firecracker PATH [MIN] [PORT] Firecracker's vsock Unix socket (uds_path)
# Exit 0 when the guest moved, reseeded its kernel CRNG and every watcher re-adjusted; 1 otherwise.
set -eu
kind=$1 path=$2 min=${3:-0} port=${4:-7744}
entropy=$(od -An -tx1 -N64 /dev/urandom | tr -d ' \n')
case $kind in
  # The leading empty line ends whatever partial line an earlier host connection left on the port.
  serial) first='' need=2 ;;
  # Firecracker answers CONNECT with "OK <host port>" first.
  firecracker) first="CONNECT $port" need=3 ;;
  *) echo "usage: $0 serial|firecracker PATH [MIN] [PORT]" >&2; exit 2 ;;
esac
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# shut-none: a QEMU chardev or Firecracker takes a half-close for the end of the connection, before the
# replies are in. socat stays until the replies are read, or 40 s.
printf '%s
RESTORED %s %s
WAIT 30000
' "$first" "$min" "$entropy" |
  socat -t 40 - "UNIX-CONNECT:$path,shut-none" > "$out" &
pid=$!
while [ "$(grep -cE '^(OK|ERR)' "$out")" -lt "$need" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
kill "$pid" 2>/dev/null || true
replies=$(grep -E '^(OK|ERR)' "$out" | tail -n 2)
echo "$replies" >&2
notice=$(echo "$replies" | head -n 1)
wait=$(echo "$replies" | tail -n 1)
case $notice in *'"reseeded":true'*) ;; *) echo "the guest did not reseed its kernel CRNG: $notice" >&2; exit 1 ;; esac
[ "$wait" = OK ] || { echo "watchers not re-adjusted: $wait" >&2; exit 1; }
echo "$notice" | sed 's/.*"generation":\([0-9]*\).*/\1/'
