/* bigfile-glib tests - BigfileLocalFile's transactions: durable commits,
 * atomic saves through the journal, recovery, locks, failures and crashes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Journals for the recovery tests are written here by hand, from the format
 * as documented (bigfile-local-journal.c), not with the library's writer.
 * The crash tests run tests/local-atomic-helper.c, killed with SIGKILL at
 * random moments and at each step of a commit, and check that the file
 * holds exactly one version afterwards (local-atomic-common.h).
 *
 * BIGFILE_TEST_CRASH_TRIES sets the number of random kills of each crash
 * test (100 by default, 30 under AddressSanitizer, 10 under valgrind).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "bigfile-local-journal.h"
#include "local-atomic-common.h"
#include "test-util.h"

#define PS ((gsize)4096)

/* -- helpers ------------------------------------------------------------------- */

static BigfileLocalFile *
open_file (const char *path, gsize bs, BigfileLocalFileFlags flags)
{
  GError *error = NULL;
  BigfileLocalFile *file = bigfile_local_file_new (path, bs, flags, &error);

  g_assert_no_error (error);
  g_assert_nonnull (file);
  return file;
}

/* Opens @path, asserting that the open recovered its journal as @recovery. */
static BigfileLocalFile *
open_recovering (const char *path, gsize bs, BigfileLocalFileFlags flags,
                 BigfileLocalFileRecovery recovery)
{
  BigfileLocalFile *file = open_file (path, bs, flags);

  g_assert_cmpint (bigfile_local_file_get_recovery (file), ==, recovery);
  return file;
}

static void
write_version (const char *path, guint64 v, guint64 n_blocks, gsize bs)
{
  gsize len;
  g_autofree guint8 *data = version_contents (v, n_blocks, bs, &len);

  write_file (path, data, len);
}

/* Asserts that the file at @path is version @v. */
static void
assert_version (const char *path, guint64 v, guint64 n_blocks, gsize bs)
{
  gsize len;
  g_autofree guint8 *data = read_file (path, &len);
  g_autofree char *why = NULL;
  guint64 got = G_MAXUINT64;

  if (!version_check (data, len, n_blocks, bs, &got, &why))
    g_error ("%s is no version: %s", path, why);
  g_assert_cmpuint (got, ==, v);
}

/* Asserts that loading every block of @file gives version @v. */
static void
assert_loads_version (BigfileLocalFile *file, guint64 v, guint64 n_blocks, gsize bs)
{
  guint64 size = version_size (v, n_blocks, bs), got_size = 0;
  g_autofree guint8 *buf = g_malloc (bs);
  g_autofree guint8 *want = g_malloc (bs);
  GError *error = NULL;

  g_assert_true (bigfile_file_get_size (BIGFILE_FILE (file), &got_size, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (got_size, ==, size);
  for (guint64 b = 0; b * bs < size; b++)
    {
      gsize len = MIN (bs, size - b * bs);

      memset (want, 0, bs);
      version_fill (want, v, b, len);
      g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (file), b, buf, bs, &error));
      g_assert_no_error (error);
      g_assert_cmpmem (buf, bs, want, bs);
    }
}

/* Begins, sets the size of version @v, stores its blocks: does not commit. */
static void
stage_version (BigfileLocalFile *file, guint64 v, guint64 n_blocks, gsize bs)
{
  guint64 size = version_size (v, n_blocks, bs);
  g_autofree guint8 *buf = g_malloc (bs);
  GError *error = NULL;

  g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (file), &error));
  g_assert_no_error (error);
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), size, &error));
  g_assert_no_error (error);
  for (guint64 b = 0; b * bs < size; b++)
    {
      gsize len = MIN (bs, size - b * bs);

      version_fill (buf, v, b, len);
      g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), b, buf, len, &error));
      g_assert_no_error (error);
    }
}

static void
commit_ok (BigfileLocalFile *file, BigfileCommitFlags flags)
{
  GError *error = NULL;

  g_assert_true (bigfile_file_commit_transaction (BIGFILE_FILE (file), flags, &error));
  g_assert_no_error (error);
}

static goffset
size_of (const char *path)
{
  GStatBuf st;

  if (g_stat (path, &st) != 0)
    return -1;
  return st.st_size;
}

static char *
journal_of (const char *path)
{
  g_autofree char *absolute = g_canonicalize_filename (path, NULL);

  return g_strconcat (absolute, BF_JOURNAL_SUFFIX, NULL);
}

/* -- the fault hook: counts steps, fails the nth of one --------------------------- */

typedef struct
{
  const char *point; /* the step to fail, or NULL */
  guint nth;         /* its nth call fails (from 1) */
  int err;
  guint seen;
  GHashTable *counts; /* step name -> calls */
} FaultPlan;

static FaultPlan plan;

static int
plan_hook (const char *point, gpointer user_data)
{
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (plan.counts, point));

  g_hash_table_insert (plan.counts, (gpointer)point, GUINT_TO_POINTER (n + 1));
  if (plan.point != NULL && g_str_equal (point, plan.point) && ++plan.seen == plan.nth)
    return plan.err;
  return 0;
}

static void
plan_start (const char *point, guint nth, int err)
{
  g_clear_pointer (&plan.counts, g_hash_table_unref);
  plan.counts = g_hash_table_new (g_str_hash, g_str_equal);
  plan.point = point;
  plan.nth = nth;
  plan.err = err;
  plan.seen = 0;
  bf_journal_set_fault_hook (plan_hook, NULL);
}

static guint
plan_count (const char *point)
{
  return GPOINTER_TO_UINT (g_hash_table_lookup (plan.counts, point));
}

static void
plan_stop (void)
{
  bf_journal_set_fault_hook (NULL, NULL);
  g_clear_pointer (&plan.counts, g_hash_table_unref);
  plan.point = NULL;
}

/* -- journals written by hand ------------------------------------------------------ */

typedef struct
{
  guint32 kind; /* 1 block, 2 size */
  guint64 offset;
  const guint8 *data;
  guint32 len;
} Change;

typedef struct
{
  GByteArray *bytes;
  GArray *data_offsets; /* guint64, of each block's data */
  guint64 index_offset;
  guint64 salt;
} Journal;

static void
put32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, 4);
}

static void
put64 (guint8 *p, guint64 v)
{
  v = GUINT64_TO_LE (v);
  memcpy (p, &v, 8);
}

static guint64
align4k (guint64 v)
{
  return (v + 4095) & ~(guint64)4095;
}

static void
journal_put (Journal *j, guint64 offset, const guint8 *data, gsize len)
{
  if (j->bytes->len < offset + len)
    {
      guint old = j->bytes->len;

      g_byte_array_set_size (j->bytes, (guint)(offset + len));
      memset (j->bytes->data + old, 0, j->bytes->len - old);
    }
  memcpy (j->bytes->data + offset, data, len);
}

/* A journal of @changes, as the format says; committed if @trailer. */
static Journal *
journal_build (guint64 block_size, guint64 salt, const Change *changes, guint n, gboolean trailer)
{
  Journal *j = g_new0 (Journal, 1);
  guint8 header[64] = { 0 }, tr[64] = { 0 };
  g_autofree guint8 *index = g_malloc0 (MAX (n * 32, 1));
  guint64 at = 4096;

  j->bytes = g_byte_array_new ();
  j->data_offsets = g_array_new (FALSE, FALSE, sizeof (guint64));
  j->salt = salt;

  memcpy (header, "BFJOURNL", 8);
  put32 (header + 8, 1);
  put32 (header + 12, 64);
  put64 (header + 16, block_size);
  put64 (header + 24, salt);
  put32 (header + 60, bf_crc32c (0, header, 60));
  journal_put (j, 0, header, 64);

  for (guint i = 0; i < n; i++)
    {
      guint8 *e = index + i * 32;

      put32 (e, changes[i].kind);
      put64 (e + 8, changes[i].offset);
      if (changes[i].kind == 1)
        {
          put32 (e + 4, changes[i].len);
          put64 (e + 16, at);
          put32 (e + 24, bf_crc32c (0, changes[i].data, changes[i].len));
          journal_put (j, at, changes[i].data, changes[i].len);
          g_array_append_val (j->data_offsets, at);
          at = align4k (at + changes[i].len);
        }
    }
  j->index_offset = at;
  if (n > 0)
    journal_put (j, at, index, n * 32);

  /* The trailer's sector stays zeros without one. */
  if (trailer)
    {
      memcpy (tr, "BFJCOMIT", 8);
      put64 (tr + 8, salt);
      put64 (tr + 16, j->index_offset);
      put64 (tr + 24, n);
      put32 (tr + 32, bf_crc32c (0, index, n * 32));
      put64 (tr + 40, 512);
      put32 (tr + 60, bf_crc32c (0, tr, 60));
      journal_put (j, 512, tr, 64);
    }
  return j;
}

