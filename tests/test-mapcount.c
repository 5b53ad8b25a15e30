/* bigfile-glib tests - staying under vm.max_map_count
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Scattered pages cost the kernel one mapping each; a process has only
 * vm.max_map_count of them.  The engine counts what its VMAs cost and drops
 * the mappings of unpinned pages (keeping the pages) when the count nears its
 * cap.  These tests check the count, the cap, that data stays right through
 * such flushes, that pinned pages stay mapped, and that random access over a
 * large budget of 4 KiB pages works under the real limit.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test-util.h"

#define PS ((gsize)4096)

/* One VMA costs one kernel mapping; scattered pages add two each (the page
 * and the gap after it); neighbours with consecutive slots merge. */
static void
test_count (void)
{
  Mapping m;
  guint64 base = bf_get_kernel_maps ();

  mapping_setup (&m, PS, 64, 64, 64 * PS);
  g_assert_cmpuint (bf_get_kernel_maps (), ==, base + 1);

  /* Pages 10 and 20, alone: two islands. */
  g_assert_cmpuint (raw_read (m.data + 10 * PS), ==, test_mem_file_pattern (10, 0));
  g_assert_cmpuint (bf_get_kernel_maps (), ==, base + 3);
  g_assert_cmpuint (raw_read (m.data + 20 * PS), ==, test_mem_file_pattern (20, 0));
  g_assert_cmpuint (bf_get_kernel_maps (), ==, base + 5);

  /* Page 21 gets the next slot after page 20's: it merges with it. */
  g_assert_cmpuint (raw_read (m.data + 21 * PS), ==, test_mem_file_pattern (21, 0));
  g_assert_cmpuint (bf_get_kernel_maps (), ==, base + 5);

  /* Writing page 21 makes it read-write: split from page 20. */
  raw_write (m.data + 21 * PS, 1);
  g_assert_cmpuint (bf_get_kernel_maps (), ==, base + 6);

  /* Dropping everything brings it back to one. */
  bigfile_handle_discard (m.handle);
  bigfile_ram_reclaim (m.ram);
  g_assert_cmpuint (bf_get_kernel_maps (), ==, base + 1);

  mapping_teardown (&m);
  g_assert_cmpuint (bf_get_kernel_maps (), ==, base);
}

/* Under a small cap, random access keeps the count under it, shows the
 * right data, and pages whose mappings were dropped are not loaded again. */
static void
test_cap_random (void)
{
  Mapping m;
  const guint64 n = 512, cap = 40;
  GRand *rand = g_rand_new_with_seed (42);
  guint loads_before;

  bf_set_kernel_maps_cap (cap);
  mapping_setup (&m, PS, n, n, n * PS); /* everything fits: no reclaim */

  for (guint k = 0; k < 4000; k++)
    {
      guint64 p = (guint64)g_rand_int_range (rand, 0, (gint32)n);
      gsize off = (gsize)g_rand_int_range (rand, 0, (gint32)PS);

      if (k % 3 == 0)
        raw_write (m.data + p * PS + off, test_mem_file_pattern (p, off));
      else
        g_assert_cmpuint (raw_read (m.data + p * PS + off), ==, test_mem_file_pattern (p, off));
      g_assert_cmpuint (bf_get_kernel_maps (), <=, cap);
    }

  /* Every page was loaded once at most: flushes drop mappings, not pages. */
  loads_before = test_mem_file_get_total_loads (m.file);
  g_assert_cmpuint (loads_before, <=, n);
  for (guint64 p = 0; p < n; p++)
    g_assert_cmpuint (raw_read (m.data + p * PS + 7), ==, test_mem_file_pattern (p, 7));
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, n);

  bigfile_handle_discard (m.handle);
  mapping_teardown (&m);
  bf_set_kernel_maps_cap (0);
  g_rand_free (rand);
}

/* A flush leaves pinned pages mapped: a system call into them still works. */
static void
test_cap_keeps_pins (void)
{
  Mapping m;
  GError *error = NULL;
  const guint64 cap = 12;
  int fds[2];
  const char msg[] = "pinned";

  bf_set_kernel_maps_cap (cap);
  mapping_setup (&m, PS, 64, 64, 64 * PS);
  g_assert_true (bigfile_vma_pin (m.vma, 3 * PS, PS, TRUE, &error));
  g_assert_no_error (error);

  /* Scattered reads to force flushes. */
  for (guint64 p = 10; p < 60; p += 2)
    g_assert_cmpuint (raw_read (m.data + p * PS), ==, test_mem_file_pattern (p, 0));
  assert_mapping (m.vma, 3, TRUE, TRUE);

  g_assert_cmpint (pipe (fds), ==, 0);
  g_assert_cmpint (write (fds[1], msg, sizeof msg), ==, sizeof msg);
  g_assert_cmpint (read (fds[0], m.data + 3 * PS, sizeof msg), ==, sizeof msg);
  g_assert_cmpstr ((const char *)m.data + 3 * PS, ==, msg);
  close (fds[0]);
  close (fds[1]);

  bigfile_vma_unpin (m.vma, 3 * PS, PS);
  bigfile_handle_discard (m.handle);
  mapping_teardown (&m);
  bf_set_kernel_maps_cap (0);
}

/* The real limit: random access to 4 KiB pages of a 1 GiB mapping with a
 * 256 MiB budget keeps ~65536 scattered pages in memory, more than
 * vm.max_map_count allows mapped.  Without the cap, mapping fails (SIGBUS)
 * after some 37000 faults. */
