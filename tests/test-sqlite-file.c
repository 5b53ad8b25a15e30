/* bigfile-glib tests - BigfileSqliteFile, a BigfileFile in an SQLite database
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Everything runs against real SQLite databases in temporary directories:
 * other clients are other BigfileSqliteFile objects (of this process, or
 * of child processes: this program run with --child), crashes are real
 * SIGKILLs, a full disk is a real RLIMIT_FSIZE.  Only failures that SQLite
 * cannot be made to produce on demand go through the fault injection of
 * bigfile-sqlite-file-private.h.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <sqlite3.h>

#include "test-util.h"
#include "bigfile-sqlite-file-private.h"

#define BS ((gsize)4096)

static const char *test_program_path;

/* -- helpers ----------------------------------------------------------------- */

typedef struct
{
  char *dir;
  char *db; /* dir/test.db */
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->dir = temp_dir_new ();
  f->db = g_build_filename (f->dir, "test.db", NULL);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  _bigfile_sqlite_file_fail_after (0, 0);
  temp_dir_remove (f->dir);
  g_free (f->dir);
  g_free (f->db);
}

static BigfileSqliteFile *
open_file (const char *db, const char *name, gsize block_size, BigfileSqliteFileFlags flags)
{
  GError *error = NULL;
  BigfileSqliteFile *file = bigfile_sqlite_file_new (db, name, block_size, flags, &error);

  g_assert_no_error (error);
  g_assert_nonnull (file);
  return file;
}

static BigfileSqliteFile *
create_file (Fixture *f, const char *name)
{
  return open_file (f->db, name, BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE);
}

/* Byte @i of block @block in version @version of a test file. */
static guint8
pattern (guint64 version, guint64 block, gsize i)
{
  return (guint8)(1 + ((version * 131 + block * 31 + i * 7 + (i >> 9)) % 251));
}

static void
fill (guint8 *buf, gsize len, guint64 version, guint64 block)
{
  for (gsize i = 0; i < len; i++)
    buf[i] = pattern (version, block, i);
}

static void
store (BigfileSqliteFile *file, guint64 block, guint64 version)
{
  guint8 buf[BS];
  GError *error = NULL;

  fill (buf, BS, version, block);
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), block, buf, BS, &error));
  g_assert_no_error (error);
}

static void
begin (BigfileSqliteFile *file)
{
  GError *error = NULL;

  g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (file), &error));
  g_assert_no_error (error);
}

static void
commit (BigfileSqliteFile *file)
{
  GError *error = NULL;

  g_assert_true (
      bigfile_file_commit_transaction (BIGFILE_FILE (file), BIGFILE_COMMIT_FLAGS_NONE, &error));
  g_assert_no_error (error);
}

/* The version of @block's pattern that @file loads: 0 for zeros, -1 for
 * anything else. */
static gint64
load_version (BigfileSqliteFile *file, guint64 block, guint64 max_version)
{
  guint8 buf[BS], want[BS];
  GError *error = NULL;

  memset (buf, 0, sizeof buf);
  g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), block, buf, BS, &error));
  g_assert_no_error (error);
  memset (want, 0, sizeof want);
  if (memcmp (buf, want, BS) == 0)
    return 0;
  for (guint64 v = 1; v <= max_version; v++)
    {
      fill (want, BS, v, block);
      if (memcmp (buf, want, BS) == 0)
        return (gint64)v;
    }
  return -1;
}

static guint64
get_size (BigfileSqliteFile *file)
{
  GError *error = NULL;
  guint64 size = G_MAXUINT64;

  g_assert_true (bigfile_file_get_size (BIGFILE_FILE (file), &size, &error));
  g_assert_no_error (error);
  return size;
}

/* Refreshes and returns the reported blocks, sorted, without repeats. */
static GArray *
refresh (BigfileSqliteFile *file)
{
  GError *error = NULL;
  GArray *changes = bigfile_file_refresh (BIGFILE_FILE (file), &error);
  GArray *unique = g_array_new (FALSE, FALSE, sizeof (guint64));

  g_assert_no_error (error);
  g_assert_nonnull (changes);
  for (guint i = 0; i < changes->len; i++)
    {
      guint64 b = g_array_index (changes, guint64, i);
      guint j;

      for (j = 0; j < unique->len && g_array_index (unique, guint64, j) < b; j++)
        ;
      if (j == unique->len || g_array_index (unique, guint64, j) != b)
        g_array_insert_val (unique, j, b);
    }
  g_array_unref (changes);
  return unique;
}

#define assert_changes(file, ...)                                                                  \
  G_STMT_START                                                                                     \
  {                                                                                                \
    const guint64 want_[] = { __VA_ARGS__ };                                                       \
    GArray *got_ = refresh (file);                                                                 \
    assert_blocks_ (got_, want_, G_N_ELEMENTS (want_));                                            \
  }                                                                                                \
  G_STMT_END

#define assert_no_changes(file)                                                                    \
  G_STMT_START                                                                                     \
  {                                                                                                \
    GArray *got_ = refresh (file);                                                                 \
    assert_blocks_ (got_, NULL, 0);                                                                \
  }                                                                                                \
  G_STMT_END

static void
assert_blocks_ (GArray *got, const guint64 *want, guint n_want)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < got->len; i++)
    g_string_append_printf (s, " %" G_GUINT64_FORMAT, g_array_index (got, guint64, i));
  g_test_message ("reported:%s", s->str);
  g_string_free (s, TRUE);
  g_assert_cmpuint (got->len, ==, n_want);
  for (guint i = 0; i < n_want; i++)
    g_assert_cmpuint (g_array_index (got, guint64, i), ==, want[i]);
  g_array_unref (got);
}

