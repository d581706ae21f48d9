#!/usr/bin/env bash
# Debian packages xsharp's tests and examples use; installs only what is missing.
#   prometheus (with promtool)  - the monitoring tests run a real Prometheus
#   espeak-ng, sox              - synthesising the spoken-digit data set
#   dataset-fashion-mnist       - Fashion-MNIST as IDX files under /usr/share/datasets
#   chromium                    - the web console's browser tests (Playwright drives /usr/bin/chromium)
#   openssh-server, iproute2    - the two-host provisioning test: sshd inside two network namespaces
set -euo pipefail
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "xsharp needs these Debian packages: ${missing[*]} (no apt-get here; install them yourself)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
# The tests start their own Prometheus and sshd; the packages' services (prometheus on :9090,
# sshd on :22) are not wanted. Where nothing else decides it, services stay down while we install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod 755 /usr/sbin/policy-rc.d
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
