#!/usr/bin/env bash
# Debian packages the sandbox needs. Idempotent: quick when everything is present.
# Services are run as private instances by `flexinfra sandbox up`, never as system services.
set -euo pipefail

PACKAGES=(
  # OpenStack's own infrastructure
  mariadb-server mariadb-client rabbitmq-server
  # what runs inside the "VMs" (shared host binaries)
  galera-4 mariadb-backup socat rsync glusterfs-server glusterfs-client
  # namespaces, bridges, diagnostics
  iproute2 iputils-ping util-linux procps psmisc curl openssl ca-certificates
  # the data plane: router namespaces (Neutron L3 agent: iptables, conntrack, arping),
  # security groups (nftables), load balancers (haproxy in the amphorae)
  iptables ipset nftables conntrack iputils-arping haproxy keepalived ipvsadm
  # Kubernetes: etcd, kubectl, and the toolchain + keyring to build kube-apiserver from source
  etcd-server debian-archive-keyring dpkg-dev xz-utils
  # building wheels some OpenStack packages need
  build-essential python3-dev python3-venv libffi-dev libssl-dev pkg-config
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "sandbox: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Keep the system's services stopped: the sandbox runs private instances on its own ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