/* Straight SQL on the database, to check what is stored. */
static gint64
sql_int (const char *db, const char *sql)
{
  sqlite3 *conn = NULL;
  sqlite3_stmt *stmt = NULL;
  gint64 value;

  g_assert_cmpint (sqlite3_open_v2 (db, &conn, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_prepare_v2 (conn, sql, -1, &stmt, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_step (stmt), ==, SQLITE_ROW);
  value = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  sqlite3_close (conn);
  return value;
}

static void
sql_exec (const char *db, const char *sql)
{
  sqlite3 *conn = NULL;

  g_assert_cmpint (sqlite3_open_v2 (db, &conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                   ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (conn, sql, NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (conn);
}

/* Runs the default main context until @flag is set or @timeout_ms passed. */
static gboolean
wait_for_flag (gint *flag, guint timeout_ms)
{
  gint64 end = g_get_monotonic_time () + (gint64)timeout_ms * 1000;

  while (!g_atomic_int_get (flag) && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE), g_usleep (500);
  return g_atomic_int_get (flag);
}

/* Iterates the default main context for @ms. */
static void
spin_main_context (guint ms)
{
  gint64 end = g_get_monotonic_time () + (gint64)ms * 1000;

  while (g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE), g_usleep (500);
}

static void
on_changed (BigfileFile *file, gpointer data)
{
  g_atomic_int_inc ((gint *)data);
}

/* -- opening ------------------------------------------------------------------- */

static void
test_open_create (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  BigfileSqliteFile *file;
  g_auto (GStrv) names = NULL;
  guint64 size = 1;

  g_test_summary ("CREATE makes the database and the bigfile; the block size, path and name "
                  "are kept; the schema has its version; block size 0 opens the stored one");

  file = bigfile_sqlite_file_new (f->db, "a", BS, BIGFILE_SQLITE_FILE_FLAGS_NONE, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_null (file);
  g_assert_false (g_file_test (f->db, G_FILE_TEST_EXISTS));
  g_clear_error (&error);

  file = create_file (f, "a");
  g_assert_cmpuint (bigfile_file_get_block_size (BIGFILE_FILE (file)), ==, BS);
  g_assert_cmpuint (bigfile_sqlite_file_get_block_size (file), ==, BS);
  g_assert_cmpstr (bigfile_sqlite_file_get_path (file), ==, f->db);
  g_assert_cmpstr (bigfile_sqlite_file_get_name (file), ==, "a");
  g_assert_true (bigfile_sqlite_file_get_durable (file));
  g_assert_true (bigfile_file_is_thread_safe (BIGFILE_FILE (file)));
  g_assert_true (bigfile_file_is_transactional (BIGFILE_FILE (file)));
  g_assert_true (bigfile_file_get_size (BIGFILE_FILE (file), &size, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (size, ==, 0);
  g_object_unref (file);

  g_assert_cmpint (sql_int (f->db, "PRAGMA user_version"), ==, 1);
  g_assert_cmpint (sql_int (f->db, "PRAGMA application_id"), ==, 0x42676631);
  g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_files"), ==, 1);

  /* 0: the stored block size; another: refused. */
  file = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  g_assert_cmpuint (bigfile_file_get_block_size (BIGFILE_FILE (file)), ==, BS);
  g_object_unref (file);
  file = bigfile_sqlite_file_new (f->db, "a", 2 * BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE, &error);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "8192"));
  g_assert_null (file);
  g_clear_error (&error);

  /* A missing bigfile of an existing database, with and without a size. */
  file = bigfile_sqlite_file_new (f->db, "b", BS, BIGFILE_SQLITE_FILE_FLAGS_NONE, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "“b”"));
  g_clear_error (&error);
  file = bigfile_sqlite_file_new (f->db, "b", 0, BIGFILE_SQLITE_FILE_FLAGS_CREATE, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "give a block size"));
  g_clear_error (&error);

  file = open_file (f->db, "b", 65536, BIGFILE_SQLITE_FILE_FLAGS_CREATE);
  g_assert_cmpuint (bigfile_file_get_block_size (BIGFILE_FILE (file)), ==, 65536);
  g_object_unref (file);

  names = bigfile_sqlite_file_list (f->db, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (names), ==, 2);
  g_assert_cmpstr (names[0], ==, "a");
  g_assert_cmpstr (names[1], ==, "b");
}

static void
test_open_bad_arguments (Fixture *f, gconstpointer data)
{
  static const struct
  {
    const char *name;
    gsize block_size;
    BigfileSqliteFileFlags flags;
  } cases[] = {
    { "", BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE },
    { "\xff\xfe", BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE },
    { "x", 1000, BIGFILE_SQLITE_FILE_FLAGS_CREATE },
    { "x", 2048, BIGFILE_SQLITE_FILE_FLAGS_CREATE },
    { "x", 4 * 1024 * 1024, BIGFILE_SQLITE_FILE_FLAGS_CREATE },
    { "x", BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE | BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY },
  };
  g_autofree char *long_name = g_strnfill (1025, 'n');

  g_test_summary ("Bad names, block sizes and flags fail with INVALID_ARGUMENT, and create "
                  "nothing");

  for (guint i = 0; i < G_N_ELEMENTS (cases) + 1; i++)
    {
      GError *error = NULL;
      BigfileSqliteFile *file = bigfile_sqlite_file_new (
          f->db, i < G_N_ELEMENTS (cases) ? cases[i].name : long_name,
          i < G_N_ELEMENTS (cases) ? cases[i].block_size : BS,
          i < G_N_ELEMENTS (cases) ? cases[i].flags : BIGFILE_SQLITE_FILE_FLAGS_CREATE, &error);

      g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
      g_assert_null (file);
      g_test_message ("%s", error->message);
      g_clear_error (&error);
      g_assert_false (g_file_test (f->db, G_FILE_TEST_EXISTS));
    }
}

static void
test_open_not_a_database (Fixture *f, gconstpointer data)
{
  const char text[] = "This is a text file, not a database, and it is long enough to have "
                      "what SQLite takes for a header: it must be refused as it is.\n";
  GError *error = NULL;
  BigfileSqliteFile *file;
  g_autofree guint8 *after = NULL;
  gsize len;

  g_test_summary ("A file that is not an SQLite database fails with CORRUPT and is not "
                  "changed");

  write_file (f->db, (const guint8 *)text, sizeof text - 1);
  for (guint flags = 0; flags < 3; flags++)
    {
      file = bigfile_sqlite_file_new (f->db, "a", BS, flags, &error);
      g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT);
      g_assert_nonnull (strstr (error->message, f->db));
      g_test_message ("%s", error->message);
      g_assert_null (file);
      g_clear_error (&error);
    }
  after = read_file (f->db, &len);
  g_assert_cmpmem (after, len, text, sizeof text - 1);
  g_assert_false (bigfile_sqlite_file_list (f->db, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT);
  g_clear_error (&error);
}

static void
test_open_other_database (Fixture *f, gconstpointer data)
{
  GError *error = NULL;
  BigfileSqliteFile *file;

  g_test_summary ("A database of another application is refused (our tables are not added), "
                  "and so is one of a newer schema");

  sql_exec (f->db, "CREATE TABLE theirs (x INTEGER)");
  file = bigfile_sqlite_file_new (f->db, "a", BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE, &error);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "another application"));
  g_assert_null (file);
  g_clear_error (&error);
  g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM sqlite_schema"), ==, 1);
  g_assert_cmpint (g_unlink (f->db), ==, 0);
  for (guint i = 0; i < 2; i++)
    {
      g_autofree char *side = g_strconcat (f->db, i == 0 ? "-wal" : "-shm", NULL);

      g_unlink (side);
    }

  g_object_unref (create_file (f, "a"));
  sql_exec (f->db, "PRAGMA user_version = 2");
  file = bigfile_sqlite_file_new (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE, &error);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "newer"));
  g_clear_error (&error);
}

/* Overwrites the middle of every page of the database but the first with
 * garbage: the b-trees of the tables are then damaged. */
static void
damage_database (const char *db)
{
  gsize len;
  g_autofree guint8 *bytes = read_file (db, &len);
  gsize page = (gsize)sql_int (db, "PRAGMA page_size");

  g_assert_cmpuint (len, >, page);
  for (gsize off = page; off + page <= len; off += page)
    memset (bytes + off, 0x5a, 64);
  write_file (db, bytes, len);
}

static void
test_open_corrupt (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *file = create_file (f, "a");
  GError *error = NULL;
  guint8 buf[BS];
  gboolean ok;

  g_test_summary ("A damaged database gives CORRUPT errors, at open or at the first load");

  for (guint64 b = 0; b < 8; b++)
    store (file, b, 1);
  g_object_unref (file);
  /* Everything in the database file itself, nothing left in the WAL. */
  sql_exec (f->db, "PRAGMA wal_checkpoint(TRUNCATE)");
  damage_database (f->db);

  file = bigfile_sqlite_file_new (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE, &error);
  if (file != NULL)
    {
      memset (buf, 0, sizeof buf);
      ok = bigfile_file_load_block_raw (BIGFILE_FILE (file), 3, buf, BS, &error);
      g_assert_false (ok);
      g_object_unref (file);
    }
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
}

static void
test_read_only (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *file = create_file (f, "a");
  BigfileSqliteFile *ro;
  GError *error = NULL;
  guint8 buf[BS] = { 1 };

  g_test_summary ("READ_ONLY loads, and refuses stores, size changes and transactions with "
                  "READ_ONLY without changing the database");

  store (file, 2, 1);
  ro = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY);
  g_assert_cmpint (load_version (ro, 2, 1), ==, 1);
  g_assert_cmpuint (get_size (ro), ==, 3 * BS);

  g_assert_false (bigfile_file_store_block_raw (BIGFILE_FILE (ro), 0, buf, BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_clear_error (&error);
  g_assert_false (bigfile_file_set_size (BIGFILE_FILE (ro), 0, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_clear_error (&error);
  g_assert_false (bigfile_file_begin_transaction (BIGFILE_FILE (ro), &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_clear_error (&error);
  g_assert_cmpint (sql_int (f->db, "SELECT version FROM bigfile_files"), ==, 1);

  /* It still follows the writers. */
  store (file, 2, 2);
  assert_changes (ro, 2);
  g_assert_cmpint (load_version (ro, 2, 2), ==, 2);

  g_object_unref (ro);
  g_object_unref (file);
}

/* -- loads, stores, size ---------------------------------------------------------- */

static void
test_load_store (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *file = create_file (f, "a");
  GError *error = NULL;
  GBytes *bytes;
  guint8 buf[BS];

  g_test_summary ("Stored blocks load back, through the raw and the GBytes methods; absent "
                  "blocks load as zeros and cost no row");

  g_assert_cmpint (load_version (file, 0, 1), ==, 0);
  g_assert_cmpint (load_version (file, 1000000, 1), ==, 0);
  store (file, 0, 1);
  store (file, 5, 1);
  g_assert_cmpint (load_version (file, 0, 1), ==, 1);
  g_assert_cmpint (load_version (file, 5, 1), ==, 1);
  g_assert_cmpint (load_version (file, 4, 1), ==, 0);
  g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_blocks"), ==, 2);

  bytes = bigfile_file_load_block (BIGFILE_FILE (file), 5, &error);
  g_assert_no_error (error);
  fill (buf, BS, 1, 5);
  g_assert_cmpmem (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes), buf, BS);
  g_bytes_unref (bytes);

  fill (buf, BS, 2, 4);
  bytes = g_bytes_new (buf, BS);
  g_assert_true (bigfile_file_store_block (BIGFILE_FILE (file), 4, bytes, &error));
  g_assert_no_error (error);
  g_bytes_unref (bytes);
  g_assert_cmpint (load_version (file, 4, 2), ==, 2);

  /* A buffer that held garbage: loads must fill it whole. */
  memset (buf, 0xee, sizeof buf);
  g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), 3, buf, BS, &error));
  for (gsize i = 0; i < BS; i++)
    g_assert_cmpuint (buf[i], ==, 0);

  g_object_unref (file);
}

static void
test_zero_blocks (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *file = create_file (f, "a");
  GError *error = NULL;
  guint8 buf[BS];

  g_test_summary ("A block of zeros deletes its row; trailing zeros are not stored");

  store (file, 3, 1);
  g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_blocks"), ==, 1);
  memset (buf, 0, sizeof buf);
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), 3, buf, BS, &error));
  g_assert_no_error (error);
  g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_blocks"), ==, 0);
  g_assert_cmpint (load_version (file, 3, 1), ==, 0);

  /* Data, then zeros: only the data is stored, and zeros load after it. */
  buf[0] = 7;
  buf[100] = 9;
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), 3, buf, BS, &error));
  g_assert_cmpint (sql_int (f->db, "SELECT length(data) FROM bigfile_blocks"), ==, 101);
  memset (buf, 0xee, sizeof buf);
  g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), 3, buf, BS, &error));
  for (gsize i = 0; i < BS; i++)
    g_assert_cmpuint (buf[i], ==, i == 0 ? 7 : i == 100 ? 9 : 0);

  g_object_unref (file);
}

