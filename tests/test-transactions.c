/* bigfile-glib tests - transactions, snapshots, conflicts and invalidation
 * through a handle, over the in-memory transactional file (test-txn-file.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-txn-file.h"
#include "test-util.h"

#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#define PS 4096
#define N_PAGES 8

typedef struct
{
  TestTxnStore *store;
  TestTxnFile *file; /* client A, of the handle */
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma;
  guint8 *data;
  GArray *invalidated; /* guint64: page-invalidated of the handle, in order */
} Fixture;

static void
on_invalidated (BigfileHandle *handle, guint64 page, Fixture *f)
{
  g_array_append_val (f->invalidated, page);
}

static void
fixture_open (Fixture *f)
{
  GError *error = NULL;

  f->file = test_txn_file_new (f->store);
  f->handle = bigfile_handle_new (BIGFILE_FILE (f->file), f->ram, &error);
  g_assert_no_error (error);
  f->vma = bigfile_handle_map (f->handle, 0, N_PAGES, &error);
  g_assert_no_error (error);
  f->data = bigfile_vma_get_data (f->vma);
  g_signal_connect (f->handle, "page-invalidated", G_CALLBACK (on_invalidated), f);
}

static void
fixture_close (Fixture *f)
{
  assert_engine_invariants (f->handle, TRUE);
  bigfile_vma_unmap (f->vma);
  g_clear_object (&f->vma);
  g_assert_true (bigfile_handle_close (f->handle));
  g_clear_object (&f->handle);
  g_clear_object (&f->file);
  f->data = NULL;
}

static void
fixture_setup (Fixture *f, gconstpointer unused)
{
  f->store = test_txn_store_new (PS, N_PAGES * PS);
  f->ram = bigfile_ram_new (64 * PS);
  f->invalidated = g_array_new (FALSE, FALSE, sizeof (guint64));
  fixture_open (f);
}

/* Runs the default context until nothing is pending: notifications of
 * other clients' commits, auto-refreshes, signals. */
static void
drain (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
fixture_teardown (Fixture *f, gconstpointer unused)
{
  fixture_close (f);
  drain ();
  g_clear_object (&f->ram);
  test_txn_store_unref (f->store);
  g_array_unref (f->invalidated);
}

static guint8
stored_byte (Fixture *f, guint64 block, gsize offset)
{
  /* On the heap, not the stack: see model_check() in test-txn-model.c. */
  g_autofree guint8 *buf = g_malloc (PS);

  test_txn_store_peek (f->store, block, buf);
  return buf[offset];
}

static void
assert_invalidated (Fixture *f, const guint64 *pages, guint n)
{
  g_assert_cmpuint (f->invalidated->len, ==, n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (g_array_index (f->invalidated, guint64, i), ==, pages[i]);
  g_array_set_size (f->invalidated, 0);
}

/* -- transactions --------------------------------------------------------------- */

/* A writeout is one commit, and pages are clean only after it. */
static void
test_writeout_one_commit (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;

  for (guint i = 0; i < N_PAGES; i++)
    raw_write (f->data + i * PS, 0x10 + i);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 1);
  g_assert_cmpuint (test_txn_file_get_n_begins (f->file), ==, 1);
  g_assert_cmpuint (test_txn_file_get_n_commits (f->file), ==, 1);
  g_assert_cmpuint (test_txn_file_get_n_durable (f->file), ==, 0);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 0);
  for (guint i = 0; i < N_PAGES; i++)
    g_assert_cmpuint (stored_byte (f, i, 0), ==, 0x10 + i);
  g_assert_false (test_txn_file_in_transaction (f->file));
  assert_engine_invariants (f->handle, TRUE);

  /* Nothing dirty: no transaction at all. */
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 2);

  raw_write (f->data, 0x77);
  g_assert_true (bigfile_handle_writeout (
      f->handle, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_DURABLE, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (test_txn_file_get_n_durable (f->file), ==, 1);
}

/* A store that fails aborts the whole writeout: the storage has none of
 * it, every page stays dirty with its data, a retry stores all. */
static void
test_store_failure_aborts (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;

  for (guint i = 0; i < N_PAGES; i++)
    raw_write (f->data + i * PS, 0x20 + i);
  test_txn_file_fail_next_store (f->file, 5);
  g_assert_false (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 0);
  g_assert_cmpuint (test_txn_file_get_n_aborts (f->file), ==, 1);
  g_assert_false (test_txn_file_in_transaction (f->file));
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, N_PAGES);
  for (guint i = 0; i < N_PAGES; i++)
    {
      g_assert_cmpuint (stored_byte (f, i, 0), ==, 0);
      g_assert_cmpuint (f->data[i * PS], ==, 0x20 + i);
    }
  assert_engine_invariants (f->handle, TRUE);

  /* The pages stored before the failure were not left "intact": a
   * MARK_STORED now has nothing to mark (it would lose them otherwise). */
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_MARK_STORED, &error));
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, N_PAGES);

  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < N_PAGES; i++)
    g_assert_cmpuint (stored_byte (f, i, 0), ==, 0x20 + i);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 0);
}

