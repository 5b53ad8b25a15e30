/* bigfile-glib tests - handles: writeout, discard, invalidate, mappings,
 * the explicit VMA API, populate and pin
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <fcntl.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "test-util.h"

#define PS ((gsize)4096)

/* The file's original block @block, freshly allocated. */
static guint8 *
pattern_block (guint64 block)
{
  guint8 *buf = g_malloc (PS);

  for (gsize i = 0; i < PS; i++)
    buf[i] = test_mem_file_pattern (block, i);
  return buf;
}

static void
assert_storage_is_pattern (TestMemFile *file, guint64 block)
{
  g_autofree guint8 *expected = pattern_block (block);

  g_assert_cmpmem (test_mem_file_peek (file, block), PS, expected, PS);
}

/* -- writeout ----------------------------------------------------------------- */

/* STORE alone: the pages are stored but stay dirty (a transaction marks
 * them later), so the dirty count does not change and the next writeout
 * stores them again. */
static void
test_writeout_store_only (void)
{
  Mapping m;
  GError *error = NULL;
  const guint64 first[] = { 1, 4 };
  const guint64 both[] = { 1, 4, 1, 4 };

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 1 * PS + 3, 0x11);
  raw_write (m.data + 4 * PS + 5, 0x44);
  raw_read (m.data + 6 * PS); /* a clean page: not stored */
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);

  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_STORE, &error));
  g_assert_no_error (error);
  assert_store_log (m.file, first, G_N_ELEMENTS (first));
  g_assert_cmpuint (test_mem_file_peek (m.file, 1)[3], ==, 0x11);
  g_assert_cmpuint (test_mem_file_peek (m.file, 4)[5], ==, 0x44);

  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 4), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 6), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (m.ram), ==, 2);

  /* Still writable (after a fault, since the store made it read-only
   * while it ran), still dirty, and the next STORE stores it again. */
  raw_write (m.data + 1 * PS + 4, 0x12);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  assert_mapping (m.vma, 1, TRUE, TRUE);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_STORE, &error));
  g_assert_no_error (error);
  assert_store_log (m.file, both, G_N_ELEMENTS (both));
  g_assert_cmpuint (test_mem_file_peek (m.file, 1)[4], ==, 0x12);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);

  mapping_teardown (&m);
}

/* MARK_STORED alone, with no STORE before: nothing was stored, so nothing
 * may be marked clean (that would lose the changes); the pages stay dirty
 * and writable. */
static void
test_writeout_mark_stored_only (void)
{
  Mapping m;
  GError *error = NULL;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 1 * PS + 3, 0x11);
  raw_write (m.data + 4 * PS + 5, 0x44);
  assert_mapping (m.vma, 1, TRUE, TRUE);

  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_MARK_STORED, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (test_mem_file_get_total_stores (m.file), ==, 0);
  assert_storage_is_pattern (m.file, 1);
  assert_storage_is_pattern (m.file, 4);

  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 4), ==, BIGFILE_PAGE_STATE_DIRTY);
  assert_mapping (m.vma, 1, TRUE, TRUE);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (m.ram), ==, 2);
  g_assert_cmpuint (raw_read (m.data + 1 * PS + 3), ==, 0x11);

  /* After a STORE it marks them, read-only again, so that a new write is
   * seen and re-dirties. */
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_STORE, &error));
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_MARK_STORED, &error));
  g_assert_no_error (error);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&m, 4), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 1, TRUE, FALSE);
  assert_mapping (m.vma, 4, TRUE, FALSE);

  raw_write (m.data + 1 * PS + 9, 0x22);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  assert_mapping (m.vma, 1, TRUE, TRUE);
  g_assert_cmpint (page_state (&m, 4), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 1);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 1), ==, 1);

  mapping_teardown (&m);
}

/* Both (what a save is): stored, then clean and read-only. */
static void
test_writeout_default (void)
{
  Mapping m;
  GError *error = NULL;
  const guint64 stored[] = { 1, 4 };

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 1 * PS + 3, 0x11);
  raw_write (m.data + 4 * PS + 5, 0x44);

  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  assert_store_log (m.file, stored, G_N_ELEMENTS (stored));
  g_assert_cmpuint (test_mem_file_peek (m.file, 1)[3], ==, 0x11);
  g_assert_cmpuint (test_mem_file_peek (m.file, 1)[4], ==, test_mem_file_pattern (1, 4));
  g_assert_cmpuint (test_mem_file_peek (m.file, 4)[5], ==, 0x44);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&m, 4), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 1, TRUE, FALSE);
  assert_mapping (m.vma, 4, TRUE, FALSE);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);

  /* Nothing dirty: a writeout stores nothing. */
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (test_mem_file_get_total_stores (m.file), ==, 2);

  mapping_teardown (&m);
}

/* Stores go in ascending block order, whatever order the pages were
 * dirtied in. */
static void
test_writeout_order (void)
{
  Mapping m;
  GError *error = NULL;
  const guint64 dirtied[] = { 7, 2, 13, 9, 0, 5, 11 };
  const guint64 sorted[] = { 0, 2, 5, 7, 9, 11, 13 };

  mapping_setup (&m, PS, 16, 16, 1 << 20);
  for (guint i = 0; i < G_N_ELEMENTS (dirtied); i++)
    raw_write (m.data + dirtied[i] * PS + i, (guint8)(0xF0 + i));

  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  assert_store_log (m.file, sorted, G_N_ELEMENTS (sorted));
  for (guint i = 0; i < G_N_ELEMENTS (dirtied); i++)
    g_assert_cmpuint (test_mem_file_peek (m.file, dirtied[i])[i], ==, 0xF0 + i);

  mapping_teardown (&m);
}

/* -- discard ------------------------------------------------------------------ */