static void
test_size (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *file = create_file (f, "a");
  BigfileSqliteFile *other;
  GError *error = NULL;
  guint8 buf[BS];

  g_test_summary ("The size is stored: stores past it grow it, shrinking drops the rows past "
                  "it and cuts the block that holds it, growing again shows zeros");

  g_assert_cmpuint (get_size (file), ==, 0);
  store (file, 2, 1);
  g_assert_cmpuint (get_size (file), ==, 3 * BS);
  /* A shorter last block: the size ends there. */
  fill (buf, 100, 1, 3);
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), 3, buf, 100, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (get_size (file), ==, 3 * BS + 100);
  store (file, 0, 1);
  g_assert_cmpuint (get_size (file), ==, 3 * BS + 100);

  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), BS + 10, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (get_size (file), ==, BS + 10);
  g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_blocks"), ==, 1);
  g_assert_cmpint (sql_int (f->db, "SELECT size FROM bigfile_files"), ==, BS + 10);

  /* Block 0 was kept whole; grow again: block 1 is gone (zeros), and
   * nothing of the old block 2 or 3 comes back. */
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), 10 * BS, &error));
  g_assert_cmpint (load_version (file, 0, 1), ==, 1);
  g_assert_cmpint (load_version (file, 2, 1), ==, 0);
  g_assert_cmpint (load_version (file, 3, 1), ==, 0);

  /* Cut inside a block with data: the bytes past the size become zeros. */
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), 10, &error));
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), BS, &error));
  g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), 0, buf, BS, &error));
  for (gsize i = 0; i < BS; i++)
    g_assert_cmpuint (buf[i], ==, i < 10 ? pattern (1, 0, i) : 0);
  g_assert_cmpint (sql_int (f->db, "SELECT length(data) FROM bigfile_blocks"), ==, 10);

  /* Another client sees the size, and the cut block as changed. */
  other = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  g_assert_cmpuint (get_size (other), ==, BS);
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), 5, &error));
  g_assert_cmpuint (get_size (other), ==, BS);
  assert_changes (other, 0);
  g_assert_cmpuint (get_size (other), ==, 5);

  g_object_unref (other);
  g_object_unref (file);
}

static void
test_block_limits (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *file = create_file (f, "a");
  GError *error = NULL;
  guint8 buf[BS] = { 1 };

  g_test_summary ("Blocks past the largest file offset fail with INVALID_ARGUMENT");

  g_assert_false (
      bigfile_file_load_block_raw (BIGFILE_FILE (file), G_MAXUINT64 / 2, buf, BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (bigfile_file_store_block_raw (BIGFILE_FILE (file), (guint64)G_MAXINT64 / BS, buf,
                                                BS, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_object_unref (file);
}

/* -- transactions and snapshots ------------------------------------------------- */

static void
test_transaction (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *a = create_file (f, "a");
  BigfileSqliteFile *b = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  GError *error = NULL;

  g_test_summary ("A transaction's stores and size show to nobody, its own loads included, "
                  "until it commits, then all at once; an abort leaves nothing");

  begin (a);
  store (a, 0, 1);
  store (a, 1, 1);
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (a), 5 * BS, &error));
  g_assert_cmpuint (get_size (a), ==, 5 * BS); /* the transaction's own size */
  g_assert_cmpint (load_version (a, 0, 1), ==, 0);
  assert_no_changes (b);
  g_assert_cmpint (load_version (b, 1, 1), ==, 0);
  g_assert_cmpuint (get_size (b), ==, 0);
  commit (a);
  g_assert_cmpint (load_version (a, 0, 1), ==, 1);
  g_assert_cmpint (load_version (a, 1, 1), ==, 1);
  g_assert_cmpuint (get_size (a), ==, 5 * BS);
  /* b's snapshot is older until it refreshes. */
  g_assert_cmpint (load_version (b, 1, 1), ==, 0);
  assert_changes (b, 0, 1);
  g_assert_cmpint (load_version (b, 1, 1), ==, 1);
  g_assert_cmpuint (get_size (b), ==, 5 * BS);

  begin (a);
  store (a, 0, 2);
  store (a, 3, 2);
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (a), BS, &error));
  bigfile_file_abort_transaction (BIGFILE_FILE (a));
  g_assert_cmpint (load_version (a, 0, 2), ==, 1);
  g_assert_cmpint (load_version (a, 3, 2), ==, 0);
  g_assert_cmpuint (get_size (a), ==, 5 * BS);
  assert_no_changes (b);
  g_assert_cmpint (sql_int (f->db, "SELECT version FROM bigfile_files"), ==, 1);

  /* Misuse is an error, not a crash. */
  begin (a);
  g_assert_false (bigfile_file_begin_transaction (BIGFILE_FILE (a), &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED);
  g_clear_error (&error);
  bigfile_file_abort_transaction (BIGFILE_FILE (a));
  bigfile_file_abort_transaction (BIGFILE_FILE (a));
  g_assert_false (
      bigfile_file_commit_transaction (BIGFILE_FILE (a), BIGFILE_COMMIT_FLAGS_NONE, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED);
  g_clear_error (&error);

  /* An empty transaction commits nothing. */
  begin (a);
  commit (a);
  g_assert_cmpint (sql_int (f->db, "SELECT version FROM bigfile_files"), ==, 1);

  g_object_unref (b);
  g_object_unref (a);
}

static void
test_refresh (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *a = create_file (f, "a");
  BigfileSqliteFile *b = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  BigfileSqliteFile *other = open_file (f->db, "other", BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE);

  g_test_summary ("refresh() reports exactly the blocks other clients changed since the "
                  "snapshot, never this client's own, and loads keep the snapshot until then");

  assert_no_changes (a);
  /* a's commits are not reported to a. */
  store (a, 1, 1);
  assert_no_changes (a);

  begin (b);
  store (b, 4, 1);
  store (b, 5, 1);
  store (b, 7, 1);
  store (b, 4, 2);
  commit (b);
  store (b, 9, 1);
  /* Another bigfile of the database: not a change of this one. */
  store (other, 4, 1);
  g_assert_cmpint (load_version (a, 5, 2), ==, 0);
  assert_changes (a, 4, 5, 7, 9);
  g_assert_cmpint (load_version (a, 4, 2), ==, 2);
  g_assert_cmpint (load_version (a, 9, 2), ==, 1);
  assert_no_changes (a);
  assert_changes (b, 1);

  /* A refresh inside a transaction shows the commits before it. */
  store (b, 2, 1);
  begin (a);
  assert_changes (a, 2);
  g_assert_cmpint (load_version (a, 2, 1), ==, 1);
  store (a, 3, 1);
  commit (a);
  assert_changes (b, 3);

  g_object_unref (other);
  g_object_unref (b);
  g_object_unref (a);
}

static void
test_refresh_after_commit (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *a = create_file (f, "a");
  BigfileSqliteFile *b = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);

  g_test_summary ("A commit moves the snapshot to include it, and other clients' commits that "
                  "the snapshot did not report yet are still reported afterwards");

  store (b, 3, 1);
  /* a commits without refreshing first: b's commit is not lost. */
  store (a, 4, 1);
  g_assert_cmpint (load_version (a, 4, 1), ==, 1);
  assert_changes (a, 3);
  assert_changes (b, 4);
  g_object_unref (b);
  g_object_unref (a);
}

static void
test_log_pruned (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *a = create_file (f, "a");
  BigfileSqliteFile *b = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  BigfileSqliteFile *c = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);

  g_test_summary ("The change log keeps the last commits only: a snapshot older than it gets "
                  "G_MAXUINT64, any block");

  _bigfile_sqlite_file_set_log_keep (b, 2);
  store (b, 1, 1);
  assert_changes (c, 1);
  store (b, 2, 1);
  store (b, 3, 1);
  /* c saw version 1, and the log has 2 and 3: exact. */
  assert_changes (c, 2, 3);
  store (b, 4, 1);
  assert_changes (a, G_MAXUINT64);
  assert_changes (c, 4);
  g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_log"), ==, 2);
  g_object_unref (c);
  g_object_unref (b);
  g_object_unref (a);
}

static void
test_log_runs (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *a = create_file (f, "a");
  BigfileSqliteFile *b = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  GError *error = NULL;
  GArray *changes;
  guint8 buf[BS];

  g_test_summary ("A commit's blocks are logged as runs: 16 bytes for a range; more than 4096 "
                  "runs log any block");

  memset (buf, 1, sizeof buf);
  begin (b);
  for (guint64 i = 100; i < 300; i++)
    g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (b), i, buf, BS, &error));
  commit (b);
  g_assert_cmpint (sql_int (f->db, "SELECT length(blocks) FROM bigfile_log"), ==, 16);
  changes = refresh (a);
  g_assert_cmpuint (changes->len, ==, 200);
  g_assert_cmpuint (g_array_index (changes, guint64, 0), ==, 100);
  g_assert_cmpuint (g_array_index (changes, guint64, 199), ==, 299);
  g_array_unref (changes);

  begin (b);
  for (guint64 i = 0; i < 4097; i++)
    g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (b), 1000 + 2 * i, buf, 1, &error));
  commit (b);
  assert_changes (a, G_MAXUINT64);
  g_object_unref (b);
  g_object_unref (a);
}

