/* bigfile-glib tests - the RAM budget: reclaim order, limits, sharing
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * What "least recently used" means here: the engine sees a page only when
 * it faults (first read, first write) or when the explicit API touches it
 * (bigfile_vma_read(), _write(), _populate(), _pin()). A read or write of a
 * page that is already mapped is a plain memory access the engine never
 * hears of, so it does not make the page more recent. The LRU order is thus
 * the order of the last fault or API access of each clean page (a page made
 * clean by a writeout counts as used then).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "test-util.h"

/* After test-util.h (bigfile.h): the pools' window, for the segment checks. */
#include "engine/engine-private.h"

#define PS ((gsize)4096)

/* Reads page @page through the API: the engine sees the access. */
static void
api_touch (Mapping *m, guint64 page)
{
  GError *error = NULL;
  guint8 byte;

  g_assert_true (bigfile_vma_read_into (m->vma, page * m->ps, &byte, 1, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (byte, ==, test_mem_file_pattern (page, 0));
}

/* The budget invariant, including memory the RAM keeps populated for reuse
 * (engine-private.h): never more than the budget. */
static void
assert_within_budget (BigfileRam *ram)
{
  BfRamStats stats;

  bf_ram_get_stats (_bigfile_ram_get_engine (ram), &stats);
  g_assert_cmpuint (stats.resident_bytes, <=, stats.budget);
  g_assert_cmpuint (stats.used_bytes, <=, stats.resident_bytes);
  g_assert_cmpuint (bigfile_ram_get_used_bytes (ram), <=, bigfile_ram_get_budget (ram));
}

static void
assert_states (Mapping *m, const char *expected)
{
  for (guint64 p = 0; expected[p] != '\0'; p++)
    {
      BigfilePageState want;

      switch (expected[p])
        {
          case '.':
            want = BIGFILE_PAGE_STATE_EMPTY;
            break;
          case 'L':
            want = BIGFILE_PAGE_STATE_LOADED;
            break;
          case 'D':
            want = BIGFILE_PAGE_STATE_DIRTY;
            break;
          default:
            g_assert_not_reached ();
        }
      if (page_state (m, p) != want)
        g_error ("page %" G_GUINT64_FORMAT ": state %d, expected %c (pages: %s)", p,
                 page_state (m, p), expected[p], expected);
    }
}

/* Least recently faulted (or API-accessed) clean page goes first. */
static void
test_ram_lru_order (void)
{
  BigfileRam *ram = bigfile_ram_new (4 * PS);
  GError *error = NULL;
  BigfileVma *vma_b;
  guint8 *b;
  Mapping m;

  mapping_setup_in_ram (&m, ram, PS, 16, 16);
  /* A second mapping of the same pages: a page in memory but not mapped
   * there faults on its first access through it, and the engine sees it. */
  vma_b = bigfile_handle_map (m.handle, 0, 16, &error);
  g_assert_no_error (error);
  b = bigfile_vma_get_data (vma_b);

  /* Faults in order 0 1 2 3: the LRU is 0 1 2 3. */
  for (guint64 p = 0; p < 4; p++)
    raw_read (m.data + p * PS);
  assert_states (&m, "LLLL....");
  g_assert_cmpuint (bigfile_ram_get_n_pages (ram), ==, 4);

  /* An API access makes page 0 the most recent: 1 2 3 0. */
  api_touch (&m, 0);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 0), ==, 1);

  /* A fault that loads nothing (page 1 through the second mapping) makes
   * page 1 the most recent: 2 3 0 1. */
  g_assert_cmpuint (raw_read (b + 1 * PS), ==, test_mem_file_pattern (1, 0));
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 1), ==, 1);

  /* Two more pages push out 2, then 3. */
  raw_read (m.data + 4 * PS);
  assert_states (&m, "LL.LL...");
  raw_read (m.data + 5 * PS);
  assert_states (&m, "LL..LL..");
  g_assert_cmpuint (bigfile_ram_get_n_pages (ram), ==, 4);
  assert_within_budget (ram);

  /* A plain read of page 0, mapped, is invisible to the engine: page 0
   * stays the least recently used and goes next. */
  g_assert_cmpuint (raw_read (m.data + 0 * PS + 1), ==, test_mem_file_pattern (0, 1));
  raw_read (m.data + 6 * PS);
  assert_states (&m, ".L..LLL.");
  g_assert_false (_bigfile_vma_page_is_mapped (m.vma, 0, NULL));

  /* A dirty page leaves the LRU: with 1 made dirty, 4 is the oldest clean. */
  raw_write (m.data + 1 * PS, 0x10);
  raw_read (m.data + 7 * PS);
  assert_states (&m, ".D...LLL");

  /* A reclaimed page comes back with a new load. */
  g_assert_cmpuint (raw_read (m.data + 0 * PS + 2), ==, test_mem_file_pattern (0, 2));
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 0), ==, 2);
  assert_states (&m, "LD....LL");
  assert_within_budget (ram);

  bigfile_vma_unmap (vma_b);
  g_object_unref (vma_b);
  mapping_teardown (&m);
  g_object_unref (ram);
}

