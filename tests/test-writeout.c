/* bigfile-glib tests - writeout: what may be marked clean
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A page may be marked clean only if its memory is what was stored: a write
 * after its store (through raw memory, the API, or a writable pin) keeps it
 * dirty, and so does a page that was never stored.  These are the two-step
 * saves transactional storage depends on (STORE, then later MARK_STORED),
 * and writable pins that go while their page is being stored.
 */
#include "config.h"

#include <string.h>

#include "test-util.h"

#define PS ((gsize)4096)

static void
writeout_ok (Mapping *m, BigfileWriteoutFlags flags)
{
  GError *error = NULL;

  g_assert_true (bigfile_handle_writeout (m->handle, flags, &error));
  g_assert_no_error (error);
}

/* STORE, a raw write to a stored page, MARK_STORED: the write stays. */
static void
test_two_step_raw_write_between (void)
{
  Mapping m;

  g_test_summary ("A page written between STORE and MARK_STORED stays dirty");
  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 2 * PS + 1, 0x11);
  writeout_ok (&m, BIGFILE_WRITEOUT_STORE);
  g_assert_cmpuint (test_mem_file_peek (m.file, 2)[1], ==, 0x11);
  assert_mapping (m.vma, 2, TRUE, FALSE);

  raw_write (m.data + 2 * PS + 7, 0x77);
  writeout_ok (&m, BIGFILE_WRITEOUT_MARK_STORED);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 1);
  g_assert_cmpuint (raw_read (m.data + 2 * PS + 7), ==, 0x77);

  /* Nothing is lost: reclaim cannot take it, the next save stores it. */
  bigfile_ram_reclaim (m.ram);
  g_assert_cmpuint (raw_read (m.data + 2 * PS + 7), ==, 0x77);
  writeout_ok (&m, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_cmpuint (test_mem_file_peek (m.file, 2)[7], ==, 0x77);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_LOADED);
  mapping_teardown (&m);
}

/* Reads between the steps, even through a mapping made after the STORE,
 * map the stored page read-only and let it be marked. */
static void
test_two_step_read_between (void)
{
  Mapping m;
  GError *error = NULL;
  g_autoptr (BigfileVma) other = NULL;
  guint8 *other_data;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 6 * PS, 0x66);
  writeout_ok (&m, BIGFILE_WRITEOUT_STORE);
  other = bigfile_handle_map (m.handle, 0, 8, &error);
  g_assert_no_error (error);
  other_data = bigfile_vma_get_data (other);
  g_assert_cmpuint (raw_read (other_data + 6 * PS), ==, 0x66);
  assert_mapping (other, 6, TRUE, FALSE);

  writeout_ok (&m, BIGFILE_WRITEOUT_MARK_STORED);
  g_assert_cmpint (page_state (&m, 6), ==, BIGFILE_PAGE_STATE_LOADED);
  /* ...and a write after that is seen again, through either mapping. */
  raw_write (other_data + 6 * PS + 1, 0x67);
  g_assert_cmpint (page_state (&m, 6), ==, BIGFILE_PAGE_STATE_DIRTY);
  bigfile_vma_unmap (other);
  mapping_teardown (&m);
}

/* The same through bigfile_vma_write() and through a writable pin. */
static void
test_two_step_api_write_between (void)
{
  Mapping m;
  GError *error = NULL;
  const guint8 byte = 0x5a;
  g_autoptr (GBytes) bytes = g_bytes_new_static (&byte, 1);

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 1 * PS, 0x01);
  raw_write (m.data + 3 * PS, 0x03);
  writeout_ok (&m, BIGFILE_WRITEOUT_STORE);

  g_assert_true (bigfile_vma_write (m.vma, 1 * PS + 9, bytes, &error));
  g_assert_no_error (error);
  /* A writable pin may be written by anyone (the kernel too): not intact. */
  g_assert_true (bigfile_vma_pin (m.vma, 3 * PS, PS, TRUE, &error));
  g_assert_no_error (error);
  bigfile_vma_unpin (m.vma, 3 * PS, PS);

  writeout_ok (&m, BIGFILE_WRITEOUT_MARK_STORED);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  writeout_ok (&m, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_cmpuint (test_mem_file_peek (m.file, 1)[9], ==, byte);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  mapping_teardown (&m);
}

/* A page first dirtied after the STORE was never stored: MARK_STORED must
 * not mark it, while the stored page next to it becomes clean. */