static void
test_busy (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *a = create_file (f, "a");
  GError *error = NULL;
  BigfileSqliteFile *b = g_initable_new (BIGFILE_TYPE_SQLITE_FILE, NULL, &error, "path", f->db,
                                         "name", "a", "busy-timeout", 50, NULL);
  gint64 t0;

  g_test_summary ("Writers are serialized: a transaction waits for another's up to the busy "
                  "timeout, then fails with BUSY, and can be retried");

  g_assert_no_error (error);
  begin (a);
  store (a, 0, 1);
  t0 = g_get_monotonic_time ();
  g_assert_false (bigfile_file_begin_transaction (BIGFILE_FILE (b), &error));
  g_assert_cmpint (g_get_monotonic_time () - t0, >=, 40000);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  /* A store outside a transaction is one too. */
  g_assert_false (bigfile_file_set_size (BIGFILE_FILE (b), 0, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY);
  g_clear_error (&error);
  commit (a);
  begin (b);
  assert_changes (b, 0);
  store (b, 0, 2);
  commit (b);
  assert_changes (a, 0);
  g_assert_cmpint (load_version (a, 0, 2), ==, 2);
  g_object_unref (b);
  g_object_unref (a);
}

static void
test_list_delete (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *a = create_file (f, "a");
  BigfileSqliteFile *b = create_file (f, "b");
  GError *error = NULL;
  g_auto (GStrv) names = NULL;
  GArray *changes;

  g_test_summary ("bigfile_sqlite_file_delete() drops a bigfile with its blocks and log; its "
                  "open clients fail cleanly from their next refresh on");

  store (a, 0, 1);
  store (b, 0, 1);
  g_assert_true (bigfile_sqlite_file_delete (f->db, "a", &error));
  g_assert_no_error (error);
  g_assert_false (bigfile_sqlite_file_delete (f->db, "a", &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  names = bigfile_sqlite_file_list (f->db, &error);
  g_assert_cmpuint (g_strv_length (names), ==, 1);
  g_assert_cmpstr (names[0], ==, "b");
  g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_blocks"), ==, 1);
  g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_log"), ==, 1);

  /* a's snapshot still shows it; then errors. */
  g_assert_cmpint (load_version (a, 0, 1), ==, 1);
  changes = bigfile_file_refresh (BIGFILE_FILE (a), &error);
  g_assert_null (changes);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_cmpint (load_version (a, 0, 1), ==, 1); /* the old snapshot stays */
  g_assert_false (bigfile_file_begin_transaction (BIGFILE_FILE (a), &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_object_unref (b);
  g_object_unref (a);
}

/* -- durability: fsync calls on the WAL, counted ----------------------------------
 *
 * The test program's fsync() and fdatasync() come before libc's for
 * SQLite (the executable's symbols interpose): they count the calls on a
 * file whose name ends in -wal, then do the real thing. */

static gint n_wal_syncs;

static void
count_sync (int fd)
{
  char link[64], target[PATH_MAX];
  ssize_t n;

  g_snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink (link, target, sizeof target - 1);
  if (n > 4)
    {
      target[n] = '\0';
      if (g_str_has_suffix (target, "-wal"))
        g_atomic_int_inc (&n_wal_syncs);
    }
}

int fsync (int fd);
int fdatasync (int fd);

int
fsync (int fd)
{
  static int (*real) (int);

  if (real == NULL)
    real = (int (*) (int))dlsym (RTLD_NEXT, "fsync");
  count_sync (fd);
  return real (fd);
}

int
fdatasync (int fd)
{
  static int (*real) (int);

  if (real == NULL)
    real = (int (*) (int))dlsym (RTLD_NEXT, "fdatasync");
  count_sync (fd);
  return real (fd);
}

static void
test_durable (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *a = create_file (f, "a");
  GError *error = NULL;
  gint before;

  g_test_summary ("Durable (the default) flushes the WAL at every commit; not durable, it does "
                  "not, unless the commit asks for BIGFILE_COMMIT_FLAGS_DURABLE");

  before = g_atomic_int_get (&n_wal_syncs);
  store (a, 0, 1);
  g_assert_cmpint (g_atomic_int_get (&n_wal_syncs), >, before);

  bigfile_sqlite_file_set_durable (a, FALSE);
  g_assert_false (bigfile_sqlite_file_get_durable (a));
  before = g_atomic_int_get (&n_wal_syncs);
  store (a, 1, 1);
  begin (a);
  store (a, 2, 1);
  commit (a);
  g_assert_cmpint (g_atomic_int_get (&n_wal_syncs), ==, before);

  begin (a);
  store (a, 3, 1);
  g_assert_true (
      bigfile_file_commit_transaction (BIGFILE_FILE (a), BIGFILE_COMMIT_FLAGS_DURABLE, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_atomic_int_get (&n_wal_syncs), >, before);

  g_object_set (a, "durable", TRUE, NULL);
  before = g_atomic_int_get (&n_wal_syncs);
  store (a, 4, 1);
  g_assert_cmpint (g_atomic_int_get (&n_wal_syncs), >, before);
  g_object_unref (a);
}

/* -- invalidation: ::changed ------------------------------------------------------ */

static void
test_changed_signal (Fixture *f, gconstpointer data)
{
  gboolean polling = GPOINTER_TO_INT (data);
  BigfileSqliteFile *a, *b, *c;
  gint n_changed = 0, n_changed_b = 0;

  g_test_summary ("Another client's commit emits ::changed on the file's main context, soon; "
                  "a client's own commits and commits of other bigfiles do not");

  _bigfile_sqlite_file_set_force_polling (polling);
  a = create_file (f, "a");
  b = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  c = open_file (f->db, "c", BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE);
  _bigfile_sqlite_file_set_force_polling (FALSE);
  g_signal_connect (a, "changed", G_CALLBACK (on_changed), &n_changed);
  g_signal_connect (b, "changed", G_CALLBACK (on_changed), &n_changed_b);

  store (b, 1, 1);
  g_assert_true (wait_for_flag (&n_changed, 2000));
  g_assert_cmpint (n_changed_b, ==, 0);
  assert_changes (a, 1);

  /* Nothing more without a commit; nothing for our own, or another bigfile's. */
  n_changed = 0;
  store (a, 2, 1);
  store (c, 2, 1);
  spin_main_context (200);
  g_assert_cmpint (n_changed, ==, 0);
  g_assert_cmpint (n_changed_b, ==, 1);

  /* Another one, and no refresh in between: still signalled. */
  assert_changes (b, 2);
  n_changed_b = 0;
  store (a, 3, 1);
  g_assert_true (wait_for_flag (&n_changed_b, 2000));
  n_changed_b = 0;
  store (a, 4, 1);
  g_assert_true (wait_for_flag (&n_changed_b, 2000));
  assert_changes (b, 3, 4);

  g_object_unref (c);
  g_object_unref (b);
  g_object_unref (a);
}

static void
test_wal_bounded (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *a = create_file (f, "a");
  BigfileSqliteFile *b = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  g_autofree char *wal = g_strconcat (f->db, "-wal", NULL);
  gint n_changed = 0;
  GStatBuf st;
  guint8 buf[BS];
  GError *error = NULL;

  g_test_summary ("Clients that refresh on ::changed let the WAL be reset: commits one after "
                  "another do not make it grow without end");

  g_signal_connect (b, "changed", G_CALLBACK (on_changed), &n_changed);
  for (guint round = 0; round < 40; round++)
    {
      begin (a);
      /* 1.5 MiB per commit, 60 MiB in all; new data each time (SQLite
       * writes no page whose data stays the same). */
      memset (buf, 1 + round, sizeof buf);
      for (guint64 i = 0; i < 384; i++)
        g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (a), i, buf, BS, &error));
      commit (a);
      n_changed = 0;
      g_assert_true (wait_for_flag (&n_changed, 2000));
      g_array_unref (refresh (b));
      /* Give the checkpoint its moment. */
      spin_main_context (150);
      if (g_stat (wal, &st) == 0 && round % 8 == 7)
        g_test_message ("round %u: WAL %" G_GINT64_FORMAT " bytes", round, (gint64)st.st_size);
    }
  g_assert_cmpint (g_stat (wal, &st), ==, 0);
  g_test_message ("WAL: %" G_GINT64_FORMAT " bytes", (gint64)st.st_size);
  g_assert_cmpint (st.st_size, <, 16 * 1024 * 1024);
  g_object_unref (b);
  g_object_unref (a);
}

/* -- threads ------------------------------------------------------------------------ */

#define THREAD_BLOCKS 8
#define THREAD_LOADERS 3

typedef struct
{
  BigfileSqliteFile *a; /* loaded by the loaders, refreshed and committed to by others */
  const char *db;
  GRWLock snapshot;  /* readers: a pass of loads; writer: whatever moves a's snapshot */
  gint writer_waits; /* loaders hold back, so that the writer gets the lock */
  gint stop;
  gint n_passes;
  gint n_commits;
  guint64 max_version;
} Threads;

/* Each pass loads every block under the reader lock: one snapshot, so one
 * version for all. */
static gpointer
loader_thread (gpointer data)
{
  Threads *t = data;

  while (!g_atomic_int_get (&t->stop))
    {
      gint64 v0;

      /* glibc's rwlocks prefer readers: without this the writer starves. */
      while (g_atomic_int_get (&t->writer_waits))
        g_usleep (100);
      g_rw_lock_reader_lock (&t->snapshot);
      v0 = load_version (t->a, 0, g_atomic_pointer_get (&t->max_version) + 1);
      for (guint64 b = 1; b < THREAD_BLOCKS; b++)
        g_assert_cmpint (load_version (t->a, b, (guint64)v0), ==, v0);
      g_rw_lock_reader_unlock (&t->snapshot);
      g_atomic_int_inc (&t->n_passes);
    }
  return NULL;
}

/* Another client commits new versions of all the blocks. */
static gpointer
writer_thread (gpointer data)
{
  Threads *t = data;
  BigfileSqliteFile *b = open_file (t->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);

  bigfile_sqlite_file_set_durable (b, FALSE);
  for (guint64 v = 2; !g_atomic_int_get (&t->stop); v++)
    {
      begin (b);
      for (guint64 blk = 0; blk < THREAD_BLOCKS; blk++)
        store (b, blk, v);
      commit (b);
      g_atomic_pointer_set (&t->max_version, v);
      g_atomic_int_inc (&t->n_commits);
      g_usleep (2000);
    }
  g_object_unref (b);
  return NULL;
}

static void
test_threads (Fixture *f, gconstpointer data)
{
  Threads t = { .db = f->db, .max_version = 1 };
  GThread *loaders[THREAD_LOADERS], *writer;
  gint64 end = g_get_monotonic_time () + G_USEC_PER_SEC;
  guint n_refreshes = 0, n_own = 0;

  g_test_summary ("Loads on several threads at once each read one snapshot while another "
                  "client commits and this one refreshes and commits to other blocks");

  t.a = create_file (f, "a");
  bigfile_sqlite_file_set_durable (t.a, FALSE);
  begin (t.a);
  for (guint64 blk = 0; blk < THREAD_BLOCKS; blk++)
    store (t.a, blk, 1);
  commit (t.a);
  g_rw_lock_init (&t.snapshot);

  for (guint i = 0; i < THREAD_LOADERS; i++)
    loaders[i] = g_thread_new ("loader", loader_thread, &t);
  writer = g_thread_new ("writer", writer_thread, &t);
  /* A second, and long enough for a few commits (valgrind is slow). */
  while (g_get_monotonic_time () < end
         || (g_atomic_int_get (&t.n_commits) < 2
             && g_get_monotonic_time () < end + 30 * G_USEC_PER_SEC))
    {
      g_atomic_int_set (&t.writer_waits, TRUE);
      g_rw_lock_writer_lock (&t.snapshot);
      g_atomic_int_set (&t.writer_waits, FALSE);
      if (n_refreshes % 3 == 2)
        {
          /* Our own commit, to blocks the loaders do not look at. */
          begin (t.a);
          g_array_unref (refresh (t.a));
          store (t.a, 100 + n_own++ % 4, 1);
          commit (t.a);
        }
      else
        g_array_unref (refresh (t.a));
      g_rw_lock_writer_unlock (&t.snapshot);
      n_refreshes++;
      g_usleep (3000);
    }
  g_atomic_int_set (&t.stop, TRUE);
  for (guint i = 0; i < THREAD_LOADERS; i++)
    g_thread_join (loaders[i]);
  g_thread_join (writer);
  g_test_message ("%d passes, %d commits, %u refreshes", t.n_passes, t.n_commits, n_refreshes);
  /* Few under valgrind, but some of each. */
  g_assert_cmpint (t.n_passes, >=, 3);
  g_assert_cmpint (t.n_commits, >=, 2);

  g_rw_lock_clear (&t.snapshot);
  g_object_unref (t.a);
}

/* -- fault injection --------------------------------------------------------------- */

typedef struct
{
  const char *name;
  /* Runs the operation on the file of version 1 (blocks 0-3, size 4
   * blocks) of @db; TRUE on success. */
  gboolean (*run) (const char *db, BigfileSqliteFile *file, BigfileSqliteFile *other,
                   GError **error);
  /* The version the storage has after the operation: 1 (none) or 2. */
  guint64 version_after;
} FaultOp;

static gboolean
op_open (const char *db, BigfileSqliteFile *file, BigfileSqliteFile *other, GError **error)
{
  BigfileSqliteFile *f2
      = bigfile_sqlite_file_new (db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE, error);

  if (f2 == NULL)
    return FALSE;
  g_object_unref (f2);
  return TRUE;
}

static gboolean
op_create (const char *db, BigfileSqliteFile *file, BigfileSqliteFile *other, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (db);
  g_autofree char *db2 = g_build_filename (dir, "new.db", NULL);
  BigfileSqliteFile *f2
      = bigfile_sqlite_file_new (db2, "n", BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE, error);

  if (f2 == NULL)
    return FALSE;
  g_object_unref (f2);
  return TRUE;
}

static gboolean
op_writeout (const char *db, BigfileSqliteFile *file, BigfileSqliteFile *other, GError **error)
{
  BigfileFile *bf = BIGFILE_FILE (file);
  guint8 buf[BS];
  GArray *changes;

  /* As a handle's writeout does. */
  if (!bigfile_file_begin_transaction (bf, error))
    return FALSE;
  changes = bigfile_file_refresh (bf, error);
  if (changes == NULL)
    goto fail;
  g_array_unref (changes);
  if (!bigfile_file_set_size (bf, 6 * BS, error))
    goto fail;
  for (guint64 b = 0; b < 6; b++)
    {
      fill (buf, BS, 2, b);
      if (!bigfile_file_store_block_raw (bf, b, buf, BS, error))
        goto fail;
    }
  return bigfile_file_commit_transaction (bf, BIGFILE_COMMIT_FLAGS_NONE, error);

fail:
  bigfile_file_abort_transaction (bf);
  return FALSE;
}

static gboolean
op_writeout_durable (const char *db, BigfileSqliteFile *file, BigfileSqliteFile *other,
                     GError **error)
{
  BigfileFile *bf = BIGFILE_FILE (file);
  guint8 buf[BS];

  bigfile_sqlite_file_set_durable (file, FALSE);
  if (!bigfile_file_begin_transaction (bf, error))
    return FALSE;
  for (guint64 b = 0; b < 6; b++)
    {
      fill (buf, BS, 2, b);
      if (!bigfile_file_store_block_raw (bf, b, buf, BS, error))
        {
          bigfile_file_abort_transaction (bf);
          return FALSE;
        }
    }
  return bigfile_file_commit_transaction (bf, BIGFILE_COMMIT_FLAGS_DURABLE, error);
}

static gboolean
op_store (const char *db, BigfileSqliteFile *file, BigfileSqliteFile *other, GError **error)
{
  guint8 buf[BS];
  gboolean ok = TRUE;

  /* Outside a transaction: each store commits on its own, so the storage
   * is checked after the last. */
  for (guint64 b = 0; b < 6 && ok; b++)
    {
      fill (buf, BS, 2, b);
      ok = bigfile_file_store_block_raw (BIGFILE_FILE (file), b, buf, BS, error);
    }
  return ok;
}

static gboolean
op_refresh (const char *db, BigfileSqliteFile *file, BigfileSqliteFile *other, GError **error)
{
  GArray *changes = bigfile_file_refresh (BIGFILE_FILE (file), error);

  if (changes == NULL)
    return FALSE;
  /* other stored block 0 before the test. */
  g_assert_cmpuint (changes->len, ==, 1);
  g_assert_cmpuint (g_array_index (changes, guint64, 0), ==, 0);
  g_array_unref (changes);
  return TRUE;
}

static gboolean
op_load (const char *db, BigfileSqliteFile *file, BigfileSqliteFile *other, GError **error)
{
  guint8 buf[BS], want[BS];

  memset (buf, 0, sizeof buf);
  if (!bigfile_file_load_block_raw (BIGFILE_FILE (file), 2, buf, BS, error))
    return FALSE;
  fill (want, BS, 1, 2);
  g_assert_cmpmem (buf, BS, want, BS);
  return TRUE;
}

static gboolean
op_list (const char *db, BigfileSqliteFile *file, BigfileSqliteFile *other, GError **error)
{
  char **names = bigfile_sqlite_file_list (db, error);

  if (names == NULL)
    return FALSE;
  g_assert_cmpuint (g_strv_length (names), ==, 1);
  g_strfreev (names);
  return TRUE;
}

static const FaultOp fault_ops[] = {
  { "open", op_open, 1 },         { "create", op_create, 1 },
  { "writeout", op_writeout, 2 }, { "writeout-durable", op_writeout_durable, 2 },
  { "store", op_store, 2 },       { "refresh", op_refresh, 1 },
  { "load", op_load, 1 },         { "list", op_list, 1 },
};

static const int fault_codes[] = {
  SQLITE_IOERR_WRITE, SQLITE_FULL, SQLITE_BUSY, SQLITE_NOMEM, SQLITE_CORRUPT, SQLITE_IOERR_FSYNC,
};

/* The version the storage of @db holds, checked whole: every block and
 * the size. */
static guint64
stored_version (const char *db)
{
  BigfileSqliteFile *file = open_file (db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  guint64 size = get_size (file);
  gint64 v = load_version (file, 1, 2);

  g_assert_cmpint (v, >=, 1);
  for (guint64 b = 0; b < 8; b++)
    g_assert_cmpint (load_version (file, b, 2), ==, b < size / BS ? v : 0);
  g_assert_cmpuint (size, ==, v == 1 ? 4 * BS : 6 * BS);
  g_object_unref (file);
  return (guint64)v;
}

static void
test_fault_injection (Fixture *f, gconstpointer data)
{
  const FaultOp *op = data;
  guint n;

  g_test_summary ("Each call into SQLite that the operation makes, made to fail in turn, gives "
                  "a clear error and loses nothing; the storage is unchanged and a retry works");

  for (n = 1;; n++)
    {
      int code = fault_codes[n % G_N_ELEMENTS (fault_codes)];
      BigfileSqliteFile *file, *other;
      GError *error = NULL;
      gboolean ok, fired;

      g_assert_cmpuint (n, <, 500);
      file = create_file (f, "a");
      begin (file);
      for (guint64 b = 0; b < 4; b++)
        store (file, b, 1);
      commit (file);
      other = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
      if (op->run == op_refresh)
        store (other, 0, 1); /* a change, of the same data */

      _bigfile_sqlite_file_fail_after (n, code);
      ok = op->run (f->db, file, other, &error);
      fired = _bigfile_sqlite_file_fault_fired ();
      _bigfile_sqlite_file_fail_after (0, 0);

      if (!ok)
        {
          g_assert_true (fired);
          g_assert_nonnull (error);
          /* It says where. */
          g_assert_true (strstr (error->message, "test.db") != NULL
                         || strstr (error->message, "new.db") != NULL);
          if (n < 4 || n % 7 == 0)
            g_test_message ("call %u: %s", n, error->message);
          g_clear_error (&error);
          /* Nothing of it is stored, except a durable commit that failed
           * only to flush (it shows, and storing again is harmless). */
          if (op->run != op_writeout_durable && op->run != op_store)
            g_assert_cmpuint (stored_version (f->db), ==, 1);
          /* The file still works, and so does the operation. */
          g_assert_cmpint (load_version (file, 3, 2), >=, 1);
          ok = op->run (f->db, file, other, &error);
          g_assert_no_error (error);
          g_assert_true (ok);
        }
      else
        g_assert_no_error (error);
      g_assert_cmpuint (stored_version (f->db), ==, op->version_after);
      if (op->version_after == 2)
        g_assert_cmpint (load_version (file, 5, 2), ==, 2);

      g_object_unref (other);
      g_object_unref (file);
      g_assert_true (bigfile_sqlite_file_delete (f->db, "a", NULL));
      if (op->run == op_create)
        {
          g_autofree char *db2 = g_build_filename (f->dir, "new.db", NULL);
          g_autofree char *wal2 = g_strconcat (db2, "-wal", NULL);
          g_autofree char *shm2 = g_strconcat (db2, "-shm", NULL);

          g_unlink (db2);
          g_unlink (wal2);
          g_unlink (shm2);
        }
      if (!fired)
        break;
    }
  g_test_message ("%s: %u calls, each made to fail", op->name, n - 1);
  g_assert_cmpuint (n, >, 2);
}

/* -- through handles ------------------------------------------------------------------ */

#define H_PAGES 8

typedef struct
{
  BigfileSqliteFile *file;
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma;
  guint8 *data;
  GArray *invalidated; /* guint64 pages, from page-invalidated */
} Client;

static void
on_page_invalidated (BigfileHandle *handle, guint64 page, gpointer data)
{
  Client *c = data;

  g_array_append_val (c->invalidated, page);
}

static void
client_open (Client *c, const char *db)
{
  GError *error = NULL;

  c->file = open_file (db, "a", BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE);
  c->ram = bigfile_ram_new (64 * BS);
  c->handle = bigfile_handle_new (BIGFILE_FILE (c->file), c->ram, &error);
  g_assert_no_error (error);
  c->vma = bigfile_handle_map (c->handle, 0, H_PAGES, &error);
  g_assert_no_error (error);
  c->data = bigfile_vma_get_data (c->vma);
  c->invalidated = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_signal_connect (c->handle, "page-invalidated", G_CALLBACK (on_page_invalidated), c);
}

static void
client_close (Client *c)
{
  assert_engine_invariants (c->handle, TRUE);
  bigfile_vma_unmap (c->vma);
  g_clear_object (&c->vma);
  g_assert_true (bigfile_handle_close (c->handle));
  g_clear_object (&c->handle);
  g_clear_object (&c->ram);
  g_clear_object (&c->file);
  g_array_unref (c->invalidated);
}

static gboolean
client_invalidated (Client *c, guint64 page)
{
  for (guint i = 0; i < c->invalidated->len; i++)
    if (g_array_index (c->invalidated, guint64, i) == page)
      return TRUE;
  return FALSE;
}

static void
writeout (Client *c, BigfileWriteoutFlags flags)
{
  GError *error = NULL;

  g_assert_true (bigfile_handle_writeout (c->handle, flags, &error));
  g_assert_no_error (error);
}

static void
test_handle_invalidation (Fixture *f, gconstpointer data)
{
  Client a = { 0 }, b = { 0 };
  gint64 end;

  g_test_summary ("A handle's writeout arrives in another handle of the bigfile as "
                  "page-invalidated on the main loop, and it reads the new data; a handle is "
                  "not told of its own writeouts");

  client_open (&a, f->db);
  /* A size that covers the pages, so that no page changes by the size. */
  g_assert_true (bigfile_handle_set_size (a.handle, H_PAGES * BS, NULL));
  writeout (&a, BIGFILE_WRITEOUT_DEFAULT);
  client_open (&b, f->db);
  for (guint p = 0; p < H_PAGES; p++)
    g_assert_cmpuint (raw_read (b.data + p * BS), ==, 0);

  raw_write (a.data + 2 * BS, 0x22);
  raw_write (a.data + 5 * BS + 9, 0x55);
  writeout (&a, BIGFILE_WRITEOUT_DEFAULT);
  end = g_get_monotonic_time () + 2 * G_USEC_PER_SEC;
  while (!(client_invalidated (&b, 2) && client_invalidated (&b, 5))
         && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, FALSE), g_usleep (500);
  g_assert_true (client_invalidated (&b, 2));
  g_assert_true (client_invalidated (&b, 5));
  g_assert_false (client_invalidated (&b, 3));
  g_assert_cmpuint (raw_read (b.data + 2 * BS), ==, 0x22);
  g_assert_cmpuint (raw_read (b.data + 5 * BS + 9), ==, 0x55);
  spin_main_context (100);
  g_assert_cmpuint (a.invalidated->len, ==, 0);

  client_close (&b);
  client_close (&a);
}

static void
test_handle_conflict (Fixture *f, gconstpointer data)
{
  Client a = { 0 }, b = { 0 };
  GError *error = NULL;

  g_test_summary ("Two handles change one page: the second writeout fails with CONFLICT and "
                  "stores nothing; with OVERWRITE it replaces the first's data");

  client_open (&a, f->db);
  client_open (&b, f->db);
  bigfile_handle_set_auto_refresh (b.handle, FALSE);
  raw_write (a.data + 1 * BS, 0xaa);
  raw_write (b.data + 1 * BS, 0xbb);
  raw_write (b.data + 4 * BS, 0xb4);
  writeout (&a, BIGFILE_WRITEOUT_DEFAULT);

  g_assert_false (bigfile_handle_writeout (b.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT);
  g_clear_error (&error);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (b.handle), ==, 2);
  g_assert_cmpint (load_version (a.file, 4, 1), ==, 0);
  g_assert_cmpint (sql_int (f->db, "SELECT version FROM bigfile_files"), ==, 1);

  writeout (&b, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_OVERWRITE);
  g_assert_true (bigfile_handle_refresh (a.handle, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (raw_read (a.data + 1 * BS), ==, 0xbb);
  g_assert_cmpuint (raw_read (a.data + 4 * BS), ==, 0xb4);

  client_close (&b);
  client_close (&a);
}

static void
test_handle_size (Fixture *f, gconstpointer data)
{
  Client a = { 0 }, b = { 0 };
  GError *error = NULL;

  g_test_summary ("A handle's size is stored at writeout and followed by another handle");

  client_open (&a, f->db);
  client_open (&b, f->db);
  g_assert_true (bigfile_handle_set_size (a.handle, 3 * BS + 5, &error));
  raw_write (a.data + 3 * BS + 4, 0x34);
  writeout (&a, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_cmpint (sql_int (f->db, "SELECT size FROM bigfile_files"), ==, 3 * BS + 5);
  g_assert_true (bigfile_handle_refresh (b.handle, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (bigfile_handle_get_size (b.handle), ==, 3 * BS + 5);
  g_assert_cmpuint (raw_read (b.data + 3 * BS + 4), ==, 0x34);
  client_close (&b);
  client_close (&a);
}

static void
test_handle_fault_injection (Fixture *f, gconstpointer data)
{
  guint n;

  g_test_summary ("A handle's writeout whose SQLite calls fail, each in turn, fails with the "
                  "error, keeps every page dirty and stores nothing; the retry stores them all");

  for (n = 1;; n++)
    {
      Client a = { 0 };
      GError *error = NULL;
      gboolean ok, fired;

      g_assert_cmpuint (n, <, 500);
      client_open (&a, f->db);
      for (guint p = 0; p < 4; p++)
        raw_write (a.data + p * BS, (guint8)(0x10 + p));
      writeout (&a, BIGFILE_WRITEOUT_DEFAULT);
      for (guint p = 0; p < 6; p++)
        raw_write (a.data + p * BS, (guint8)(0x20 + p));
      g_assert_true (bigfile_handle_set_size (a.handle, 6 * BS - 1, &error));

      _bigfile_sqlite_file_fail_after (n, fault_codes[n % G_N_ELEMENTS (fault_codes)]);
      ok = bigfile_handle_writeout (a.handle, BIGFILE_WRITEOUT_DEFAULT, &error);
      fired = _bigfile_sqlite_file_fault_fired ();
      _bigfile_sqlite_file_fail_after (0, 0);
      if (!ok)
        {
          BigfileSqliteFile *check = open_file (f->db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
          guint8 buf[BS];

          g_assert_true (fired);
          g_assert_nonnull (error);
          g_test_message ("call %u: %s", n, error->message);
          g_clear_error (&error);
          g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a.handle), ==, 6);
          /* The first writeout made the file end after its last byte. */
          g_assert_cmpuint (get_size (check), ==, 3 * BS + 1);
          g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_blocks"), ==, 4);
          memset (buf, 0, sizeof buf);
          g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (check), 3, buf, BS, NULL));
          g_assert_cmpuint (buf[0], ==, 0x13);
          g_object_unref (check);
          writeout (&a, BIGFILE_WRITEOUT_DEFAULT);
        }
      else
        g_assert_no_error (error);
      g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a.handle), ==, 0);
      g_assert_cmpint (sql_int (f->db, "SELECT size FROM bigfile_files"), ==, 6 * BS - 1);
      g_assert_cmpint (sql_int (f->db, "SELECT count(*) FROM bigfile_blocks"), ==, 6);
      client_close (&a);
      g_assert_true (bigfile_sqlite_file_delete (f->db, "a", NULL));
      if (!fired)
        break;
    }
  g_test_message ("a writeout: %u calls, each made to fail", n - 1);
}

/* -- a full disk: RLIMIT_FSIZE ----------------------------------------------------- */

/* A directory the test's subprocess finds from its parent's pid. */
static char *
disk_full_db (GPid parent)
{
  g_autofree char *name = g_strdup_printf ("bigfile-test-sqlite-disk-full-%d", (int)parent);
  g_autofree char *dir = g_build_filename (g_get_tmp_dir (), name, NULL);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  return g_build_filename (dir, "test.db", NULL);
}

static void
test_disk_full (Fixture *f, gconstpointer data)
{
  g_autofree char *db = NULL;
  g_autofree char *dir = NULL;
  BigfileSqliteFile *file;
  GError *error = NULL;

  g_test_summary ("A writeout that the disk cannot hold (RLIMIT_FSIZE) fails with a G_IO_ERROR "
                  "and leaves the storage as it was; it works once there is room");

  /* The parent's database (a subprocess has a fixture of its own). */
  db = disk_full_db (g_test_subprocess () ? getppid () : getpid ());
  if (g_test_subprocess ())
    {
      g_autofree char *wal = g_strconcat (db, "-wal", NULL);
      GStatBuf st_db, st_wal;
      struct rlimit rl;
      guint8 buf[BS];
      gboolean ok = TRUE;

      signal (SIGXFSZ, SIG_IGN);
      file = open_file (db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
      g_assert_cmpint (g_stat (db, &st_db), ==, 0);
      g_assert_cmpint (g_stat (wal, &st_wal), ==, 0);
      rl.rlim_cur = rl.rlim_max = (rlim_t)MAX (st_db.st_size, st_wal.st_size) + 64 * 1024;
      g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &rl), ==, 0);

      begin (file);
      for (guint64 b = 0; b < 1024 && ok; b++)
        {
          fill (buf, BS, 2, b);
          ok = bigfile_file_store_block_raw (BIGFILE_FILE (file), b, buf, BS, &error);
        }
      if (ok)
        ok = bigfile_file_commit_transaction (BIGFILE_FILE (file), BIGFILE_COMMIT_FLAGS_NONE,
                                              &error);
      else
        bigfile_file_abort_transaction (BIGFILE_FILE (file));
      g_assert_false (ok);
      g_assert_nonnull (error);
      g_printerr ("%s\n", error->message);
      g_assert_true (error->domain == G_IO_ERROR);
      g_clear_error (&error);
      /* The snapshot is intact. */
      g_assert_cmpint (load_version (file, 1, 2), ==, 1);
      g_object_unref (file);
      return;
    }

  file = open_file (db, "a", BS, BIGFILE_SQLITE_FILE_FLAGS_CREATE);
  begin (file);
  for (guint64 b = 0; b < 4; b++)
    store (file, b, 1);
  commit (file);
  g_object_unref (file);

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*failed*");

  file = open_file (db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  g_assert_cmpuint (get_size (file), ==, 4 * BS);
  for (guint64 b = 0; b < 8; b++)
    g_assert_cmpint (load_version (file, b, 2), ==, b < 4 ? 1 : 0);
  begin (file);
  for (guint64 b = 0; b < 1024; b++)
    store (file, b, 2);
  commit (file);
  g_assert_cmpint (load_version (file, 1000, 2), ==, 2);
  g_object_unref (file);
  dir = g_path_get_dirname (db);
  temp_dir_remove (dir);
}

/* -- other processes --------------------------------------------------------------- */

static GSubprocess *
spawn_child (GSubprocessFlags flags, const char *mode, const char *db, const char *arg)
{
  GError *error = NULL;
  GSubprocess *child
      = g_subprocess_new (flags, &error, test_program_path, "--child", mode, db, arg, NULL);

  g_assert_no_error (error);
  return child;
}

static void
wait_child (GSubprocess *child)
{
  GError *error = NULL;

  g_assert_true (g_subprocess_wait (child, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (child));
  g_assert_cmpint (g_subprocess_get_exit_status (child), ==, 0);
}

/* Adds 1 to the counter in block 0, @n times, as a handle's writeout would
 * (begin, refresh, then read the block from the new snapshot and store). */
static void
increment_counter (BigfileSqliteFile *file, guint n)
{
  for (guint i = 0; i < n; i++)
    {
      GError *error = NULL;
      guint8 buf[BS];
      guint64 counter;

      while (!bigfile_file_begin_transaction (BIGFILE_FILE (file), &error))
        {
          g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY);
          g_clear_error (&error);
        }
      g_array_unref (refresh (file));
      memset (buf, 0, sizeof buf);
      g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), 0, buf, BS, &error));
      memcpy (&counter, buf, sizeof counter);
      counter++;
      memcpy (buf, &counter, sizeof counter);
      /* A writeout takes a while: let the others' transactions run into
       * this one. */
      g_usleep (300);
      g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), 0, buf, BS, &error));
      commit (file);
    }
}