/* Puts the reset record of @j's transaction over its trailer: what a
 * journal looks like once its commit was applied. */
static void
journal_make_reset (Journal *j)
{
  guint8 rec[64] = { 0 };

  memcpy (rec, "BFJRESET", 8);
  put64 (rec + 8, j->salt);
  put32 (rec + 60, bf_crc32c (0, rec, 60));
  journal_put (j, 512, rec, 64);
}

/* What the journal at @path holds (as the library reads it), or -1 if
 * there is none. */
static int
journal_state (const char *path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  g_autoptr (GArray) entries = NULL;
  BfJournalState state;
  GError *error = NULL;
  guint64 salt;

  if (fd < 0)
    {
      g_assert_cmpint (errno, ==, ENOENT);
      return -1;
    }
  g_assert_true (bf_journal_read (fd, path, &state, &salt, &entries, &error));
  g_assert_no_error (error);
  close (fd);
  return state;
}

/* Asserts that the journal at @path is gone or holds nothing to recover. */
#define assert_journal_empty(path) g_assert_cmpint (journal_state (path), <=, BF_JOURNAL_EMPTY)

static void
journal_free (Journal *j)
{
  g_byte_array_unref (j->bytes);
  g_array_unref (j->data_offsets);
  g_free (j);
}

/* The journal of a save of version @v over the whole file: its size, then
 * its blocks. */
static Journal *
journal_of_version (guint64 v, guint64 n_blocks, gsize bs, guint64 journal_bs, gboolean trailer)
{
  gsize len;
  g_autofree guint8 *data = version_contents (v, n_blocks, bs, &len);
  g_autofree Change *changes = g_new0 (Change, n_blocks + 1);
  guint n = 0;
  Journal *j;

  changes[n++] = (Change){ 2, len, NULL, 0 };
  /* In blocks of journal_bs, which may be another size than the file's. */
  for (gsize off = 0; off < len; off += journal_bs)
    {
      changes = g_renew (Change, changes, n + 1);
      changes[n++] = (Change){ 1, off, data + off, (guint32)MIN (journal_bs, len - off) };
    }
  j = journal_build (journal_bs, 0x1234567890abcdefULL + v, changes, n, trailer);
  return j;
}

static void
journal_write (Journal *j, const char *journal_path, gsize len)
{
  write_file (journal_path, j->bytes->data, len);
}

/* -- CRC-32C ----------------------------------------------------------------------- */

static void
test_crc32c (void)
{
  g_autofree guint8 *big = g_malloc (100003);

  g_test_summary ("CRC-32C gives the standard check value, in one go or in pieces");
  g_assert_cmphex (bf_crc32c (0, "123456789", 9), ==, 0xE3069283);
  g_assert_cmphex (bf_crc32c (0, "", 0), ==, 0);
  for (gsize i = 0; i < 100003; i++)
    big[i] = (guint8)(i * 131 + (i >> 9));
  /* Unaligned starts and odd lengths, against one call. */
  for (gsize cut = 0; cut < 20; cut++)
    g_assert_cmphex (bf_crc32c (bf_crc32c (0, big, cut), big + cut, 100003 - cut), ==,
                     bf_crc32c (0, big, 100003));
  /* The portable table, which x86 does not use (it has an instruction). */
  g_assert_cmphex (~bf_crc32c_soft (~0u, (const guint8 *)"123456789", 9), ==, 0xE3069283);
  for (gsize len = 0; len < 40; len++)
    g_assert_cmphex (~bf_crc32c_soft (~0u, big + len, 100003 - 2 * len), ==,
                     bf_crc32c (0, big + len, 100003 - 2 * len));
}

/* -- plain mode: durability, and what abort cannot do ------------------------------- */

static void
test_plain_durable (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "plain", NULL);
  g_autofree char *jpath = journal_of (path);
  BigfileLocalFile *file;

  g_test_summary ("Plain mode: commits sync the file only when durable (by flag or per "
                  "commit), and the directory once for a file the open created; abort undoes "
                  "nothing; no journal is made");

  plan_start (NULL, 0, 0);
  file = open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_CREATE);
  g_assert_true (bigfile_file_is_transactional (BIGFILE_FILE (file)));
  stage_version (file, 1, 4, PS);
  commit_ok (file, BIGFILE_COMMIT_FLAGS_NONE);
  g_assert_cmpuint (plan_count ("file-sync"), ==, 0);
  g_assert_cmpuint (plan_count ("dir-sync"), ==, 0);
  assert_version (path, 1, 4, PS);

  stage_version (file, 2, 4, PS);
  commit_ok (file, BIGFILE_COMMIT_FLAGS_DURABLE);
  g_assert_cmpuint (plan_count ("file-sync"), ==, 1);
  g_assert_cmpuint (plan_count ("dir-sync"), ==, 1); /* the open created it */
  stage_version (file, 3, 4, PS);
  commit_ok (file, BIGFILE_COMMIT_FLAGS_DURABLE);
  g_assert_cmpuint (plan_count ("file-sync"), ==, 2);
  g_assert_cmpuint (plan_count ("dir-sync"), ==, 1);

  /* Not atomic: abort leaves what was stored. */
  stage_version (file, 4, 4, PS);
  bigfile_file_abort_transaction (BIGFILE_FILE (file));
  assert_version (path, 4, 4, PS);
  g_object_unref (file);
  g_assert_false (g_file_test (jpath, G_FILE_TEST_EXISTS));

  /* DURABLE flag: every commit, and stores outside a transaction. */
  file = open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_DURABLE);
  plan_start (NULL, 0, 0);
  stage_version (file, 5, 4, PS);
  commit_ok (file, BIGFILE_COMMIT_FLAGS_NONE);
  g_assert_cmpuint (plan_count ("file-sync"), ==, 1);
  g_assert_cmpuint (plan_count ("dir-sync"), ==, 0); /* not created by this open */
  {
    guint8 buf[PS];
    GError *error = NULL;

    version_fill (buf, 5, 0, PS);
    g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), 0, buf, PS, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (plan_count ("file-sync"), ==, 2);
  }

  /* A failed sync fails the commit, with the system's error. */
  plan_start ("file-sync", 1, EIO);
  stage_version (file, 6, 4, PS);
  {
    GError *error = NULL;

    g_assert_false (
        bigfile_file_commit_transaction (BIGFILE_FILE (file), BIGFILE_COMMIT_FLAGS_NONE, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
    g_assert_nonnull (strstr (error->message, "fdatasync"));
    g_clear_error (&error);
  }
  /* The transaction is over: another one can begin. */
  stage_version (file, 7, 4, PS);
  commit_ok (file, BIGFILE_COMMIT_FLAGS_NONE);
  plan_stop ();
  g_object_unref (file);
  assert_version (path, 7, 4, PS);
  temp_dir_remove (dir);
}

/* -- atomic mode at the file level ------------------------------------------------- */

static void
test_atomic_snapshot (void)
{
  const guint64 n = 8;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "atomic", NULL);
  g_autofree char *jpath = journal_of (path);
  BigfileLocalFile *file;
  char *prop_jpath = NULL;
  BigfileLocalFileRecovery recovery;

  g_test_summary ("Atomic mode: the stores and size change of a transaction go to the "
                  "journal, the file and loads show the old version until commit, then the "
                  "new one; the journal is emptied, and removed at close");

  write_version (path, 1, n, PS);
  file = open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC);
  g_object_get (file, "journal-path", &prop_jpath, "recovery", &recovery, NULL);
  g_assert_cmpstr (prop_jpath, ==, jpath);
  g_assert_cmpstr (bigfile_local_file_get_journal_path (file), ==, jpath);
  g_assert_cmpint (recovery, ==, BIGFILE_LOCAL_FILE_RECOVERY_NONE);
  g_free (prop_jpath);
  g_assert_false (g_file_test (jpath, G_FILE_TEST_EXISTS)); /* made by the first save */

  stage_version (file, 2, n, PS);
  assert_version (path, 1, n, PS);
  assert_loads_version (file, 1, n, PS);
  g_assert_cmpint (size_of (jpath), >, (goffset)(n - 1) * PS);

  commit_ok (file, BIGFILE_COMMIT_FLAGS_NONE);
  assert_version (path, 2, n, PS);
  assert_loads_version (file, 2, n, PS);
  /* Reset, but not truncated: the next save overwrites its blocks. */
  g_assert_cmpint (journal_state (jpath), ==, BF_JOURNAL_EMPTY);
  g_assert_cmpint (size_of (jpath), >, (goffset)(n - 1) * PS);

  /* Again, with a size that shrinks by a block and a part. */
  stage_version (file, 3, n, PS);
  assert_loads_version (file, 2, n, PS);
  commit_ok (file, BIGFILE_COMMIT_FLAGS_DURABLE);
  assert_version (path, 3, n, PS);
  assert_loads_version (file, 3, n, PS);

  /* An empty transaction commits nothing and writes no journal. */
  plan_start (NULL, 0, 0);
  g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (file), NULL));
  commit_ok (file, BIGFILE_COMMIT_FLAGS_DURABLE);
  g_assert_cmpuint (g_hash_table_size (plan.counts), ==, 0);
  plan_stop ();

  g_object_unref (file);
  g_assert_false (g_file_test (jpath, G_FILE_TEST_EXISTS));
  assert_version (path, 3, n, PS);
  temp_dir_remove (dir);
}