static void
test_discard (void)
{
  Mapping m;
  g_autofree guint8 *original = pattern_block (2);

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_read (m.data + 0 * PS);
  raw_read (m.data + 1 * PS);
  raw_write (m.data + 2 * PS + 0, 0xD2);
  raw_write (m.data + 3 * PS + 1, 0xD3);
  raw_write (m.data + 5 * PS + 2, 0xD5);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 5);

  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 3);

  /* Dirty pages are gone; clean ones untouched, still mapped. */
  for (guint64 p = 2; p <= 5; p++)
    {
      g_assert_cmpint (page_state (&m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
      assert_mapping (m.vma, p, FALSE, FALSE);
    }
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 0, TRUE, FALSE);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (m.ram), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 2);
  g_assert_cmpuint (test_mem_file_get_total_stores (m.file), ==, 0);

  /* The next access loads the original data again. */
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 1);
  g_assert_cmpint (memcmp (m.data + 2 * PS, original, PS), ==, 0);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 2);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (raw_read (m.data + 3 * PS + 1), ==, test_mem_file_pattern (3, 1));
  g_assert_cmpuint (raw_read (m.data + 5 * PS + 2), ==, test_mem_file_pattern (5, 2));
  /* Clean pages were not reloaded. */
  raw_read (m.data + 0 * PS);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 0), ==, 1);

  /* Nothing dirty: nothing to discard. */
  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 0);

  mapping_teardown (&m);
}

/* -- invalidate --------------------------------------------------------------- */

static void
test_invalidate_absent (void)
{
  Mapping m;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_read (m.data);

  bigfile_handle_invalidate_page (m.handle, 3);
  bigfile_handle_invalidate_page (m.handle, 1000); /* past the mapping and file */
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 1);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 1);

  mapping_teardown (&m);
}

/* The block changed in storage behind the handle's back: invalidating the
 * clean page makes the next access see the new contents. */
static void
test_invalidate_clean (void)
{
  Mapping m;
  guint8 new_data[PS];

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  memset (new_data, 0x5E, PS);

  g_assert_cmpuint (raw_read (m.data + 2 * PS + 8), ==, test_mem_file_pattern (2, 8));
  test_mem_file_poke (m.file, 2, new_data);
  /* The handle is a snapshot: still the old contents. */
  g_assert_cmpuint (raw_read (m.data + 2 * PS + 8), ==, test_mem_file_pattern (2, 8));

  bigfile_handle_invalidate_page (m.handle, 2);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  assert_mapping (m.vma, 2, FALSE, FALSE);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 0);

  g_assert_cmpint (memcmp (m.data + 2 * PS, new_data, PS), ==, 0);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 2);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_LOADED);

  mapping_teardown (&m);
}

/* Invalidating a dirty page drops it: its changes are lost, as documented. */
static void
test_invalidate_dirty (void)
{
  Mapping m;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 2 * PS + 8, 0x77);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 1);

  bigfile_handle_invalidate_page (m.handle, 2);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  assert_mapping (m.vma, 2, FALSE, FALSE);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (m.ram), ==, 0);

  g_assert_cmpuint (raw_read (m.data + 2 * PS + 8), ==, test_mem_file_pattern (2, 8));
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 2);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, NULL));
  g_assert_cmpuint (test_mem_file_get_total_stores (m.file), ==, 0);

  mapping_teardown (&m);
}

typedef struct
{
  BigfileHandle *handle;
  guint64 block;
  guint calls;
  BigfilePageState state_in_load;
  BigfilePageState state_after_invalidate;
  guint8 new_data[PS];
} InvalidateInLoad;

/* First load of the block: the page is LOADING; invalidate it from here
 * (allowed: the engine lock is released while a load runs). The data this
 * load returns is then stale. Second load: the block changed in storage
 * meanwhile, which is why it was invalidated. */
static void
invalidate_in_load_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  InvalidateInLoad *ctx = user_data;

  if (block != ctx->block)
    return;
  ctx->calls++;
  if (ctx->calls == 1)
    {
      ctx->state_in_load = bigfile_handle_get_page_state (ctx->handle, block);
      bigfile_handle_invalidate_page (ctx->handle, block);
      ctx->state_after_invalidate = bigfile_handle_get_page_state (ctx->handle, block);
    }
  else if (ctx->calls == 2)
    test_mem_file_poke (file, block, ctx->new_data);
}

/* Invalidating a page while it loads: the engine throws the in-flight
 * result away and loads again, so the access sees the new data. */
static void
test_invalidate_loading (void)
{
  Mapping m;
  InvalidateInLoad ctx = { 0 };

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  ctx.handle = m.handle;
  ctx.block = 3;
  memset (ctx.new_data, 0x6B, PS);
  test_mem_file_set_load_hook (m.file, invalidate_in_load_hook, &ctx);

  g_assert_cmpuint (raw_read (m.data + 3 * PS + 100), ==, 0x6B);
  g_assert_cmpuint (ctx.calls, ==, 2);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 3), ==, 2);
  g_assert_cmpint (ctx.state_in_load, ==, BIGFILE_PAGE_STATE_LOADING);
  g_assert_cmpint (ctx.state_after_invalidate, ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (memcmp (m.data + 3 * PS, ctx.new_data, PS), ==, 0);
  /* The stale page's memory went back: one page in use. */
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 1);

  /* The same through the explicit API. */
  ctx.block = 5;
  ctx.calls = 0;
  memset (ctx.new_data, 0x7C, PS);
  {
    GError *error = NULL;
    g_autoptr (GBytes) bytes = bigfile_vma_read (m.vma, 5 * PS, PS, &error);

    g_assert_no_error (error);
    g_assert_cmpmem (g_bytes_get_data (bytes, NULL), PS, ctx.new_data, PS);
  }
  g_assert_cmpuint (ctx.calls, ==, 2);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 5), ==, 2);
  g_assert_cmpint (page_state (&m, 5), ==, BIGFILE_PAGE_STATE_LOADED);

  test_mem_file_set_load_hook (m.file, NULL, NULL);
  mapping_teardown (&m);
}