static void
test_processes_no_lost_update (Fixture *f, gconstpointer data)
{
  BigfileSqliteFile *file = create_file (f, "a");
  GSubprocess *children[3];
  guint8 buf[BS];
  guint64 counter;
  GError *error = NULL;

  g_test_summary ("Three processes add to one counter at once, each reading it in its "
                  "transaction: every increment is there at the end (no lost update)");

  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    children[i] = spawn_child (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE,
                               "increment", f->db, "40");
  /* Each says when it is open; then all start at once. */
  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    {
      char c;

      g_assert_cmpint (
          g_input_stream_read (g_subprocess_get_stdout_pipe (children[i]), &c, 1, NULL, NULL), ==,
          1);
    }
  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    g_assert_true (g_output_stream_write_all (g_subprocess_get_stdin_pipe (children[i]), "g", 1,
                                              NULL, NULL, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (children); i++)
    {
      wait_child (children[i]);
      g_object_unref (children[i]);
    }
  g_array_unref (refresh (file));
  memset (buf, 0, sizeof buf);
  g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), 0, buf, BS, &error));
  memcpy (&counter, buf, sizeof counter);
  g_assert_cmpuint (counter, ==, 120);
  g_assert_cmpint (sql_int (f->db, "SELECT version FROM bigfile_files"), ==, 120);
  g_object_unref (file);
}