static void
test_atomic_abort (void)
{
  const guint64 n = 6;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "atomic", NULL);
  g_autofree char *jpath = journal_of (path);
  BigfileLocalFile *file;

  g_test_summary ("Atomic mode: abort leaves the file as it was, size included, and the "
                  "journal empty; the next transaction commits normally");

  write_version (path, 4, n, PS);
  file = open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC);
  stage_version (file, 5, n, PS);
  bigfile_file_abort_transaction (BIGFILE_FILE (file));
  assert_version (path, 4, n, PS);
  assert_loads_version (file, 4, n, PS);
  g_assert_cmpint (journal_state (jpath), ==, BF_JOURNAL_EMPTY);

  stage_version (file, 6, n, PS);
  commit_ok (file, BIGFILE_COMMIT_FLAGS_NONE);
  assert_version (path, 6, n, PS);
  g_object_unref (file);
  temp_dir_remove (dir);
}

/* A store or size change outside a transaction is a transaction of its own. */
static void
test_atomic_autocommit (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "atomic", NULL);
  g_autofree guint8 *back = NULL;
  guint8 buf[PS];
  GError *error = NULL;
  BigfileLocalFile *file;
  gsize len;

  g_test_summary ("Atomic mode: a store or a size change outside a transaction commits at "
                  "once, on its own");

  file = open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC | BIGFILE_LOCAL_FILE_FLAGS_CREATE);
  memset (buf, 0xAB, PS);
  plan_start (NULL, 0, 0);
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (file), 2, buf, 100, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (plan_count ("trailer-sync"), ==, 1);
  g_assert_cmpint (size_of (path), ==, 2 * PS + 100);
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (file), 2 * PS + 10, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (plan_count ("trailer-sync"), ==, 2);
  plan_stop ();
  g_object_unref (file);

  back = read_file (path, &len);
  g_assert_cmpuint (len, ==, 2 * PS + 10);
  for (gsize i = 0; i < len; i++)
    g_assert_cmpuint (back[i], ==, i >= 2 * PS ? 0xAB : 0);
  temp_dir_remove (dir);
}

/* Random transactions of stores (any length, anywhere) and size changes on
 * an atomic and a plain file: after each commit both are what a model of
 * plain writes says; after an abort the atomic one is what it was. */
static void
test_atomic_model (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *apath = g_build_filename (dir, "atomic", NULL);
  g_autofree char *ppath = g_build_filename (dir, "plain", NULL);
  GByteArray *model = g_byte_array_new (), *before = NULL;
  BigfileLocalFile *afile, *pfile;
  guint8 buf[PS];
  GError *error = NULL;

  g_test_summary ("Random transactions of stores and size changes: an atomic file ends as a "
                  "plain one does after each commit, and as it was after each abort");

  afile = open_file (apath, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC | BIGFILE_LOCAL_FILE_FLAGS_CREATE);
  pfile = open_file (ppath, PS, BIGFILE_LOCAL_FILE_FLAGS_CREATE);

  for (guint txn = 0; txn < 60; txn++)
    {
      gboolean abort = g_test_rand_int_range (0, 4) == 0;
      guint n_ops = g_test_rand_int_range (1, 8);
      gsize len;
      g_autofree guint8 *back = NULL;

      before = g_byte_array_sized_new (model->len);
      g_byte_array_append (before, model->data, model->len);
      g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (afile), &error));
      g_assert_no_error (error);
      for (guint op = 0; op < n_ops; op++)
        {
          if (g_test_rand_int_range (0, 3) == 0)
            {
              guint64 size = g_test_rand_int_range (0, 12 * PS);
              guint old = model->len;

              g_byte_array_set_size (model, (guint)size);
              if (size > old)
                memset (model->data + old, 0, size - old);
              g_assert_true (bigfile_file_set_size (BIGFILE_FILE (afile), size, &error));
              g_assert_no_error (error);
              if (!abort)
                g_assert_true (bigfile_file_set_size (BIGFILE_FILE (pfile), size, &error));
            }
          else
            {
              guint64 block = g_test_rand_int_range (0, 10);
              gsize n = g_test_rand_int_range (1, PS + 1);
              guint64 end = block * PS + n;
              guint old = model->len;

              for (gsize i = 0; i < n; i++)
                buf[i] = (guint8)g_test_rand_int ();
              if (end > old)
                {
                  g_byte_array_set_size (model, (guint)end);
                  memset (model->data + old, 0, end - old);
                }
              memcpy (model->data + block * PS, buf, n);
              g_assert_true (
                  bigfile_file_store_block_raw (BIGFILE_FILE (afile), block, buf, n, &error));
              g_assert_no_error (error);
              if (!abort)
                g_assert_true (
                    bigfile_file_store_block_raw (BIGFILE_FILE (pfile), block, buf, n, &error));
            }
          g_assert_no_error (error);
        }

      if (abort)
        {
          bigfile_file_abort_transaction (BIGFILE_FILE (afile));
          g_byte_array_unref (model);
          model = g_steal_pointer (&before);
        }
      else
        {
          commit_ok (afile, BIGFILE_COMMIT_FLAGS_NONE);
          g_clear_pointer (&before, g_byte_array_unref);
        }

      back = read_file (apath, &len);
      g_assert_cmpmem (back, len, model->data, model->len);
      g_clear_pointer (&back, g_free);
      back = read_file (ppath, &len);
      g_assert_cmpmem (back, len, model->data, model->len);
    }

  g_object_unref (afile);
  g_object_unref (pfile);
  g_byte_array_unref (model);
  temp_dir_remove (dir);
}

/* -- threads ----------------------------------------------------------------------- */

#define THREAD_BLOCKS 16
#define THREAD_VERSIONS 40

typedef struct
{
  BigfileLocalFile *file;
  gint committing; /* the version whose commit has begun */
  gint committed;  /* the version whose commit has returned */
  gint stop;
  guint n_loads;
} ThreadTest;

static gpointer
reader_thread (gpointer data)
{
  ThreadTest *t = data;
  g_autofree guint8 *buf = g_malloc (PS);
  g_autofree guint8 *want = g_malloc (PS);

  while (!g_atomic_int_get (&t->stop))
    for (guint64 b = 0; b < THREAD_BLOCKS; b++)
      {
        GError *error = NULL;
        gint done_before = g_atomic_int_get (&t->committed);
        gint started_after;
        guint64 v;

        g_assert_true (bigfile_file_load_block_raw (BIGFILE_FILE (t->file), b, buf, PS, &error));
        g_assert_no_error (error);
        started_after = g_atomic_int_get (&t->committing);
        memcpy (&v, buf, 8);
        v = GUINT64_FROM_LE (v);
        /* Of one version, whole, and one that was committed before the
         * load ended, not older than one committed before it began. */
        version_fill (want, v, b, PS);
        g_assert_cmpmem (buf, PS, want, PS);
        g_assert_cmpint ((gint)v, >=, done_before);
        g_assert_cmpint ((gint)v, <=, started_after);
        t->n_loads++;
      }
  return NULL;
}

static void
test_atomic_threads (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "atomic", NULL);
  g_autofree guint8 *buf = g_malloc (PS);
  ThreadTest t = { 0 };
  GThread *readers[2];

  g_test_summary ("Loads on other threads during transactions and commits read each block "
                  "whole, of a committed version, never the open transaction's");

  write_version (path, 1, THREAD_BLOCKS, PS); /* odd versions are a block short */
  t.file = open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC);
  {
    /* Make every version the full size: versions here differ in data only. */
    GError *error = NULL;

    g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (t.file), &error));
    for (guint64 b = 0; b < THREAD_BLOCKS; b++)
      {
        version_fill (buf, 1, b, PS);
        g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (t.file), b, buf, PS, &error));
      }
    commit_ok (t.file, BIGFILE_COMMIT_FLAGS_NONE);
  }
  t.committing = t.committed = 1;
  for (guint i = 0; i < G_N_ELEMENTS (readers); i++)
    readers[i] = g_thread_new ("reader", reader_thread, &t);

  for (gint v = 2; v <= THREAD_VERSIONS; v++)
    {
      GError *error = NULL;

      g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (t.file), &error));
      for (guint64 b = 0; b < THREAD_BLOCKS; b++)
        {
          version_fill (buf, v, b, PS);
          g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (t.file), b, buf, PS, &error));
        }
      g_usleep (1000); /* loads meanwhile see version v - 1 */
      g_atomic_int_set (&t.committing, v);
      commit_ok (t.file, BIGFILE_COMMIT_FLAGS_NONE);
      g_atomic_int_set (&t.committed, v);
    }

  g_atomic_int_set (&t.stop, TRUE);
  for (guint i = 0; i < G_N_ELEMENTS (readers); i++)
    g_thread_join (readers[i]);
  g_test_message ("%u loads during %d commits", t.n_loads, THREAD_VERSIONS - 1);
  g_assert_cmpuint (t.n_loads, >, 0);
  g_object_unref (t.file);
  temp_dir_remove (dir);
}

