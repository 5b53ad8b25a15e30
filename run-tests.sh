#!/usr/bin/env bash
# Installs what is needed (Debian 12, with apt-get), builds bigfile-glib twice
# and runs the whole test suite in both builds, then the C test programs once
# more under valgrind:
#
#   build/       the plain build (debugoptimized, warnings are errors), with
#                the GObject-Introspection data (Bigfile-1.0.gir, .typelib,
#                the Vala binding) and the gtk-doc reference, which the test
#                'gtkdoc-check' (suite docs) checks
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer, with the
#                introspection data but without the docs (see below)
#   build/ again, the suite core under memcheck (the `valgrind` test setup of
#                the top-level meson.build)
#
# A throwaway PostgreSQL cluster (tools/pg-test-cluster.sh: initdb in a
# temporary directory, unix socket there, as the user postgres when run as
# root) serves the BigfilePgFile tests of all three runs: it is started
# before the first build and stopped on every way out, and
# BIGFILE_TEST_PG_CONNINFO tells the tests where it is.  Both builds are
# configured with -Dpostgresql=enabled: a missing libpq fails the run.
#
# This is the README's test command and what CI runs (.ci/run).  It can be
# run again: build dirs that exist are reconfigured.  It ends with one line,
# "run-tests: N passed, N failed, N skipped", counting meson tests of the
# three runs (a build dir that fails to configure or compile counts as a
# failure).  Extra arguments are passed to every `meson test` run (e.g.
# --suite core, or a test name); the valgrind run adds --suite core.
set -euo pipefail
cd "$(dirname "$0")"

script_start=$SECONDS
./tools/install-deps.sh all

pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/bigfile-run-tests-pg-XXXXXX")
trap 'tools/pg-test-cluster.sh stop "$pg_dir"' EXIT
echo "==> PostgreSQL for the tests: $pg_dir"
BIGFILE_TEST_PG_CONNINFO=$(tools/pg-test-cluster.sh start "$pg_dir" --owner-pid $$)
export BIGFILE_TEST_PG_CONNINFO

failures=()
summaries=()

# run_build NAME TEST_ARGS -- SETUP_OPTIONS...
run_build() {
  local dir=$1 test_args=$2
  shift 3
  local t0=$SECONDS

  # No stale results: the summary counts only what this run did.  The log
  # has its own name, so that another `meson test` in the same build dir
  # does not overwrite it.
  rm -f "$dir/meson-logs/run-tests.json"
  echo
  echo "==> $dir: configure ($*)"
  if ! tools/setup-build.sh "$dir" "$@"; then
    failures+=("$dir: configure")
    return
  fi
  echo "==> $dir: compile"
  if ! meson compile -C "$dir"; then
    failures+=("$dir: compile")
    return
  fi
  echo "==> $dir: test"
  # shellcheck disable=SC2086 # test_args is a list of words
  if ! meson test -C "$dir" --print-errorlogs --logbase run-tests $test_args "${extra_test_args[@]}"; then
    failures+=("$dir: test")
  fi
  summaries+=("$dir: $((SECONDS - t0)) s")
}

extra_test_args=("$@")

# Introspection and sqlite are 'enabled', not 'auto': install-deps.sh installed
# g-ir-scanner and libsqlite3-dev, so a build without the GIR or without
# BigfileSqliteFile (and its tests) would be a silent failure.  With
# -Dwerror=true the scanner's warnings are errors too (fatal_warnings).
run_build build "" -- \
  -Db_sanitize=none -Dwerror=true -Dtests=true -Dintrospection=enabled -Ddocs=true -Dsqlite=enabled \
  -Dpostgresql=enabled
# -Db_lundef=false: sanitized shared objects leave the runtime's symbols to
# the executable.  Sanitized code runs slower: give tests 3x their timeout.
#
# Introspection stays on here, so that the Python and gjs tests run the
# library's code under the sanitizers too: g-ir-scanner's dumper is linked
# against the ASan runtime by meson and runs as it is, and tests/meson.build
# preloads the runtimes into python3 and gjs, which are not instrumented.
# The docs are off: gtkdoc-scangobj links its program against the library
# without the runtime coming first, so that program cannot even start under
# ASan ("ASan runtime does not come first in initial library list"), and the
# reference does not depend on how the library is compiled: the plain build
# checks it.
run_build build-asan "--timeout-multiplier 3" -- \
  -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=false -Dtests=true \
  -Dintrospection=enabled -Ddocs=false -Dsqlite=enabled \
  -Dpostgresql=enabled

# The core suite of the plain build under valgrind's memcheck: leaks, uses
# of freed or uninitialised memory and the like fail the test.  Its log has a
# name of its own, so that it is counted apart from the plain run's: meson
# adds the setup's name to the log base, run-tests-valgrind.json.  (On two
# cores this takes half a minute to a minute: memcheck runs the tests 10 to
# 40 times slower.)
run_valgrind() {
  local dir=$1 t0=$SECONDS

  rm -f "$dir/meson-logs/run-tests-valgrind.json"
  local f
  for f in "${failures[@]}"; do
    # Already counted as a failure: nothing to run.
    if [ "$f" = "$dir: configure" ] || [ "$f" = "$dir: compile" ]; then
      return
    fi
  done
  echo
  echo "==> $dir: test under valgrind"
  if ! meson test -C "$dir" --setup valgrind --suite core --print-errorlogs \
    --logbase run-tests "${extra_test_args[@]}"; then
    if [ -s "$dir/meson-logs/run-tests-valgrind.json" ]; then
      failures+=("$dir: valgrind test")
    else
      # No test ran (no such setup: valgrind missing?): count it here.
      failures+=("$dir: valgrind setup")
    fi
  fi
  summaries+=("$dir (valgrind): $((SECONDS - t0)) s")
}
run_valgrind build

# Count the results of the three runs from meson's JSON test logs: one count
# per meson test (a test program), and, for information, the TAP subtests.
counts=$(
  python3 - build/meson-logs/run-tests.json build-asan/meson-logs/run-tests.json \
    build/meson-logs/run-tests-valgrind.json <<'PY'
import json, re, sys
passed = failed = skipped = 0
sub_ok = sub_fail = sub_skip = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        if not line.strip():
            continue
        test = json.loads(line)
        result = test.get("result", "")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
        for out in (test.get("stdout") or "").splitlines():
            if re.match(r"(not )?ok\b.*#\s*skip", out, re.I):
                sub_skip += 1
            elif out.startswith("ok"):
                sub_ok += 1
            elif out.startswith("not ok"):
                sub_fail += 1
print(passed, failed, skipped, sub_ok, sub_fail, sub_skip)
PY
)
read -r passed failed skipped sub_ok sub_fail sub_skip <<<"$counts"

# A build that did not get as far as its tests is a failure too.
for f in "${failures[@]}"; do
  case "$f" in
    *": test" | *": valgrind test") ;;
    *) failed=$((failed + 1)) ;;
  esac
done

echo
echo "==> summary"
for s in "${summaries[@]}"; do
  echo "  $s"
done
for f in "${failures[@]}"; do
  echo "  FAILED: $f"
done
echo "  TAP subtests in all runs: $sub_ok ok, $sub_fail not ok, $sub_skip skipped"
echo "  total time: $((SECONDS - script_start)) s"
echo "run-tests: $passed passed, $failed failed, $skipped skipped"

if [ "${#failures[@]}" != 0 ]; then
  exit 1
fi