/* -- store errors ----------------------------------------------------------------- */

/* A store fails in the middle of a writeout: it stops there with that
 * error; the pages stored before it are clean, the failing one and those
 * after stay dirty with their data; a retry finishes the job. */
static void
test_store_error_retry (void)
{
  Mapping m;
  GError *error = NULL;
  const guint64 dirty[] = { 1, 3, 5, 7 };
  const guint64 first_part[] = { 1, 3 };

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  for (guint i = 0; i < G_N_ELEMENTS (dirty); i++)
    raw_write (m.data + dirty[i] * PS + 10, (guint8)(0xC0 + dirty[i]));

  test_mem_file_set_fail_store (m.file, 5, TRUE, FALSE);
  g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "block 5"));
  g_clear_error (&error);

  assert_store_log (m.file, first_part, G_N_ELEMENTS (first_part));
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&m, 5), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 7), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);
  g_assert_cmpuint (test_mem_file_peek (m.file, 1)[10], ==, 0xC1);
  g_assert_cmpuint (test_mem_file_peek (m.file, 3)[10], ==, 0xC3);
  assert_storage_is_pattern (m.file, 5);
  assert_storage_is_pattern (m.file, 7);
  g_assert_cmpuint (raw_read (m.data + 5 * PS + 10), ==, 0xC5);
  g_assert_cmpuint (raw_read (m.data + 7 * PS + 10), ==, 0xC7);
  g_assert_cmpuint (raw_read (m.data + 5 * PS + 11), ==, test_mem_file_pattern (5, 11));

  /* Still failing: the same again, and nothing lost. */
  g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);

  test_mem_file_set_fail_store (m.file, 5, FALSE, FALSE);
  test_mem_file_reset_counters (m.file);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  {
    const guint64 rest[] = { 5, 7 };
    assert_store_log (m.file, rest, G_N_ELEMENTS (rest));
  }
  for (guint i = 0; i < G_N_ELEMENTS (dirty); i++)
    {
      g_autofree guint8 *expected = pattern_block (dirty[i]);

      expected[10] = (guint8)(0xC0 + dirty[i]);
      g_assert_cmpmem (test_mem_file_peek (m.file, dirty[i]), PS, expected, PS);
      g_assert_cmpint (page_state (&m, dirty[i]), ==, BIGFILE_PAGE_STATE_LOADED);
    }
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);

  mapping_teardown (&m);
}

/* A store method that fails without saying why still gives an error. */
static void
test_store_error_no_gerror (void)
{
  Mapping m;
  GError *error = NULL;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + 2 * PS, 0x42);
  test_mem_file_set_fail_store (m.file, 2, TRUE, TRUE);

  g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "block 2"));
  g_clear_error (&error);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (m.data + 2 * PS), ==, 0x42);

  test_mem_file_set_fail_store (m.file, 2, FALSE, FALSE);
  mapping_teardown (&m);
}

/* -- several mappings, several handles ------------------------------------------- */

/* Two mappings of one handle share its pages: one load, one copy. */
static void
test_two_mappings_share_pages (void)
{
  Mapping m;
  GError *error = NULL;
  BigfileVma *vma_b;
  guint8 *b;

  mapping_setup (&m, PS, 8, 4, 1 << 20);               /* A: pages 0-3 */
  vma_b = bigfile_handle_map (m.handle, 2, 4, &error); /* B: pages 2-5 */
  g_assert_no_error (error);
  g_assert_cmpuint (bigfile_vma_get_first_page (vma_b), ==, 2);
  g_assert_cmpuint (bigfile_vma_get_n_pages (vma_b), ==, 4);
  b = bigfile_vma_get_data (vma_b);
  g_assert_true (b != m.data);

  raw_write (m.data + 3 * PS + 1, 0x5A);
  g_assert_cmpuint (raw_read (b + 1 * PS + 1), ==, 0x5A);
  g_assert_cmpuint (raw_read (b + 1 * PS + 2), ==, test_mem_file_pattern (3, 2));
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 3), ==, 1);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  assert_mapping (m.vma, 3, TRUE, TRUE);
  assert_mapping (vma_b, 3, TRUE, TRUE);

  /* The other way round, reading first through B. */
  g_assert_cmpuint (raw_read (b + 0 * PS + 7), ==, test_mem_file_pattern (2, 7));
  assert_mapping (vma_b, 2, TRUE, FALSE);
  assert_mapping (m.vma, 2, FALSE, FALSE);
  raw_write (m.data + 2 * PS + 7, 0xA5);
  g_assert_cmpuint (raw_read (b + 0 * PS + 7), ==, 0xA5);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 1);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 2);

  /* A writeout makes the page read-only in both. */
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, NULL));
  assert_mapping (m.vma, 3, TRUE, FALSE);
  assert_mapping (vma_b, 3, TRUE, FALSE);
  raw_write (b + 1 * PS + 1, 0x5B);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (m.data + 3 * PS + 1), ==, 0x5B);

  /* Unmapping B leaves the pages to A. */
  bigfile_vma_unmap (vma_b);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (m.data + 3 * PS + 1), ==, 0x5B);
  g_object_unref (vma_b);

  mapping_teardown (&m);
}

/* Two handles of one file are two snapshots: neither sees the other's
 * unsaved changes, and discarding one leaves the other alone. */
