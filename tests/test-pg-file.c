/* bigfile-glib tests - BigfilePgFile, a BigfileFile in a PostgreSQL database
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Against a real server: $BIGFILE_TEST_PG_CONNINFO (./run-tests.sh starts
 * one), or a throwaway cluster of this program's own
 * (tools/pg-test-cluster.sh). Several clients of one file are several
 * BigfilePgFile objects, each with its own connections, as if on several
 * hosts.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-pg-util.h"
#include "test-util.h"
#include "bigfile-pg-file-private.h"

#define BS ((gsize)4096)

static const char *conninfo;

/* -- helpers ------------------------------------------------------------------ */

static BigfilePgFile *
open_file (const char *name, gsize block_size, BigfilePgFileFlags flags)
{
  GError *error = NULL;
  BigfilePgFile *file = bigfile_pg_file_new (conninfo, name, block_size, flags, &error);

  g_assert_no_error (error);
  g_assert_nonnull (file);
  return file;
}

static BigfilePgFile *
new_file (gsize block_size)
{
  g_autofree char *name = test_pg_unique_name ("test");

  return open_file (name, block_size, BIGFILE_PG_FILE_FLAGS_CREATE);
}

static BigfilePgFile *
second_client (BigfilePgFile *file)
{
  return open_file (bigfile_pg_file_get_name (file), 0, BIGFILE_PG_FILE_FLAGS_NONE);
}

/* Block @block of version @version: every byte depends on both; version 0
 * is zeros. */
static void
fill_block (guint8 *buf, gsize len, guint64 block, guint version)
{
  for (gsize i = 0; i < len; i++)
    buf[i] = version == 0 ? 0 : (guint8)(1 + ((i * 31 + block * 7 + version * 13) % 255));
}

static void
store (BigfilePgFile *file, guint64 block, guint version)
{
  gsize bs = bigfile_file_get_block_size (BIGFILE_FILE (file));
  g_autofree guint8 *buf = g_malloc (bs);
  GError *error = NULL;

  fill_block (buf, bs, block, version);
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), block, buf, bs, &error));
  g_assert_no_error (error);
}

/* Loads @block and returns the version it holds (0: zeros), failing the
 * test if it holds no version at all (a mix). */
static guint
load_version (BigfilePgFile *file, guint64 block)
{
  gsize bs = bigfile_file_get_block_size (BIGFILE_FILE (file));
  g_autofree guint8 *buf = g_malloc (bs);
  g_autofree guint8 *want = g_malloc (bs);
  GError *error = NULL;

  memset (buf, 0xAA, bs);
  g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), block, buf, bs, &error));
  g_assert_no_error (error);
  for (guint v = 0; v < 256; v++)
    {
      fill_block (want, bs, block, v);
      if (memcmp (buf, want, bs) == 0)
        return v;
    }
  g_error ("block %" G_GUINT64_FORMAT " holds no version (first bytes %02x %02x %02x)", block,
           buf[0], buf[1], buf[2]);
}

static void
begin (BigfilePgFile *file)
{
  GError *error = NULL;

  g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (file), &error));
  g_assert_no_error (error);
}

static void
commit (BigfilePgFile *file)
{
  GError *error = NULL;

  g_assert_true (
      bigfile_file_commit_transaction (BIGFILE_FILE (file), BIGFILE_COMMIT_FLAGS_NONE, &error));
  g_assert_no_error (error);
}

static guint64
get_size (BigfilePgFile *file)
{
  GError *error = NULL;
  guint64 size = 0;

  g_assert_true (bigfile_file_get_size (BIGFILE_FILE (file), &size, &error));
  g_assert_no_error (error);
  return size;
}

static void
set_size (BigfilePgFile *file, guint64 size)
{
  GError *error = NULL;

  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), size, &error));
  g_assert_no_error (error);
}

static int
cmp_u64 (gconstpointer a, gconstpointer b)
{
  guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;

  return x < y ? -1 : x > y;
}

/* The blocks refresh reports, sorted, without repeats, as a string
 * ("1 5 7"; "any" for G_MAXUINT64) that assertions can compare. */
static char *
refresh (BigfilePgFile *file)
{
  GError *error = NULL;
  g_autoptr (GArray) changed = bigfile_file_refresh (BIGFILE_FILE (file), &error);
  GString *s = g_string_new ("");

  g_assert_no_error (error);
  g_assert_nonnull (changed);
  g_array_sort (changed, cmp_u64);
  for (guint i = 0; i < changed->len; i++)
    {
      guint64 b = g_array_index (changed, guint64, i);

      if (i > 0 && b == g_array_index (changed, guint64, i - 1))
        continue;
      if (s->len > 0)
        g_string_append_c (s, ' ');
      if (b == G_MAXUINT64)
        g_string_append (s, "any");
      else
        g_string_append_printf (s, "%" G_GUINT64_FORMAT, b);
    }
  return g_string_free (s, FALSE);
}

static void
assert_refresh (BigfilePgFile *file, const char *want)
{
  g_autofree char *got = refresh (file);

  g_assert_cmpstr (got, ==, want);
}

/* A query about @file's rows. "%s" in @format becomes the file's id. */
static char *
query_file (BigfilePgFile *file, const char *format)
{
  g_autofree char *id = NULL;
  g_autofree char *sql = NULL;
  g_autofree char *name_sql = g_strdup_printf ("SELECT id FROM bigfile_files WHERE name = '%s'",
                                               bigfile_pg_file_get_name (file));

  id = test_pg_query (conninfo, name_sql);
  sql = g_strdup_printf (format, id);
  return test_pg_query (conninfo, sql);
}

static guint
n_rows (BigfilePgFile *file)
{
  g_autofree char *n = query_file (file, "SELECT count(*) FROM bigfile_blocks WHERE file = %s");

  return (guint)atoi (n);
}

/* -- opening ------------------------------------------------------------------ */

static void
test_open_errors (void)
{
  g_autofree char *name = test_pg_unique_name ("open");
  GError *error = NULL;
  BigfilePgFile *file;

  g_test_summary ("Opening fails with a clear error for each bad argument, creates nothing "
                  "then, and a new file takes its block size from the creator");

  file = bigfile_pg_file_new (conninfo, name, BS, BIGFILE_PG_FILE_FLAGS_NONE, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, name));
  g_assert_null (file);
  g_clear_error (&error);

  file = bigfile_pg_file_new (conninfo, name, 0, BIGFILE_PG_FILE_FLAGS_CREATE, &error);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_assert_null (file);
  g_clear_error (&error);

  file = bigfile_pg_file_new (conninfo, name, 3000, BIGFILE_PG_FILE_FLAGS_CREATE, &error);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_assert_null (file);
  g_clear_error (&error);

  file = bigfile_pg_file_new (conninfo, "", BS, BIGFILE_PG_FILE_FLAGS_CREATE, &error);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_assert_null (file);
  g_clear_error (&error);

  file = bigfile_pg_file_new ("host=/nonexistent-bigfile-dir port=1", name, BS,
                              BIGFILE_PG_FILE_FLAGS_CREATE, &error);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_assert_null (file);
  g_clear_error (&error);

  /* None of that created the file. */
  file = bigfile_pg_file_new (conninfo, name, 0, BIGFILE_PG_FILE_FLAGS_NONE, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  file = open_file (name, 16384, BIGFILE_PG_FILE_FLAGS_CREATE);
  g_assert_cmpuint (bigfile_file_get_block_size (BIGFILE_FILE (file)), ==, 16384);
  g_assert_true (bigfile_file_is_thread_safe (BIGFILE_FILE (file)));
  g_assert_true (bigfile_file_is_transactional (BIGFILE_FILE (file)));
  g_assert_true (bigfile_pg_file_get_durable (file));
  g_object_unref (file);

  /* 0: the stored one. Another one: refused. */
  file = open_file (name, 0, BIGFILE_PG_FILE_FLAGS_NONE);
  g_assert_cmpuint (bigfile_file_get_block_size (BIGFILE_FILE (file)), ==, 16384);
  g_object_unref (file);
  file = bigfile_pg_file_new (conninfo, name, BS, BIGFILE_PG_FILE_FLAGS_NONE, &error);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "16384"));
  g_assert_null (file);
  g_clear_error (&error);
}