typedef struct
{
  BigfileLocalFile *file;
  gint began;
} BeginTest;

static gpointer
begin_thread (gpointer data)
{
  BeginTest *b = data;
  GError *error = NULL;

  g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (b->file), &error));
  g_assert_no_error (error);
  g_atomic_int_set (&b->began, TRUE);
  commit_ok (b->file, BIGFILE_COMMIT_FLAGS_NONE);
  return NULL;
}

static void
test_atomic_serialized (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "atomic", NULL);
  BeginTest b = { 0 };
  GError *error = NULL;
  GThread *thread;

  g_test_summary ("Transactions of one file are serialized: a begin on another thread waits "
                  "for the open one to end; a second begin on the same thread fails with BUSY");

  for (guint mode = 0; mode < 2; mode++)
    {
      b.file = open_file (
          path, PS, BIGFILE_LOCAL_FILE_FLAGS_CREATE | (mode ? BIGFILE_LOCAL_FILE_FLAGS_ATOMIC : 0));
      b.began = FALSE;
      g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (b.file), &error));
      g_assert_no_error (error);

      g_assert_false (bigfile_file_begin_transaction (BIGFILE_FILE (b.file), &error));
      g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY);
      g_clear_error (&error);

      thread = g_thread_new ("begin", begin_thread, &b);
      g_usleep (50000);
      g_assert_false (g_atomic_int_get (&b.began));
      commit_ok (b.file, BIGFILE_COMMIT_FLAGS_NONE);
      g_thread_join (thread);
      g_assert_true (b.began);
      g_object_unref (b.file);
    }
  temp_dir_remove (dir);
}

/* A store that fails makes the commit fail: nothing of the transaction is
 * saved, not even the stores that worked. */
static void
test_atomic_store_failed (void)
{
  const guint64 n = 6;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "atomic", NULL);
  g_autofree guint8 *buf = g_malloc (PS);
  BigfileLocalFile *file;
  GError *error = NULL;

  g_test_summary ("Atomic mode: after a failed store, commit fails and saves nothing");

  write_version (path, 1, n, PS);
  file = open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC);
  plan_start ("journal-block", 3, EIO);
  g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (file), &error));
  for (guint64 b = 0; b < n; b++)
    {
      gboolean ok;

      version_fill (buf, 2, b, PS);
      ok = bigfile_file_store_block_raw (BIGFILE_FILE (file), b, buf, PS, &error);
      g_assert_cmpint (ok, ==, b != 2);
      if (b == 2)
        {
          g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
          g_assert_nonnull (strstr (error->message, "block 2"));
          g_clear_error (&error);
        }
    }
  g_assert_false (
      bigfile_file_commit_transaction (BIGFILE_FILE (file), BIGFILE_COMMIT_FLAGS_NONE, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED);
  g_clear_error (&error);
  plan_stop ();
  assert_version (path, 1, n, PS);
  g_object_unref (file);
  temp_dir_remove (dir);
}

/* -- failures at each step of a commit ------------------------------------------- */

typedef struct
{
  const char *point;
  gboolean committed; /* the failure comes after the commit point */
  gboolean commit_fails;
} StepCase;

static const StepCase step_cases[] = {
  { "journal-header", FALSE, TRUE },  { "journal-block", FALSE, TRUE },
  { "preflight", FALSE, TRUE },       { "dir-sync", FALSE, TRUE },
  { "journal-index", FALSE, TRUE },   { "journal-sync", FALSE, TRUE },
  { "journal-trailer", FALSE, TRUE }, { "trailer-sync", FALSE, TRUE },
  { "apply-size", TRUE, TRUE },       { "apply-block", TRUE, TRUE },
  { "file-sync", TRUE, TRUE },        { "journal-reset", TRUE, FALSE },
  { "reset-sync", TRUE, FALSE },
};

static void
test_atomic_step_failures (void)
{
  const guint64 n = 5;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "atomic", NULL);
  g_autofree char *jpath = journal_of (path);

  g_test_summary ("Atomic mode: a failure (EIO) at each step of a commit: before the commit "
                  "point nothing is saved and a retry works; after it the commit fails, loads "
                  "fail until the next begin applies the journal again, or the next open does");

  for (guint i = 0; i < G_N_ELEMENTS (step_cases); i++)
    for (guint reopen = 0; reopen < 2; reopen++)
      {
        const StepCase *c = &step_cases[i];
        BigfileLocalFile *file;
        GError *error = NULL;
        gboolean ok = TRUE;
        g_autofree guint8 *buf = g_malloc (PS);
        guint64 size = version_size (2, n, PS);

        g_test_message ("%s, %s", c->point, reopen ? "reopen" : "retry");
        g_remove (jpath);
        write_version (path, 1, n, PS);
        file = open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC);
        plan_start (c->point, 1, EIO);

        /* As a handle's writeout does: any failure aborts. */
        ok = bigfile_file_begin_transaction (BIGFILE_FILE (file), &error)
             && bigfile_file_set_size (BIGFILE_FILE (file), size, &error);
        for (guint64 b = 0; ok && b * PS < size; b++)
          {
            version_fill (buf, 2, b, MIN (PS, size - b * PS));
            ok = bigfile_file_store_block_raw (BIGFILE_FILE (file), b, buf, MIN (PS, size - b * PS),
                                               &error);
          }
        if (!ok)
          bigfile_file_abort_transaction (BIGFILE_FILE (file));
        else
          ok = bigfile_file_commit_transaction (BIGFILE_FILE (file), BIGFILE_COMMIT_FLAGS_NONE,
                                                &error);
        g_assert_cmpuint (plan.seen, ==, 1);
        plan_stop ();
        g_assert_cmpint (ok, ==, !c->commit_fails);
        if (!ok)
          {
            g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
            g_assert_nonnull (strstr (error->message, g_strerror (EIO)));
            g_assert_cmpint (strstr (error->message, "committed") != NULL, ==, c->committed);
            g_clear_error (&error);
          }

        if (!c->committed)
          {
            /* Nothing saved: the file, its loads and the journal say so. */
            assert_version (path, 1, n, PS);
            assert_loads_version (file, 1, n, PS);
            assert_journal_empty (jpath);
            stage_version (file, 2, n, PS);
            commit_ok (file, BIGFILE_COMMIT_FLAGS_NONE);
          }
        else if (c->commit_fails)
          {
            /* Half-applied: loads must not show it. */
            g_assert_false (bigfile_file_load_block_raw (BIGFILE_FILE (file), 0, buf, PS, &error));
            g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED);
            g_assert_nonnull (strstr (error->message, "applies it"));
            g_clear_error (&error);
            if (reopen)
              {
                g_object_unref (file);
                g_assert_cmpint (journal_state (jpath), ==, BF_JOURNAL_COMMITTED);
                file = open_recovering (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC,
                                        BIGFILE_LOCAL_FILE_RECOVERY_APPLIED);
              }
            else
              {
                g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (file), &error));
                g_assert_no_error (error);
                commit_ok (file, BIGFILE_COMMIT_FLAGS_NONE);
              }
          }
        assert_loads_version (file, 2, n, PS);
        g_object_unref (file);
        assert_version (path, 2, n, PS);
        g_assert_false (g_file_test (jpath, G_FILE_TEST_EXISTS));
      }
  temp_dir_remove (dir);
}

/* -- room: real EFBIG (RLIMIT_FSIZE) and ENOSPC (a small tmpfs) --------------------- */

/* Writes pages [@first, @first + @n) of version 2 through a handle of the
 * atomic file at @path and asserts that the writeout fails with @code,
 * every page stays dirty, and the journal is left empty.  With @fsize, the
 * writeout runs with RLIMIT_FSIZE at that (only the writeout: the page
 * memory of the RAM is a memfd, which the limit would stop growing). */