static void
test_two_handles_independent (void)
{
  Mapping m;
  GError *error = NULL;
  BigfileHandle *h2;
  BigfileVma *vma2;
  guint8 *d2;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  h2 = bigfile_handle_new (BIGFILE_FILE (m.file), m.ram, &error);
  g_assert_no_error (error);
  vma2 = bigfile_handle_map (h2, 0, 8, &error);
  g_assert_no_error (error);
  d2 = bigfile_vma_get_data (vma2);

  raw_write (m.data + 0 * PS, 0xEE);
  g_assert_cmpuint (raw_read (d2 + 0 * PS), ==, test_mem_file_pattern (0, 0));
  g_assert_cmpint (bigfile_handle_get_page_state (h2, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 0), ==, 2);

  raw_write (d2 + 1 * PS, 0xDD);
  g_assert_cmpuint (raw_read (m.data + 1 * PS), ==, test_mem_file_pattern (1, 0));
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 1);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (h2), ==, 1);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (m.ram), ==, 2);

  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 1);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (bigfile_handle_get_page_state (h2, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (bigfile_handle_get_page_state (h2, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (raw_read (d2 + 1 * PS), ==, 0xDD);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (h2), ==, 1);

  /* Handle 2 saves; handle 1's clean page 1 is its own, older snapshot. */
  g_assert_true (bigfile_handle_writeout (h2, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (test_mem_file_peek (m.file, 1)[0], ==, 0xDD);
  g_assert_cmpuint (raw_read (m.data + 1 * PS), ==, test_mem_file_pattern (1, 0));
  bigfile_handle_invalidate_page (m.handle, 1);
  g_assert_cmpuint (raw_read (m.data + 1 * PS), ==, 0xDD);

  bigfile_vma_unmap (vma2);
  g_object_unref (vma2);
  g_assert_true (bigfile_handle_close (h2));
  g_object_unref (h2);
  mapping_teardown (&m);
}

/* -- closing ------------------------------------------------------------------------- */

static void
test_close_with_mappings (void)
{
  Mapping m;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  raw_write (m.data + PS, 1);

  g_test_expect_message ("Bigfile", G_LOG_LEVEL_CRITICAL, "*mapping*");
  g_assert_false (bigfile_handle_close (m.handle));
  g_test_assert_expected_messages ();

  /* Nothing happened: still open, still mapped, the change still there. */
  g_assert_false (bigfile_handle_is_closed (m.handle));
  g_assert_true (bigfile_vma_is_mapped (m.vma));
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (m.data + PS), ==, 1);
  raw_read (m.data + 2 * PS);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_LOADED);

  /* Unmapped, it closes, dropping every page, the dirty one too. */
  bigfile_vma_unmap (m.vma);
  g_assert_true (bigfile_handle_close (m.handle));
  g_assert_true (bigfile_handle_is_closed (m.handle));
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (m.ram), ==, 0);
  g_assert_cmpuint (test_mem_file_get_total_stores (m.file), ==, 0);

  mapping_teardown (&m);
}

static void
test_closed_handle (void)
{
  TestMemFile *file = test_mem_file_new (PS, 4);
  BigfileRam *ram = bigfile_ram_new (1 << 20);
  GError *error = NULL;
  BigfileHandle *handle;
  BigfileVma *vma;

  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  g_assert_no_error (error);
  g_assert_true (bigfile_handle_close (handle));
  g_assert_true (bigfile_handle_is_closed (handle));
  g_assert_true (bigfile_handle_close (handle)); /* again: fine */

  vma = bigfile_handle_map (handle, 0, 4, &error);
  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CLOSED);
  g_assert_null (vma);
  g_clear_error (&error);

  g_assert_false (bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CLOSED);
  g_clear_error (&error);

  g_assert_cmpuint (bigfile_handle_discard (handle), ==, 0);
  g_assert_cmpint (bigfile_handle_get_page_state (handle, 0), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_true (bigfile_handle_get_file (handle) == BIGFILE_FILE (file));
  g_assert_true (bigfile_handle_get_ram (handle) == ram);

  g_object_unref (handle);
  g_object_unref (ram);
  g_object_unref (file);
}

/* -- the explicit VMA API --------------------------------------------------------- */

static void
test_vma_api_read_write (void)
{
  Mapping m;
  GError *error = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_autoptr (GBytes) data = NULL;
  const guint8 *got;
  guint8 expected[20];
  gsize len;

  mapping_setup (&m, PS, 4, 4, 1 << 20);

  /* A read across the boundary of pages 0 and 1. */
  bytes = bigfile_vma_read (m.vma, PS - 10, 20, &error);
  g_assert_no_error (error);
  for (gsize i = 0; i < 10; i++)
    expected[i] = test_mem_file_pattern (0, PS - 10 + i);
  for (gsize i = 0; i < 10; i++)
    expected[10 + i] = test_mem_file_pattern (1, i);
  got = g_bytes_get_data (bytes, &len);
  g_assert_cmpmem (got, len, expected, 20);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_clear_pointer (&bytes, g_bytes_unref);

  /* A write across the boundary of pages 1 and 2. */
  for (gsize i = 0; i < 20; i++)
    expected[i] = (guint8)(0xA0 + i);
  data = g_bytes_new (expected, 20);
  g_assert_true (bigfile_vma_write (m.vma, 2 * PS - 10, data, &error));
  g_assert_no_error (error);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);

  /* Raw memory and the API agree. */
  g_assert_cmpint (memcmp (m.data + 2 * PS - 10, expected, 20), ==, 0);
  g_assert_cmpuint (raw_read (m.data + 2 * PS + 10), ==, test_mem_file_pattern (2, 10));
  bytes = bigfile_vma_read (m.vma, 2 * PS - 10, 20, &error);
  g_assert_no_error (error);
  got = g_bytes_get_data (bytes, &len);
  g_assert_cmpmem (got, len, expected, 20);
  g_clear_pointer (&bytes, g_bytes_unref);

  /* read_into, the whole mapping. */
  {
    g_autofree guint8 *all = g_malloc (4 * PS);

    g_assert_true (bigfile_vma_read_into (m.vma, 0, all, 4 * PS, &error));
    g_assert_no_error (error);
    g_assert_cmpint (memcmp (all, m.data, 4 * PS), ==, 0);
  }

  /* Empty ranges, even at the very end, are fine. */
  bytes = bigfile_vma_read (m.vma, 4 * PS, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (bytes), ==, 0);

  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (test_mem_file_peek (m.file, 1) + PS - 10, 10, expected, 10);
  g_assert_cmpmem (test_mem_file_peek (m.file, 2), 10, expected + 10, 10);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 4);

  mapping_teardown (&m);
}