typedef struct
{
  const char *conninfo;
  const char *name;
  GError *error;
} OpenThread;

static gpointer
open_thread (gpointer data)
{
  OpenThread *t = data;
  BigfilePgFile *file
      = bigfile_pg_file_new (t->conninfo, t->name, BS, BIGFILE_PG_FILE_FLAGS_CREATE, &t->error);

  g_clear_object (&file);
  return NULL;
}

static void
test_open_concurrent_first_use (void)
{
  g_autofree char *schema = test_pg_unique_name ("schema");
  g_autofree char *sql = NULL;
  g_autofree char *fresh = NULL;
  g_autofree char *n = NULL;
  GThread *threads[6];
  OpenThread t[G_N_ELEMENTS (threads)];
  char *names[G_N_ELEMENTS (threads)];

  g_test_summary ("Clients that use a database for the first time at once all succeed: one "
                  "creates the tables, the others wait and use them");

  for (char *p = schema; *p; p++)
    if (*p == '-')
      *p = '_';
  sql = g_strdup_printf ("CREATE SCHEMA %s", schema);
  g_free (test_pg_query (conninfo, sql));
  fresh = g_strdup_printf ("%s options='-c search_path=%s'", conninfo, schema);

  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    {
      t[i].conninfo = fresh;
      /* Half of them create the same file too. */
      names[i] = i % 2 ? g_strdup ("same") : g_strdup_printf ("file-%u", i);
      t[i].name = names[i];
      t[i].error = NULL;
      threads[i] = g_thread_new ("open", open_thread, &t[i]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    {
      g_thread_join (threads[i]);
      g_assert_no_error (t[i].error);
      g_free (names[i]);
    }

  g_free (sql);
  sql = g_strdup_printf ("SELECT count(*) FROM %s.bigfile_files", schema);
  n = test_pg_query (conninfo, sql);
  g_assert_cmpstr (n, ==, "4");
  g_free (sql);
  sql = g_strdup_printf ("DROP SCHEMA %s CASCADE", schema);
  g_free (test_pg_query (conninfo, sql));
}

/* -- blocks and sizes ------------------------------------------------------------ */

static void
test_blocks (void)
{
  g_autoptr (BigfilePgFile) file = new_file (BS);
  g_autoptr (BigfilePgFile) again = NULL;
  g_autofree guint8 *buf = g_malloc (BS);
  g_autoptr (GBytes) bytes = NULL;
  g_autofree char *len = NULL;
  GError *error = NULL;

  g_test_summary ("Stored blocks load back; blocks never stored, and past the size, are zeros "
                  "and cost no row; a block of zeros drops its row; trailing zeros are not "
                  "stored");

  g_assert_cmpuint (get_size (file), ==, 0);
  g_assert_cmpuint (load_version (file, 0), ==, 0);
  g_assert_cmpuint (load_version (file, 1000000), ==, 0);

  store (file, 3, 1);
  store (file, 5, 2);
  /* Outside a transaction, each store commits on its own. */
  g_assert_cmpuint (load_version (file, 3), ==, 1);
  g_assert_cmpuint (load_version (file, 5), ==, 2);
  g_assert_cmpuint (load_version (file, 4), ==, 0);
  g_assert_cmpuint (get_size (file), ==, 6 * BS);
  g_assert_cmpuint (n_rows (file), ==, 2);

  /* Zeros: no row. */
  memset (buf, 0, BS);
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), 3, buf, BS, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n_rows (file), ==, 1);
  g_assert_cmpuint (load_version (file, 3), ==, 0);

  /* Trailing zeros are not stored. */
  buf[100] = 7;
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), 3, buf, BS, &error));
  g_assert_no_error (error);
  len = query_file (file, "SELECT length(data) FROM bigfile_blocks WHERE file = %s AND block = 3");
  g_assert_cmpstr (len, ==, "101");
  bytes = bigfile_file_load_block (BIGFILE_FILE (file), 3, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (bytes), ==, BS);
  g_assert_cmpint (((const guint8 *)g_bytes_get_data (bytes, NULL))[100], ==, 7);
  g_assert_cmpint (((const guint8 *)g_bytes_get_data (bytes, NULL))[101], ==, 0);

  /* Another client sees it all. */
  again = second_client (file);
  g_assert_cmpuint (load_version (again, 5), ==, 2);
  g_assert_cmpuint (get_size (again), ==, 6 * BS);

  /* A store longer than a block, or past the largest size: refused. */
  g_assert_false (
      bigfile_file_store_block_raw (BIGFILE_FILE (file), G_MAXINT64 / BS, buf, BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
}

static void
test_size (void)
{
  g_autoptr (BigfilePgFile) file = new_file (BS);
  g_autoptr (BigfilePgFile) other = NULL;
  g_autofree guint8 *buf = g_malloc (BS);
  GError *error = NULL;

  g_test_summary ("set_size grows and shrinks the file; shrinking drops the blocks past the "
                  "end and the bytes past it in the last block, which read as zeros when it "
                  "grows again; other clients see the size after a refresh");

  set_size (file, 10 * BS + 100);
  g_assert_cmpuint (get_size (file), ==, 10 * BS + 100);
  for (guint b = 0; b < 10; b++)
    store (file, b, 3);
  /* The last block, short. */
  fill_block (buf, BS, 10, 3);
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), 10, buf, 100, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (get_size (file), ==, 10 * BS + 100);
  g_assert_cmpuint (n_rows (file), ==, 11);

  other = second_client (file);
  g_assert_cmpuint (get_size (other), ==, 10 * BS + 100);

  /* Shrink into block 4. */
  set_size (file, 4 * BS + 10);
  g_assert_cmpuint (get_size (file), ==, 4 * BS + 10);
  g_assert_cmpuint (n_rows (file), ==, 5);
  assert_refresh (other, "4 5 6 7 8 9 10");
  g_assert_cmpuint (get_size (other), ==, 4 * BS + 10);

  /* Grow again: what was dropped reads as zeros. */
  set_size (file, 20 * BS);
  {
    g_autoptr (GBytes) bytes = bigfile_file_load_block (BIGFILE_FILE (file), 4, &error);
    const guint8 *p = g_bytes_get_data (bytes, NULL);

    g_assert_no_error (error);
    fill_block (buf, BS, 4, 3);
    g_assert_cmpmem (p, 10, buf, 10);
    for (gsize i = 10; i < BS; i++)
      g_assert_cmpint (p[i], ==, 0);
  }
  g_assert_cmpuint (load_version (file, 7), ==, 0);
  g_assert_cmpuint (load_version (file, 3), ==, 3);
  /* Growing changed no block's bytes. */
  assert_refresh (other, "");
  g_assert_cmpuint (get_size (other), ==, 20 * BS);

  set_size (file, 0);
  g_assert_cmpuint (n_rows (file), ==, 0);
  g_assert_cmpuint (get_size (file), ==, 0);
}

