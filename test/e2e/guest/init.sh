#!/bin/sh
# PID 1 of the end-to-end guest: mount the basics, then hand the console to the test agent, which
# reads its scenario from the kernel command line (e2e=vm or e2e=criu).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
ip link set lo up
hostname sysgenid-e2e
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
cd /app
node /app/dist/test/e2e/guest/agent.js
echo "E2E AGENT-EXIT $?"
# The host reads the console; keep the machine up so that it can still be asked for logs.
exec sh