static void
test_two_step_new_page_between (void)
{
  Mapping m;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 1 * PS, 0x01);
  writeout_ok (&m, BIGFILE_WRITEOUT_STORE);
  raw_write (m.data + 5 * PS + 2, 0x55);
  test_mem_file_reset_counters (m.file);

  writeout_ok (&m, BIGFILE_WRITEOUT_MARK_STORED);
  g_assert_cmpuint (test_mem_file_get_total_stores (m.file), ==, 0);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 1, TRUE, FALSE);
  g_assert_cmpint (page_state (&m, 5), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (m.data + 5 * PS + 2), ==, 0x55);
  mapping_teardown (&m);
}

/* A store that failed stored nothing: MARK_STORED after it marks nothing. */
static void
test_two_step_failed_store (void)
{
  Mapping m;
  GError *error = NULL;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 4 * PS, 0x44);
  test_mem_file_set_fail_store (m.file, 4, TRUE, FALSE);
  g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_STORE, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);
  test_mem_file_set_fail_store (m.file, 4, FALSE, FALSE);

  writeout_ok (&m, BIGFILE_WRITEOUT_MARK_STORED);
  g_assert_cmpint (page_state (&m, 4), ==, BIGFILE_PAGE_STATE_DIRTY);
  writeout_ok (&m, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_cmpuint (test_mem_file_peek (m.file, 4)[0], ==, 0x44);
  mapping_teardown (&m);
}

/* -- a writable pin released while its page is stored ------------------------- */

typedef struct
{
  Mapping *m;
  guint64 block;
  gboolean done;
} PinStore;

/* In the middle of the store of the pinned page: the pin goes, and the
 * holder writes one more byte, as it was promised it may. */
static void
unpin_and_write_during_store (TestMemFile *file, guint64 block, gpointer user_data)
{
  PinStore *ps = user_data;

  if (block != ps->block || ps->done)
    return;
  ps->done = TRUE;
  bigfile_vma_unpin (ps->m->vma, block * PS, PS);
  raw_write (ps->m->data + block * PS + 100, 0xee);
}

static void
on_writeout_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  gboolean *finished = user_data;
  GError *error = NULL;

  g_assert_true (bigfile_handle_writeout_finish (BIGFILE_HANDLE (source), result, &error));
  g_assert_no_error (error);
  *finished = TRUE;
}

static void
check_pin_released_during_store (gboolean async)
{
  Mapping m;
  GError *error = NULL;
  PinStore ps = { &m, 2, FALSE };

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  g_assert_true (bigfile_vma_pin (m.vma, 2 * PS, PS, TRUE, &error));
  g_assert_no_error (error);
  raw_write (m.data + 2 * PS, 0x01);
  test_mem_file_set_store_hook (m.file, unpin_and_write_during_store, &ps);

  if (async)
    {
      gboolean finished = FALSE;

      bigfile_handle_writeout_async (m.handle, BIGFILE_WRITEOUT_DEFAULT, G_PRIORITY_DEFAULT, NULL,
                                     NULL, NULL, NULL, on_writeout_done, &finished);
      while (!finished)
        g_main_context_iteration (NULL, TRUE);
    }
  else
    writeout_ok (&m, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_true (ps.done);

  /* The byte written during the store may or may not be in the file; it
   * must still be in memory, dirty, and survive reclaim. */
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
  bigfile_ram_reclaim (m.ram);
  g_assert_cmpuint (raw_read (m.data + 2 * PS + 100), ==, 0xee);
  test_mem_file_set_store_hook (m.file, NULL, NULL);
  writeout_ok (&m, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_cmpuint (test_mem_file_peek (m.file, 2)[100], ==, 0xee);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_LOADED);
  mapping_teardown (&m);
}

static void
test_pin_released_during_store (void)
{
  g_test_summary ("A writable pin released while its page is stored keeps the page dirty");
  check_pin_released_during_store (FALSE);
}

static void
test_pin_released_during_store_async (void)
{
  check_pin_released_during_store (TRUE);
}

/* Pins of one range nest: unpin undoes the latest, so a writable pin
 * taken over a read-only one goes first and the page can be marked clean
 * again while the read-only pin still holds it. */
static void
test_nested_pins_unwind_last_first (void)
{
  Mapping m;
  GError *error = NULL;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  g_assert_true (bigfile_vma_pin (m.vma, 3 * PS, PS, FALSE, &error));
  g_assert_true (bigfile_vma_pin (m.vma, 3 * PS, PS, TRUE, &error));
  g_assert_no_error (error);
  raw_write (m.data + 3 * PS, 0x33);
  bigfile_vma_unpin (m.vma, 3 * PS, PS);

  writeout_ok (&m, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (test_mem_file_peek (m.file, 3)[0], ==, 0x33);
  /* The read-only pin still holds the page through reclaim. */
  bigfile_ram_reclaim (m.ram);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_LOADED);
  bigfile_vma_unpin (m.vma, 3 * PS, PS);
  bigfile_ram_reclaim (m.ram);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);
  mapping_teardown (&m);
}