static void
child_exited (GObject *source, GAsyncResult *result, gpointer data)
{
  g_subprocess_wait_finish (G_SUBPROCESS (source), result, NULL);
  g_atomic_int_set ((gint *)data, TRUE);
}

typedef struct
{
  BigfileSqliteFile *file;
  GArray *seen; /* blocks reported by refreshes on ::changed */
  guint n_changed;
} Follower;

static void
follow_changed (BigfileFile *file, gpointer data)
{
  Follower *fo = data;
  GArray *changes = refresh (fo->file);

  fo->n_changed++;
  g_array_append_vals (fo->seen, changes->data, changes->len);
  g_array_unref (changes);
}

static void
test_processes_invalidation (Fixture *f, gconstpointer data)
{
  Follower fo = { 0 };
  GSubprocess *child;
  GError *error = NULL;
  GArray *changes;
  gboolean seen[8] = { FALSE };
  gint exited = FALSE;

  g_test_summary ("A process's commits arrive in another as ::changed on its main loop, and "
                  "its refreshes report every block changed; a transaction's refresh reports "
                  "a conflicting change");

  fo.file = create_file (f, "a");
  fo.seen = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_signal_connect (fo.file, "changed", G_CALLBACK (follow_changed), &fo);

  /* The child commits blocks 0-7, one commit each, 20 ms apart. */
  child = spawn_child (G_SUBPROCESS_FLAGS_NONE, "writer", f->db, "8");
  g_subprocess_wait_async (child, NULL, child_exited, &exited);
  g_assert_true (wait_for_flag (&exited, 10000));
  wait_child (child);
  g_object_unref (child);
  spin_main_context (100);

  for (guint i = 0; i < fo.seen->len; i++)
    {
      guint64 b = g_array_index (fo.seen, guint64, i);

      g_assert_cmpuint (b, <, 8);
      seen[b] = TRUE;
    }
  g_test_message ("%u ::changed for 8 commits", fo.n_changed);
  g_assert_cmpuint (fo.n_changed, >=, 1);
  for (guint b = 0; b < 8; b++)
    {
      g_assert_true (seen[b]);
      g_assert_cmpint (load_version (fo.file, b, 8), ==, (gint64)b + 1);
    }

  /* A conflict: the child changes block 3 while we hold a snapshot. */
  g_signal_handlers_disconnect_by_func (fo.file, follow_changed, &fo);
  child = spawn_child (G_SUBPROCESS_FLAGS_NONE, "writer", f->db, "-3");
  wait_child (child);
  g_object_unref (child);
  begin (fo.file);
  changes = bigfile_file_refresh (BIGFILE_FILE (fo.file), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (changes->len, ==, 1);
  g_assert_cmpuint (g_array_index (changes, guint64, 0), ==, 3);
  g_array_unref (changes);
  bigfile_file_abort_transaction (BIGFILE_FILE (fo.file));

  g_array_unref (fo.seen);
  g_object_unref (fo.file);
}

/* -- crashes: kill -9 in the middle of writeouts ------------------------------------- */

#define CRASH_BLOCKS 16

/* The size of version @v of the crash test's file: between 8 and 16
 * blocks, and not a whole number of them. */
static guint64
crash_size (guint64 v)
{
  return BS * (8 + v % 8) + 1 + v % 1000;
}

/* Block @b of version @v: the version in its first 8 bytes, then the
 * pattern; cut at the size. */
static void
crash_block (guint8 *buf, guint64 v, guint64 b)
{
  guint64 size = crash_size (v), le = GUINT64_TO_LE (v);

  memset (buf, 0, BS);
  if (b * BS >= size)
    return;
  fill (buf, BS, v, b);
  memcpy (buf, &le, sizeof le);
  if (size - b * BS < BS)
    memset (buf + (size - b * BS), 0, BS - (size - b * BS));
}

/* The version the storage holds, after checking that all of it is that
 * version. */
static guint64
crash_check (const char *db)
{
  BigfileSqliteFile *file = open_file (db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  guint8 buf[BS], want[BS];
  GError *error = NULL;
  guint64 v, size = get_size (file);

  memset (buf, 0, sizeof buf);
  g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), 0, buf, BS, &error));
  memcpy (&v, buf, sizeof v);
  v = GUINT64_FROM_LE (v);
  g_assert_cmpuint (size, ==, crash_size (v));
  for (guint64 b = 0; b < CRASH_BLOCKS + 2; b++)
    {
      memset (buf, 0, sizeof buf);
      g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), b, buf, BS, &error));
      crash_block (want, v, b);
      if (memcmp (buf, want, BS) != 0)
        g_error ("block %" G_GUINT64_FORMAT " is not of version %" G_GUINT64_FORMAT, b, v);
    }
  g_object_unref (file);
  return v;
}