static void
test_commit_failure (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;

  raw_write (f->data + 2 * PS, 0x31);
  raw_write (f->data + 3 * PS, 0x32);
  test_txn_file_fail_next_commit (f->file);
  g_assert_false (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  g_clear_error (&error);
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 0);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 2);
  g_assert_cmpuint (f->data[2 * PS], ==, 0x31);
  assert_engine_invariants (f->handle, TRUE);

  /* A write after the failed commit is kept too. */
  raw_write (f->data + 2 * PS + 1, 0x33);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stored_byte (f, 2, 0), ==, 0x31);
  g_assert_cmpuint (stored_byte (f, 2, 1), ==, 0x33);
  g_assert_cmpuint (stored_byte (f, 3, 0), ==, 0x32);
}

static void
test_begin_failure (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;

  raw_write (f->data, 0x41);
  test_txn_file_fail_next_begin (f->file);
  g_assert_false (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY);
  g_clear_error (&error);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 1);

  /* A refresh that fails inside the transaction aborts it. */
  test_txn_file_fail_next_refresh (f->file);
  g_assert_false (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_false (test_txn_file_in_transaction (f->file));
  g_assert_cmpuint (test_txn_file_get_n_aborts (f->file), ==, 1);

  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_cmpuint (stored_byte (f, 0, 0), ==, 0x41);
}

/* The seed's two steps: STORE leaves the transaction open, invisible to
 * others; MARK_STORED commits it and cleans what was stored and not
 * written since. */
static void
test_two_phase (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;

  raw_write (f->data + 1 * PS, 0x51);
  raw_write (f->data + 4 * PS, 0x54);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_STORE, &error));
  g_assert_no_error (error);
  g_assert_true (test_txn_file_in_transaction (f->file));
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 0);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 2);
  assert_engine_invariants (f->handle, TRUE);

  /* Written between the steps: committed as stored, but stays dirty. */
  raw_write (f->data + 4 * PS, 0x64);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_MARK_STORED, &error));
  g_assert_no_error (error);
  g_assert_false (test_txn_file_in_transaction (f->file));
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 1);
  g_assert_cmpuint (stored_byte (f, 1, 0), ==, 0x51);
  g_assert_cmpuint (stored_byte (f, 4, 0), ==, 0x54);
  g_assert_cmpuint (bigfile_handle_get_page_state (f->handle, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_handle_get_page_state (f->handle, 4), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (f->data[4 * PS], ==, 0x64);

  /* STORE twice, then one commit of both. */
  raw_write (f->data + 6 * PS, 0x56);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_STORE, &error));
  raw_write (f->data + 7 * PS, 0x57);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_STORE, &error));
  g_assert_cmpuint (test_txn_file_get_n_begins (f->file), ==, 2);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_MARK_STORED, &error));
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 2);
  g_assert_cmpuint (stored_byte (f, 4, 0), ==, 0x64);
  g_assert_cmpuint (stored_byte (f, 7, 0), ==, 0x57);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 0);

  /* MARK_STORED with nothing open commits nothing, marks nothing. */
  raw_write (f->data, 0x50);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_MARK_STORED, &error));
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 2);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 1);
}

