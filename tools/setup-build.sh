#!/usr/bin/env bash
# Configures a meson build directory, or reconfigures it when it exists, so
# that the scripts that call this can be run again and again.
#
#   tools/setup-build.sh BUILDDIR [meson options...]
#
# A build dir that cannot be reconfigured (made by another meson version, or
# broken) is wiped and set up afresh.
set -euo pipefail

dir=$1
shift

if [ -f "$dir/meson-private/coredata.dat" ]; then
  if ! meson setup --reconfigure "$dir" "$@"; then
    echo "setup-build: reconfiguring $dir failed; wiping it" >&2
    meson setup --wipe "$dir" "$@"
  fi
else
  meson setup "$dir" "$@"
fi
