#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, Node.js and Python: the
# Debian packages listed in scripts/apt-packages.txt (one per line, '#' starts a comment).
# Idempotent: packages already installed are skipped, so a second run costs nothing.
# npm and pip packages are installed by the suites themselves, from their lock files.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg; do
  pkg="${pkg%%#*}"
  pkg="$(echo "$pkg" | xargs)"
  [ -n "$pkg" ] || continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/apt-packages.txt

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