/* Reading through a mapping eight times the budget: never more than the
 * budget in memory, and every page loaded once. */
static void
test_ram_budget_respected (void)
{
  BigfileRam *ram = bigfile_ram_new (8 * PS);
  Mapping m;

  mapping_setup_in_ram (&m, ram, PS, 64, 64);
  for (guint64 p = 0; p < 64; p++)
    {
      g_assert_cmpuint (raw_read (m.data + p * PS + p), ==, test_mem_file_pattern (p, p));
      assert_within_budget (ram);
      g_assert_cmpuint (bigfile_ram_get_n_pages (ram), <=, 8);
      g_assert_cmpuint (bigfile_ram_get_used_bytes (ram), ==, bigfile_ram_get_n_pages (ram) * PS);
    }
  g_assert_cmpuint (bigfile_ram_get_n_pages (ram), ==, 8);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 64);
  /* The last eight are the ones left. */
  for (guint64 p = 0; p < 64; p++)
    g_assert_cmpint (page_state (&m, p), ==,
                     p >= 56 ? BIGFILE_PAGE_STATE_LOADED : BIGFILE_PAGE_STATE_EMPTY);

  /* Page 0 again: a second load. */
  g_assert_cmpuint (raw_read (m.data), ==, test_mem_file_pattern (0, 0));
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 0), ==, 2);
  assert_within_budget (ram);

  mapping_teardown (&m);
  g_object_unref (ram);
}

/* bigfile_ram_reclaim() frees every clean page, counts them, and leaves
 * the dirty ones with their data. */
static void
test_ram_reclaim (void)
{
  BigfileRam *ram = bigfile_ram_new (1 << 20);
  Mapping m;

  mapping_setup_in_ram (&m, ram, PS, 8, 8);
  raw_read (m.data + 0 * PS);
  raw_read (m.data + 1 * PS);
  raw_read (m.data + 2 * PS);
  raw_write (m.data + 3 * PS + 5, 0x33);
  raw_write (m.data + 4 * PS + 5, 0x44);
  assert_states (&m, "LLLDD...");
  g_assert_cmpuint (bigfile_ram_get_n_pages (ram), ==, 5);

  g_assert_cmpuint (bigfile_ram_reclaim (ram), ==, 3);
  assert_states (&m, "...DD...");
  for (guint64 p = 0; p < 3; p++)
    g_assert_false (_bigfile_vma_page_is_mapped (m.vma, p, NULL));
  g_assert_cmpuint (bigfile_ram_get_n_pages (ram), ==, 2);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (ram), ==, 2);
  g_assert_cmpuint (bigfile_ram_get_used_bytes (ram), ==, 2 * PS);
  g_assert_cmpuint (raw_read (m.data + 3 * PS + 5), ==, 0x33);
  g_assert_cmpuint (raw_read (m.data + 4 * PS + 5), ==, 0x44);
  g_assert_cmpuint (test_mem_file_get_total_stores (m.file), ==, 0);

  /* Nothing clean left. */
  g_assert_cmpuint (bigfile_ram_reclaim (ram), ==, 0);
  assert_states (&m, "...DD...");

  mapping_teardown (&m);
  g_object_unref (ram);
}

/* Lowering the budget reclaims clean pages (least recently used first)
 * down to it; dirty pages stay, even above it. */