static void
test_crash (Fixture *f, gconstpointer data)
{
  guint n_tries = g_test_slow () ? 100 : 30;
  guint64 v = 1, n_between = 0;
  BigfileSqliteFile *file = create_file (f, "a");
  guint8 buf[BS];

  g_test_summary ("A writer killed with SIGKILL at random moments of its writeouts leaves "
                  "exactly the old or the new version: every block and the size");

  /* Version 1. */
  begin (file);
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), crash_size (1), NULL));
  for (guint64 b = 0; b < CRASH_BLOCKS; b++)
    {
      crash_block (buf, 1, b);
      g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), b, buf, BS, NULL));
    }
  commit (file);
  g_object_unref (file);

  for (guint i = 0; i < n_tries; i++)
    {
      g_autofree char *start = g_strdup_printf ("%" G_GUINT64_FORMAT, v + 1);
      static const char *const modes[] = { "crash", "crash-durable", "crash-handle" };
      GSubprocess *child = spawn_child (G_SUBPROCESS_FLAGS_STDOUT_PIPE, modes[i % 3], f->db, start);
      GInputStream *out = g_subprocess_get_stdout_pipe (child);
      char ready;
      guint64 now;

      /* The child says when it is open, then writes out versions one after
       * another until it is killed. */
      g_assert_cmpint (g_input_stream_read (out, &ready, 1, NULL, NULL), ==, 1);
      g_usleep (g_random_int_range (0, 40000));
      g_subprocess_force_exit (child);
      g_subprocess_wait (child, NULL, NULL);
      g_assert_true (g_subprocess_get_if_signaled (child));
      g_object_unref (child);

      now = crash_check (f->db);
      g_assert_cmpuint (now, >=, v);
      n_between += now - v;
      v = now;
    }
  g_test_message ("%u kills, %" G_GUINT64_FORMAT " versions committed in between", n_tries,
                  n_between);
  g_assert_cmpuint (n_between, >, 0);
}

