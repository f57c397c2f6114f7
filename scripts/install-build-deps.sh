#!/usr/bin/env bash
# What building the binary needs beyond the Rust toolchain: Debian's libpcap-dev (the `pcap`
# crate links libpcap for `shadowdiff capture`). Idempotent: nothing happens when it is present.
set -euo pipefail
if dpkg-query -W -f='${Status}' libpcap-dev 2>/dev/null | grep -q "install ok installed"; then
  exit 0
fi
echo "[deps] installing libpcap-dev (needed to link shadowdiff)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "[deps] not root and no sudo: apt-get install libpcap-dev" >&2; exit 1; }
  SUDO=sudo
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libpcap-dev >/dev/null
