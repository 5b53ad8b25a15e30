#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages that bigfile-glib needs.
#
#   tools/install-deps.sh [--update] [build|all]
#
#   build   what building the library and running the demo needs
#   all     (default) also what the whole test suite and the later
#           introspection and docs work need
#   --update  always run apt-get update and apt-get install (CI does this);
#           without it, nothing is done when every package is already there.
#
# Runs apt-get as root, or through sudo when not root.
set -euo pipefail

build_packages=(
  gcc
  libc6-dev
  meson
  ninja-build
  pkg-config
  libglib2.0-dev
  libglib2.0-dev-bin
  libsqlite3-dev
)
all_packages=(
  "${build_packages[@]}"
  gobject-introspection
  libgirepository1.0-dev
  gtk-doc-tools
  gjs
  python3-gi
  valac
  valgrind
  # BigfilePgFile: libpq to build it, a server (initdb, pg_ctl) to test
  # it against (tools/pg-test-cluster.sh)
  libpq-dev
  postgresql
)

update=0
set_name=all
for arg in "$@"; do
  case "$arg" in
    --update) update=1 ;;
    build | all) set_name=$arg ;;
    *)
      echo "usage: $0 [--update] [build|all]" >&2
      exit 2
      ;;
  esac
done
if [ "$set_name" = build ]; then
  packages=("${build_packages[@]}")
else
  packages=("${all_packages[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ "$update" = 0 ] && [ "${#missing[@]}" = 0 ]; then
  echo "install-deps: all ${#packages[@]} packages ($set_name) already installed"
  exit 0
fi

if [ "$(id -u)" = 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root, or install them: apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "install-deps: apt-get install ${packages[*]}"
if ! "${sudo[@]}" apt-get update; then
  if [ "${#missing[@]}" != 0 ]; then
    echo "install-deps: apt-get update failed" >&2
    exit 1
  fi
  echo "install-deps: apt-get update failed, but every package is installed: going on" >&2
  exit 0
fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${packages[@]}"