/* -- transactions ------------------------------------------------------------------ */

static void
test_transaction_isolation (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = second_client (a);

  g_test_summary ("A transaction's stores are invisible to everyone until it commits (to the "
                  "writer's own loads too), then all at once: the writer sees them at once, "
                  "another client after its refresh, which reports the blocks");

  /* A size, so that loads query the server (past the size they need
   * not). */
  set_size (a, 8 * BS);
  assert_refresh (b, "");
  begin (a);
  store (a, 1, 1);
  store (a, 2, 1);
  set_size (a, 9 * BS);
  /* Not even a's loads see them: they read the snapshot. */
  g_assert_cmpuint (load_version (a, 1), ==, 0);
  g_assert_cmpuint (get_size (a), ==, 8 * BS);
  g_assert_cmpuint (load_version (b, 1), ==, 0);
  assert_refresh (b, "");
  commit (a);

  g_assert_cmpuint (load_version (a, 1), ==, 1);
  g_assert_cmpuint (load_version (a, 2), ==, 1);
  g_assert_cmpuint (get_size (a), ==, 9 * BS);
  /* b keeps its snapshot until it refreshes. */
  g_assert_cmpuint (load_version (b, 1), ==, 0);
  g_assert_cmpuint (load_version (b, 2), ==, 0);
  g_assert_cmpuint (get_size (b), ==, 8 * BS);
  assert_refresh (b, "1 2");
  g_assert_cmpuint (load_version (b, 1), ==, 1);
  g_assert_cmpuint (get_size (b), ==, 9 * BS);
  /* Its own commit is not a change for a. */
  assert_refresh (a, "");
  assert_refresh (b, "");
}

static void
test_transaction_abort (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = second_client (a);

  g_test_summary ("An aborted transaction leaves nothing, and the next one works");

  store (a, 0, 1);
  begin (a);
  store (a, 0, 2);
  store (a, 1, 2);
  set_size (a, 0);
  bigfile_file_abort_transaction (BIGFILE_FILE (a));
  /* Abort twice, or without a transaction: nothing happens. */
  bigfile_file_abort_transaction (BIGFILE_FILE (a));

  assert_refresh (b, "0");
  g_assert_cmpuint (load_version (b, 0), ==, 1);
  g_assert_cmpuint (load_version (b, 1), ==, 0);
  g_assert_cmpuint (get_size (b), ==, BS);
  assert_refresh (a, "");
  g_assert_cmpuint (load_version (a, 0), ==, 1);

  begin (a);
  store (a, 1, 3);
  commit (a);
  assert_refresh (b, "1");
  g_assert_cmpuint (load_version (b, 1), ==, 3);
}

static void
test_refresh_reports (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = second_client (a);
  g_autoptr (BigfilePgFile) c = second_client (a);

  g_test_summary ("Refresh reports exactly the blocks other clients changed since the "
                  "snapshot, also when this client committed in between, and not its own");

  begin (a);
  store (a, 1, 1);
  commit (a);
  /* b commits without refreshing first: its snapshot then shows a's commit
   * too (loads read the newest), but a's blocks are still reported. */
  begin (b);
  store (b, 2, 1);
  commit (b);
  begin (c);
  store (c, 3, 1);
  commit (c);
  g_assert_cmpuint (load_version (b, 2), ==, 1);
  assert_refresh (b, "1 3");
  assert_refresh (b, "");

  /* Inside a transaction, refresh shows every commit before it. */
  begin (a);
  assert_refresh (a, "2 3");
  g_assert_cmpuint (load_version (a, 3), ==, 1);
  store (a, 4, 1);
  commit (a);
  assert_refresh (a, "");
  assert_refresh (c, "1 2 4");
}

static void
test_log_pruned (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = second_client (a);
  g_autofree char *n = NULL;

  g_test_summary ("A client whose snapshot is older than the change log reaches back reports "
                  "any block (G_MAXUINT64); the log stays bounded");

  bigfile_pg_file_set_durable (a, FALSE);
  for (guint i = 0; i < 1001; i++)
    store (a, i % 3, 1 + i % 200);
  n = query_file (a, "SELECT count(*) FROM bigfile_changes WHERE file = %s");
  g_assert_cmpuint (atoi (n), <=, 1000);
  assert_refresh (b, "any");
  assert_refresh (b, "");
  store (a, 7, 1);
  assert_refresh (b, "7");
}