static void
test_vma_api_out_of_range (void)
{
  Mapping m;
  GError *error = NULL;
  gsize len;
  guint8 buf[4];
  g_autoptr (GBytes) two = g_bytes_new ("ab", 2);

  mapping_setup (&m, PS, 4, 4, 1 << 20);
  len = bigfile_vma_get_length (m.vma);

  g_assert_null (bigfile_vma_read (m.vma, len, 1, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_OUT_OF_RANGE);
  g_clear_error (&error);
  g_assert_null (bigfile_vma_read (m.vma, len - 1, 2, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_OUT_OF_RANGE);
  g_clear_error (&error);
  /* Overflow of offset + length must not wrap into range. */
  g_assert_null (bigfile_vma_read (m.vma, 1, G_MAXSIZE, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_OUT_OF_RANGE);
  g_clear_error (&error);
  g_assert_false (bigfile_vma_read_into (m.vma, len + 1, buf, 0, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_OUT_OF_RANGE);
  g_clear_error (&error);

  g_assert_false (bigfile_vma_write (m.vma, len - 1, two, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_OUT_OF_RANGE);
  g_clear_error (&error);
  g_assert_false (bigfile_vma_populate (m.vma, len - PS, PS + 1, FALSE, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_OUT_OF_RANGE);
  g_clear_error (&error);
  g_assert_false (bigfile_vma_pin (m.vma, len, 1, FALSE, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_OUT_OF_RANGE);
  g_clear_error (&error);

  /* None of it touched a page, not even the ones in range. */
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 0);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);

  mapping_teardown (&m);
}

static void
test_vma_api_unmapped (void)
{
  Mapping m;
  GError *error = NULL;
  guint8 buf[4];
  g_autoptr (GBytes) two = g_bytes_new ("ab", 2);

  mapping_setup (&m, PS, 4, 4, 1 << 20);
  raw_read (m.data);
  bigfile_vma_unmap (m.vma);
  g_assert_false (bigfile_vma_is_mapped (m.vma));
  g_assert_null (bigfile_vma_get_data (m.vma));
  g_assert_cmpuint (bigfile_vma_get_address (m.vma), ==, 0);
  g_assert_cmpuint (bigfile_vma_get_length (m.vma), ==, 4 * PS);
  bigfile_vma_unmap (m.vma); /* again: nothing */

  g_assert_null (bigfile_vma_read (m.vma, 0, 1, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_UNMAPPED);
  g_clear_error (&error);
  g_assert_false (bigfile_vma_read_into (m.vma, 0, buf, sizeof buf, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_UNMAPPED);
  g_clear_error (&error);
  g_assert_false (bigfile_vma_write (m.vma, 0, two, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_UNMAPPED);
  g_clear_error (&error);
  g_assert_false (bigfile_vma_populate (m.vma, 0, PS, TRUE, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_UNMAPPED);
  g_clear_error (&error);
  g_assert_false (bigfile_vma_pin (m.vma, 0, PS, FALSE, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_UNMAPPED);
  g_clear_error (&error);

  /* The handle keeps its page; it just is not mapped here any more. */
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 0, FALSE, FALSE);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 1);

  mapping_teardown (&m);
}

/* Through the API a load error is a GError, not a signal. Should a SIGBUS
 * come, its default action would end this test program. */
static void
test_vma_api_load_error (void)
{
  Mapping m;
  GError *error = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_autoptr (GBytes) data = g_bytes_new ("xy", 2);

  mapping_setup (&m, PS, 4, 4, 1 << 20);
  test_mem_file_set_fail_load (m.file, 1, TRUE, FALSE);

  g_assert_null (bigfile_vma_read (m.vma, PS + 3, 10, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "block 1"));
  g_clear_error (&error);

  g_assert_false (bigfile_vma_write (m.vma, PS + 3, data, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);

  g_assert_false (bigfile_vma_populate (m.vma, 0, 2 * PS, FALSE, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);

  /* A pin that fails leaves nothing pinned: page 0 loaded, but reclaimable. */
  g_assert_false (bigfile_vma_pin (m.vma, 0, 2 * PS, FALSE, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 1);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_EMPTY);

  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  /* Not reported as a fault error: there was no fault. */
  g_assert_null (bigfile_vma_take_fault_error ());

  test_mem_file_set_fail_load (m.file, 1, FALSE, FALSE);
  bytes = bigfile_vma_read (m.vma, PS + 3, 1, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (((const guint8 *)g_bytes_get_data (bytes, NULL))[0], ==,
                    test_mem_file_pattern (1, 3));

  mapping_teardown (&m);
}

static void
test_vma_api_budget_full (void)
{
  Mapping m;
  GError *error = NULL;
  g_autoptr (GBytes) data = g_bytes_new ("xy", 2);

  mapping_setup (&m, PS, 4, 4, 2 * PS);
  g_assert_true (bigfile_vma_write (m.vma, 0 * PS, data, &error));
  g_assert_no_error (error);
  g_assert_true (bigfile_vma_write (m.vma, 1 * PS, data, &error));
  g_assert_no_error (error);

  g_assert_false (bigfile_vma_write (m.vma, 2 * PS, data, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_assert_nonnull (strstr (error->message, "unsaved changes"));
  g_clear_error (&error);
  g_assert_null (bigfile_vma_read (m.vma, 3 * PS, 1, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_clear_error (&error);
  g_assert_false (bigfile_vma_populate (m.vma, 3 * PS, 1, FALSE, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_clear_error (&error);

  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 2);
  g_assert_cmpuint (raw_read (m.data + 1 * PS + 1), ==, 'y');

  /* Discarding makes room. */
  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 2);
  g_assert_true (bigfile_vma_write (m.vma, 2 * PS, data, &error));
  g_assert_no_error (error);

  mapping_teardown (&m);
}

/* -- populate, pin, and system calls --------------------------------------------- */

/* System calls do not fault pages in (FACTS.md): a read(2) into a page that
 * is not mapped writable fails with EFAULT and no signal. Populating or
 * pinning the range writable first makes it work. */
static void
test_populate_syscall (void)
{
  Mapping m;
  GError *error = NULL;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "source", NULL);
  g_autofree guint8 *contents = g_malloc (3 * PS);
  g_autofree guint8 *page5 = pattern_block (5);
  int fds[2];
  int fd;

  for (gsize i = 0; i < 3 * PS; i++)
    contents[i] = (guint8)(0x30 + i % 53);
  write_file (path, contents, 3 * PS);
  fd = g_open (path, O_RDONLY, 0);
  g_assert_cmpint (fd, >=, 0);

  mapping_setup (&m, PS, 8, 8, 1 << 20);

  /* Without populate: EFAULT, nothing loaded. */
  errno = 0;
  g_assert_cmpint (pread (fd, m.data + PS, 100, 0), ==, -1);
  g_assert_cmpint (errno, ==, EFAULT);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 0);

  /* Populated read-only: readable by the kernel, but still no target. */
  g_assert_true (bigfile_vma_populate (m.vma, 5 * PS, PS, FALSE, &error));
  g_assert_no_error (error);
  g_assert_cmpint (page_state (&m, 5), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 5, TRUE, FALSE);
  errno = 0;
  g_assert_cmpint (pread (fd, m.data + 5 * PS, 100, 0), ==, -1);
  g_assert_cmpint (errno, ==, EFAULT);
  g_assert_cmpint (page_state (&m, 5), ==, BIGFILE_PAGE_STATE_LOADED);
  /* ...and a write(2) from it works. */
  g_assert_cmpint (pipe (fds), ==, 0);
  g_assert_cmpint (write (fds[1], m.data + 5 * PS, 100), ==, 100);
  {
    guint8 back[100];
    g_assert_cmpint (read (fds[0], back, 100), ==, 100);
    g_assert_cmpmem (back, 100, page5, 100);
  }
  close (fds[0]);
  close (fds[1]);

  /* Populated writable, across three pages: read(2) fills them. */
  g_assert_true (bigfile_vma_populate (m.vma, 2 * PS + 50, 3 * PS - 100, TRUE, &error));
  g_assert_no_error (error);
  for (guint64 p = 2; p <= 4; p++)
    {
      g_assert_cmpint (page_state (&m, p), ==, BIGFILE_PAGE_STATE_DIRTY);
      assert_mapping (m.vma, p, TRUE, TRUE);
    }
  g_assert_cmpint (pread (fd, m.data + 2 * PS, 3 * PS, 0), ==, 3 * PS);
  g_assert_cmpint (memcmp (m.data + 2 * PS, contents, 3 * PS), ==, 0);

  /* Pinned writable: the same, and it stays so until unpinned. */
  g_assert_true (bigfile_vma_pin (m.vma, 6 * PS, 2 * PS, TRUE, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pread (fd, m.data + 6 * PS + 1, 2 * PS - 1, 0), ==, 2 * PS - 1);
  g_assert_cmpint (memcmp (m.data + 6 * PS + 1, contents, 2 * PS - 1), ==, 0);
  g_assert_cmpint (page_state (&m, 6), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 7), ==, BIGFILE_PAGE_STATE_DIRTY);
  bigfile_vma_unpin (m.vma, 6 * PS, 2 * PS);

  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (test_mem_file_peek (m.file, 3), PS, contents + PS, PS);
  g_assert_cmpuint (test_mem_file_peek (m.file, 6)[0], ==, test_mem_file_pattern (6, 0));
  g_assert_cmpmem (test_mem_file_peek (m.file, 6) + 1, PS - 1, contents, PS - 1);

  /* Clean again, so read-only: read(2) into it fails once more. */
  errno = 0;
  g_assert_cmpint (pread (fd, m.data + 3 * PS, 10, 0), ==, -1);
  g_assert_cmpint (errno, ==, EFAULT);

  close (fd);
  temp_dir_remove (dir);
  mapping_teardown (&m);
}

/* Pinned pages stay in memory through a reclaim; unpinned, they go. Pins
 * nest. */
static void
test_pin_not_reclaimed (void)
{
  Mapping m;
  GError *error = NULL;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  g_assert_true (bigfile_vma_pin (m.vma, 0, 2 * PS, FALSE, &error));
  g_assert_no_error (error);
  g_assert_true (bigfile_vma_pin (m.vma, PS, 1, FALSE, &error)); /* page 1 twice */
  g_assert_no_error (error);
  g_assert_true (bigfile_vma_populate (m.vma, 2 * PS, 3 * PS, FALSE, &error));
  g_assert_no_error (error);
  for (guint64 p = 0; p < 5; p++)
    {
      g_assert_cmpint (page_state (&m, p), ==, BIGFILE_PAGE_STATE_LOADED);
      assert_mapping (m.vma, p, TRUE, FALSE);
    }

  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 3);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 0, TRUE, FALSE);
  for (guint64 p = 2; p < 5; p++)
    {
      g_assert_cmpint (page_state (&m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
      assert_mapping (m.vma, p, FALSE, FALSE);
    }
  /* Still in memory, so reading them loads nothing. */
  g_assert_cmpuint (raw_read (m.data + PS + 1), ==, test_mem_file_pattern (1, 1));
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 1), ==, 1);

  /* One unpin of page 1 leaves its other pin. */
  bigfile_vma_unpin (m.vma, 0, 2 * PS);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 1);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);

  bigfile_vma_unpin (m.vma, PS, 1);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 1);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 0);

  mapping_teardown (&m);
}

/* Pins end with their mapping: a pinned mapping that is unmapped (or dropped
 * by a garbage collector) does not keep its pages out of reclaim. Unpinning a
 * range that was never pinned is a programmer error. */
static void
test_pin_dropped_by_unmap (void)
{
  Mapping m;
  GError *error = NULL;
  BigfileVma *second;

  mapping_setup (&m, PS, 8, 8, 1 << 20);
  second = bigfile_handle_map (m.handle, 0, 8, &error);
  g_assert_no_error (error);

  g_assert_true (bigfile_vma_pin (second, 0, 3 * PS, FALSE, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 0);

  g_test_expect_message ("Bigfile", G_LOG_LEVEL_CRITICAL, "*no pin*");
  bigfile_vma_unpin (second, PS, PS);
  g_test_assert_expected_messages ();

  bigfile_vma_unmap (second);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 3);
  for (guint64 p = 0; p < 3; p++)
    g_assert_cmpint (page_state (&m, p), ==, BIGFILE_PAGE_STATE_EMPTY);

  g_object_unref (second);
  mapping_teardown (&m);
}

/* The buffer of bigfile_vma_read_into() and bigfile_vma_write() may itself
 * lie in a bigfile mapping whose pages are not loaded: the copy runs with the
 * engine lock released, so the nested fault is served. */
static void
test_vma_api_buffer_in_mapping (void)
{
  Mapping a, b;
  GError *error = NULL;
  GBytes *bytes;

  mapping_setup (&a, PS, 4, 4, 1 << 20);
  mapping_setup (&b, PS, 4, 4, 1 << 20);

  /* Read page 1 of a into page 2 of b (neither loaded). */
  g_assert_true (bigfile_vma_read_into (a.vma, PS, b.data + 2 * PS, PS, &error));
  g_assert_no_error (error);
  g_assert_cmpint (bigfile_handle_get_page_state (b.handle, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpmem (b.data + 2 * PS, PS, test_mem_file_peek (a.file, 1), PS);

  /* Write from page 3 of b (not loaded) into page 0 of a. */
  bytes = g_bytes_new_static (b.data + 3 * PS, PS);
  g_assert_true (bigfile_vma_write (a.vma, 0, bytes, &error));
  g_assert_no_error (error);
  g_bytes_unref (bytes);
  g_assert_cmpint (page_state (&a, 0), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpmem (a.data, PS, test_mem_file_peek (b.file, 3), PS);

  bigfile_handle_discard (b.handle);
  mapping_teardown (&a);
  mapping_teardown (&b);
}

/* A pinned page that is invalidated keeps its memory until unpinned: the
 * kernel may still use it for I/O the program started (here a pipe holds
 * references to it through vmsplice), so its slot must not be reused. */
static void
test_pin_survives_drop (void)
{
  Mapping m;
  GError *error = NULL;
  int fds[2];
  struct iovec iov;
  char got[8];

  mapping_setup (&m, PS, 8, 8, 2 * PS); /* two pages: slots get reused at once */
  g_assert_true (bigfile_vma_pin (m.vma, 0, PS, TRUE, &error));
  g_assert_no_error (error);
  memset (m.data, 'A', 8);

  g_assert_cmpint (pipe (fds), ==, 0);
  iov.iov_base = m.data;
  iov.iov_len = 8;
  g_assert_cmpint (vmsplice (fds[1], &iov, 1, 0), ==, 8);

  bigfile_handle_invalidate_page (m.handle, 0);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_EMPTY);
  /* The orphan still holds its slot. */
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 1);
  for (guint64 p = 1; p < 6; p++)
    g_assert_cmpuint (raw_read (m.data + p * PS), ==, test_mem_file_pattern (p, 0));

  g_assert_cmpint (read (fds[0], got, 8), ==, 8);
  g_assert_cmpmem (got, 8, "AAAAAAAA", 8);
  close (fds[0]);
  close (fds[1]);

  bigfile_vma_unpin (m.vma, 0, PS);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), <=, 2);
  mapping_teardown (&m);
}

/* Unpinning a page that was dropped and loaded again does not take away
 * the pin of the new page. */
static void
test_pin_belongs_to_page (void)
{
  Mapping m;
  GError *error = NULL;

  mapping_setup (&m, PS, 8, 8, 8 * PS);
  g_assert_true (bigfile_vma_pin (m.vma, 0, PS, FALSE, &error));
  g_assert_no_error (error);
  bigfile_handle_invalidate_page (m.handle, 0);
  g_assert_true (bigfile_vma_pin (m.vma, 0, 2 * PS, FALSE, &error)); /* the new page 0 */
  g_assert_no_error (error);

  bigfile_vma_unpin (m.vma, 0, PS); /* the first pin, of the dropped page */
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 0);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);

  bigfile_vma_unpin (m.vma, 0, 2 * PS);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 2);
  mapping_teardown (&m);
}

/* A writable pin keeps write access through a writeout: the page is stored
 * as it is and stays dirty, so system calls can go on writing into it. */
static void
test_pin_writable_through_writeout (void)
{
  Mapping m;
  GError *error = NULL;
  int fds[2];

  mapping_setup (&m, PS, 8, 8, 8 * PS);
  g_assert_true (bigfile_vma_pin (m.vma, 2 * PS, PS, TRUE, &error));
  g_assert_no_error (error);
  g_assert_cmpint (pipe (fds), ==, 0);

  g_assert_cmpint (write (fds[1], "first", 5), ==, 5);
  g_assert_cmpint (read (fds[0], m.data + 2 * PS, 5), ==, 5);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (test_mem_file_peek (m.file, 2), 5, "first", 5);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
  assert_mapping (m.vma, 2, TRUE, TRUE);

  g_assert_cmpint (write (fds[1], "again", 5), ==, 5);
  g_assert_cmpint (read (fds[0], m.data + 2 * PS, 5), ==, 5);
  bigfile_vma_unpin (m.vma, 2 * PS, PS);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_cmpmem (test_mem_file_peek (m.file, 2), 5, "again", 5);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_LOADED);

  close (fds[0]);
  close (fds[1]);
  mapping_teardown (&m);
}

/* -- past the end of the file ---------------------------------------------------- */

static void
test_past_eof_mem_file (void)
{
  Mapping m;
  g_autofree guint8 *zeros = g_malloc0 (PS);

  mapping_setup (&m, PS, 2, 4, 1 << 20);
  g_assert_cmpuint (raw_read (m.data + PS + 5), ==, test_mem_file_pattern (1, 5));
  g_assert_cmpint (memcmp (m.data + 2 * PS, zeros, PS), ==, 0);
  g_assert_cmpint (memcmp (m.data + 3 * PS, zeros, PS), ==, 0);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_LOADED);

  /* Written and stored, the block exists. */
  raw_write (m.data + 3 * PS + 9, 0x99);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, NULL));
  g_assert_cmpuint (test_mem_file_peek (m.file, 3)[9], ==, 0x99);
  g_assert_cmpuint (test_mem_file_peek (m.file, 3)[8], ==, 0);

  mapping_teardown (&m);
}