static void
writeout_fails_cleanly (const char *path, guint64 first, guint64 n, gsize bs, rlim_t fsize,
                        gint code)
{
  g_autofree char *jpath = journal_of (path);
  GError *error = NULL;
  struct rlimit rl, old_rl;
  gboolean ok;
  Mapping m;

  mapping_setup_local_file (&m, path, bs, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, first + n,
                            (first + n + 1) * bs);
  for (guint64 b = first; b < first + n; b++)
    version_fill (m.data + b * bs, 2, b, bs);
  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &old_rl), ==, 0);
  rl = old_rl;
  if (fsize > 0)
    {
      rl.rlim_cur = fsize;
      g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &rl), ==, 0);
    }
  ok = bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &old_rl), ==, 0);
  g_assert_false (ok);
  g_test_message ("%s", error->message);
  g_assert_error (error, G_IO_ERROR, code);
  g_assert_true (strstr (error->message, "nothing was saved") != NULL
                 || strstr (error->message, "Could not write a block") != NULL);
  g_clear_error (&error);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, n);
  mapping_teardown (&m);
  assert_journal_empty (jpath);
}

static void
test_efbig (void)
{
  const guint64 n = 15;
  const gsize bs = 64 * 1024;

  g_test_summary ("Past RLIMIT_FSIZE (a real EFBIG), in the journal's blocks or in the file's "
                  "growth: the writeout fails, pages stay dirty, the file is unchanged");

  if (g_test_subprocess ())
    {
      g_autofree char *dir = temp_dir_new ();
      g_autofree char *path = g_build_filename (dir, "atomic", NULL);
      /* The file fits, its journal (data + header) does not. */
      rlim_t limit = n * bs + 2048;

      signal (SIGXFSZ, SIG_IGN); /* or the kernel kills for it */
      write_version (path, 1, n, bs);
      writeout_fails_cleanly (path, 0, n, bs, limit, G_IO_ERROR_FAILED);
      assert_version (path, 1, n, bs);

      /* A small journal, for a file that would grow past the limit. */
      writeout_fails_cleanly (path, 40, 1, bs, limit, G_IO_ERROR_FAILED);
      assert_version (path, 1, n, bs);

      temp_dir_remove (dir);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

/* A private mount namespace, for a tmpfs or a read-only bind mount that
 * only this (sub)process sees; FALSE (the test skipped) where not allowed. */
static gboolean
private_mounts (void)
{
  if (unshare (CLONE_NEWNS) != 0 || mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
    {
      g_autofree char *why
          = g_strdup_printf ("no private mount namespace here (%s)", g_strerror (errno));

      g_test_skip (why);
      return FALSE;
    }
  return TRUE;
}

static void
test_enospc (void)
{
  const guint64 n = 15;
  const gsize bs = 64 * 1024;

  g_test_summary ("On a full file system (a real ENOSPC, a small tmpfs): the writeout fails, "
                  "pages stay dirty, the file is unchanged; with room again a retry works");

  if (g_test_subprocess ())
    {
      g_autofree char *dir = temp_dir_new ();
      g_autofree char *path = g_build_filename (dir, "atomic", NULL);
      g_autofree char *grow = g_build_filename (dir, "grow", NULL);
      g_autofree char *opts = NULL;

      if (!private_mounts ())
        return;
      /* Room for the files and part of a journal. */
      opts = g_strdup_printf ("size=%" G_GUINT64_FORMAT, (guint64)(n * bs + n * bs / 2));
      if (mount ("tmpfs", dir, "tmpfs", 0, opts) != 0)
        {
          g_autofree char *why = g_strdup_printf ("cannot mount a tmpfs (%s)", g_strerror (errno));

          g_test_skip (why);
          return;
        }
      write_version (path, 1, n, bs);
      write_version (grow, 1, 2, bs); /* a block short of 2: bs - 777 bytes */
      /* The journal does not fit. */
      writeout_fails_cleanly (path, 0, n, bs, 0, G_IO_ERROR_NO_SPACE);
      assert_version (path, 1, n, bs);
      /* The journal fits (~4 of the ~6.5 blocks left), the blocks it would
       * add to the file do not: the preflight's fallocate() finds out. */
      writeout_fails_cleanly (grow, 1, 4, bs, 0, G_IO_ERROR_NO_SPACE);
      assert_version (grow, 1, 2, bs);

      /* Room again: the same save works. */
      g_free (opts);
      opts = g_strdup_printf ("size=%" G_GUINT64_FORMAT, (guint64)(4 * n * bs));
      g_assert_cmpint (mount (NULL, dir, NULL, MS_REMOUNT, opts), ==, 0);
      {
        GError *error = NULL;
        Mapping m;

        mapping_setup_local_file (&m, path, bs, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, n, 2 * n * bs);
        g_assert_true (bigfile_handle_set_size (m.handle, version_size (2, n, bs), &error));
        for (guint64 b = 0; b * bs < version_size (2, n, bs); b++)
          version_fill (m.data + b * bs, 2, b, MIN (bs, version_size (2, n, bs) - b * bs));
        g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
        g_assert_no_error (error);
        mapping_teardown (&m);
      }
      assert_version (path, 2, n, bs);
      umount (dir);
      temp_dir_remove (dir);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

/* -- locks ------------------------------------------------------------------------- */

typedef struct
{
  GPid pid;
  int in_fd, out_fd, err_fd;
} Child;

static Child
spawn_helper (const char *const *args)
{
  g_autofree char *helper = g_test_build_filename (G_TEST_BUILT, "local-atomic-helper", NULL);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  GError *error = NULL;
  Child c = { 0 };

  g_ptr_array_add (argv, helper);
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer)args[i]);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_async_with_pipes (NULL, (char **)argv->pdata, NULL,
                                           G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &c.pid, &c.in_fd,
                                           &c.out_fd, &c.err_fd, &error));
  g_assert_no_error (error);
  return c;
}

/* Reads what the child writes until a newline or the end. */
static char *
child_read_line (Child *c)
{
  GString *line = g_string_new (NULL);
  char ch;

  while (read (c->out_fd, &ch, 1) == 1 && ch != '\n')
    g_string_append_c (line, ch);
  return g_string_free (line, FALSE);
}

static char *
child_stderr (Child *c)
{
  GString *s = g_string_new (NULL);
  char buf[256];
  ssize_t n;

  while ((n = read (c->err_fd, buf, sizeof buf)) > 0)
    g_string_append_len (s, buf, n);
  return g_string_free (s, FALSE);
}

/* Waits for the child; returns its wait status. */
static int
child_wait (Child *c)
{
  int status;

  if (c->in_fd >= 0)
    g_close (c->in_fd, NULL);
  while (waitpid (c->pid, &status, 0) < 0)
    g_assert_cmpint (errno, ==, EINTR);
  g_close (c->out_fd, NULL);
  g_close (c->err_fd, NULL);
  g_spawn_close_pid (c->pid);
  return status;
}

static void
child_wait_exited (Child *c)
{
  g_autofree char *err = NULL;
  int status;

  /* A "hold" helper ends when its stdin does. */
  g_close (c->in_fd, NULL);
  c->in_fd = -1;
  err = child_stderr (c);
  status = child_wait (c);

  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    g_error ("local-atomic-helper failed (status %d): %s", status, err);
}

static void
assert_busy (const char *path, BigfileLocalFileFlags flags)
{
  GError *error = NULL;
  BigfileLocalFile *file = bigfile_local_file_new (path, PS, flags, &error);

  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY);
  g_assert_nonnull (strstr (error->message, path));
  g_assert_null (file);
  g_clear_error (&error);
}

static void
test_locks (void)
{
  const BigfileLocalFileFlags A = BIGFILE_LOCAL_FILE_FLAGS_ATOMIC,
                              RO = BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "locked", NULL);
  BigfileLocalFile *a, *b;
  Child c;

  g_test_summary ("An atomic writer is alone with its file, in this process or another "
                  "(BIGFILE_FILE_ERROR_BUSY); other opens share it");

  write_version (path, 1, 4, PS);

  a = open_file (path, PS, A);
  assert_busy (path, A);
  assert_busy (path, A | RO);
  assert_busy (path, BIGFILE_LOCAL_FILE_FLAGS_NONE);
  assert_busy (path, RO);
  g_object_unref (a);

  /* Shared opens share; an atomic writer cannot join them. */
  a = open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_NONE);
  b = open_file (path, PS, A | RO);
  assert_busy (path, A);
  g_object_unref (a);
  assert_busy (path, A);
  g_object_unref (b);
  a = open_file (path, PS, A);
  g_object_unref (a);

  /* Another process. */
  c = spawn_helper ((const char *[]){ "hold", path, "atomic", NULL });
  g_free (child_read_line (&c));
  assert_busy (path, A);
  assert_busy (path, BIGFILE_LOCAL_FILE_FLAGS_NONE);
  child_wait_exited (&c);
  a = open_file (path, PS, A);
  g_object_unref (a);

  c = spawn_helper ((const char *[]){ "hold", path, "plain", NULL });
  g_free (child_read_line (&c));
  assert_busy (path, A);
  a = open_file (path, PS, RO);
  g_object_unref (a);
  child_wait_exited (&c);

  temp_dir_remove (dir);
}