/* -- child processes (this program run with --child MODE DB ARG) ---------------- */

static int
child_main (int argc, char **argv)
{
  const char *mode = argv[2], *db = argv[3];
  gint64 arg = g_ascii_strtoll (argv[4], NULL, 10);
  BigfileSqliteFile *file = open_file (db, "a", 0, BIGFILE_SQLITE_FILE_FLAGS_NONE);
  guint8 buf[BS];

  if (g_str_equal (mode, "increment"))
    {
      char go;

      bigfile_sqlite_file_set_durable (file, FALSE);
      write (1, "r", 1);
      g_assert_cmpint (read (0, &go, 1), ==, 1);
      increment_counter (file, (guint)arg);
    }
  else if (g_str_equal (mode, "writer"))
    {
      /* arg > 0: versions 1..arg of blocks 0..arg-1, one commit each; arg
       * < 0: one change of block -arg. */
      for (gint64 b = arg > 0 ? 0 : -arg; b < (arg > 0 ? arg : -arg + 1); b++)
        {
          g_usleep (20000);
          store (file, (guint64)b, (guint64)b + 1);
        }
    }
  else if (g_str_equal (mode, "crash") || g_str_equal (mode, "crash-durable"))
    {
      bigfile_sqlite_file_set_durable (file, g_str_equal (mode, "crash-durable"));
      write (1, "r", 1);
      for (guint64 v = (guint64)arg;; v++)
        {
          begin (file);
          g_array_unref (refresh (file));
          g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), crash_size (v), NULL));
          for (guint64 b = 0; b < CRASH_BLOCKS; b++)
            {
              crash_block (buf, v, b);
              if (b * BS < crash_size (v))
                g_assert_true (bigfile_file_store_block_raw (
                    BIGFILE_FILE (file), b, buf, MIN (BS, crash_size (v) - b * BS), NULL));
            }
          commit (file);
        }
    }
  else if (g_str_equal (mode, "crash-handle"))
    {
      /* The same through a handle's writeouts. */
      BigfileRam *ram = bigfile_ram_new (4 * CRASH_BLOCKS * BS);
      BigfileHandle *handle = bigfile_handle_new (BIGFILE_FILE (file), ram, NULL);
      BigfileVma *vma = bigfile_handle_map (handle, 0, CRASH_BLOCKS, NULL);
      guint8 *data = bigfile_vma_get_data (vma);

      write (1, "r", 1);
      for (guint64 v = (guint64)arg;; v++)
        {
          GError *error = NULL;

          g_assert_true (bigfile_handle_set_size (handle, crash_size (v), &error));
          for (guint64 b = 0; b * BS < crash_size (v); b++)
            {
              crash_block (buf, v, b);
              memcpy (data + b * BS, buf, MIN (BS, crash_size (v) - b * BS));
            }
          g_assert_true (bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error));
          g_assert_no_error (error);
        }
    }
  else
    g_error ("unknown child mode %s", mode);
  g_object_unref (file);
  return 0;
}

int
main (int argc, char **argv)
{
  /* argv[0], not /proc/self/exe: under valgrind that is valgrind's. */
  test_program_path = g_canonicalize_filename (argv[0], NULL);
  if (argc == 5 && g_str_equal (argv[1], "--child"))
    return child_main (argc, argv);

  g_test_init (&argc, &argv, NULL);

#define ADD(path, func, data)                                                                      \
  g_test_add ("/sqlite/" path, Fixture, data, fixture_setup, func, fixture_teardown)
  ADD ("open/create", test_open_create, NULL);
  ADD ("open/bad-arguments", test_open_bad_arguments, NULL);
  ADD ("open/not-a-database", test_open_not_a_database, NULL);
  ADD ("open/other-database", test_open_other_database, NULL);
  ADD ("open/corrupt", test_open_corrupt, NULL);
  ADD ("open/read-only", test_read_only, NULL);
  ADD ("load-store", test_load_store, NULL);
  ADD ("zero-blocks", test_zero_blocks, NULL);
  ADD ("size", test_size, NULL);
  ADD ("block-limits", test_block_limits, NULL);
  ADD ("transaction", test_transaction, NULL);
  ADD ("refresh", test_refresh, NULL);
  ADD ("refresh-after-commit", test_refresh_after_commit, NULL);
  ADD ("log/pruned", test_log_pruned, NULL);
  ADD ("log/runs", test_log_runs, NULL);
  ADD ("busy", test_busy, NULL);
  ADD ("list-delete", test_list_delete, NULL);
  ADD ("durable", test_durable, NULL);
  ADD ("changed/inotify", test_changed_signal, GINT_TO_POINTER (FALSE));
  ADD ("changed/polling", test_changed_signal, GINT_TO_POINTER (TRUE));
  ADD ("wal-bounded", test_wal_bounded, NULL);
  ADD ("threads", test_threads, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (fault_ops); i++)
    {
      g_autofree char *path = g_strdup_printf ("/sqlite/fault/%s", fault_ops[i].name);

      g_test_add (path, Fixture, &fault_ops[i], fixture_setup, test_fault_injection,
                  fixture_teardown);
    }
  ADD ("handle/invalidation", test_handle_invalidation, NULL);
  ADD ("handle/conflict", test_handle_conflict, NULL);
  ADD ("handle/size", test_handle_size, NULL);
  ADD ("handle/fault-injection", test_handle_fault_injection, NULL);
  ADD ("disk-full", test_disk_full, NULL);
  ADD ("processes/no-lost-update", test_processes_no_lost_update, NULL);
  ADD ("processes/invalidation", test_processes_invalidation, NULL);
  ADD ("crash", test_crash, NULL);
#undef ADD

  return g_test_run ();
}