static void
test_ram_set_budget (void)
{
  BigfileRam *ram = bigfile_ram_new (8 * PS);
  Mapping m;
  GError *error = NULL;

  mapping_setup_in_ram (&m, ram, PS, 16, 16);
  for (guint64 p = 0; p < 6; p++)
    raw_read (m.data + p * PS);
  raw_write (m.data + 6 * PS, 0x66);
  raw_write (m.data + 7 * PS, 0x77);
  assert_states (&m, "LLLLLLDD");

  bigfile_ram_set_budget (ram, 4 * PS);
  g_assert_cmpuint (bigfile_ram_get_budget (ram), ==, 4 * PS);
  assert_states (&m, "....LLDD");
  g_assert_cmpuint (bigfile_ram_get_used_bytes (ram), ==, 4 * PS);
  assert_within_budget (ram);

  /* Below the dirty pages: the clean ones go, the dirty ones stay. */
  bigfile_ram_set_budget (ram, 1 * PS);
  assert_states (&m, "......DD");
  g_assert_cmpuint (bigfile_ram_get_used_bytes (ram), ==, 2 * PS);
  g_assert_cmpuint (raw_read (m.data + 6 * PS), ==, 0x66);
  g_assert_cmpuint (raw_read (m.data + 7 * PS), ==, 0x77);

  /* No room for anything new until the changes go. */
  g_assert_false (bigfile_vma_read_into (m.vma, 0, (guint8[1]){ 0 }, 1, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_clear_error (&error);
  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 2);
  api_touch (&m, 0);
  assert_states (&m, "L.......");
  assert_within_budget (ram);

  /* Raising it again: room for more. */
  bigfile_ram_set_budget (ram, 3 * PS);
  for (guint64 p = 0; p < 5; p++)
    raw_read (m.data + p * PS);
  assert_states (&m, "..LLL...");
  assert_within_budget (ram);

  mapping_teardown (&m);
  g_object_unref (ram);
}

/* Dirty pages are never reclaimed: a budget full of them makes new pages
 * fail, and the dirty data stays intact. */
static void
test_ram_dirty_never_dropped (void)
{
  BigfileRam *ram = bigfile_ram_new (4 * PS);
  Mapping m;
  GError *error = NULL;
  guint8 byte;

  mapping_setup_in_ram (&m, ram, PS, 8, 8);
  for (guint64 p = 0; p < 4; p++)
    raw_write (m.data + p * PS + p, (guint8)(0xD0 + p));
  assert_states (&m, "DDDD....");

  g_assert_false (bigfile_vma_read_into (m.vma, 4 * PS, &byte, 1, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_clear_error (&error);
  g_assert_cmpuint (bigfile_ram_reclaim (ram), ==, 0);
  assert_states (&m, "DDDD....");
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 4), ==, 0);
  for (guint64 p = 0; p < 4; p++)
    {
      g_assert_cmpuint (raw_read (m.data + p * PS + p), ==, 0xD0 + p);
      g_assert_cmpuint (raw_read (m.data + p * PS + p + 1), ==, test_mem_file_pattern (p, p + 1));
    }

  /* Written out, they are clean and go in writeout (block) order. */
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  api_touch (&m, 4);
  assert_states (&m, ".LLLL...");
  g_assert_cmpuint (test_mem_file_peek (m.file, 0)[0], ==, 0xD0);

  mapping_teardown (&m);
  g_object_unref (ram);
}

/* Handles of two page sizes in one RAM share its budget: a page of one size
 * makes room by reclaiming pages of the other, least recently used first,
 * and only as many as it needs. */
static void
test_ram_two_page_sizes (void)
{
  const gsize small = 4096, large = 16384;
  BigfileRam *ram = bigfile_ram_new (64 * 1024);
  Mapping a, b;

  mapping_setup_in_ram (&a, ram, small, 16, 16);
  mapping_setup_in_ram (&b, ram, large, 4, 4);

  for (guint64 p = 0; p < 8; p++)
    {
      raw_read (a.data + p * small);
      assert_within_budget (ram);
    }
  raw_read (b.data + 0 * large);
  assert_within_budget (ram);
  raw_read (b.data + 1 * large);
  assert_within_budget (ram);
  g_assert_cmpuint (bigfile_ram_get_used_bytes (ram), ==, 8 * small + 2 * large);
  assert_states (&a, "LLLLLLLL");
  assert_states (&b, "LL");

  /* A third large page needs four small ones: the four oldest go. */
  raw_read (b.data + 2 * large);
  assert_within_budget (ram);
  assert_states (&a, "....LLLL");
  assert_states (&b, "LLL.");
  g_assert_cmpuint (bigfile_ram_get_used_bytes (ram), ==, 4 * small + 3 * large);

  /* Small pages now: the oldest small ones go, then the oldest large. */
  for (guint64 p = 8; p < 12; p++)
    {
      raw_read (a.data + p * small);
      assert_within_budget (ram);
    }
  assert_states (&a, "........LLLL");
  assert_states (&b, "LLL.");
  raw_read (a.data + 12 * small);
  assert_within_budget (ram);
  assert_states (&a, "........LLLLL");
  assert_states (&b, ".LL.");
  g_assert_cmpuint (bigfile_ram_get_used_bytes (ram), ==, 5 * small + 2 * large);

  g_assert_cmpuint (bigfile_ram_get_n_pages (ram), ==, 7);
  mapping_teardown (&a);
  mapping_teardown (&b);
  g_assert_cmpuint (bigfile_ram_get_n_pages (ram), ==, 0);
  g_object_unref (ram);
}

static void
count_notify (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  guint *count = user_data;
  (*count)++;
}

/* The properties say what the getters say. */
static void
test_ram_properties (void)
{
  BigfileRam *ram = bigfile_ram_new (16 * PS);
  Mapping m;
  guint64 budget = 0, used = 0, n_pages = 0, n_dirty = 0;
  guint notified = 0;

  mapping_setup_in_ram (&m, ram, PS, 8, 8);
  raw_read (m.data + 0 * PS);
  raw_read (m.data + 1 * PS);
  raw_write (m.data + 2 * PS, 1);

  g_object_get (ram, "budget", &budget, "used-bytes", &used, "n-pages", &n_pages, "n-dirty-pages",
                &n_dirty, NULL);
  g_assert_cmpuint (budget, ==, 16 * PS);
  g_assert_cmpuint (budget, ==, bigfile_ram_get_budget (ram));
  g_assert_cmpuint (used, ==, 3 * PS);
  g_assert_cmpuint (used, ==, bigfile_ram_get_used_bytes (ram));
  g_assert_cmpuint (n_pages, ==, 3);
  g_assert_cmpuint (n_pages, ==, bigfile_ram_get_n_pages (ram));
  g_assert_cmpuint (n_dirty, ==, 1);
  g_assert_cmpuint (n_dirty, ==, bigfile_ram_get_n_dirty_pages (ram));

  /* Setting the property is setting the budget, notified once. */
  g_signal_connect (ram, "notify::budget", G_CALLBACK (count_notify), &notified);
  g_object_set (ram, "budget", (guint64)2 * PS, NULL);
  g_assert_cmpuint (notified, ==, 1);
  g_assert_cmpuint (bigfile_ram_get_budget (ram), ==, 2 * PS);
  g_object_get (ram, "budget", &budget, "n-pages", &n_pages, NULL);
  g_assert_cmpuint (budget, ==, 2 * PS);
  g_assert_cmpuint (n_pages, ==, 2);
  g_assert_cmpuint (n_pages, ==, bigfile_ram_get_n_pages (ram));
  bigfile_ram_set_budget (ram, 2 * PS); /* same: no notification */
  g_assert_cmpuint (notified, ==, 1);

  /* 0 stands for the default, which is never 0. */
  bigfile_ram_set_budget (ram, 0);
  g_assert_cmpuint (bigfile_ram_get_budget (ram), >, 0);
  g_object_get (ram, "budget", &budget, NULL);
  g_assert_cmpuint (budget, ==, bigfile_ram_get_budget (ram));

  mapping_teardown (&m);
  g_object_get (ram, "used-bytes", &used, "n-pages", &n_pages, "n-dirty-pages", &n_dirty, NULL);
  g_assert_cmpuint (used, ==, 0);
  g_assert_cmpuint (n_pages, ==, 0);
  g_assert_cmpuint (n_dirty, ==, 0);
  g_object_unref (ram);
}

/* An explicit reclaim gives back all cached memory too, whatever the
 * budget (a budget near G_MAXUINT64 must not overflow the arithmetic). */
static void
test_reclaim_gives_back_all (void)
{
  const guint64 budgets[] = { 1 << 20, G_MAXUINT64 };

  for (guint b = 0; b < G_N_ELEMENTS (budgets); b++)
    {
      Mapping m;
      BfRamStats stats;

      mapping_setup (&m, 4096, 16, 16, budgets[b]);
      for (guint64 p = 0; p < 16; p++)
        (void)raw_read (m.data + p * 4096);
      g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 16);
      bf_ram_get_stats (_bigfile_ram_get_engine (m.ram), &stats);
      g_assert_cmpuint (stats.used_bytes, ==, 0);
      g_assert_cmpuint (stats.resident_bytes, ==, 0);
      mapping_teardown (&m);
    }
}