/* -- recovery of journals written by hand ------------------------------------------ */

static void
test_recover_committed (void)
{
  const guint64 n = 7;
  const BigfileLocalFileFlags modes[]
      = { BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, BIGFILE_LOCAL_FILE_FLAGS_NONE,
          BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY,
          BIGFILE_LOCAL_FILE_FLAGS_ATOMIC | BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES };
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "file", NULL);
  g_autofree char *jpath = journal_of (path);

  g_test_summary ("A committed journal (written by hand) is applied by the next open, in "
                  "every mode, also when its blocks are of another size than the file's");

  for (guint i = 0; i < G_N_ELEMENTS (modes); i++)
    for (guint jbs = 0; jbs < 3; jbs++)
      {
        /* The journal's blocks: the file's size, 4x larger, and 2 MiB. */
        guint64 journal_bs = jbs == 0 ? PS : jbs == 1 ? 4 * PS : 2 * 1024 * 1024;
        Journal *j = journal_of_version (2, n, PS, journal_bs, TRUE);
        BigfileLocalFile *file;

        write_version (path, 1, n, PS);
        journal_write (j, jpath, j->bytes->len);
        journal_free (j);
        file = open_recovering (path, PS, modes[i], BIGFILE_LOCAL_FILE_RECOVERY_APPLIED);
        assert_loads_version (file, 2, n, PS);
        assert_version (path, 2, n, PS);
        assert_journal_empty (jpath);
        g_object_unref (file);
        g_remove (jpath);
      }
  temp_dir_remove (dir);
}

static void
test_recover_uncommitted (void)
{
  const guint64 n = 5;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "file", NULL);
  g_autofree char *jpath = journal_of (path);
  Journal *c = journal_of_version (2, n, PS, PS, TRUE);
  Journal *u = journal_of_version (2, n, PS, PS, FALSE);
  Journal *r = journal_of_version (2, n, PS, PS, TRUE);
  guint n_lengths = 0;

  g_test_summary ("A journal without a valid commit trailer (a transaction cut anywhere, a "
                  "torn or missing trailer) is discarded: never applied, not even in part; a "
                  "reset one holds nothing; a whole committed one is applied");

  /* Without a trailer, cut at every 4 KiB boundary and the bytes around it. */
  for (gsize len = 0; len <= u->bytes->len; len += (len % 4096 == 0 ? 1 : 4095))
    for (gint d = -1; d <= 1; d++)
      {
        gsize cut = (gsize)CLAMP ((gssize)len + d, 1, (gssize)u->bytes->len);

        write_version (path, 1, n, PS);
        journal_write (u, jpath, cut);
        g_object_unref (open_recovering (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC,
                                         BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED));
        assert_journal_empty (jpath);
        assert_version (path, 1, n, PS);
        n_lengths++;
      }
  g_test_message ("%u lengths", n_lengths);

  /* A committed one cut inside its trailer, in any mode. */
  for (gsize cut = 512; cut < 576; cut += 7)
    {
      write_version (path, 1, n, PS);
      journal_write (c, jpath, cut);
      g_object_unref (open_recovering (path, PS, BIGFILE_LOCAL_FILE_FLAGS_NONE,
                                       BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED));
      assert_version (path, 1, n, PS);
    }

  /* A torn trailer: any byte of it garbled. */
  for (guint b = 0; b < 64; b++)
    {
      write_version (path, 1, n, PS);
      c->bytes->data[512 + b] ^= 0x10;
      journal_write (c, jpath, c->bytes->len);
      c->bytes->data[512 + b] ^= 0x10;
      g_object_unref (open_recovering (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC,
                                       BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED));
      assert_version (path, 1, n, PS);
    }

  /* Reset after its commit: nothing to do. */
  journal_make_reset (r);
  write_version (path, 1, n, PS);
  journal_write (r, jpath, r->bytes->len);
  g_object_unref (open_recovering (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC,
                                   BIGFILE_LOCAL_FILE_RECOVERY_NONE));
  assert_version (path, 1, n, PS);

  /* Whole: applied. */
  journal_write (c, jpath, c->bytes->len);
  g_object_unref (open_recovering (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC,
                                   BIGFILE_LOCAL_FILE_RECOVERY_APPLIED));
  assert_version (path, 2, n, PS);

  journal_free (c);
  journal_free (u);
  journal_free (r);
  temp_dir_remove (dir);
}

static void
test_recover_corrupt (void)
{
  const guint64 n = 5;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "file", NULL);
  g_autofree char *jpath = journal_of (path);
  Journal *j = journal_of_version (2, n, PS, PS, TRUE);
  struct
  {
    const char *what;
    guint64 offset;
    gboolean cut; /* cut the journal there, rather than flip a bit */
  } damage[] = {
    { "header magic", 0 },
    { "header salt", 24 },
    { "header crc", 60 },
    { "first block", g_array_index (j->data_offsets, guint64, 0) + 100 },
    { "last block", g_array_index (j->data_offsets, guint64, j->data_offsets->len - 1) },
    { "index", j->index_offset + 40 },
    { "cut in a block", g_array_index (j->data_offsets, guint64, 1) + 100, TRUE },
    { "cut in the index", j->index_offset + 40, TRUE },
    { "cut before the index", j->index_offset, TRUE },
  };

  g_test_summary ("A journal whose trailer says it committed but whose header, index or data "
                  "is damaged is not applied, not in part: the open fails with "
                  "BIGFILE_FILE_ERROR_CORRUPT and leaves file and journal as they are");

  for (guint i = 0; i < G_N_ELEMENTS (damage); i++)
    for (guint mode = 0; mode < 2; mode++)
      {
        GError *error = NULL;
        BigfileLocalFile *file;
        gsize len;
        g_autofree guint8 *back = NULL;

        g_test_message ("%s", damage[i].what);
        write_version (path, 1, n, PS);
        j->bytes->data[damage[i].offset] ^= damage[i].cut ? 0 : 0x01;
        journal_write (j, jpath, damage[i].cut ? damage[i].offset : j->bytes->len);
        j->bytes->data[damage[i].offset] ^= damage[i].cut ? 0 : 0x01;
        file = bigfile_local_file_new (
            path, PS, mode ? BIGFILE_LOCAL_FILE_FLAGS_NONE : BIGFILE_LOCAL_FILE_FLAGS_ATOMIC,
            &error);
        g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT);
        g_assert_nonnull (strstr (error->message, jpath));
        g_assert_nonnull (strstr (error->message, "Move the journal away"));
        g_assert_null (file);
        g_clear_error (&error);
        assert_version (path, 1, n, PS);
        back = read_file (jpath, &len);
        g_assert_cmpuint (len, ==, damage[i].cut ? damage[i].offset : j->bytes->len);
      }

  /* A newer format: not applied, not discarded. */
  {
    GError *error = NULL;
    guint8 *h = j->bytes->data;

    put32 (h + 8, 2);
    put32 (h + 60, bf_crc32c (0, h, 60));
    journal_write (j, jpath, j->bytes->len);
    g_assert_null (bigfile_local_file_new (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, &error));
    g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED);
    g_clear_error (&error);
    g_assert_cmpint (size_of (jpath), ==, (goffset)j->bytes->len);
    assert_version (path, 1, n, PS);
  }

  /* Moved away, as the message says: the file opens as it is. */
  g_remove (jpath);
  g_object_unref (open_file (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC));
  journal_free (j);
  temp_dir_remove (dir);
}

/* A committed journal whose recovery fails at each block in turn: the
 * next open finishes it (applying it again is harmless). */
static void
test_recover_interrupted (void)
{
  const guint64 n = 6;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "file", NULL);
  g_autofree char *jpath = journal_of (path);
  Journal *j = journal_of_version (2, n, PS, PS, TRUE);
  const char *points[] = { "apply-size", "apply-block", "file-sync", "journal-reset" };

  g_test_summary ("A recovery that fails at any step (EIO) fails the open and changes "
                  "nothing that matters: the next open applies the journal whole");

  for (guint p = 0; p < G_N_ELEMENTS (points); p++)
    for (guint nth = 1; nth <= (g_str_equal (points[p], "apply-block") ? n : 1); nth++)
      {
        GError *error = NULL;
        BigfileLocalFile *file;

        write_version (path, 1, n, PS);
        journal_write (j, jpath, j->bytes->len);
        plan_start (points[p], nth, EIO);
        g_assert_null (bigfile_local_file_new (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, &error));
        g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
        g_assert_nonnull (strstr (error->message, "next open tries again"));
        g_clear_error (&error);
        plan_stop ();
        file = open_recovering (path, PS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC,
                                BIGFILE_LOCAL_FILE_RECOVERY_APPLIED);
        g_object_unref (file);
        assert_version (path, 2, n, PS);
      }
  journal_free (j);
  temp_dir_remove (dir);
}

