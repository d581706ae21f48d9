#!/usr/bin/env bash
# Two "hosts" on this machine for provisioning tests: network namespaces xsharp-h1 and xsharp-h2,
# each with its own address, loopback and sshd (root, key auth), on a bridge that also gives this
# (the controller's) namespace an address, so ansible reaches them over ssh like real nodes.
#
#   scripts/netns-hosts.sh up [DIR]     create them; keys, sshd configs and an inventory go in DIR
#   scripts/netns-hosts.sh down [DIR]   kill every process inside them, delete them and the bridge
#
# Then: .venv/bin/xsharp cluster up --inventory /tmp/xsharp-netns/inventory.ini
# (the hosts' venvs reuse the dependencies of $XSHARP_NETNS_VENV, default this checkout's .venv).
#
# DIR defaults to /tmp/xsharp-netns; keep it short (Ray's unix socket paths under it are limited to
# 107 bytes). Addresses: 10.231.0.0/24, a private range used for nothing else here:
#   xsharp-h1  10.231.0.1   the head (Ray head, xsharp server, exporter)
#   xsharp-h2  10.231.0.2   a worker (Ray worker, exporter)
#   xsharp-br0 10.231.0.254 this namespace, where ansible-playbook runs
# The namespaces share this machine's filesystem and processes; only the network is theirs, so
# DIR/host_vars/ gives each host its own xsharp_prefix (DIR/h1, DIR/h2). No route leaves the
# bridge: the hosts reach each other and the controller, nothing else. Needs root, iproute2 and
# openssh-server (scripts/system-deps.sh installs them).
set -euo pipefail

action=${1:-}
dir=${2:-/tmp/xsharp-netns}
bridge=xsharp-br0
bridge_ip=10.231.0.254
hosts=(h1 h2)
# A virtualenv holding xsharp's dependencies for the hosts to reuse (default: this checkout's .venv).
venv=${XSHARP_NETNS_VENV:-$(cd "$(dirname "$0")/.." && pwd)/.venv}
[ -x "$venv/bin/python" ] || venv=""
declare -A ip=([h1]=10.231.0.1 [h2]=10.231.0.2)

die() { echo "netns-hosts: $*" >&2; exit 1; }

down() {
  for h in "${hosts[@]}"; do
    ns=xsharp-$h
    if ip netns list | grep -qw "^$ns"; then
      # Everything in the namespace was started for it (sshd, Ray, services): end it all.
      for sig in TERM KILL; do
        pids=$(ip netns pids "$ns" || true)
        [ -z "$pids" ] && break
        kill -s "$sig" $pids 2>/dev/null || true
        for _ in $(seq 20); do
          [ -z "$(ip netns pids "$ns" || true)" ] && break
          sleep 0.25
        done
      done
      ip netns del "$ns"
    fi
    ip link del "xs-$h" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
}

up() {
  [ "$(id -u)" -eq 0 ] || die "needs root (ip netns add); run as root"
  command -v ip >/dev/null || die "no ip command: apt-get install iproute2"
  [ -x /usr/sbin/sshd ] || die "no /usr/sbin/sshd: apt-get install openssh-server (scripts/system-deps.sh)"
  for h in "${hosts[@]}"; do
    ! ip netns list | grep -qw "^xsharp-$h" || die "namespace xsharp-$h exists; run: $0 down $dir"
  done
  ! ip link show "$bridge" >/dev/null 2>&1 || die "link $bridge exists; run: $0 down $dir"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)

  ip link add "$bridge" type bridge
  ip addr add "$bridge_ip/24" dev "$bridge"
  ip link set "$bridge" up
  for h in "${hosts[@]}"; do
    ns=xsharp-$h
    ip netns add "$ns"
    ip link add "xs-$h" type veth peer name eth0 netns "$ns"
    ip link set "xs-$h" master "$bridge" up
    ip -n "$ns" addr add "${ip[$h]}/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done

  # Throw-away keys: the controller's client key, and a host key per host for known_hosts.
  rm -f "$dir/id_ed25519" "$dir/id_ed25519.pub" "$dir/known_hosts"
  ssh-keygen -q -t ed25519 -N '' -C xsharp-netns -f "$dir/id_ed25519"
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  mkdir -p /run/sshd  # sshd's privilege-separation directory
  for h in "${hosts[@]}"; do
    mkdir -p "$dir/$h/ssh"
    rm -f "$dir/$h/ssh/host_ed25519" "$dir/$h/ssh/host_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C "xsharp-$h" -f "$dir/$h/ssh/host_ed25519"
    echo "${ip[$h]} $(cut -d' ' -f1,2 "$dir/$h/ssh/host_ed25519.pub")" >>"$dir/known_hosts"
    cat >"$dir/$h/ssh/sshd_config" <<EOF
