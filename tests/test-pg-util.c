/* bigfile-glib tests - a PostgreSQL server for the tests and the benchmark
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include "test-pg-util.h"

/* BIGFILE_PG_TEST_CLUSTER: the path of tools/pg-test-cluster.sh, given by
 * the build (tests/meson.build, bench/meson.build). */

/* Its output is captured: a test's stdout is TAP. */
static gboolean
run_script (char **argv, GError **error)
{
  int status;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;

  if (!g_spawn_sync (NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, error))
    return FALSE;
  if (!g_spawn_check_wait_status (status, error))
    {
      g_prefix_error (error, "%s %s failed (%s): ", argv[0], argv[1], err != NULL ? err : "");
      return FALSE;
    }
  return TRUE;
}

static char *
read_line (const char *dir, const char *name, GError **error)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, error))
    return NULL;
  return g_strchomp (text);
}

TestPgCluster *
test_pg_cluster_start (GError **error)
{
  g_autofree char *pid = g_strdup_printf ("%d", (int)getpid ());
  g_autofree char *dir = g_dir_make_tmp ("bigfile-pg-XXXXXX", error);
  TestPgCluster *cluster;

  if (dir == NULL)
    return NULL;
  {
    char *argv[] = { BIGFILE_PG_TEST_CLUSTER, "start", dir, "--owner-pid", pid, NULL };

    if (!run_script (argv, error))
      return NULL;
  }
  cluster = g_new0 (TestPgCluster, 1);
  cluster->dir = g_steal_pointer (&dir);
  cluster->conninfo = read_line (cluster->dir, "conninfo", error);
  cluster->conninfo_tcp = read_line (cluster->dir, "conninfo-tcp", error);
  if (cluster->conninfo == NULL || cluster->conninfo_tcp == NULL)
    {
      test_pg_cluster_stop (cluster);
      return NULL;
    }
  return cluster;
}

gboolean
test_pg_cluster_restart (TestPgCluster *cluster, gboolean immediate, GError **error)
{
  char *argv[] = { BIGFILE_PG_TEST_CLUSTER, "restart", cluster->dir,
                   immediate ? "--immediate" : NULL, NULL };

  return run_script (argv, error);
}

void
test_pg_cluster_stop (TestPgCluster *cluster)
{
  char *argv[] = { BIGFILE_PG_TEST_CLUSTER, "stop", cluster->dir, NULL };
  GError *error = NULL;

  if (!run_script (argv, &error))
    {
      g_printerr ("test-pg-util: %s\n", error->message);
      g_clear_error (&error);
    }
  g_free (cluster->dir);
  g_free (cluster->conninfo);
  g_free (cluster->conninfo_tcp);
  g_free (cluster);
}

static TestPgCluster *own_cluster;

static void
stop_own_cluster (void)
{
  if (own_cluster != NULL)
    test_pg_cluster_stop (g_steal_pointer (&own_cluster));
}

const char *
test_pg_conninfo (gboolean tcp)
{
  static GMutex lock;
  const char *env = g_getenv ("BIGFILE_TEST_PG_CONNINFO");
  const char *result;

  if (env != NULL && env[0] != '\0')
    return env;

  g_mutex_lock (&lock);
  if (own_cluster == NULL)
    {
      GError *error = NULL;

      own_cluster = test_pg_cluster_start (&error);
      if (own_cluster == NULL)
        g_error ("No PostgreSQL server for the tests: BIGFILE_TEST_PG_CONNINFO is not set, and "
                 "starting one failed: %s",
                 error->message);
      atexit (stop_own_cluster);
      /* For the processes the tests start (crash writers): the same
       * server. Early, before the tests make threads of their own. */
      g_setenv ("BIGFILE_TEST_PG_CONNINFO", own_cluster->conninfo, TRUE);
    }
  result = tcp ? own_cluster->conninfo_tcp : own_cluster->conninfo;
  g_mutex_unlock (&lock);
  return result;
}

char *
test_pg_unique_name (const char *prefix)
{
  static gint counter;

  return g_strdup_printf ("%s-%d-%d", prefix, (int)getpid (), g_atomic_int_add (&counter, 1));
}

static void
quiet_notice (void *data, const char *message)
{
}

char *
test_pg_query (const char *conninfo, const char *sql)
{
  PGconn *conn = PQconnectdb (conninfo);
  PGresult *res;
  char *value;

  if (PQstatus (conn) != CONNECTION_OK)
    g_error ("test_pg_query: could not connect: %s", PQerrorMessage (conn));
  /* NOTICEs (DROP ... CASCADE says what it dropped) would go to stderr. */
  PQsetNoticeProcessor (conn, quiet_notice, NULL);
  res = PQexec (conn, sql);
  if (PQresultStatus (res) != PGRES_TUPLES_OK && PQresultStatus (res) != PGRES_COMMAND_OK)
    g_error ("test_pg_query: %s: %s", sql, PQresultErrorMessage (res));
  value = g_strdup (PQntuples (res) > 0 && PQnfields (res) > 0 ? PQgetvalue (res, 0, 0) : "");
  PQclear (res);
  PQfinish (conn);
  return value;
}

void
test_pg_terminate (const char *conninfo, int pid)
{
  g_autofree char *sql = NULL;
  g_autofree char *ok = NULL;

  if (pid == 0)
    g_error ("test_pg_terminate: no backend");
  sql = g_strdup_printf ("SELECT pg_terminate_backend(%d, 10000)", pid);
  ok = test_pg_query (conninfo, sql);
  if (!g_str_equal (ok, "t"))
    g_error ("test_pg_terminate: backend %d did not end", pid);
}