static void
test_recover_read_only (void)
{
  const guint64 n = 4;

  g_test_summary ("A read-only open recovers a journal if the file can be written there; "
                  "where it cannot (a read-only mount), a committed journal fails the open "
                  "with PERMISSION_DENIED, an uncommitted one is left alone");

  if (g_test_subprocess ())
    {
      g_autofree char *dir = temp_dir_new ();
      g_autofree char *path = g_build_filename (dir, "file", NULL);
      g_autofree char *jpath = journal_of (path);
      Journal *j = journal_of_version (2, n, PS, PS, TRUE);
      Journal *u = journal_of_version (2, n, PS, PS, FALSE);
      GError *error = NULL;
      BigfileLocalFile *file;

      write_version (path, 1, n, PS);
      journal_write (j, jpath, j->bytes->len);
      if (!private_mounts ())
        return;
      g_assert_cmpint (mount (dir, dir, NULL, MS_BIND, NULL), ==, 0);
      g_assert_cmpint (mount (NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), ==, 0);

      g_assert_null (bigfile_local_file_new (path, PS, BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
      g_assert_nonnull (strstr (error->message, "committed"));
      g_test_message ("%s", error->message);
      g_clear_error (&error);
      assert_version (path, 1, n, PS);

      g_assert_cmpint (umount (dir), ==, 0);
      journal_write (u, jpath, u->bytes->len);
      g_assert_cmpint (mount (dir, dir, NULL, MS_BIND, NULL), ==, 0);
      g_assert_cmpint (mount (NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), ==, 0);
      file = open_recovering (path, PS, BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY,
                              BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED);
      assert_loads_version (file, 1, n, PS);
      g_object_unref (file);
      g_assert_cmpint (size_of (jpath), ==, (goffset)u->bytes->len); /* left alone */
      g_assert_cmpint (umount (dir), ==, 0);

      /* Writable: a read-only open applies it. */
      journal_write (j, jpath, j->bytes->len);
      file = open_recovering (path, PS, BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY,
                              BIGFILE_LOCAL_FILE_RECOVERY_APPLIED);
      assert_loads_version (file, 2, n, PS);
      g_object_unref (file);

      journal_free (j);
      journal_free (u);
      temp_dir_remove (dir);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

/* -- through a handle ---------------------------------------------------------------- */

static void
test_handle_writeout (void)
{
  const guint64 n = 12;
  const BigfileLocalFileFlags modes[]
      = { BIGFILE_LOCAL_FILE_FLAGS_ATOMIC,
          BIGFILE_LOCAL_FILE_FLAGS_ATOMIC | BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES };
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "file", NULL);
  g_autofree char *jpath = journal_of (path);

  g_test_summary ("Through a handle: a writeout of an atomic file commits once, whole; a "
                  "failure at any store leaves the file as it was and every page dirty; with "
                  "MAP_CLEAN_PAGES the clean pages show the old data until the commit");

  for (guint i = 0; i < G_N_ELEMENTS (modes); i++)
    for (guint fail_at = 0; fail_at <= n; fail_at += 4)
      {
        guint64 size = version_size (2, n, PS);
        GError *error = NULL;
        Mapping m;

        write_version (path, 1, n, PS);
        mapping_setup_local_file (&m, path, PS, modes[i], n, 2 * n * PS);
        g_assert_cmpmem (m.data, 16, ((guint8[16]){ 1, 0, 0, 0, 0, 0, 0, 0 }), 16);
        g_assert_true (bigfile_handle_set_size (m.handle, size, &error));
        for (guint64 b = 0; b * PS < size; b++)
          version_fill (m.data + b * PS, 2, b, MIN (PS, size - b * PS));

        plan_start (fail_at > 0 ? "journal-block" : NULL, fail_at, EIO);
        if (fail_at > 0)
          {
            g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
            g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
            g_clear_error (&error);
            g_assert_cmpuint (plan_count ("trailer-sync"), ==, 0);
            g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, n);
            assert_version (path, 1, n, PS);
            assert_journal_empty (jpath);
            plan_start (NULL, 0, 0);
          }
        g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
        g_assert_no_error (error);
        g_assert_cmpuint (plan_count ("trailer-sync"), ==, 1);
        g_assert_cmpuint (plan_count ("file-sync"), ==, 1);
        plan_stop ();
        g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
        assert_version (path, 2, n, PS);

        /* Clean pages read back the new data (mapped from the file, or
         * loaded again). */
        for (guint64 b = 0; b < n; b++)
          bigfile_handle_invalidate_page (m.handle, b);
        for (guint64 b = 0; b * PS < size; b++)
          {
            guint8 want[PS];

            version_fill (want, 2, b, MIN (PS, size - b * PS));
            g_assert_cmpmem (m.data + b * PS, MIN (PS, size - b * PS), want,
                             MIN (PS, size - b * PS));
          }
        mapping_teardown (&m);
      }
  temp_dir_remove (dir);
}

/* -- crashes ------------------------------------------------------------------------ */

#define CRASH_BLOCKS 64
#define CRASH_BS ((gsize)64 * 1024)

static guint
crash_tries (void)
{
  const char *env = g_getenv ("BIGFILE_TEST_CRASH_TRIES");

  if (env != NULL)
    return MAX (1, (guint)g_ascii_strtoull (env, NULL, 10));
  if (RUNNING_ON_VALGRIND)
    return 10;
#if defined(__SANITIZE_ADDRESS__)
  return 30;
#else
  return 100;
#endif
}

typedef struct
{
  guint tries;
  guint mixed;
  guint recoveries[3]; /* by BigfileLocalFileRecovery */
  guint raw_mixed;     /* files that were a mix before recovery: kills mid-apply */
  char *first_mix;
} CrashStats;

/* Opens @path as @flags say (recovering it), and checks that it holds one
 * version; counts what it found in @stats. */
static void
crash_check (const char *path, BigfileLocalFileFlags flags, CrashStats *stats, guint64 *v)
{
  g_autofree guint8 *raw = NULL, *data = NULL;
  g_autofree char *why = NULL;
  BigfileLocalFile *file;
  gsize len;

  raw = read_file (path, &len);
  if (!version_check (raw, len, CRASH_BLOCKS, CRASH_BS, v, &why))
    stats->raw_mixed++;
  g_clear_pointer (&why, g_free);

  file = open_file (path, CRASH_BS, flags);
  stats->recoveries[bigfile_local_file_get_recovery (file)]++;
  g_object_unref (file);
  data = read_file (path, &len);
  stats->tries++;
  if (!version_check (data, len, CRASH_BLOCKS, CRASH_BS, v, &why))
    {
      stats->mixed++;
      if (stats->first_mix == NULL)
        stats->first_mix = g_steal_pointer (&why);
    }
}

static void
kill_and_wait (Child *c)
{
  g_autofree char *err = NULL;
  int status;

  kill (c->pid, SIGKILL);
  err = child_stderr (c);
  status = child_wait (c);
  if (!WIFSIGNALED (status) || WTERMSIG (status) != SIGKILL)
    g_error ("local-atomic-helper ended before it was killed (status %d): %s", status, err);
}

/* Spawns the writer, waits until it is ready, lets it run @delay_us, kills it. */
static void
run_writer_for (const char *path, const char *flags, const char *how, gulong delay_us)
{
  g_autofree char *n = g_strdup_printf ("%d", CRASH_BLOCKS);
  g_autofree char *bs = g_strdup_printf ("%" G_GSIZE_FORMAT, CRASH_BS);
  Child c = spawn_helper ((const char *[]){ "write", path, flags, n, bs, how, NULL });
  g_autofree char *ready = child_read_line (&c);

  if (!g_str_equal (ready, "ready"))
    g_error ("local-atomic-helper did not start: %s", child_stderr (&c));
  g_usleep (delay_us);
  kill_and_wait (&c);
}

static void
crash_random (const char *flags_text, BigfileLocalFileFlags flags, CrashStats *stats)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "crash", NULL);
  guint tries = crash_tries ();
  gulong max_delay;
  CrashStats calib = { 0 };
  guint64 v = 0;
  gint64 t0;

  write_version (path, 1, CRASH_BLOCKS, CRASH_BS);

  /* How long a save takes here: kills land within the next few. */
  t0 = g_get_monotonic_time ();
  run_writer_for (path, flags_text, "handle", 300000);
  crash_check (path, flags, &calib, &v);
  max_delay = (gulong)CLAMP ((g_get_monotonic_time () - t0) / MAX (v, 2) * 3, 2000, 300000);
  g_test_message ("%s: %" G_GUINT64_FORMAT " saves in ~0.3 s; kills within %lu us of the "
                  "end of a first save",
                  flags_text, v - 1, max_delay);

  for (guint i = 0; i < tries; i++)
    {
      run_writer_for (path, flags_text, "handle", g_test_rand_int_range (0, (gint32)max_delay));
      /* Every other time, a recovery killed on its way too. */
      if ((flags & BIGFILE_LOCAL_FILE_FLAGS_ATOMIC) && i % 2 == 1)
        {
          Child c = spawn_helper ((const char *[]){ "recover", path, flags_text, NULL });

          g_usleep (g_test_rand_int_range (0, 20000));
          kill (c.pid, SIGKILL);
          g_free (child_stderr (&c));
          child_wait (&c);
        }
      crash_check (path, flags, stats, &v);
    }
  g_free (calib.first_mix);
  temp_dir_remove (dir);
}