static void
test_busy (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = NULL;
  GError *error = NULL;
  gint64 t0;

  g_test_summary ("Writers of one file take turns: a second one waits for the lock timeout, "
                  "then fails with BUSY; once the first commits, it can begin");

  b = g_initable_new (BIGFILE_TYPE_PG_FILE, NULL, &error, "conninfo", conninfo, "name",
                      bigfile_pg_file_get_name (a), "lock-timeout", 200, NULL);
  g_assert_no_error (error);

  begin (a);
  store (a, 0, 1);
  t0 = g_get_monotonic_time ();
  g_assert_false (bigfile_file_begin_transaction (BIGFILE_FILE (b), &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY);
  g_assert_cmpint (g_get_monotonic_time () - t0, >=, 190 * 1000);
  g_clear_error (&error);
  /* Nor can it store outside a transaction. */
  g_assert_false (
      bigfile_file_store_block_raw (BIGFILE_FILE (b), 1, (guint8[BS]){ 1 }, BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY);
  g_clear_error (&error);
  commit (a);

  begin (b);
  assert_refresh (b, "0");
  store (b, 1, 1);
  commit (b);
  assert_refresh (a, "1");
}

static void
test_read_only (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) r = NULL;
  GError *error = NULL;

  g_test_summary ("A read-only file loads and refreshes, and refuses to change anything");

  store (a, 0, 1);
  r = open_file (bigfile_pg_file_get_name (a), 0, BIGFILE_PG_FILE_FLAGS_READ_ONLY);
  g_assert_cmpuint (load_version (r, 0), ==, 1);
  g_assert_cmpint (_bigfile_pg_file_get_backend_pid (r, BF_PG_CONN_WRITE), ==, 0);

  g_assert_false (bigfile_file_begin_transaction (BIGFILE_FILE (r), &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_clear_error (&error);
  g_assert_false (
      bigfile_file_store_block_raw (BIGFILE_FILE (r), 0, (guint8[BS]){ 1 }, BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_clear_error (&error);
  g_assert_false (bigfile_file_set_size (BIGFILE_FILE (r), 0, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_clear_error (&error);

  store (a, 0, 2);
  assert_refresh (r, "0");
  g_assert_cmpuint (load_version (r, 0), ==, 2);
}

static void
test_durable (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  GError *error = NULL;

  g_test_summary ("Commits work durable, not durable, and not durable with the DURABLE flag");

  bigfile_pg_file_set_durable (a, FALSE);
  g_assert_false (bigfile_pg_file_get_durable (a));
  begin (a);
  store (a, 0, 1);
  commit (a);
  begin (a);
  store (a, 0, 2);
  g_assert_true (
      bigfile_file_commit_transaction (BIGFILE_FILE (a), BIGFILE_COMMIT_FLAGS_DURABLE, &error));
  g_assert_no_error (error);
  bigfile_pg_file_set_durable (a, TRUE);
  begin (a);
  store (a, 0, 3);
  commit (a);
  g_assert_cmpuint (load_version (a, 0), ==, 3);
}

/* -- batched loads ------------------------------------------------------------------ */

static void
test_batched_loads (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = second_client (a);
  g_autoptr (BigfilePgFile) single = NULL;
  GError *error = NULL;
  guint64 q0;

  g_test_summary ("Sequential loads fetch growing batches in one query each; random ones one "
                  "block per query; a batch never outlives its snapshot; read-ahead 0 turns "
                  "batching off");

  begin (a);
  set_size (a, 64 * BS);
  for (guint i = 0; i < 64; i += 2)
    store (a, i, 1);
  commit (a);
  assert_refresh (b, "0 2 4 6 8 10 12 14 16 18 20 22 24 26 28 30 32 34 36 38 40 42 44 46 48 50 "
                     "52 54 56 58 60 62");

  /* 1, 2, 4, 8, 16, 32 blocks: 6 queries for 63 blocks, then the 64th. */
  q0 = _bigfile_pg_file_get_n_load_queries (b);
  for (guint i = 0; i < 64; i++)
    g_assert_cmpuint (load_version (b, i), ==, i % 2 ? 0 : 1);
  g_assert_cmpuint (_bigfile_pg_file_get_n_load_queries (b) - q0, ==, 7);

  /* Random order: a query each. */
  q0 = _bigfile_pg_file_get_n_load_queries (b);
  for (guint i = 0; i < 10; i++)
    g_assert_cmpuint (load_version (b, (i * 37) % 64), ==, ((i * 37) % 64) % 2 ? 0 : 1);
  g_assert_cmpuint (_bigfile_pg_file_get_n_load_queries (b) - q0, ==, 10);

  /* Fetch ahead, then another client commits: after the refresh, the
   * blocks fetched ahead are not served. */
  load_version (b, 10);
  load_version (b, 11); /* fetches 11, 12 */
  load_version (b, 12);
  load_version (b, 13); /* fetches 13 .. 16 */
  begin (a);
  store (a, 14, 2);
  commit (a);
  g_assert_cmpuint (load_version (b, 14), ==, 1); /* the snapshot's, from the batch */
  load_version (b, 10);
  load_version (b, 11);
  load_version (b, 12);
  load_version (b, 13); /* fetches 13 .. 16 */
  assert_refresh (b, "14");
  g_assert_cmpuint (load_version (b, 14), ==, 2);

  single = g_initable_new (BIGFILE_TYPE_PG_FILE, NULL, &error, "conninfo", conninfo, "name",
                           bigfile_pg_file_get_name (a), "read-ahead", (guint64)0, NULL);
  g_assert_no_error (error);
  q0 = _bigfile_pg_file_get_n_load_queries (single);
  for (guint i = 0; i < 64; i++)
    load_version (single, i);
  g_assert_cmpuint (_bigfile_pg_file_get_n_load_queries (single) - q0, ==, 64);

  /* Past the size: no query. */
  q0 = _bigfile_pg_file_get_n_load_queries (single);
  g_assert_cmpuint (load_version (single, 64), ==, 0);
  g_assert_cmpuint (load_version (single, 1000), ==, 0);
  g_assert_cmpuint (_bigfile_pg_file_get_n_load_queries (single), ==, q0);
}

/* -- threads ----------------------------------------------------------------------- */

typedef struct
{
  BigfilePgFile *file;
  guint n_blocks;
  gint stop;
  guint max_version;
} LoadThread;

/* Each load must show one version for each block, and a refresh a
 * consistent version of all blocks: every block of a snapshot holds the
 * same version (the writer writes all blocks of a version at once). */
static gpointer
load_thread (gpointer data)
{
  LoadThread *t = data;

  while (!g_atomic_int_get (&t->stop))
    {
      guint v0 = load_version (t->file, 0);

      for (guint b = 1; b < t->n_blocks; b++)
        {
          guint v = load_version (t->file, b);

          g_assert_cmpuint (v, <=, t->max_version);
          (void)v0;
        }
    }
  return NULL;
}

static void
test_threads (void)
{
  g_autoptr (BigfilePgFile) w = new_file (BS);
  g_autoptr (BigfilePgFile) r = second_client (w);
  const guint n_blocks = 8, n_versions = 20;
  LoadThread t = { .file = r, .n_blocks = n_blocks, .max_version = n_versions };
  GThread *threads[3];

  g_test_summary ("Loads on several threads at once, with refreshes and another client's "
                  "commits going on, each see a whole version of the file in their snapshot");

  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("load", load_thread, &t);

  for (guint v = 1; v <= n_versions; v++)
    {
      begin (w);
      for (guint b = 0; b < n_blocks; b++)
        store (w, b, v);
      commit (w);

      /* Between refreshes the snapshot holds still: all blocks of one
       * version (loads of the other threads go on meanwhile). */
      {
        g_autofree char *changed = refresh (r);
        guint v0 = load_version (r, 0);

        g_assert_cmpuint (v0, >=, v);
        for (guint b = 1; b < n_blocks; b++)
          g_assert_cmpuint (load_version (r, b), ==, v0);
      }
    }
  g_atomic_int_set (&t.stop, 1);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);
}

/* -- notifications -------------------------------------------------------------------- */

typedef struct
{
  guint n_changed;
  GMainLoop *loop;
  guint timer;
} Changed;

static void
on_changed (BigfileFile *file, gpointer data)
{
  Changed *c = data;

  g_assert_true (g_main_context_is_owner (g_main_context_default ()));
  c->n_changed++;
  if (c->loop != NULL)
    g_main_loop_quit (c->loop);
}

static gboolean
on_timeout (gpointer data)
{
  Changed *c = data;

  c->timer = 0;
  g_main_loop_quit (c->loop);
  return G_SOURCE_REMOVE;
}

/* Runs the default main context until ::changed or @ms. */
static void
wait_changed (Changed *c, guint ms)
{
  c->loop = g_main_loop_new (NULL, FALSE);
  c->timer = g_timeout_add (ms, on_timeout, c);
  g_main_loop_run (c->loop);
  if (c->timer != 0)
    g_source_remove (c->timer);
  c->timer = 0;
  g_clear_pointer (&c->loop, g_main_loop_unref);
}

/* Iterates the default main context for @ms. */
static void
spin (guint ms)
{
  gint64 end = g_get_monotonic_time () + ms * 1000;

  while (g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
}

static void
test_notify (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = second_client (a);
  Changed ca = { 0 }, cb = { 0 };

  g_test_summary ("A commit emits ::changed on the other clients' main contexts, not on the "
                  "committer's; the change log tells which blocks changed");

  g_signal_connect (a, "changed", G_CALLBACK (on_changed), &ca);
  g_signal_connect (b, "changed", G_CALLBACK (on_changed), &cb);

  begin (a);
  store (a, 2, 1);
  commit (a);
  wait_changed (&cb, 5000);
  g_assert_cmpuint (cb.n_changed, ==, 1);
  assert_refresh (b, "2");

  /* Nothing for the committer itself, nor for a mere refresh. */
  spin (100);
  g_assert_cmpuint (ca.n_changed, ==, 0);
  g_assert_cmpuint (cb.n_changed, ==, 1);

  /* Several commits may share one emission; at least one comes. */
  store (b, 3, 1);
  store (b, 4, 1);
  wait_changed (&ca, 5000);
  spin (100);
  g_assert_cmpuint (ca.n_changed, >=, 1);
  g_assert_cmpuint (cb.n_changed, ==, 1);
  assert_refresh (a, "3 4");
}

/* -- connection loss --------------------------------------------------------------------- */

static void
test_reconnect_read (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = second_client (a);
  Changed cb = { 0 };
  GError *error = NULL;
  guint8 buf[BS];

  g_test_summary ("A load whose connection was killed fails with DISCONNECTED; the next one "
                  "reconnects and reads the newest state, and the file asks for a refresh "
                  "(::changed), which reports what changed since the lost snapshot");

  g_signal_connect (b, "changed", G_CALLBACK (on_changed), &cb);
  store (a, 0, 1);
  assert_refresh (b, "0");
  store (a, 1, 1);
  /* b has not refreshed: its snapshot does not show block 1. The
   * notification of a's commit comes and goes: the ::changed below is the
   * one the lost snapshot asks for. */
  g_assert_cmpuint (load_version (b, 1), ==, 0);
  wait_changed (&cb, 5000);
  g_assert_cmpuint (cb.n_changed, ==, 1);
  cb.n_changed = 0;

  test_pg_terminate (conninfo, _bigfile_pg_file_get_backend_pid (b, BF_PG_CONN_READ));
  g_assert_false (bigfile_file_load_block_raw (BIGFILE_FILE (b), 0, buf, BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_assert_nonnull (strstr (error->message, "connects again"));
  g_clear_error (&error);

  g_assert_cmpuint (load_version (b, 1), ==, 1);
  g_assert_cmpuint (load_version (b, 0), ==, 1);
  wait_changed (&cb, 5000);
  g_assert_cmpuint (cb.n_changed, >=, 1);
  assert_refresh (b, "1");
}

static void
test_reconnect_write (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = second_client (a);
  GError *error = NULL;

  g_test_summary ("A transaction whose connection was killed is lost: its stores and commit "
                  "fail with DISCONNECTED, the storage holds nothing of it, and a retry "
                  "reconnects and commits");

  store (a, 0, 1);
  begin (a);
  store (a, 0, 2);
  store (a, 1, 2);
  test_pg_terminate (conninfo, _bigfile_pg_file_get_backend_pid (a, BF_PG_CONN_WRITE));
  g_assert_false (
      bigfile_file_store_block_raw (BIGFILE_FILE (a), 2, (guint8[BS]){ 1 }, BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_false (
      bigfile_file_commit_transaction (BIGFILE_FILE (a), BIGFILE_COMMIT_FLAGS_NONE, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_clear_error (&error);
  bigfile_file_abort_transaction (BIGFILE_FILE (a));

  assert_refresh (b, "0");
  g_assert_cmpuint (load_version (b, 0), ==, 1);
  g_assert_cmpuint (load_version (b, 1), ==, 0);

  /* The retry: a new connection. */
  begin (a);
  store (a, 0, 2);
  store (a, 1, 2);
  commit (a);
  assert_refresh (b, "0 1");
  g_assert_cmpuint (load_version (b, 1), ==, 2);

  /* Killed between transactions: the begin fails, the next works. */
  test_pg_terminate (conninfo, _bigfile_pg_file_get_backend_pid (a, BF_PG_CONN_WRITE));
  g_assert_false (bigfile_file_begin_transaction (BIGFILE_FILE (a), &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_clear_error (&error);
  begin (a);
  store (a, 3, 1);
  commit (a);
}

static void
test_reconnect_listen (void)
{
  g_autoptr (BigfilePgFile) a = new_file (BS);
  g_autoptr (BigfilePgFile) b = second_client (a);
  Changed cb = { 0 };
  int pid;

  g_test_summary ("The listening connection, killed, reconnects by itself with backoff on the "
                  "main context and emits ::changed; commits made while it was away are "
                  "reported from the log");

  g_signal_connect (b, "changed", G_CALLBACK (on_changed), &cb);
  pid = _bigfile_pg_file_get_backend_pid (b, BF_PG_CONN_LISTEN);
  test_pg_terminate (conninfo, pid);
  /* A commit while b does not listen (its main loop has not run yet). */
  store (a, 5, 1);
  wait_changed (&cb, 5000);
  g_assert_cmpuint (cb.n_changed, >=, 1);
  /* Another connection now. */
  while (_bigfile_pg_file_get_backend_pid (b, BF_PG_CONN_LISTEN) == 0)
    spin (10);
  g_assert_cmpint (_bigfile_pg_file_get_backend_pid (b, BF_PG_CONN_LISTEN), !=, pid);
  assert_refresh (b, "5");

  /* And notifications arrive again. */
  cb.n_changed = 0;
  store (a, 6, 1);
  wait_changed (&cb, 5000);
  g_assert_cmpuint (cb.n_changed, ==, 1);
  assert_refresh (b, "6");
}

static void
test_server_restart (void)
{
  GError *error = NULL;
  TestPgCluster *cluster = test_pg_cluster_start (&error);
  g_autofree char *name = test_pg_unique_name ("restart");
  BigfilePgFile *a, *b;
  Changed cb = { 0 };
  guint8 buf[BS];
  gboolean ok = FALSE;

  g_test_summary ("A server that crashes and restarts under open connections: the calls that "
                  "meet it fail with DISCONNECTED, the open transaction is lost and nothing of "
                  "it is stored, then every connection comes back (the listening one by "
                  "itself) and a retry commits");

  g_assert_no_error (error);
  a = bigfile_pg_file_new (cluster->conninfo, name, BS, BIGFILE_PG_FILE_FLAGS_CREATE, &error);
  g_assert_no_error (error);
  b = bigfile_pg_file_new (cluster->conninfo, name, 0, BIGFILE_PG_FILE_FLAGS_NONE, &error);
  g_assert_no_error (error);
  g_signal_connect (b, "changed", G_CALLBACK (on_changed), &cb);
  store (a, 0, 1);
  wait_changed (&cb, 5000);
  assert_refresh (b, "0");
  cb.n_changed = 0;

  begin (a);
  store (a, 0, 2);
  test_pg_cluster_restart (cluster, TRUE, &error);
  g_assert_no_error (error);

  g_assert_false (
      bigfile_file_store_block_raw (BIGFILE_FILE (a), 1, (guint8[BS]){ 1 }, BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_false (
      bigfile_file_commit_transaction (BIGFILE_FILE (a), BIGFILE_COMMIT_FLAGS_NONE, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_clear_error (&error);
  bigfile_file_abort_transaction (BIGFILE_FILE (a));

  g_assert_false (bigfile_file_load_block_raw (BIGFILE_FILE (b), 0, buf, BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_cmpuint (load_version (b, 0), ==, 1);

  /* The retry: the server is back (pg_ctl waited for it). */
  begin (a);
  store (a, 0, 2);
  store (a, 1, 2);
  commit (a);

  /* b's listening connection found the server gone and comes back within
   * its backoff; it asks for a refresh, which reports a's commit whether
   * or not its notification came. */
  for (guint i = 0; i < 50 && cb.n_changed == 0; i++)
    wait_changed (&cb, 200);
  g_assert_cmpuint (cb.n_changed, >=, 1);
  assert_refresh (b, "0 1");
  g_assert_cmpuint (load_version (b, 1), ==, 2);
  ok = TRUE;

  g_object_unref (a);
  g_object_unref (b);
  test_pg_cluster_stop (cluster);
  g_assert_true (ok);
}

/* -- fault injection ------------------------------------------------------------------ */

#define FI_BLOCKS 4

/* Everything a client does, once: open, refresh, a transaction that sets
 * the size and stores FI_BLOCKS blocks of @version (the last one zeros),
 * loads, and another client's commit noticed on the main loop. Stops at
 * the first failure. *@committed tells whether the commit went through. */
static gboolean
fi_cycle (const char *name, BigfilePgFile *other, guint version, gboolean *committed,
          GError **error)
{
  g_autoptr (BigfilePgFile) f = NULL;
  g_autoptr (GArray) changed = NULL;
  g_autofree guint8 *buf = g_malloc (BS);
  gboolean in_txn = FALSE;
  guint64 size;

  *committed = FALSE;
  f = bigfile_pg_file_new (conninfo, name, 0, BIGFILE_PG_FILE_FLAGS_NONE, error);
  if (f == NULL)
    return FALSE;
  changed = bigfile_file_refresh (BIGFILE_FILE (f), error);
  if (changed == NULL)
    return FALSE;
  g_clear_pointer (&changed, g_array_unref);
  if (!bigfile_file_begin_transaction (BIGFILE_FILE (f), error))
    return FALSE;
  in_txn = TRUE;
  changed = bigfile_file_refresh (BIGFILE_FILE (f), error);
  if (changed == NULL || !bigfile_file_set_size (BIGFILE_FILE (f), FI_BLOCKS * BS, error))
    goto abort;
  for (guint b = 0; b < FI_BLOCKS; b++)
    {
      fill_block (buf, BS, b, b == FI_BLOCKS - 1 ? 0 : version);
      if (!bigfile_file_store_block_raw (BIGFILE_FILE (f), b, buf, BS, error))
        goto abort;
    }
  in_txn = FALSE;
  if (!bigfile_file_commit_transaction (BIGFILE_FILE (f), BIGFILE_COMMIT_FLAGS_NONE, error))
    return FALSE;
  *committed = TRUE;
  for (guint b = 0; b < FI_BLOCKS; b++)
    if (!bigfile_file_load_block_raw (BIGFILE_FILE (f), b, buf, BS, error))
      return FALSE;
  if (!bigfile_file_get_size (BIGFILE_FILE (f), &size, error))
    return FALSE;

  /* The other client commits; f's listening connection reads it. */
  fill_block (buf, BS, FI_BLOCKS, version);
  if (!bigfile_file_store_block_raw (BIGFILE_FILE (other), FI_BLOCKS + 1, buf, BS, error))
    return FALSE;
  spin (20);
  return TRUE;

abort:
  if (in_txn)
    bigfile_file_abort_transaction (BIGFILE_FILE (f));
  return FALSE;
}

/* Blocks 0 .. FI_BLOCKS - 1 of the file, as a fresh client reads them,
 * hold @version (the last one zeros). */
static void
fi_check (const char *name, guint version)
{
  g_autoptr (BigfilePgFile) c = open_file (name, 0, BIGFILE_PG_FILE_FLAGS_NONE);

  for (guint b = 0; b < FI_BLOCKS; b++)
    g_assert_cmpuint (load_version (c, b), ==, b == FI_BLOCKS - 1 ? 0 : version);
}

static void
test_fault_injection (gconstpointer data)
{
  BfPgFailMode mode = GPOINTER_TO_INT (data);
  g_autoptr (BigfilePgFile) first = new_file (BS);
  g_autoptr (BigfilePgFile) other = second_client (first);
  const char *name = bigfile_pg_file_get_name (first);
  guint version = 1, stored = 0;
  gboolean committed;
  GError *error = NULL;
  guint n;

  g_test_summary ("Each libpq call of a client's whole life (connecting, the schema, "
                  "snapshots, transactions, loads, the listening connection) made to fail in "
                  "turn: each failure is a clear GError, the storage holds exactly the last "
                  "committed version, and doing it all again works");

  for (n = 0;; n++)
    {
      gboolean ok;

      version = version % 200 + 1;
      _bigfile_pg_file_fail_after ((gint)n, mode);
      ok = fi_cycle (name, other, version, &committed, &error);
      _bigfile_pg_file_fail_after (-1, mode);
      if (!_bigfile_pg_file_failure_happened ())
        {
          /* Past the last call: the whole cycle ran. */
          g_assert_no_error (error);
          g_assert_true (ok);
          break;
        }
      if (committed)
        stored = version;
      if (!ok)
        {
          g_assert_nonnull (error);
          g_test_message ("call %u failed: %s", n, error->message);
          g_assert_true (error->domain == BIGFILE_FILE_ERROR || error->domain == G_IO_ERROR);
          if (mode == BF_PG_FAIL_DISCONNECT)
            g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
          else
            g_assert_true (
                strstr (error->message, "injected") != NULL
                || g_error_matches (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED));
          g_clear_error (&error);
        }
      /* All of the transaction, or none of it. */
      if (stored != 0)
        fi_check (name, stored);

      /* The retry, without failures. */
      version = version % 200 + 1;
      ok = fi_cycle (name, other, version, &committed, &error);
      g_assert_no_error (error);
      g_assert_true (ok);
      stored = version;
      fi_check (name, stored);
    }
  g_test_message ("%u calls made to fail", n);
  g_assert_cmpuint (n, >=, 20);
}

/* -- crashes ------------------------------------------------------------------------ */

#define CRASH_BLOCKS 16
#define CRASH_BS ((gsize)65536)
#define CRASH_TRIES 25

/* The writer of the crash test, in a process of its own: writes version
 * after version of all CRASH_BLOCKS blocks, each in one transaction, and
 * says "committed V" after each commit. */
static int
crash_writer_main (const char *name)
{
  GError *error = NULL;
  BigfilePgFile *file = bigfile_pg_file_new (conninfo, name, 0, BIGFILE_PG_FILE_FLAGS_NONE, &error);
  guint8 *buf = g_malloc (CRASH_BS);
  g_autoptr (GArray) changed = NULL;
  guint64 size;

  if (file == NULL)
    g_error ("crash writer: %s", error->message);
  if (!bigfile_file_get_size (BIGFILE_FILE (file), &size, &error))
    g_error ("crash writer: %s", error->message);
  for (guint v = (guint)(size % CRASH_BS) % 200 + 1;; v = v % 200 + 1)
    {
      if (!bigfile_file_begin_transaction (BIGFILE_FILE (file), &error)
          || (changed = bigfile_file_refresh (BIGFILE_FILE (file), &error)) == NULL)
        g_error ("crash writer: %s", error->message);
      g_clear_pointer (&changed, g_array_unref);
      /* The size tells the version too (v bytes past the blocks): a check
       * that the size and the blocks come from one commit. */
      if (!bigfile_file_set_size (BIGFILE_FILE (file), CRASH_BLOCKS * CRASH_BS + v, &error))
        g_error ("crash writer: %s", error->message);
      for (guint b = 0; b < CRASH_BLOCKS; b++)
        {
          fill_block (buf, CRASH_BS, b, v);
          if (!bigfile_file_store_block_raw (BIGFILE_FILE (file), b, buf, CRASH_BS, &error))
            g_error ("crash writer: %s", error->message);
        }
      if (!bigfile_file_commit_transaction (BIGFILE_FILE (file), BIGFILE_COMMIT_FLAGS_NONE, &error))
        g_error ("crash writer: %s", error->message);
      printf ("committed %u\n", v);
      fflush (stdout);
    }
  return 0; /* not reached: the test kills it */
}

static void
test_crash (void)
{
  g_autoptr (BigfilePgFile) file = new_file (CRASH_BS);
  g_autoptr (GRand) rand = g_rand_new ();
  const char *name = bigfile_pg_file_get_name (file);
  guint last = 0;

  g_test_summary ("A writer killed with SIGKILL at random points of its writeouts, again and "
                  "again: the storage always holds exactly the last version it committed or "
                  "the one it was writing, size and blocks alike");

  /* Version 0 is a file of zeros: the writer starts at 1. */
  for (guint t = 0; t < CRASH_TRIES; t++)
    {
      g_autofree char *exe = g_strdup (g_test_get_filename (G_TEST_BUILT, "test-pg-file", NULL));
      char *argv[] = { exe, "--crash-writer", (char *)name, NULL };
      g_auto (GStrv) envp
          = g_environ_setenv (g_get_environ (), "BIGFILE_TEST_PG_CONNINFO", conninfo, TRUE);
      GError *error = NULL;
      GPid pid;
      int out_fd, status;
      g_autoptr (GString) out = g_string_new ("");
      char chunk[256];
      ssize_t n;
      guint committed = last, v;
      g_autoptr (BigfilePgFile) check = NULL;

      g_assert_true (g_spawn_async_with_pipes (NULL, argv, envp, G_SPAWN_DO_NOT_REAP_CHILD, NULL,
                                               NULL, &pid, NULL, &out_fd, NULL, &error));
      g_assert_no_error (error);
      /* From the start of its first writeout to a few writeouts later. */
      g_usleep (g_rand_int_range (rand, 20000, 300000));
      kill (pid, SIGKILL);
      g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
      g_spawn_close_pid (pid);
      g_assert_true (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
      while ((n = read (out_fd, chunk, sizeof chunk)) > 0)
        g_string_append_len (out, chunk, n);
      close (out_fd);
      {
        g_auto (GStrv) lines = g_strsplit (out->str, "\n", -1);

        for (guint i = 0; lines[i] != NULL; i++)
          if (sscanf (lines[i], "committed %u", &v) == 1)
            committed = v;
      }

      check = open_file (name, 0, BIGFILE_PG_FILE_FLAGS_NONE);
      v = (guint)(get_size (check) % CRASH_BS);
      g_test_message ("try %u: the writer said it committed %u; the storage holds %u", t, committed,
                      v);
      g_assert_true (v == committed || v == committed % 200 + 1);
      for (guint b = 0; b < CRASH_BLOCKS; b++)
        g_assert_cmpuint (load_version (check, b), ==, v);
      last = v;
    }
}

/* -- through handles: two hosts ----------------------------------------------------- */

#define HOST_PAGES 8

/* One client as a program would be: a file, a handle, a mapping. */
typedef struct
{
  BigfilePgFile *file;
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma;
  guint8 *data;
  GArray *invalidated; /* guint64: page-invalidated, in order */
} Host;

static void
on_invalidated (BigfileHandle *handle, guint64 page, Host *h)
{
  g_assert_true (g_main_context_is_owner (g_main_context_default ()));
  g_array_append_val (h->invalidated, page);
}

static void
host_open (Host *h, const char *name, BigfilePgFileFlags flags)
{
  GError *error = NULL;

  h->file = open_file (name, BS, flags);
  h->ram = bigfile_ram_new (4 * HOST_PAGES * BS);
  h->handle = bigfile_handle_new (BIGFILE_FILE (h->file), h->ram, &error);
  g_assert_no_error (error);
  h->vma = bigfile_handle_map (h->handle, 0, HOST_PAGES, &error);
  g_assert_no_error (error);
  h->data = bigfile_vma_get_data (h->vma);
  h->invalidated = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_signal_connect (h->handle, "page-invalidated", G_CALLBACK (on_invalidated), h);
}

static void
host_close (Host *h)
{
  assert_engine_invariants (h->handle, TRUE);
  bigfile_vma_unmap (h->vma);
  g_clear_object (&h->vma);
  g_assert_true (bigfile_handle_close (h->handle));
  g_clear_object (&h->handle);
  g_clear_object (&h->ram);
  g_clear_object (&h->file);
  g_clear_pointer (&h->invalidated, g_array_unref);
}

static void
host_writeout (Host *h, BigfileWriteoutFlags flags)
{
  GError *error = NULL;

  g_assert_true (bigfile_handle_writeout (h->handle, flags, &error));
  g_assert_no_error (error);
}

/* Runs the main loop until @h got page-invalidated for @page. */
static void
wait_invalidated (Host *h, guint64 page)
{
  gint64 end = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  for (;;)
    {
      for (guint i = 0; i < h->invalidated->len; i++)
        if (g_array_index (h->invalidated, guint64, i) == page)
          return;
      g_assert_cmpint (g_get_monotonic_time (), <, end);
      g_main_context_iteration (NULL, TRUE);
    }
}

static void
test_two_hosts (void)
{
  g_autofree char *name = test_pg_unique_name ("hosts");
  Host a = { 0 }, b = { 0 };
  GError *error = NULL;
  g_autofree guint64 *conflicts = NULL;
  gsize n_conflicts = 0;

  g_test_summary ("Two clients of one file, as on two hosts, each with a handle and a "
                  "mapping: a writeout of one arrives at the other as page-invalidated in its "
                  "main loop, a change to the same page is a conflict, and an overwrite wins");

  host_open (&a, name, BIGFILE_PG_FILE_FLAGS_CREATE);
  host_open (&b, name, BIGFILE_PG_FILE_FLAGS_NONE);

  /* b reads pages 0 and 1 (zeros); a writes them. */
  g_assert_cmpint (raw_read (b.data), ==, 0);
  g_assert_cmpint (raw_read (b.data + BS), ==, 0);
  memset (a.data, 'a', 2 * BS);
  host_writeout (&a, BIGFILE_WRITEOUT_DEFAULT);
  wait_invalidated (&b, 0);
  wait_invalidated (&b, 1);
  g_assert_cmpint (raw_read (b.data), ==, 'a');
  g_assert_cmpint (raw_read (b.data + 2 * BS - 1), ==, 'a');
  /* The writer is not told of its own commit. */
  spin (50);
  g_assert_cmpuint (a.invalidated->len, ==, 0);

  /* Both change page 2; a saves first. */
  raw_write (b.data + 2 * BS, 'b');
  raw_write (a.data + 2 * BS, 'A');
  host_writeout (&a, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_false (bigfile_handle_writeout (b.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT);
  g_clear_error (&error);
  conflicts = bigfile_handle_get_conflicts (b.handle, &n_conflicts);
  g_assert_cmpuint (n_conflicts, ==, 1);
  g_assert_cmpuint (conflicts[0], ==, 2);
  /* Nothing of b's was stored, nothing of b's is lost. */
  g_assert_cmpint (raw_read (b.data + 2 * BS), ==, 'b');
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (b.handle), ==, 1);
  {
    g_autoptr (BigfilePgFile) c = second_client (a.file);
    g_autoptr (GBytes) block = bigfile_file_load_block (BIGFILE_FILE (c), 2, &error);

    g_assert_no_error (error);
    g_assert_cmpint (((const guint8 *)g_bytes_get_data (block, NULL))[0], ==, 'A');
  }

  /* b overwrites: a is told, and reads b's. */
  host_writeout (&b, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_OVERWRITE);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (b.handle), ==, 0);
  wait_invalidated (&a, 2);
  g_assert_cmpint (raw_read (a.data + 2 * BS), ==, 'b');

  host_close (&a);
  host_close (&b);
}

/* Adds one to the counter at the start of page 3, as a program would:
 * read, write, save; on a conflict, drop the change, read again, redo. */
static guint
host_increment (Host *h)
{
  guint tries = 0;

  for (;;)
    {
      guint32 v;
      GError *error = NULL;

      tries++;
      memcpy (&v, h->data + 3 * BS, sizeof v);
      v++;
      memcpy (h->data + 3 * BS, &v, sizeof v);
      if (bigfile_handle_writeout (h->handle, BIGFILE_WRITEOUT_DEFAULT, &error))
        return tries;
      g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT);
      g_clear_error (&error);
      g_assert_cmpuint (bigfile_handle_discard (h->handle), ==, 1);
    }
}

typedef struct
{
  Host *host;
  guint n;
  guint retries;
} IncrementThread;

static gpointer
increment_thread (gpointer data)
{
  IncrementThread *t = data;

  for (guint i = 0; i < t->n; i++)
    t->retries += host_increment (t->host) - 1;
  return NULL;
}

static void
test_no_lost_update (void)
{
  g_autofree char *name = test_pg_unique_name ("counter");
  Host a = { 0 }, b = { 0 };
  const guint n = 20;
  IncrementThread ta = { &a, n, 0 }, tb = { &b, n, 0 };
  GThread *threads[2];
  guint32 v;

  g_test_summary ("Two clients add to one counter at once, on two threads: every increment "
                  "that started from a stale read is a conflict, redone, and none is lost");

  host_open (&a, name, BIGFILE_PG_FILE_FLAGS_CREATE);
  host_open (&b, name, BIGFILE_PG_FILE_FLAGS_NONE);
  threads[0] = g_thread_new ("a", increment_thread, &ta);
  threads[1] = g_thread_new ("b", increment_thread, &tb);
  g_thread_join (threads[0]);
  g_thread_join (threads[1]);
  g_test_message ("%u and %u retries", ta.retries, tb.retries);
  spin (50);
  g_assert_true (bigfile_handle_refresh (a.handle, NULL));
  memcpy (&v, a.data + 3 * BS, sizeof v);
  g_assert_cmpuint (v, ==, 2 * n);
  host_close (&a);
  host_close (&b);
}

/* -- the main ---------------------------------------------------------------------------- */

int
main (int argc, char **argv)
{
  if (argc == 3 && g_str_equal (argv[1], "--crash-writer"))
    {
      conninfo = test_pg_conninfo (FALSE);
      return crash_writer_main (argv[2]);
    }

  g_test_init (&argc, &argv, NULL);

  conninfo = test_pg_conninfo (FALSE);

  g_test_add_func ("/pg/open/errors", test_open_errors);
  g_test_add_func ("/pg/open/concurrent-first-use", test_open_concurrent_first_use);
  g_test_add_func ("/pg/blocks", test_blocks);
  g_test_add_func ("/pg/size", test_size);
  g_test_add_func ("/pg/transaction/isolation", test_transaction_isolation);
  g_test_add_func ("/pg/transaction/abort", test_transaction_abort);
  g_test_add_func ("/pg/refresh/reports", test_refresh_reports);
  g_test_add_func ("/pg/refresh/log-pruned", test_log_pruned);
  g_test_add_func ("/pg/busy", test_busy);
  g_test_add_func ("/pg/read-only", test_read_only);
  g_test_add_func ("/pg/durable", test_durable);
  g_test_add_func ("/pg/batched-loads", test_batched_loads);
  g_test_add_func ("/pg/threads", test_threads);
  g_test_add_func ("/pg/notify", test_notify);
  g_test_add_func ("/pg/reconnect/read", test_reconnect_read);
  g_test_add_func ("/pg/reconnect/write", test_reconnect_write);
  g_test_add_func ("/pg/reconnect/listen", test_reconnect_listen);
  g_test_add_func ("/pg/reconnect/server-restart", test_server_restart);
  g_test_add_data_func ("/pg/fault-injection/error", GINT_TO_POINTER (BF_PG_FAIL_ERROR),
                        test_fault_injection);
  g_test_add_data_func ("/pg/fault-injection/disconnect", GINT_TO_POINTER (BF_PG_FAIL_DISCONNECT),
                        test_fault_injection);
  g_test_add_func ("/pg/crash", test_crash);
  g_test_add_func ("/pg/handle/two-hosts", test_two_hosts);
  g_test_add_func ("/pg/handle/no-lost-update", test_no_lost_update);

  return g_test_run ();
}