/* The other participant of a two-phase commit failed: abort the first. */
static void
test_abort_writeout (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;

  raw_write (f->data + 3 * PS, 0x63);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_STORE, &error));
  bigfile_handle_abort_writeout (f->handle);
  g_assert_false (test_txn_file_in_transaction (f->file));
  g_assert_cmpuint (test_txn_file_get_n_aborts (f->file), ==, 1);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 1);
  assert_engine_invariants (f->handle, TRUE);
  /* Nothing intact is left to mark. */
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_MARK_STORED, &error));
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 1);
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 0);
  /* Not open: nothing to do. */
  bigfile_handle_abort_writeout (f->handle);
  g_assert_cmpuint (test_txn_file_get_n_aborts (f->file), ==, 1);

  /* Discard aborts too, and close. */
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_STORE, &error));
  g_assert_cmpuint (bigfile_handle_discard (f->handle), ==, 1);
  g_assert_false (test_txn_file_in_transaction (f->file));
  raw_write (f->data + 3 * PS, 0x73);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_STORE, &error));
  fixture_close (f);
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 0);
  fixture_open (f);
  g_assert_cmpuint (raw_read (f->data + 3 * PS), ==, 0);
}

/* Sizes set inside a transaction that aborts are set again next time. */
static void
test_size_abort (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;

  g_assert_true (bigfile_handle_set_size (f->handle, 3 * PS + 10, &error));
  raw_write (f->data + 1 * PS, 0x11);
  test_txn_file_fail_next_commit (f->file);
  g_assert_false (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_clear_error (&error);
  g_assert_cmpuint (test_txn_store_get_size (f->store), ==, N_PAGES * PS);
  g_assert_cmpuint (bigfile_handle_get_size (f->handle), ==, 3 * PS + 10);
  assert_engine_invariants (f->handle, TRUE);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (test_txn_store_get_size (f->store), ==, 3 * PS + 10);
}

/* -- snapshots, refresh, invalidation --------------------------------------- */

static void
test_refresh (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;
  const guint64 want[] = { 2, 3 };

  for (guint i = 0; i < N_PAGES; i++)
    g_assert_cmpuint (raw_read (f->data + i * PS), ==, 0);
  bigfile_handle_set_auto_refresh (f->handle, FALSE);

  test_txn_store_commit_fill (f->store, 2, 2, 0xab);
  drain ();
  /* Not refreshed: the snapshot holds. */
  g_assert_cmpuint (f->invalidated->len, ==, 0);
  g_assert_cmpuint (raw_read (f->data + 2 * PS), ==, 0);

  g_assert_true (bigfile_handle_refresh (f->handle, &error));
  g_assert_no_error (error);
  assert_invalidated (f, want, G_N_ELEMENTS (want));
  g_assert_cmpuint (bigfile_handle_get_page_state (f->handle, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_handle_get_page_state (f->handle, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (raw_read (f->data + 2 * PS), ==, 0xab);
  g_assert_cmpuint (raw_read (f->data + 3 * PS + 7), ==, 0xab);
  assert_engine_invariants (f->handle, TRUE);

  /* A refresh with nothing new says nothing; a failing one keeps the
   * changes for the next. */
  g_assert_true (bigfile_handle_refresh (f->handle, &error));
  g_assert_cmpuint (f->invalidated->len, ==, 0);
  test_txn_store_commit_fill (f->store, 5, 1, 0xcd);
  test_txn_file_fail_next_refresh (f->file);
  g_assert_false (bigfile_handle_refresh (f->handle, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED);
  g_clear_error (&error);
  g_assert_true (bigfile_handle_refresh (f->handle, &error));
  g_assert_cmpuint (f->invalidated->len, ==, 1);
  g_assert_cmpuint (raw_read (f->data + 5 * PS), ==, 0xcd);
}

/* Other clients' commits arrive by themselves in the main loop. */
static void
test_auto_refresh (Fixture *f, gconstpointer unused)
{
  const guint64 want[] = { 6 };
  TestTxnFile *other = test_txn_file_new (f->store);
  g_autofree guint8 *block = g_malloc (PS);
  GError *error = NULL;

  g_assert_true (bigfile_handle_get_auto_refresh (f->handle));
  g_assert_cmpuint (raw_read (f->data + 6 * PS), ==, 0);

  /* Another client's commit, through the plain file API. */
  memset (block, 0x66, PS);
  g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (other), &error));
  g_assert_true (bigfile_file_store_block_raw (BIGFILE_FILE (other), 6, block, PS, &error));
  g_assert_true (bigfile_file_commit_transaction (BIGFILE_FILE (other), 0, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (f->invalidated->len, ==, 0);
  drain ();
  assert_invalidated (f, want, G_N_ELEMENTS (want));
  g_assert_cmpuint (raw_read (f->data + 6 * PS), ==, 0x66);

  /* Our own commits are not reported back to us. */
  raw_write (f->data + 1 * PS, 0x01);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  drain ();
  g_assert_cmpuint (f->invalidated->len, ==, 0);
  g_assert_cmpuint (bigfile_handle_get_page_state (f->handle, 1), ==, BIGFILE_PAGE_STATE_LOADED);

  g_object_unref (other);
}

/* Commits signalled while auto-refresh was off are taken in when it is
 * turned on again. */
static void
test_auto_refresh_resumes (Fixture *f, gconstpointer unused)
{
  const guint64 want[] = { 0 };

  g_assert_cmpuint (raw_read (f->data), ==, 0);
  bigfile_handle_set_auto_refresh (f->handle, FALSE);
  test_txn_store_commit_fill (f->store, 0, 1, 0x3b);
  drain ();
  g_assert_cmpuint (f->invalidated->len, ==, 0);
  g_assert_cmpuint (raw_read (f->data), ==, 0);
  bigfile_handle_set_auto_refresh (f->handle, TRUE);
  drain ();
  assert_invalidated (f, want, G_N_ELEMENTS (want));
  g_assert_cmpuint (raw_read (f->data), ==, 0x3b);
}

/* A dirty page whose block another client changed is a conflict. */
static void
test_conflict (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;
  const guint64 want_invalidated[] = { 2 };
  g_autofree guint64 *conflicts = NULL;
  gsize n_conflicts = 0;

  raw_write (f->data + 1 * PS, 0x11);
  raw_write (f->data + 3 * PS, 0x13);
  bigfile_handle_set_auto_refresh (f->handle, FALSE);
  g_assert_cmpuint (raw_read (f->data + 2 * PS), ==, 0);
  test_txn_store_commit_fill (f->store, 2, 2, 0xee); /* blocks 2 and 3 */
  drain ();

  /* Learnt at the writeout, inside its transaction: nothing stored. */
  g_assert_false (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT);
  g_assert_nonnull (strstr (error->message, "page 3"));
  g_clear_error (&error);
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 1);
  g_assert_cmpuint (stored_byte (f, 1, 0), ==, 0);
  g_assert_cmpuint (stored_byte (f, 3, 0), ==, 0xee);
  g_assert_false (test_txn_file_in_transaction (f->file));
  /* Page 2 was clean: dropped and signalled; page 3 dirty: kept. */
  assert_invalidated (f, want_invalidated, G_N_ELEMENTS (want_invalidated));
  g_assert_cmpuint (raw_read (f->data + 2 * PS), ==, 0xee);
  g_assert_cmpuint (f->data[3 * PS], ==, 0x13);
  g_assert_cmpuint (f->data[3 * PS + 1], ==, 0);
  conflicts = bigfile_handle_get_conflicts (f->handle, &n_conflicts);
  g_assert_cmpuint (n_conflicts, ==, 1);
  g_assert_cmpuint (conflicts[0], ==, 3);
  assert_engine_invariants (f->handle, TRUE);

  /* Still a conflict at the next try. */
  g_assert_false (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT);
  g_clear_error (&error);

  /* Overwrite: ours replaces theirs. */
  g_assert_true (bigfile_handle_writeout (
      f->handle, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_OVERWRITE, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stored_byte (f, 1, 0), ==, 0x11);
  g_assert_cmpuint (stored_byte (f, 3, 0), ==, 0x13);
  g_assert_cmpuint (stored_byte (f, 3, 1), ==, 0);
  g_clear_pointer (&conflicts, g_free);
  conflicts = bigfile_handle_get_conflicts (f->handle, &n_conflicts);
  g_assert_null (conflicts);
  g_assert_cmpuint (n_conflicts, ==, 0);
}

/* Discarding the page in conflict shows the other client's data. */
static void
test_conflict_discard (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;
  gsize n = 0;
  g_autofree guint64 *conflicts = NULL;

  raw_write (f->data + 4 * PS, 0x44);
  test_txn_store_commit_fill (f->store, 4, 1, 0x99);
  drain (); /* auto-refresh marks it */
  conflicts = bigfile_handle_get_conflicts (f->handle, &n);
  g_assert_cmpuint (n, ==, 1);
  g_assert_cmpuint (f->invalidated->len, ==, 0);
  g_assert_cmpuint (bigfile_handle_discard (f->handle), ==, 1);
  g_assert_cmpuint (raw_read (f->data + 4 * PS), ==, 0x99);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (stored_byte (f, 4, 0), ==, 0x99);
}

/* Two clients writing different blocks: neither loses the other's. */
static void
test_no_lost_update (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;
  TestTxnFile *file_b = test_txn_file_new (f->store);
  BigfileHandle *b = bigfile_handle_new (BIGFILE_FILE (file_b), f->ram, &error);
  BigfileVma *vb = bigfile_handle_map (b, 0, N_PAGES, &error);
  guint8 *db = bigfile_vma_get_data (vb);

  g_assert_no_error (error);
  raw_write (f->data + 0 * PS, 0xa0);
  raw_write (db + 7 * PS, 0xb7);
  g_assert_true (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_true (bigfile_handle_writeout (b, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  drain ();
  g_assert_cmpuint (stored_byte (f, 0, 0), ==, 0xa0);
  g_assert_cmpuint (stored_byte (f, 7, 0), ==, 0xb7);
  g_assert_cmpuint (raw_read (f->data + 7 * PS), ==, 0xb7);
  g_assert_cmpuint (raw_read (db + 0 * PS), ==, 0xa0);

  /* The same block: the second writer is told. */
  raw_write (f->data + 5 * PS, 0xa5);
  raw_write (db + 5 * PS, 0xb5);
  g_assert_true (bigfile_handle_writeout (b, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_false (bigfile_handle_writeout (f->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT);
  g_clear_error (&error);
  g_assert_cmpuint (stored_byte (f, 5, 0), ==, 0xb5);

  bigfile_vma_unmap (vb);
  g_object_unref (vb);
  g_assert_true (bigfile_handle_close (b));
  g_object_unref (b);
  drain ();
  g_object_unref (file_b);
}

/* Another client's size change: the handle follows. */
static void
test_size_follows (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;
  TestTxnFile *other = test_txn_file_new (f->store);

  g_assert_cmpuint (bigfile_handle_get_size (f->handle), ==, N_PAGES * PS);
  g_assert_cmpuint (raw_read (f->data + 2 * PS), ==, 0);
  g_assert_true (bigfile_file_begin_transaction (BIGFILE_FILE (other), &error));
  g_assert_true (bigfile_file_set_size (BIGFILE_FILE (other), 2 * PS + 100, &error));
  g_assert_true (bigfile_file_commit_transaction (BIGFILE_FILE (other), 0, &error));
  g_assert_no_error (error);
  drain ();
  g_assert_cmpuint (bigfile_handle_get_size (f->handle), ==, 2 * PS + 100);
  g_assert_cmpuint (bigfile_handle_get_page_state (f->handle, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  assert_engine_invariants (f->handle, TRUE);
  g_object_unref (other);
}

/* A file with snapshots serves one handle. */
static void
test_one_handle (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;
  BigfileHandle *second = bigfile_handle_new (BIGFILE_FILE (f->file), f->ram, &error);

  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_BUSY);
  g_assert_null (second);
  g_clear_error (&error);
}

/* A forked child cannot move the parent's snapshot: the file's
 * connections are the parent's. */
static void
test_forked_refresh (Fixture *f, gconstpointer unused)
{
  int status = 0;
  pid_t pid;

  if (RUNNING_ON_VALGRIND)
    {
      g_test_skip ("forked children under valgrind: see test-fork");
      return;
    }
  test_txn_store_commit_fill (f->store, 1, 1, 0x42);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      /* No GLib objects of its own here (GLib is not fork-safe). */
      GError *error = NULL;
      guint before = test_txn_file_get_n_refreshes (f->file);
      gboolean ok = bigfile_handle_refresh (f->handle, &error);

      _exit (!ok && g_error_matches (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_FORKED)
                     && test_txn_file_get_n_refreshes (f->file) == before
                 ? 0
                 : 1);
    }
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
}

/* An asynchronous writeout cancelled half way commits nothing. */
static void
async_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GError **error = user_data;

  bigfile_handle_writeout_finish (BIGFILE_HANDLE (source), result, error);
  if (*error == NULL)
    *error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_EXISTS, "no error");
}

static void
cancel_on_store (guint64 done, guint64 total, gpointer user_data)
{
  if (done > 0 && done < total)
    g_cancellable_cancel (user_data);
}

static void
test_async_cancel (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();

  for (guint i = 0; i < N_PAGES; i++)
    raw_write (f->data + i * PS, 0x80 + i);
  /* Cancel right away: the first step runs anyway? No: cancelled before
   * any page, nothing is stored. */
  g_cancellable_cancel (cancellable);
  bigfile_handle_writeout_async (f->handle, BIGFILE_WRITEOUT_DEFAULT, G_PRIORITY_DEFAULT,
                                 cancellable, NULL, NULL, NULL, async_done, &error);
  while (error == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 0);
  g_assert_false (test_txn_file_in_transaction (f->file));
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, N_PAGES);

  bigfile_handle_writeout_async (f->handle, BIGFILE_WRITEOUT_DEFAULT, G_PRIORITY_DEFAULT, NULL,
                                 NULL, NULL, NULL, async_done, &error);
  while (error == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS);
  g_clear_error (&error);
  g_assert_cmpuint (test_txn_store_get_version (f->store), ==, 1);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f->handle), ==, 0);
  (void)cancel_on_store;
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn)                                                                              \
  g_test_add ("/transactions/" path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("writeout-one-commit", test_writeout_one_commit);
  ADD ("store-failure-aborts", test_store_failure_aborts);
  ADD ("commit-failure", test_commit_failure);
  ADD ("begin-failure", test_begin_failure);
  ADD ("two-phase", test_two_phase);
  ADD ("abort-writeout", test_abort_writeout);
  ADD ("size-abort", test_size_abort);
  ADD ("refresh", test_refresh);
  ADD ("auto-refresh", test_auto_refresh);
  ADD ("auto-refresh-resumes", test_auto_refresh_resumes);
  ADD ("conflict", test_conflict);
  ADD ("conflict-discard", test_conflict_discard);
  ADD ("no-lost-update", test_no_lost_update);
  ADD ("size-follows", test_size_follows);
  ADD ("one-handle", test_one_handle);
  ADD ("forked-refresh", test_forked_refresh);
  ADD ("async-cancel", test_async_cancel);
#undef ADD

  return g_test_run ();
}