static void
report (const char *what, CrashStats *s)
{
  g_test_message ("%s: %u of %u kills left a mix; recoveries: %u none, %u applied, %u "
                  "discarded; %u files were a mix before recovery%s%s",
                  what, s->mixed, s->tries, s->recoveries[0], s->recoveries[1], s->recoveries[2],
                  s->raw_mixed, s->first_mix ? "; first mix: " : "",
                  s->first_mix ? s->first_mix : "");
}

static void
test_crash_atomic (void)
{
  CrashStats s = { 0 };

  g_test_summary ("kill -9 of a process writing out a 64-block change (with a size change) "
                  "in a loop, through a handle, at random moments (and of recoveries too): "
                  "the file always holds exactly the old or the new version");

  crash_random ("atomic", BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, &s);
  report ("atomic", &s);
  g_assert_cmpuint (s.mixed, ==, 0);
  g_free (s.first_mix);
}

static void
test_crash_plain (void)
{
  CrashStats s = { 0 };

  g_test_summary ("The same kills in plain mode leave mixes of versions: the check of "
                  "/local-atomic/crash/atomic sees them (plain mode is not atomic)");

  crash_random ("plain", BIGFILE_LOCAL_FILE_FLAGS_NONE, &s);
  report ("plain", &s);
  g_assert_cmpuint (s.mixed, >, 0);
  g_free (s.first_mix);
}

typedef struct
{
  const char *point;
  guint nth; /* 0: the last of the commit (CRASH_BLOCKS for blocks), else the nth */
  gboolean new_version;
  BigfileLocalFileRecovery recovery;
} CrashPoint;

static const CrashPoint crash_points[] = {
  { "journal-header", 1, FALSE, BIGFILE_LOCAL_FILE_RECOVERY_NONE },
  { "journal-block", 1, FALSE, BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED },
  { "journal-block", CRASH_BLOCKS / 2, FALSE, BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED },
  { "journal-block", CRASH_BLOCKS - 1, FALSE, BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED },
  { "preflight", 1, FALSE, BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED },
  { "dir-sync", 1, FALSE, BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED },
  { "journal-index", 1, FALSE, BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED },
  { "journal-sync", 1, FALSE, BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED },
  { "journal-trailer", 1, FALSE, BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED },
  /* The trailer is written (and in the page cache): committed. */
  { "trailer-sync", 1, TRUE, BIGFILE_LOCAL_FILE_RECOVERY_APPLIED },
  { "apply-size", 1, TRUE, BIGFILE_LOCAL_FILE_RECOVERY_APPLIED },
  { "apply-block", 1, TRUE, BIGFILE_LOCAL_FILE_RECOVERY_APPLIED },
  { "apply-block", CRASH_BLOCKS / 2, TRUE, BIGFILE_LOCAL_FILE_RECOVERY_APPLIED },
  { "apply-block", CRASH_BLOCKS - 1, TRUE, BIGFILE_LOCAL_FILE_RECOVERY_APPLIED },
  { "file-sync", 1, TRUE, BIGFILE_LOCAL_FILE_RECOVERY_APPLIED },
  { "journal-reset", 1, TRUE, BIGFILE_LOCAL_FILE_RECOVERY_APPLIED },
  { "reset-sync", 1, TRUE, BIGFILE_LOCAL_FILE_RECOVERY_NONE },
};

static void
test_crash_points (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "crash", NULL);
  g_autofree char *n = g_strdup_printf ("%d", CRASH_BLOCKS);
  g_autofree char *bs = g_strdup_printf ("%" G_GSIZE_FORMAT, CRASH_BS);
  const char *hows[] = { "file", "handle" };

  g_test_summary ("kill -9 right before each step of a commit (the helper kills itself there), "
                  "through the file and through a handle: the next open finds the old version "
                  "before the commit point and the new one from it on, recovering as expected; "
                  "then kills in the middle of that recovery, which the open after finishes");

  for (guint h = 0; h < G_N_ELEMENTS (hows); h++)
    for (guint i = 0; i < G_N_ELEMENTS (crash_points); i++)
      {
        const CrashPoint *p = &crash_points[i];
        g_autofree char *nth = g_strdup_printf ("%u", p->nth);
        g_autofree char *jpath = journal_of (path);
        CrashStats s = { 0 };
        BigfileLocalFile *file;
        guint64 v = 0;
        Child c;

        g_test_message ("%s: %s %u", hows[h], p->point, p->nth);
        g_remove (jpath);
        write_version (path, 1, CRASH_BLOCKS, CRASH_BS);
        c = spawn_helper (
            (const char *[]){ "write", path, "atomic", n, bs, hows[h], p->point, nth, NULL });
        g_free (child_read_line (&c));
        /* It kills itself, at the step. */
        {
          g_autofree char *err = child_stderr (&c);
          int status = child_wait (&c);

          if (!WIFSIGNALED (status) || WTERMSIG (status) != SIGKILL)
            g_error ("the helper did not die at %s (status %d): %s", p->point, status, err);
        }

        if (p->new_version && p->recovery == BIGFILE_LOCAL_FILE_RECOVERY_APPLIED)
          {
            /* Kill the recovery too, half-way through its blocks. */
            g_autofree char *half = g_strdup_printf ("%d", CRASH_BLOCKS / 2);
            int status;

            c = spawn_helper (
                (const char *[]){ "recover", path, "atomic", "apply-block", half, NULL });
            g_free (child_stderr (&c));
            status = child_wait (&c);
            g_assert_true (WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL);
          }

        file = open_recovering (path, CRASH_BS, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, p->recovery);
        g_object_unref (file);
        crash_check (path, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, &s, &v);
        g_assert_cmpuint (s.mixed, ==, 0);
        g_assert_cmpuint (v, ==, p->new_version ? 2 : 1);
      }
  temp_dir_remove (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/local-atomic/crc32c", test_crc32c);
  g_test_add_func ("/local-atomic/plain/durable", test_plain_durable);
  g_test_add_func ("/local-atomic/txn/snapshot", test_atomic_snapshot);
  g_test_add_func ("/local-atomic/txn/abort", test_atomic_abort);
  g_test_add_func ("/local-atomic/txn/autocommit", test_atomic_autocommit);
  g_test_add_func ("/local-atomic/txn/model", test_atomic_model);
  g_test_add_func ("/local-atomic/txn/threads", test_atomic_threads);
  g_test_add_func ("/local-atomic/txn/serialized", test_atomic_serialized);
  g_test_add_func ("/local-atomic/txn/store-failed", test_atomic_store_failed);
  g_test_add_func ("/local-atomic/faults/steps", test_atomic_step_failures);
  g_test_add_func ("/local-atomic/faults/efbig", test_efbig);
  g_test_add_func ("/local-atomic/faults/enospc", test_enospc);
  g_test_add_func ("/local-atomic/locks", test_locks);
  g_test_add_func ("/local-atomic/recovery/committed", test_recover_committed);
  g_test_add_func ("/local-atomic/recovery/uncommitted", test_recover_uncommitted);
  g_test_add_func ("/local-atomic/recovery/corrupt", test_recover_corrupt);
  g_test_add_func ("/local-atomic/recovery/interrupted", test_recover_interrupted);
  g_test_add_func ("/local-atomic/recovery/read-only", test_recover_read_only);
  g_test_add_func ("/local-atomic/handle/writeout", test_handle_writeout);
  g_test_add_func ("/local-atomic/crash/points", test_crash_points);
  g_test_add_func ("/local-atomic/crash/atomic", test_crash_atomic);
  g_test_add_func ("/local-atomic/crash/plain", test_crash_plain);

  return g_test_run ();
}