/* -- cancellation at the edges ------------------------------------------------------ */

typedef struct
{
  GCancellable *cancellable;
  guint64 block; /* cancel during the store of this block */
  gboolean fail; /* ...and make that store fail */
  gboolean finished;
  gboolean ok;
  GError *error;
} CancelEdge;

static void
cancel_during_store (TestMemFile *file, guint64 block, gpointer user_data)
{
  CancelEdge *ce = user_data;

  if (block != ce->block)
    return;
  g_cancellable_cancel (ce->cancellable);
  if (ce->fail)
    test_mem_file_set_fail_store (file, block, TRUE, FALSE);
}

static void
on_edge_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CancelEdge *ce = user_data;

  ce->ok = bigfile_handle_writeout_finish (BIGFILE_HANDLE (source), result, &ce->error);
  ce->finished = TRUE;
}

static void
run_cancel_edge (CancelEdge *ce, gboolean thread_safe, Mapping *m)
{
  mapping_setup (m, PS, 8, 8, 1 << 20);
  test_mem_file_set_thread_safe (m->file, thread_safe);
  raw_write (m->data + 1 * PS, 0x01);
  raw_write (m->data + 5 * PS, 0x05);
  ce->cancellable = g_cancellable_new ();
  test_mem_file_set_store_hook (m->file, cancel_during_store, ce);
  bigfile_handle_writeout_async (m->handle, BIGFILE_WRITEOUT_DEFAULT, G_PRIORITY_DEFAULT,
                                 ce->cancellable, NULL, NULL, NULL, on_edge_done, ce);
  while (!ce->finished)
    g_main_context_iteration (NULL, TRUE);
  test_mem_file_set_store_hook (m->file, NULL, NULL);
  g_clear_object (&ce->cancellable);
}

/* Cancelled during the last store: every page was stored and marked, so
 * the writeout succeeded, and says so. */
static void
check_cancel_after_last (gboolean thread_safe)
{
  Mapping m;
  CancelEdge ce = { NULL, 5, FALSE, FALSE, FALSE, NULL };

  run_cancel_edge (&ce, thread_safe, &m);
  g_assert_no_error (ce.error);
  g_assert_true (ce.ok);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  g_assert_cmpuint (test_mem_file_peek (m.file, 5)[0], ==, 0x05);
  mapping_teardown (&m);
}

static void
test_cancel_after_last (void)
{
  g_test_summary ("A writeout cancelled once nothing is left to do reports success");
  check_cancel_after_last (TRUE);
  check_cancel_after_last (FALSE);
}

/* Cancelled during a store that then fails: the store's error is what
 * happened, and it is what the finish function reports. */
static void
check_cancel_and_store_error (gboolean thread_safe)
{
  Mapping m;
  CancelEdge ce = { NULL, 1, TRUE, FALSE, FALSE, NULL };

  run_cancel_edge (&ce, thread_safe, &m);
  g_assert_false (ce.ok);
  g_assert_error (ce.error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&ce.error);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 5), ==, BIGFILE_PAGE_STATE_DIRTY);
  test_mem_file_set_fail_store (m.file, 1, FALSE, FALSE);
  writeout_ok (&m, BIGFILE_WRITEOUT_DEFAULT);
  mapping_teardown (&m);
}

static void
test_cancel_and_store_error (void)
{
  g_test_summary ("A store error during a cancelled writeout is reported as itself");
  check_cancel_and_store_error (TRUE);
  check_cancel_and_store_error (FALSE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/writeout/two-step/raw-write-between", test_two_step_raw_write_between);
  g_test_add_func ("/writeout/two-step/api-write-between", test_two_step_api_write_between);
  g_test_add_func ("/writeout/two-step/read-between", test_two_step_read_between);
  g_test_add_func ("/writeout/two-step/new-page-between", test_two_step_new_page_between);
  g_test_add_func ("/writeout/two-step/failed-store", test_two_step_failed_store);
  g_test_add_func ("/writeout/pin-released-during-store", test_pin_released_during_store);
  g_test_add_func ("/writeout/pin-released-during-store-async",
                   test_pin_released_during_store_async);
  g_test_add_func ("/writeout/nested-pins", test_nested_pins_unwind_last_first);
  g_test_add_func ("/writeout/cancel/after-last-page", test_cancel_after_last);
  g_test_add_func ("/writeout/cancel/store-error", test_cancel_and_store_error);
  return g_test_run ();
}
