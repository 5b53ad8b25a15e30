/* bigfile-glib tests - a PostgreSQL server for the tests and the benchmark
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Built into test-pg-file, the conformance suite and bigfile-bench, which
 * need only GLib and libpq from it (no GTest assertions: the benchmark is
 * no test).
 */
#pragma once

#include <glib.h>
#include <libpq-fe.h>

G_BEGIN_DECLS

/* A throwaway cluster of tools/pg-test-cluster.sh. */
typedef struct
{
  char *dir;          /* its directory (removed by test_pg_cluster_stop()) */
  char *conninfo;     /* through the unix socket */
  char *conninfo_tcp; /* through 127.0.0.1 */
} TestPgCluster;

/* Starts a cluster of its own in a new temporary directory, whose watchdog
 * stops it if this process dies first. NULL with @error set on failure. */
TestPgCluster *test_pg_cluster_start (GError **error);

/* Restarts it (@immediate: a crash of the server, with recovery). */
gboolean test_pg_cluster_restart (TestPgCluster *cluster, gboolean immediate, GError **error);

/* Stops it, removes its directory and frees @cluster. */
void test_pg_cluster_stop (TestPgCluster *cluster);

/* The server the tests use: $BIGFILE_TEST_PG_CONNINFO if set, else one
 * cluster of this process's own, started at the first call and stopped at
 * exit. With @tcp, a conninfo through loopback TCP when the cluster is
 * ours (the environment's is used as it is). Aborts (g_error) when no
 * server can be had: tests must not skip silently. */
const char *test_pg_conninfo (gboolean tcp);

/* A file name no other test (or test program) uses: PREFIX-PID-N. */
char *test_pg_unique_name (const char *prefix);

/* Runs @sql on a connection of its own to @conninfo; returns the first
 * column of the first row (g_free() it; "" for none), or aborts. */
char *test_pg_query (const char *conninfo, const char *sql);

/* Ends the server session of backend @pid (pg_terminate_backend()) and
 * waits until it is gone. */
void test_pg_terminate (const char *conninfo, int pid);

G_END_DECLS
