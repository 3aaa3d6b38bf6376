#!/usr/bin/env bash
# Installs the Debian 12 packages gptoss needs to build, test and benchmark.
# Runs apt-get directly as root, through sudo otherwise.
set -euo pipefail

packages=(
  cmake g++ ninja-build ccache
  libeigen3-dev libxsimd-dev xtl-dev nlohmann-json3-dev
  catch2 libbenchmark-dev libcli11-dev libpcre2-dev pkg-config
  clang libclang-rt-14-dev
  python3 python3-regex python3-jinja2
)

if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
else
  as_root=(sudo)
fi

"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${packages[@]}"