static void
test_real_limit (void)
{
  Mapping m;
  const guint64 n = (1u << 30) / PS;
  GRand *rand = g_rand_new_with_seed (7);

  mapping_setup (&m, PS, 0, n, 256u << 20); /* a file of zeros */
  for (guint k = 0; k < 100000; k++)
    {
      guint64 p = (guint64)g_rand_int_range (rand, 0, (gint32)n);
      g_assert_cmpuint (raw_read (m.data + p * PS + (k % PS)), ==, 0);
    }
  g_assert_cmpuint (bf_get_kernel_maps (), <=, 65530);
  mapping_teardown (&m);
  g_rand_free (rand);
}

/* -- the rest of the process at the limit -------------------------------------------- */

/* Mappings of the test's own, made until the kernel refuses one: then the
 * process is at vm.max_map_count, whatever the engine counts. */
static void *foreign[1 << 17];
static guint n_foreign;

static void
use_up_map_count (void)
{
  while (n_foreign < G_N_ELEMENTS (foreign))
    {
      /* Alternate protections so that neighbours never merge. */
      void *p = mmap (NULL, PS, n_foreign % 2 ? PROT_READ : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);

      if (p == MAP_FAILED)
        {
          g_assert_cmpint (errno, ==, ENOMEM);
          return;
        }
      foreign[n_foreign++] = p;
    }
  g_assert_not_reached ();
}

static void
free_foreign_maps (void)
{
  while (n_foreign > 0)
    munmap (foreign[--n_foreign], PS);
}

/* At the limit, only what the engine does may need new mappings: the
 * checks here take no kernel view (reading /proc/self/maps would take a
 * large buffer, which malloc would ask the kernel to map). */
static void
check_at_limit (void)
{
  Mapping m;
  GError *error = NULL;

  mapping_setup (&m, PS, 64, 64, 64 * PS);
  /* Pages 10-12 in one kernel mapping (consecutive slots), the outer two
   * pinned; pages 20-22 dirty, in one writable kernel mapping. */
  for (guint64 p = 10; p <= 12; p++)
    g_assert_cmpuint (raw_read (m.data + p * PS), ==, test_mem_file_pattern (p, 0));
  g_assert_true (bigfile_vma_pin (m.vma, 10 * PS, PS, FALSE, &error));
  g_assert_true (bigfile_vma_pin (m.vma, 12 * PS, PS, FALSE, &error));
  g_assert_no_error (error);
  for (guint64 p = 20; p <= 22; p++)
    raw_write (m.data + p * PS + 1, (guint8)p);

  use_up_map_count ();

  /* Writeout must protect page 20 inside its run, which needs a split the
   * kernel refuses: the engine unmaps more instead, and the save is whole. */
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  for (guint64 p = 20; p <= 22; p++)
    g_assert_cmpuint (test_mem_file_peek (m.file, p)[1], ==, p);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  assert_engine_invariants (m.handle, FALSE);

  /* Page 11 cannot be unmapped between its pinned neighbours: it stays, as
   * it was, rather than have its slot reused under a live mapping. */
  g_test_expect_message ("Bigfile", G_LOG_LEVEL_WARNING, "Could not invalidate page 11*");
  bigfile_handle_invalidate_page (m.handle, 11);
  g_test_assert_expected_messages ();
  g_assert_cmpint (page_state (&m, 11), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (raw_read (m.data + 11 * PS + 5), ==, test_mem_file_pattern (11, 5));
  assert_engine_invariants (m.handle, FALSE);

  /* Over the limit the kernel maps nothing new: copies through the API
   * still work (they need no mapping), mapping a page fails cleanly. */
  use_up_map_count ();
  {
    guint8 byte = 0;

    g_assert_true (bigfile_vma_read_into (m.vma, 40 * PS + 3, &byte, 1, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (byte, ==, test_mem_file_pattern (40, 3));
  }
  g_assert_false (bigfile_vma_populate (m.vma, 41 * PS, PS, TRUE, &error));
  g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_MAP_FAILED);
  g_assert_nonnull (strstr (error->message, "vm.max_map_count"));
  g_clear_error (&error);
  assert_engine_invariants (m.handle, FALSE);

  /* Once the process lets go, everything works as before. */
  free_foreign_maps ();
  assert_engine_invariants (m.handle, TRUE);
  g_assert_cmpuint (raw_read (m.data + 40 * PS + 3), ==, test_mem_file_pattern (40, 3));
  raw_write (m.data + 41 * PS, 0x41);
  for (guint64 p = 20; p <= 22; p++)
    g_assert_cmpuint (raw_read (m.data + p * PS + 1), ==, p);
  bigfile_handle_invalidate_page (m.handle, 11);
  g_assert_cmpint (page_state (&m, 11), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (test_mem_file_peek (m.file, 41)[0], ==, 0x41);
  bigfile_vma_unpin (m.vma, 10 * PS, PS);
  bigfile_vma_unpin (m.vma, 12 * PS, PS);
  mapping_teardown (&m);
}

static void
test_process_at_limit (void)
{
  g_test_summary ("When the rest of the process has used up vm.max_map_count, writeout, "
                  "invalidation and faults return or degrade cleanly: no abort, no lost or "
                  "wrong data");
#if defined(__SANITIZE_ADDRESS__)
  g_test_skip ("AddressSanitizer itself needs new mappings");
  return;
#endif
  if (g_test_subprocess ())
    {
      check_at_limit ();
      return;
    }
  g_test_trap_subprocess (NULL, 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/mapcount/count", test_count);
  g_test_add_func ("/mapcount/cap/random", test_cap_random);
  g_test_add_func ("/mapcount/cap/keeps-pins", test_cap_keeps_pins);
  g_test_add_func ("/mapcount/real-limit", test_real_limit);
  g_test_add_func ("/mapcount/process-at-limit", test_process_at_limit);

  return g_test_run ();
}
