#!/usr/bin/env bash
# Installs what is needed (Debian 12, with apt-get), builds bigfile-glib in
# build/ and runs the demo: a 64 MiB file used as memory through an 8 MiB
# RAM budget (see examples/demo.c).  Arguments go to the demo (see
# `build/examples/demo --help`).  It can be run again.
set -euo pipefail
cd "$(dirname "$0")"

./tools/install-deps.sh build
tools/setup-build.sh build
ninja -C build examples/demo
echo
exec build/examples/demo "$@"