/* -- budgets too small for a page ------------------------------------------- */

/* A budget that cannot hold a page of the smallest size is refused at the
 * API: a programmer error, as every load would fail. 0 means the default. */
static void
test_ram_budget_below_one_page (void)
{
  guint64 min = bf_ram_min_budget ();
  BigfileRam *ram;
  GError *error = NULL;

  g_test_summary ("A budget below the smallest page size is refused by bigfile_ram_new(), the "
                  "budget property and bigfile_ram_set_budget(), and by the engine");
  g_assert_cmpuint (min, >=, 4096);

  g_test_expect_message ("Bigfile", G_LOG_LEVEL_CRITICAL, "*budget_is_valid*");
  ram = bigfile_ram_new (min - 1);
  g_test_assert_expected_messages ();
  g_assert_null (ram);

  /* As a construct property: a critical that names the remedy, and the
   * default budget. */
  g_test_expect_message ("Bigfile", G_LOG_LEVEL_CRITICAL, "*cannot hold a single page*");
  ram = g_object_new (BIGFILE_TYPE_RAM, "budget", (guint64)100, NULL);
  g_test_assert_expected_messages ();
  g_assert_cmpuint (bigfile_ram_get_budget (ram), >=, min);
  g_object_unref (ram);

  /* Set later: refused, the budget stays. */
  ram = bigfile_ram_new (min);
  g_assert_cmpuint (bigfile_ram_get_budget (ram), ==, min);
  g_test_expect_message ("Bigfile", G_LOG_LEVEL_CRITICAL, "*budget_is_valid*");
  bigfile_ram_set_budget (ram, 1);
  g_test_assert_expected_messages ();
  g_test_expect_message ("Bigfile", G_LOG_LEVEL_CRITICAL, "*budget_is_valid*");
  g_object_set (ram, "budget", (guint64)(min - 1), NULL);
  g_test_assert_expected_messages ();
  g_assert_cmpuint (bigfile_ram_get_budget (ram), ==, min);
  {
    BfRamStats stats;

    bf_ram_get_stats (_bigfile_ram_get_engine (ram), &stats);
    g_assert_cmpuint (stats.budget, ==, min);
  }
  g_object_unref (ram);

  /* The engine says why. */
  g_assert_null (bf_ram_new (min - 1, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "cannot hold a single page"));
  g_clear_error (&error);
}