ListenAddress ${ip[$h]}
HostKey $dir/$h/ssh/host_ed25519
PidFile $dir/$h/ssh/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
    ip netns exec "xsharp-$h" /usr/sbin/sshd -f "$dir/$h/ssh/sshd_config" -E "$dir/$h/ssh/sshd.log"
  done

  ssh_args="-F /dev/null -o IdentitiesOnly=yes -o UserKnownHostsFile=$dir/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5"
  for h in "${hosts[@]}"; do
    ok=""
    for _ in $(seq 40); do
      # shellcheck disable=SC2086
      if ssh $ssh_args -i "$dir/id_ed25519" "root@${ip[$h]}" true 2>/dev/null; then ok=1; break; fi
      sleep 0.25
    done
    [ -n "$ok" ] || die "sshd in xsharp-$h does not answer on ${ip[$h]}:22; log: $dir/$h/ssh/sshd.log"
  done

  cat >"$dir/inventory.ini" <<EOF
# Written by scripts/netns-hosts.sh: two network namespaces on one machine as an xsharp cluster.
# Their settings are in host_vars/ beside this file: host variables win over the playbook's
# group_vars/all.yml, which [all:vars] here would not.
[head]
h1 ansible_host=${ip[h1]}

[workers]
h2 ansible_host=${ip[h2]}

[monitoring]
EOF
  python=/usr/bin/python3
  if [ -n "$venv" ]; then
    python=$("$venv/bin/python" -c 'import sys; print(sys._base_executable)')
    reuse=$(cat <<EOF
# No route leaves the bridge, so pip cannot fetch xsharp's dependencies on the hosts: their venvs
# reuse those of $venv (a .pth file) and take xsharp itself from the wheel, with --no-deps.
xsharp_python: $python
xsharp_pip_extra_args: --no-deps
xsharp_venv_extra_paths: ["$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"]
EOF
)
  else
    reuse=""
  fi
  mkdir -p "$dir/host_vars"
  for h in "${hosts[@]}"; do
    cat >"$dir/host_vars/$h.yml" <<EOF
---
# Written by scripts/netns-hosts.sh for xsharp-$h.
ansible_user: root
# Root already: no sudo (often not installed on a minimal host).
ansible_become: false
ansible_ssh_private_key_file: $dir/id_ed25519
ansible_ssh_common_args: "$ssh_args"
ansible_python_interpreter: $python
# The hosts share this machine's filesystem: each writes under its own prefix (Ray's temp dir too).
xsharp_prefix: $dir/$h
# No systemd inside a namespace: units run under xsharp-supervise.
xsharp_service_manager: none
xsharp_user: root
xsharp_group: root
# Nothing from apt (no route out) and no service account.
common_install_packages: false
common_manage_user: false
# One CPU per node, so a job of two 1-CPU workers has to span both hosts; a small object store.
ray_head_num_cpus: 1
ray_worker_num_cpus: 1
ray_head_object_store_memory: 268435456
ray_worker_object_store_memory: 268435456
$reuse
EOF
  done
  echo "hosts up: xsharp-h1 ${ip[h1]}, xsharp-h2 ${ip[h2]} (ssh root, key $dir/id_ed25519); inventory: $dir/inventory.ini"
}

case "$action" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down [DIR]" ;;
esac