static void
test_past_eof_local_file (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "short", NULL);
  g_autofree guint8 *zeros = g_malloc0 (PS);
  Mapping m;
  char contents[100];

  for (guint i = 0; i < sizeof contents; i++)
    contents[i] = (char)('A' + i % 26);
  write_file (path, (const guint8 *)contents, sizeof contents);

  /* A budget of one page: each page reuses the memory of the one before, so
   * the zeros must come from the load, not from fresh memory. */
  mapping_setup_local_file (&m, path, PS, BIGFILE_LOCAL_FILE_FLAGS_NONE, 3, PS);

  g_assert_cmpmem (m.data, sizeof contents, contents, sizeof contents);
  g_assert_cmpint (memcmp (m.data + sizeof contents, zeros, PS - sizeof contents), ==, 0);
  g_assert_cmpint (memcmp (m.data + PS, zeros, PS), ==, 0);
  g_assert_cmpint (memcmp (m.data + 2 * PS, zeros, PS), ==, 0);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_LOADED);

  mapping_teardown (&m);

  /* Reading did not change the file. */
  {
    g_autofree guint8 *back = NULL;
    gsize len = 0;

    back = read_file (path, &len);
    g_assert_cmpmem (back, len, contents, sizeof contents);
  }
  temp_dir_remove (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/handle/writeout/store-only", test_writeout_store_only);
  g_test_add_func ("/handle/writeout/mark-stored-only", test_writeout_mark_stored_only);
  g_test_add_func ("/handle/writeout/default", test_writeout_default);
  g_test_add_func ("/handle/writeout/order", test_writeout_order);
  g_test_add_func ("/handle/discard", test_discard);
  g_test_add_func ("/handle/invalidate/absent", test_invalidate_absent);
  g_test_add_func ("/handle/invalidate/clean", test_invalidate_clean);
  g_test_add_func ("/handle/invalidate/dirty", test_invalidate_dirty);
  g_test_add_func ("/handle/invalidate/loading", test_invalidate_loading);
  g_test_add_func ("/handle/store-error/retry", test_store_error_retry);
  g_test_add_func ("/handle/store-error/no-gerror", test_store_error_no_gerror);
  g_test_add_func ("/handle/mappings/share-pages", test_two_mappings_share_pages);
  g_test_add_func ("/handle/two-handles/independent", test_two_handles_independent);
  g_test_add_func ("/handle/close/with-mappings", test_close_with_mappings);
  g_test_add_func ("/handle/close/closed", test_closed_handle);
  g_test_add_func ("/handle/vma-api/read-write", test_vma_api_read_write);
  g_test_add_func ("/handle/vma-api/out-of-range", test_vma_api_out_of_range);
  g_test_add_func ("/handle/vma-api/unmapped", test_vma_api_unmapped);
  g_test_add_func ("/handle/vma-api/load-error", test_vma_api_load_error);
  g_test_add_func ("/handle/vma-api/budget-full", test_vma_api_budget_full);
  g_test_add_func ("/handle/populate/syscall", test_populate_syscall);
  g_test_add_func ("/handle/pin/not-reclaimed", test_pin_not_reclaimed);
  g_test_add_func ("/handle/pin/dropped-by-unmap", test_pin_dropped_by_unmap);
  g_test_add_func ("/handle/pin/survives-drop", test_pin_survives_drop);
  g_test_add_func ("/handle/pin/belongs-to-page", test_pin_belongs_to_page);
  g_test_add_func ("/handle/pin/writable-through-writeout", test_pin_writable_through_writeout);
  g_test_add_func ("/handle/vma-api/buffer-in-mapping", test_vma_api_buffer_in_mapping);
  g_test_add_func ("/handle/past-eof/mem-file", test_past_eof_mem_file);
  g_test_add_func ("/handle/past-eof/local-file", test_past_eof_local_file);

  return g_test_run ();
}
