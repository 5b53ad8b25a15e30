#!/bin/sh
# The exe_wrapper of the `valgrind` test setup (top-level meson.build):
#
#   valgrind-run.sh VALGRIND [VALGRIND-OPTIONS...] PROGRAM [ARGS...]
#
# runs its arguments as they are, after adding "-s PATH" (GTest: skip this
# test case) for each GTest path in $BIGFILE_VALGRIND_SKIP.  tests/meson.build
# sets that variable, with the reason, for the test cases of a program that
# cannot run under valgrind; the other setups never read it.
set -eu

skipped=
for path in ${BIGFILE_VALGRIND_SKIP-}; do
  set -- "$@" -s "$path"
  skipped="$skipped $path"
done
if [ -n "$skipped" ]; then
  # A TAP comment: meson keeps it in the log, next to the "# SKIP" lines.
  echo "# not run under valgrind (why: tests/meson.build):$skipped"
fi
exec "$@"