/* A handle whose pages do not fit in the budget cannot be opened; and when
 * the budget is lowered below its page size later, its loads say so
 * instead of blaming unsaved changes. */
static void
test_ram_budget_smaller_than_block (void)
{
  const gsize large = 64 * 1024;
  BigfileRam *ram = bigfile_ram_new (16 * 1024);
  TestMemFile *file = test_mem_file_new (large, 4);
  GError *error = NULL;
  BigfileHandle *handle;
  Mapping m;
  guint8 byte;

  g_test_summary ("bigfile_handle_new() refuses a RAM whose budget is smaller than one block of "
                  "the file, and a fault after the budget was lowered below one page says so");

  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_assert_null (handle);
  g_assert_nonnull (strstr (error->message, "16384 bytes is smaller than one page of 65536 bytes"));
  g_clear_error (&error);
  g_object_unref (file);

  /* Pages of 16 KiB fit; lowered to 8 KiB, they do not any more. */
  mapping_setup_in_ram (&m, ram, 16 * 1024, 4, 4);
  g_assert_cmpuint (raw_read (m.data + 1), ==, test_mem_file_pattern (0, 1));
  bigfile_ram_set_budget (ram, 8 * 1024);
  assert_states (&m, "....");
  g_assert_false (bigfile_vma_read_into (m.vma, 0, &byte, 1, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_assert_nonnull (strstr (error->message, "8192 bytes is smaller than one page of 16384 bytes"));
  g_assert_null (strstr (error->message, "unsaved"));
  g_clear_error (&error);

  /* Raised again, it works. */
  bigfile_ram_set_budget (ram, 16 * 1024);
  g_assert_cmpuint (raw_read (m.data + 2), ==, test_mem_file_pattern (0, 2));

  mapping_teardown (&m);
  g_object_unref (ram);
}

typedef struct
{
  GMutex lock;
  GCond cond;
  gboolean entered, release;
} LoadGate;

/* A load hook that holds the load until the test releases it. */
static void
gate_load (TestMemFile *file, guint64 block, gpointer user_data)
{
  LoadGate *gate = user_data;

  g_mutex_lock (&gate->lock);
  gate->entered = TRUE;
  g_cond_broadcast (&gate->cond);
  while (!gate->release)
    g_cond_wait (&gate->cond, &gate->lock);
  g_mutex_unlock (&gate->lock);
}

static gpointer
read_page_thread (gpointer data)
{
  Mapping *m = data;

  return GUINT_TO_POINTER (raw_read (m->data));
}

/* When no page can be reclaimed, the error tells dirty pages from pages
 * held otherwise (pinned, loading), and blames unsaved changes only when
 * that is what fills the budget. */
static void
test_ram_full_message_true (void)
{
  BigfileRam *ram = bigfile_ram_new (4 * PS);
  GError *error = NULL;
  LoadGate gate = { 0 };
  GThread *thread;
  guint8 byte;
  Mapping m;

  g_test_summary ("A full budget's error counts dirty pages and held (pinned, loading) pages "
                  "truthfully");

  mapping_setup_in_ram (&m, ram, PS, 16, 16);

  /* Two pinned clean pages and one dirty one, budget lowered to them. */
  g_assert_true (bigfile_vma_pin (m.vma, 0, 2 * PS, FALSE, &error));
  g_assert_no_error (error);
  raw_write (m.data + 2 * PS, 0x22);
  bigfile_ram_set_budget (ram, 3 * PS);
  assert_states (&m, "LLD.");
  g_assert_false (bigfile_vma_read_into (m.vma, 3 * PS, &byte, 1, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_test_message ("%s", error->message);
  g_assert_null (strstr (error->message, "full of unsaved changes"));
  g_assert_nonnull (strstr (error->message, "none of the 3 pages"));
  g_assert_nonnull (strstr (error->message, "(1 dirty; 2 clean but pinned, loading"));
  g_assert_nonnull (strstr (error->message, "unpin"));
  g_clear_error (&error);

  /* Only dirty pages left: then it is unsaved changes. */
  bigfile_vma_unpin (m.vma, 0, 2 * PS);
  raw_write (m.data + 0 * PS, 0x00);
  raw_write (m.data + 1 * PS, 0x11);
  g_assert_false (bigfile_vma_read_into (m.vma, 3 * PS, &byte, 1, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_assert_nonnull (strstr (error->message, "full of unsaved changes (3 dirty pages)"));
  g_clear_error (&error);
  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 3);

  /* A page that is loading holds the whole budget of one page. */
  bigfile_ram_set_budget (ram, PS);
  g_mutex_init (&gate.lock);
  g_cond_init (&gate.cond);
  test_mem_file_set_load_hook (m.file, gate_load, &gate);
  thread = g_thread_new ("loader", read_page_thread, &m);
  g_mutex_lock (&gate.lock);
  while (!gate.entered)
    g_cond_wait (&gate.cond, &gate.lock);
  g_mutex_unlock (&gate.lock);
  test_mem_file_set_load_hook (m.file, NULL, NULL);

  g_assert_false (bigfile_vma_read_into (m.vma, 1 * PS, &byte, 1, &error));
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_test_message ("%s", error->message);
  g_assert_null (strstr (error->message, "unsaved"));
  g_assert_nonnull (strstr (error->message, "(0 dirty; 1 clean but pinned, loading"));
  g_clear_error (&error);

  g_mutex_lock (&gate.lock);
  gate.release = TRUE;
  g_cond_broadcast (&gate.cond);
  g_mutex_unlock (&gate.lock);
  g_assert_cmpuint (GPOINTER_TO_UINT (g_thread_join (thread)), ==, test_mem_file_pattern (0, 0));
  g_mutex_clear (&gate.lock);
  g_cond_clear (&gate.cond);

  mapping_teardown (&m);
  g_object_unref (ram);
}

/* -- address space ---------------------------------------------------------- */

/* The address space of the process, in bytes. */
static guint64
vm_size (void)
{
  g_autofree char *status = NULL;
  const char *line;
  guint64 kib;

  g_assert_true (g_file_get_contents ("/proc/self/status", &status, NULL, NULL));
  line = strstr (status, "\nVmSize:");
  g_assert_nonnull (line);
  g_assert_cmpint (sscanf (line, "\nVmSize: %" G_GUINT64_FORMAT " kB", &kib), ==, 1);
  return kib * 1024;
}

#define MANY_RAMS 1000

/* A RAM takes address space in proportion to its use, not a fixed huge
 * reservation: a thousand small RAMs, each with a handle in use, fit. */
static void
test_ram_many_rams (void)
{
  Mapping *m = g_new0 (Mapping, MANY_RAMS);
  const guint64 budget = 4 * PS, n_pages = 8;
  guint64 before, after;

  g_test_summary ("A thousand RAMs with small budgets, each with a handle, work in one process "
                  "and take address space in proportion to their budgets");

  before = vm_size ();
  for (guint i = 0; i < MANY_RAMS; i++)
    {
      mapping_setup (&m[i], PS, n_pages, n_pages, budget);
      for (guint64 p = 0; p < n_pages; p++)
        g_assert_cmpuint (raw_read (m[i].data + p * PS + i), ==, test_mem_file_pattern (p, i));
      assert_within_budget (m[i].ram);
    }
  after = vm_size ();

  /* Per RAM: its window (the budget), the mapping (8 pages), the file's
   * blocks on the heap (8 pages) and small objects: a few times the budget,
   * where a fixed reservation took up to 1 TiB. */
  g_test_message ("address space: %" G_GUINT64_FORMAT " bytes per RAM of %" G_GUINT64_FORMAT
                  "-byte budget",
                  (after - before) / MANY_RAMS, budget);
  g_assert_cmpuint ((after - before) / MANY_RAMS, <=, 16 * budget);

  /* All still work, in any order. */
  for (guint i = MANY_RAMS; i-- > 0;)
    g_assert_cmpuint (raw_read (m[i].data + 1), ==, test_mem_file_pattern (0, 1));
  for (guint i = 0; i < MANY_RAMS; i++)
    mapping_teardown (&m[i]);
  g_free (m);
}

/* A RAM whose budget grows long after it started small uses pages in later
 * window segments: every page shows the right bytes through the window
 * (copies, stores) and through the mapping, and the window stays within
 * twice what is used. */
static void
test_ram_budget_grows (void)
{
  const guint64 n_pages = 8192; /* 32 MiB of 4 KiB pages */
  BigfileRam *ram = bigfile_ram_new (1 << 20);
  GError *error = NULL;
  BfRam *engine = _bigfile_ram_get_engine (ram);
  BfPool *pool;
  Mapping m;

  g_test_summary ("A RAM whose budget grows from 1 MiB to 32 MiB loads, copies and stores "
                  "pages in every window segment");

  mapping_setup_in_ram (&m, ram, PS, n_pages, n_pages);
  for (guint64 p = 0; p < 256; p++)
    g_assert_cmpuint (raw_read (m.data + p * PS + p), ==, test_mem_file_pattern (p, p));
  g_assert_cmpuint (engine->pools->len, ==, 1);
  pool = g_ptr_array_index (engine->pools, 0);
  g_assert_cmpuint (pool->n_segments, ==, 1);
  g_assert_cmpuint (pool->capacity, ==, 256);

  bigfile_ram_set_budget (ram, n_pages * PS);
  for (guint64 p = 0; p < n_pages; p++)
    g_assert_cmpuint (raw_read (m.data + p * PS + p % PS), ==, test_mem_file_pattern (p, p % PS));
  g_assert_cmpuint (bigfile_ram_get_n_pages (ram), ==, n_pages);
  g_assert_cmpuint (pool->n_segments, >, 5);
  g_assert_cmpuint (pool->capacity, <=, 2 * n_pages + 256);

  /* Copies go through the window: each page's bytes, at both ends. */
  for (guint64 p = 0; p < n_pages; p++)
    {
      guint8 bytes[2];

      g_assert_true (bigfile_vma_read_into (m.vma, p * PS, &bytes[0], 1, &error));
      g_assert_true (bigfile_vma_read_into (m.vma, p * PS + PS - 1, &bytes[1], 1, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (bytes[0], ==, test_mem_file_pattern (p, 0));
      g_assert_cmpuint (bytes[1], ==, test_mem_file_pattern (p, PS - 1));
    }

  /* So do stores: written through the mapping, stored from the window. */
  for (guint64 p = 0; p < n_pages; p += 61)
    raw_write (m.data + p * PS + 7, (guint8)(p ^ 0x5a));
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  for (guint64 p = 0; p < n_pages; p++)
    g_assert_cmpuint (test_mem_file_peek (m.file, p)[7], ==,
                      p % 61 == 0 ? (guint8)(p ^ 0x5a) : test_mem_file_pattern (p, 7));

  mapping_teardown (&m);
  g_object_unref (ram);
}

/* -- reused slots ----------------------------------------------------------- */

/* A C file whose raw load writes only the first half of its buffer, as a
 * sparse format may: the rest must read as zeros. */
#define TEST_TYPE_HALF_FILE (test_half_file_get_type ())
G_DECLARE_FINAL_TYPE (TestHalfFile, test_half_file, TEST, HALF_FILE, GObject)

struct _TestHalfFile
{
  GObject parent_instance;
};

static gsize
test_half_file_get_block_size (BigfileFile *file)
{
  return PS;
}

static gboolean
test_half_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                               GError **error)
{
  memset (buffer, 0xab, length / 2);
  return TRUE;
}

static void
test_half_file_iface_init (BigfileFileInterface *iface)
{
  iface->get_block_size = test_half_file_get_block_size;
  iface->load_block_raw = test_half_file_load_block_raw;
}

G_DEFINE_TYPE_WITH_CODE (TestHalfFile, test_half_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE, test_half_file_iface_init))

static void
test_half_file_class_init (TestHalfFileClass *klass)
{
}

static void
test_half_file_init (TestHalfFile *self)
{
}

/* A page whose load writes only part of its buffer shows zeros in the rest,
 * also when its slot last held another handle's page. */
static void
test_ram_reused_slot_cleared (void)
{
  BigfileRam *ram = bigfile_ram_new (PS);
  BigfileFile *half = g_object_new (TEST_TYPE_HALF_FILE, NULL);
  GError *error = NULL;
  BigfileHandle *handle;
  BigfileVma *vma;
  GBytes *bytes;
  const guint8 *data;
  Mapping m;

  g_test_summary ("A raw load that fills half its buffer leaves zeros in the other half, not "
                  "the bytes of the page that used the slot before");

  /* Another handle's page takes the budget's only slot. */
  mapping_setup_in_ram (&m, ram, PS, 1, 1);
  g_assert_cmpuint (raw_read (m.data + PS - 1), ==, test_mem_file_pattern (0, PS - 1));
  g_assert_cmpuint (test_mem_file_pattern (0, PS - 1), !=, 0);

  handle = bigfile_handle_new (half, ram, &error);
  g_assert_no_error (error);
  vma = bigfile_handle_map (handle, 0, 1, &error);
  g_assert_no_error (error);
  data = bigfile_vma_get_data (vma);
  g_assert_cmpuint (raw_read (data), ==, 0xab);
  /* The slot was reused: the other page had to go. */
  assert_states (&m, ".");
  for (gsize i = 0; i < PS; i++)
    if (data[i] != (i < PS / 2 ? 0xab : 0))
      g_error ("byte %" G_GSIZE_FORMAT " is 0x%02x, expected 0x%02x", i, data[i],
               i < PS / 2 ? 0xab : 0);

  /* The GBytes invoker gives the same. */
  bytes = bigfile_file_load_block (half, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (bytes), ==, PS);
  g_assert_cmpmem (g_bytes_get_data (bytes, NULL), PS, data, PS);
  g_bytes_unref (bytes);

  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  g_assert_true (bigfile_handle_close (handle));
  g_object_unref (handle);
  g_object_unref (half);
  mapping_teardown (&m);
  g_object_unref (ram);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/ram/lru-order", test_ram_lru_order);
  g_test_add_func ("/ram/budget-respected", test_ram_budget_respected);
  g_test_add_func ("/ram/reclaim", test_ram_reclaim);
  g_test_add_func ("/ram/set-budget", test_ram_set_budget);
  g_test_add_func ("/ram/dirty-never-dropped", test_ram_dirty_never_dropped);
  g_test_add_func ("/ram/two-page-sizes", test_ram_two_page_sizes);
  g_test_add_func ("/ram/properties", test_ram_properties);

  g_test_add_func ("/ram/reclaim/gives-back-all", test_reclaim_gives_back_all);
  g_test_add_func ("/ram/budget/below-one-page", test_ram_budget_below_one_page);
  g_test_add_func ("/ram/budget/smaller-than-block", test_ram_budget_smaller_than_block);
  g_test_add_func ("/ram/budget/full-message-true", test_ram_full_message_true);
  g_test_add_func ("/ram/budget/grows", test_ram_budget_grows);
  g_test_add_func ("/ram/address-space/many-rams", test_ram_many_rams);
  g_test_add_func ("/ram/slot/reused-cleared", test_ram_reused_slot_cleared);

  return g_test_run ();
}
