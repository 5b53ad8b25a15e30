/* bigfile-glib tests - a file keeps its size
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A file with a size (get_size, set_size: TestMemFile made with
 * test_mem_file_new_sized(), BigfileLocalFile) behind a handle: the handle
 * shows zeros past the size whatever the file's loads give there, stores
 * only the bytes below it (TestMemFile asserts that on every store), grows
 * it at writeout over what the program wrote past it that is not zero and
 * keeps it otherwise, and truncates or extends it as bigfile_handle_set_size()
 * asks, at the next writeout; discard puts it back.  A file without a size
 * behaves as before (the other test programs check that unchanged).
 */
#include "config.h"

#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "test-util.h"

#define PS ((gsize)4096)
#define PS_64K ((gsize)65536)

/* -- helpers ------------------------------------------------------------------ */

/* Counts notify::size, and remembers the size it showed and its thread. */
typedef struct
{
  guint n;
  guint64 last;
  gboolean other_thread;
  GThread *owner;
} SizeNotes;

static void
on_notify_size (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  SizeNotes *notes = user_data;

  g_assert_cmpstr (pspec->name, ==, "size");
  notes->n++;
  notes->last = bigfile_handle_get_size (BIGFILE_HANDLE (object));
  if (g_thread_self () != notes->owner)
    notes->other_thread = TRUE;
}

static void
watch_size (Mapping *m, SizeNotes *notes)
{
  memset (notes, 0, sizeof *notes);
  notes->owner = g_thread_self ();
  g_signal_connect (m->handle, "notify::size", G_CALLBACK (on_notify_size), notes);
}

static void
unwatch_size (Mapping *m, SizeNotes *notes)
{
  g_signal_handlers_disconnect_by_data (m->handle, notes);
}

/* Lets pending sources of the default context run. */
static void
iterate_pending (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* Lets the default context run until *@n reaches @want, or 5 s pass. */
static void
spin_until (guint *n, guint want)
{
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  while (*n < want && g_get_monotonic_time () < deadline)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);
}

static void
assert_zeros (const guint8 *p, gsize len)
{
  for (gsize i = 0; i < len; i++)
    if (p[i] != 0)
      g_error ("byte %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " is %u, not 0", i, len, p[i]);
}

/* Byte @offset of what @file has stored (the pattern until stored over,
 * zeros past its blocks). */
static guint8
file_byte (TestMemFile *file, gsize ps, guint64 offset)
{
  return test_mem_file_peek (file, offset / ps)[offset % ps];
}

static guint8
pattern_at (gsize ps, guint64 offset)
{
  return test_mem_file_pattern (offset / ps, offset % ps);
}

/* Asserts that the handle shows @size bytes of the file's pattern, then
 * zeros, over its @n_pages pages: through raw memory and bigfile_vma_read(). */
static void
assert_shows_size (Mapping *m, guint64 size)
{
  gsize len = m->n_pages * m->ps;
  g_autofree guint8 *buf = g_malloc (len);
  GError *error = NULL;

  g_assert_true (bigfile_vma_read_into (m->vma, 0, buf, len, &error));
  g_assert_no_error (error);
  for (gsize i = 0; i < len; i++)
    {
      guint8 want = i < size ? pattern_at (m->ps, i) : 0;

      if (buf[i] != want || m->data[i] != want)
        g_error ("byte %" G_GSIZE_FORMAT " shows %u (raw %u), want %u (size %" G_GUINT64_FORMAT ")",
                 i, buf[i], m->data[i], want, size);
    }
}

static void
assert_set_sizes (TestMemFile *file, const guint64 *sizes, guint n)
{
  GArray *log = test_mem_file_get_set_size_log (file);

  g_assert_cmpuint (log->len, ==, n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (g_array_index (log, guint64, i), ==, sizes[i]);
}

/* Asserts the blocks stored, and how many bytes of each, since the last
 * reset. */
static void
assert_stores (TestMemFile *file, const guint64 *blocks, const gsize *lengths, guint n)
{
  GArray *log = test_mem_file_get_store_lengths (file);

  assert_store_log (file, blocks, n);
  g_assert_cmpuint (log->len, ==, n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (g_array_index (log, gsize, i), ==, lengths[i]);
}

static void
writeout (Mapping *m)
{
  GError *error = NULL;

  g_assert_true (bigfile_handle_writeout (m->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
}

static void
set_size (Mapping *m, guint64 size)
{
  GError *error = NULL;

  g_assert_true (bigfile_handle_set_size (m->handle, size, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (bigfile_handle_get_size (m->handle), ==, size);
}

/* -- the file keeps its size ---------------------------------------------------- */

/* The case of the issue: a 5000-byte file of 4 KiB blocks (and 64 KiB), byte
 * 4500 changed and saved: the file is still 5000 bytes, the last block
 * stored with only its bytes below the size, and no resize. */
static void
test_keeps_size (gconstpointer data)
{
  gsize ps = GPOINTER_TO_SIZE (data);
  guint64 block = 4500 / ps;
  Mapping m;
  SizeNotes notes;
  GValue value = G_VALUE_INIT;

  g_test_summary ("Saving a change below the size stores only the bytes below it");
  mapping_setup_sized (&m, ps, 5000, 3, 1 << 22);
  watch_size (&m, &notes);
  g_assert_true (bigfile_handle_has_size (m.handle));
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 5000);
  g_value_init (&value, G_TYPE_UINT64);
  g_object_get_property (G_OBJECT (m.handle), "size", &value);
  g_assert_cmpuint (g_value_get_uint64 (&value), ==, 5000);

  /* The file's last block has more of the pattern past byte 5000: not
   * shown. */
  g_assert_cmpuint (test_mem_file_peek (m.file, 4999 / ps)[5000 % ps], !=, 0);
  assert_shows_size (&m, 5000);

  raw_write (m.data + 4500, (guint8)~pattern_at (ps, 4500));
  writeout (&m);

  assert_stores (m.file, (guint64[]){ block }, (gsize[]){ 5000 - block * ps }, 1);
  assert_set_sizes (m.file, NULL, 0);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 5000);
  g_assert_cmpuint (file_byte (m.file, ps, 4500), ==, (guint8)~pattern_at (ps, 4500));
  g_assert_cmpuint (file_byte (m.file, ps, 4499), ==, pattern_at (ps, 4499));
  g_assert_cmpuint (file_byte (m.file, ps, 4999), ==, pattern_at (ps, 4999));
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 5000);
  iterate_pending ();
  g_assert_cmpuint (notes.n, ==, 0);

  unwatch_size (&m, &notes);
  g_value_unset (&value);
  mapping_teardown (&m);
}

/* A non-zero byte written at 6000, past the size: writeout grows the file to
 * 6001 (set_size before the store, which covers the byte), and notify::size
 * says so. */
static void
test_grows_over_write (void)
{
  Mapping m;
  SizeNotes notes;

  g_test_summary ("A byte other than zero written past the size grows the file to cover it");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);
  watch_size (&m, &notes);

  raw_write (m.data + 6000, 0x01);
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 5000); /* until writeout */
  writeout (&m);

  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 6001);
  assert_set_sizes (m.file, (guint64[]){ 6001 }, 1);
  assert_stores (m.file, (guint64[]){ 1 }, (gsize[]){ 6001 - PS }, 1);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 6001);
  g_assert_cmpuint (file_byte (m.file, PS, 6000), ==, 0x01);
  /* What lay between the old size and the byte is zeros, in the file too. */
  for (guint64 i = 5000; i < 6000; i++)
    g_assert_cmpuint (file_byte (m.file, PS, i), ==, 0);
  g_assert_cmpuint (notes.n, ==, 1);
  g_assert_cmpuint (notes.last, ==, 6001);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);

  /* Several pages past the size: each grows it in turn; the last byte
   * written that is not zero ends the file. */
  test_mem_file_reset_counters (m.file);
  raw_write (m.data + 2 * PS + 7, 0x02);
  raw_write (m.data + 3 * PS + 100, 0x03);
  raw_write (m.data + 3 * PS + 200, 0x00);
  writeout (&m);
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 3 * PS + 101);
  assert_set_sizes (m.file, (guint64[]){ 2 * PS + 8, 3 * PS + 101 }, 2);
  assert_stores (m.file, (guint64[]){ 2, 3 }, (gsize[]){ 8, 101 }, 2);
  g_assert_cmpuint (file_byte (m.file, PS, 2 * PS + 7), ==, 0x02);
  g_assert_cmpuint (file_byte (m.file, PS, 3 * PS + 100), ==, 0x03);
  g_assert_cmpuint (notes.n, ==, 2);
  g_assert_cmpuint (notes.last, ==, 3 * PS + 101);

  unwatch_size (&m, &notes);
  mapping_teardown (&m);
}

/* Zeros written past the size are what the handle shows there already:
 * the size stays, no resize, and a page wholly past it is not stored. */
static void
test_zeros_keep_size (void)
{
  Mapping m;
  SizeNotes notes;
  GError *error = NULL;
  g_autoptr (GBytes) zeros = g_bytes_new_take (g_malloc0 (PS), PS);

  g_test_summary ("Writing only zeros past the size keeps the size");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);
  watch_size (&m, &notes);

  raw_write (m.data + 6000, 0x00);
  g_assert_true (bigfile_vma_write (m.vma, 3 * PS, zeros, &error));
  g_assert_no_error (error);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  writeout (&m);

  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 5000);
  assert_set_sizes (m.file, NULL, 0);
  assert_stores (m.file, (guint64[]){ 1 }, (gsize[]){ 5000 - PS }, 1);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 5000);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  iterate_pending ();
  g_assert_cmpuint (notes.n, ==, 0);

  unwatch_size (&m, &notes);
  mapping_teardown (&m);
}

/* The handle shows zeros past the size even where the file's load gives
 * junk, and pages wholly past it come without a load. */
static void
test_zeros_past_size (void)
{
  Mapping m;
  g_autoptr (GBytes) bytes = NULL;
  GError *error = NULL;

  g_test_summary ("Past the size the handle shows zeros, whatever the file's load returns");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);
  test_mem_file_set_junk_past_size (m.file, TRUE);

  bytes = bigfile_vma_read (m.vma, 4990, 20, &error);
  g_assert_no_error (error);
  for (gsize i = 0; i < 20; i++)
    g_assert_cmpuint (((const guint8 *)g_bytes_get_data (bytes, NULL))[i], ==,
                      i < 10 ? pattern_at (PS, 4990 + i) : 0);
  assert_shows_size (&m, 5000);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 1), ==, 1);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 0);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 3), ==, 0);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_LOADED);

  /* Reclaimed and loaded again: the same. */
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 4);
  assert_shows_size (&m, 5000);

  mapping_teardown (&m);
}

/* -- setting the size --------------------------------------------------------------- */

/* Smaller: at once, zeros past the new size and the pages wholly past it
 * dropped (dirty ones too); at writeout, the file is truncated. */
static void
test_set_smaller (void)
{
  Mapping m;
  SizeNotes notes;

  g_test_summary ("bigfile_handle_set_size() smaller shows zeros at once, truncates at writeout");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);
  watch_size (&m, &notes);

  raw_write (m.data + 100, 0x11);   /* page 0: dirty, keeps its change */
  raw_write (m.data + 4200, 0x22);  /* page 1: dirty, dropped */
  (void)raw_read (m.data + 3 * PS); /* page 3: clean, dropped */
  test_mem_file_reset_counters (m.file);

  set_size (&m, 3000);
  g_assert_cmpuint (notes.n, ==, 1); /* at once, on the owner thread */
  g_assert_cmpuint (notes.last, ==, 3000);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 1);
  g_assert_cmpuint (raw_read (m.data + 100), ==, 0x11);
  g_assert_cmpuint (raw_read (m.data + 2999), ==, pattern_at (PS, 2999));
  assert_zeros (m.data + 3000, 4 * PS - 3000);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 0); /* zeros, no loads */
  /* The file has not changed yet. */
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 5000);

  writeout (&m);
  assert_set_sizes (m.file, (guint64[]){ 3000 }, 1);
  assert_stores (m.file, (guint64[]){ 0 }, (gsize[]){ 3000 }, 1);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 3000);
  g_assert_cmpuint (file_byte (m.file, PS, 100), ==, 0x11);
  g_assert_cmpuint (file_byte (m.file, PS, 2999), ==, pattern_at (PS, 2999));
  g_assert_cmpuint (file_byte (m.file, PS, 3000), ==, 0);

  /* Page-aligned: the page that starts at the size goes too. */
  set_size (&m, PS);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  writeout (&m);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, PS);
  g_assert_cmpuint (notes.n, ==, 2);

  unwatch_size (&m, &notes);
  mapping_teardown (&m);
}

/* Larger: zeros from the old size on (also where the file had junk there,
 * and also after the page is loaded again); writeout extends the file. */
static void
test_set_larger (void)
{
  Mapping m;
  SizeNotes notes;

  g_test_summary ("bigfile_handle_set_size() larger shows zeros, extends at writeout");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);
  test_mem_file_set_junk_past_size (m.file, TRUE);
  watch_size (&m, &notes);

  (void)raw_read (m.data + PS); /* page 1, with the old size in it */
  set_size (&m, 10000);
  g_assert_cmpuint (notes.n, ==, 1);
  assert_shows_size (&m, 5000);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 0);

  /* Loaded again while the file is still 5000 bytes long, with junk past. */
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), >, 0);
  assert_shows_size (&m, 5000);

  writeout (&m);
  assert_set_sizes (m.file, (guint64[]){ 10000 }, 1);
  assert_store_log (m.file, NULL, 0);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 10000);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), >, 0);
  test_mem_file_set_junk_past_size (m.file, FALSE);
  assert_shows_size (&m, 5000);
  for (guint64 i = 5000; i < 10000; i++)
    g_assert_cmpuint (file_byte (m.file, PS, i), ==, 0);

  unwatch_size (&m, &notes);
  mapping_teardown (&m);
}

/* Smaller then larger before a writeout: the file's bytes past the lower
 * size are gone (zeros), as with two ftruncate() calls. */
static void
test_shrink_then_grow (void)
{
  Mapping m;

  g_test_summary ("A size set lower then higher again drops the file's bytes past the lower");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);
  (void)raw_read (m.data + 4500);

  set_size (&m, 3000);
  set_size (&m, 8000);
  assert_shows_size (&m, 3000);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), >, 0);
  assert_shows_size (&m, 3000);

  writeout (&m);
  assert_set_sizes (m.file, (guint64[]){ 3000, 8000 }, 2);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 8000);
  for (guint64 i = 3000; i < 8000; i++)
    g_assert_cmpuint (file_byte (m.file, PS, i), ==, 0);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), >, 0);
  assert_shows_size (&m, 3000);

  mapping_teardown (&m);
}

/* Discard throws a size set since the last writeout away, like changes:
 * the pages that showed zeros where the file has data load again. */
static void
test_discard_reverts (void)
{
  Mapping m;
  SizeNotes notes;

  g_test_summary ("bigfile_handle_discard() puts the size back to the file's");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);
  watch_size (&m, &notes);
  assert_shows_size (&m, 5000);

  set_size (&m, 3000);
  assert_shows_size (&m, 3000);
  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 0);
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 5000);
  g_assert_cmpuint (notes.n, ==, 2);
  g_assert_cmpuint (notes.last, ==, 5000);
  assert_shows_size (&m, 5000);

  set_size (&m, 9000);
  raw_write (m.data + 8000, 0x33);
  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 1);
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 5000);
  assert_shows_size (&m, 5000);

  /* A write past the size, discarded: the size never changed. */
  raw_write (m.data + 6000, 0x44);
  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 1);
  assert_shows_size (&m, 5000);

  writeout (&m);
  assert_set_sizes (m.file, NULL, 0);
  assert_store_log (m.file, NULL, 0);
  g_assert_cmpuint (notes.n, ==, 4);

  unwatch_size (&m, &notes);
  mapping_teardown (&m);
}

/* A resize that fails stops the writeout with its error, and loses
 * nothing: a retry does it. */
static void
test_set_size_fails (void)
{
  Mapping m;
  GError *error = NULL;

  g_test_summary ("A failed resize fails the writeout and keeps what is to be stored");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);

  raw_write (m.data + 6000, 0x55);
  test_mem_file_set_fail_set_size (m.file, TRUE);
  g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  g_clear_error (&error);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 5000);
  assert_store_log (m.file, NULL, 0);

  test_mem_file_set_fail_set_size (m.file, FALSE);
  writeout (&m);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 6001);
  g_assert_cmpuint (file_byte (m.file, PS, 6000), ==, 0x55);

  /* A truncation too. */
  set_size (&m, 10);
  test_mem_file_set_fail_set_size (m.file, TRUE);
  g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  g_clear_error (&error);
  test_mem_file_set_fail_set_size (m.file, FALSE);
  writeout (&m);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 10);

  mapping_teardown (&m);
}

/* -- odd sizes ------------------------------------------------------------------- */

static void
check_odd_size (gsize ps, guint64 size)
{
  const guint64 n_pages = 3;
  Mapping m;
  guint64 grown;

  g_test_message ("block size %" G_GSIZE_FORMAT ", size %" G_GUINT64_FORMAT, ps, size);
  mapping_setup_sized (&m, ps, size, n_pages, 16 * ps);
  assert_shows_size (&m, size);

  /* A change of the last byte: stored, the size kept. */
  if (size > 0)
    {
      guint64 block = (size - 1) / ps;

      raw_write (m.data + size - 1, (guint8)~pattern_at (ps, size - 1));
      writeout (&m);
      assert_stores (m.file, (guint64[]){ block }, (gsize[]){ size - block * ps }, 1);
      g_assert_cmpuint (file_byte (m.file, ps, size - 1), ==, (guint8)~pattern_at (ps, size - 1));
    }
  /* A zero at the size: nothing changes. */
  test_mem_file_reset_counters (m.file);
  raw_write (m.data + size, 0);
  writeout (&m);
  if (size % ps != 0)
    assert_stores (m.file, (guint64[]){ size / ps }, (gsize[]){ size % ps }, 1);
  else
    assert_store_log (m.file, NULL, 0);
  assert_set_sizes (m.file, NULL, 0);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, size);
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, size);

  /* Something else half a page past it: the size grows to cover it. */
  grown = size + ps / 2 + 1;
  raw_write (m.data + grown - 1, 0x77);
  writeout (&m);
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, grown);
  assert_set_sizes (m.file, (guint64[]){ grown }, 1);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, grown);
  g_assert_cmpuint (file_byte (m.file, ps, grown - 1), ==, 0x77);
  for (guint64 i = size; i < grown - 1; i++)
    g_assert_cmpuint (file_byte (m.file, ps, i), ==, 0);

  mapping_teardown (&m);
}

static void
test_odd_sizes (gconstpointer data)
{
  gsize ps = GPOINTER_TO_SIZE (data);
  const guint64 sizes[] = { 0, 1, ps - 1, ps, ps + 1 };

  g_test_summary ("Sizes 0, 1, page - 1, page and page + 1 are kept, and grow right");
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    check_odd_size (ps, sizes[i]);
}

/* -- files without a size ---------------------------------------------------------- */

static void
test_no_size (void)
{
  Mapping m;
  GError *error = NULL;
  guint64 size = 0;

  g_test_summary ("A file without a size has none in its handle, and stores whole blocks");
  mapping_setup (&m, PS, 2, 4, 1 << 20);
  g_assert_false (bigfile_file_get_size (BIGFILE_FILE (m.file), &size, &error));
  g_assert_no_error (error);
  g_assert_false (bigfile_handle_has_size (m.handle));
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, G_MAXUINT64);
  g_object_get (m.handle, "size", &size, NULL);
  g_assert_cmpuint (size, ==, G_MAXUINT64);

  g_assert_false (bigfile_handle_set_size (m.handle, 100, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);
  g_assert_false (bigfile_file_set_size (BIGFILE_FILE (m.file), 100, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);

  /* The pattern in blocks 0 and 1, zeros past: the file's own. */
  g_assert_cmpuint (raw_read (m.data + PS + 3000), ==, pattern_at (PS, PS + 3000));
  raw_write (m.data + 10, 0x01);
  raw_write (m.data + 3 * PS, 0x00);
  writeout (&m);
  assert_stores (m.file, (guint64[]){ 0, 3 }, (gsize[]){ PS, PS }, 2);

  mapping_teardown (&m);
}

/* -- asynchronous writeout ------------------------------------------------------------ */

typedef struct
{
  gboolean done;
  GError *error;
} AsyncResult;

static void
on_writeout_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncResult *r = user_data;

  bigfile_handle_writeout_finish (BIGFILE_HANDLE (source), result, &r->error);
  r->done = TRUE;
}

/* The size grows in a worker thread (thread-safe file) or in slices on the
 * owner context (the others): notify::size comes on the owner context. */
static void
test_async (gconstpointer data)
{
  gboolean thread_safe = GPOINTER_TO_INT (data);
  Mapping m;
  SizeNotes notes;
  AsyncResult r = { 0 };

  g_test_summary ("Writeout in a worker thread or in slices grows and truncates as in sync");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);
  test_mem_file_set_thread_safe (m.file, thread_safe);
  watch_size (&m, &notes);

  raw_write (m.data + 4500, 0x10);
  raw_write (m.data + 2 * PS + 50, 0x20);
  bigfile_handle_writeout_async (m.handle, BIGFILE_WRITEOUT_DEFAULT, G_PRIORITY_DEFAULT, NULL, NULL,
                                 NULL, NULL, on_writeout_done, &r);
  while (!r.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (r.error);
  spin_until (&notes.n, 1);
  g_assert_cmpuint (notes.n, ==, 1);
  g_assert_cmpuint (notes.last, ==, 2 * PS + 51);
  g_assert_false (notes.other_thread);
  assert_set_sizes (m.file, (guint64[]){ 2 * PS + 51 }, 1);
  assert_stores (m.file, (guint64[]){ 1, 2 }, (gsize[]){ 5000 - PS, 51 }, 2);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 2 * PS + 51);

  /* A truncation with nothing dirty. */
  test_mem_file_reset_counters (m.file);
  set_size (&m, 700);
  r.done = FALSE;
  bigfile_handle_writeout_async (m.handle, BIGFILE_WRITEOUT_DEFAULT, G_PRIORITY_DEFAULT, NULL, NULL,
                                 NULL, NULL, on_writeout_done, &r);
  while (!r.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (r.error);
  assert_set_sizes (m.file, (guint64[]){ 700 }, 1);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 700);

  iterate_pending ();
  unwatch_size (&m, &notes);
  mapping_teardown (&m);
}

/* -- a resize while a store runs ---------------------------------------------------------- */

typedef struct
{
  GMutex lock;
  GCond cond;
  gboolean in_store;
  gboolean release;
  gboolean resized;
  Mapping *m;
} StoreGate;

static void
gate_store_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  StoreGate *gate = user_data;

  g_mutex_lock (&gate->lock);
  gate->in_store = TRUE;
  g_cond_broadcast (&gate->cond);
  while (!gate->release)
    g_cond_wait (&gate->cond, &gate->lock);
  g_mutex_unlock (&gate->lock);
}

static gpointer
writeout_thread (gpointer data)
{
  Mapping *m = data;
  GError *error = NULL;

  g_assert_true (bigfile_handle_writeout (m->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  return NULL;
}

static gpointer
resize_thread (gpointer data)
{
  StoreGate *gate = data;
  GError *error = NULL;

  g_assert_true (bigfile_handle_set_size (gate->m->handle, 4200, &error));
  g_assert_no_error (error);
  g_mutex_lock (&gate->lock);
  gate->resized = TRUE;
  g_mutex_unlock (&gate->lock);
  return NULL;
}

/* The page that holds the new size is being stored: set_size waits for the
 * store (which must see a stable page) before it clears the page's tail. */
static void
test_set_size_waits_for_store (void)
{
  Mapping m;
  StoreGate gate = { 0 };
  GThread *writer, *resizer;

  g_test_summary ("bigfile_handle_set_size() waits for the store of the page it clears");
  mapping_setup_sized (&m, PS, 5000, 4, 1 << 20);
  g_mutex_init (&gate.lock);
  g_cond_init (&gate.cond);
  gate.m = &m;
  raw_write (m.data + 4900, 0x66);
  test_mem_file_set_store_hook (m.file, gate_store_hook, &gate);

  writer = g_thread_new ("writeout", writeout_thread, &m);
  g_mutex_lock (&gate.lock);
  while (!gate.in_store)
    g_cond_wait (&gate.cond, &gate.lock);
  g_mutex_unlock (&gate.lock);

  resizer = g_thread_new ("resize", resize_thread, &gate);
  g_usleep (50 * 1000);
  g_mutex_lock (&gate.lock);
  g_assert_false (gate.resized);
  gate.release = TRUE;
  g_cond_broadcast (&gate.cond);
  g_mutex_unlock (&gate.lock);
  g_thread_join (writer);
  g_thread_join (resizer);
  test_mem_file_set_store_hook (m.file, NULL, NULL);

  /* The store had the old size; the truncation came after it (in the
   * writeout's last step, or else in the next writeout). */
  assert_stores (m.file, (guint64[]){ 1 }, (gsize[]){ 5000 - PS }, 1);
  writeout (&m);
  g_assert_cmpuint (test_mem_file_get_set_size_log (m.file)->len, ==, 1);
  g_assert_cmpuint (test_mem_file_get_size (m.file), ==, 4200);
  assert_shows_size (&m, 4200);

  g_cond_clear (&gate.cond);
  g_mutex_clear (&gate.lock);
  mapping_teardown (&m);
}

/* -- BigfileLocalFile ------------------------------------------------------------------ */

static goffset
path_size (const char *path)
{
  GStatBuf st;

  g_assert_cmpint (g_stat (path, &st), ==, 0);
  return st.st_size;
}

static guint8 *
make_contents (gsize len)
{
  guint8 *buf = g_malloc (len);

  for (gsize i = 0; i < len; i++)
    buf[i] = (guint8)(i * 11 + 3);
  return buf;
}

static void
check_local_file (BigfileLocalFileFlags flags)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "data", NULL);
  g_autofree guint8 *contents = make_contents (5000);
  g_autofree guint8 *back = NULL;
  GError *error = NULL;
  guint64 size = 0;
  gsize len;
  Mapping m;

  write_file (path, contents, 5000);
  mapping_setup_local_file (&m, path, PS, flags, 4, 1 << 20);
  g_assert_true (bigfile_file_get_size (bigfile_handle_get_file (m.handle), &size, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (size, ==, 5000);
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 5000);

  /* The case of the issue. */
  raw_write (m.data + 4500, 0xAB);
  writeout (&m);
  g_assert_cmpint (path_size (path), ==, 5000);
  contents[4500] = 0xAB;
  back = read_file (path, &len);
  g_assert_cmpmem (back, len, contents, 5000);
  g_clear_pointer (&back, g_free);

  /* Grows to what was written. */
  raw_write (m.data + 6000, 0xCD);
  writeout (&m);
  g_assert_cmpint (path_size (path), ==, 6001);

  /* Truncated, then extended, at writeout. */
  set_size (&m, 100);
  g_assert_cmpint (path_size (path), ==, 6001);
  assert_zeros (m.data + 100, 4 * PS - 100);
  writeout (&m);
  g_assert_cmpint (path_size (path), ==, 100);
  set_size (&m, 9000);
  writeout (&m);
  g_assert_cmpint (path_size (path), ==, 9000);
  back = read_file (path, &len);
  g_assert_cmpmem (back, 100, contents, 100);
  assert_zeros (back + 100, 9000 - 100);
  assert_zeros (m.data + 100, 4 * PS - 100);

  mapping_teardown (&m);
  temp_dir_remove (dir);
}

static void
test_local_file (void)
{
  g_test_summary ("BigfileLocalFile keeps its size, grows to what was written, truncates");
  check_local_file (BIGFILE_LOCAL_FILE_FLAGS_NONE);
}

/* With clean pages shown from the file itself: a lower size stops showing
 * the file's pages from the one that holds it (at once, and in mappings
 * made later), and the truncation then costs no SIGBUS. */
static void
test_local_file_clean_pages (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "data", NULL);
  g_autofree guint8 *contents = make_contents (3 * PS + 100);
  GError *error = NULL;
  BigfileVma *later;
  guint8 *ld;
  Mapping m;

  g_test_summary ("Over MAP_CLEAN_PAGES, a lower size hides the file's bytes past it at once");
  check_local_file (BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES);

  write_file (path, contents, 3 * PS + 100);
  mapping_setup_local_file (&m, path, PS, BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, 4, 1 << 20);
  g_assert_cmpint (memcmp (m.data, contents, 3 * PS + 100), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 1); /* the partial page only */

  set_size (&m, PS + 10);
  g_assert_cmpint (memcmp (m.data, contents, PS + 10), ==, 0);
  assert_zeros (m.data + PS + 10, 3 * PS - 10);
  later = bigfile_handle_map (m.handle, 0, 4, &error);
  g_assert_no_error (error);
  ld = bigfile_vma_get_data (later);
  g_assert_cmpint (memcmp (ld, contents, PS + 10), ==, 0);
  assert_zeros (ld + PS + 10, 3 * PS - 10);

  writeout (&m);
  g_assert_cmpint (path_size (path), ==, PS + 10);
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), >, 0);
  g_assert_cmpint (memcmp (m.data, contents, PS + 10), ==, 0);
  assert_zeros (m.data + PS + 10, 3 * PS - 10);
  assert_zeros (ld + PS + 10, 3 * PS - 10);

  bigfile_vma_unmap (later);
  g_object_unref (later);
  mapping_teardown (&m);
  temp_dir_remove (dir);
}

/* A read-only file: the size may change in memory, not in the file. */
static void
test_local_file_read_only (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "data", NULL);
  g_autofree guint8 *contents = make_contents (5000);
  GError *error = NULL;
  Mapping m;

  g_test_summary ("A read-only BigfileLocalFile refuses a resize at writeout, naming the file");
  write_file (path, contents, 5000);
  mapping_setup_local_file (&m, path, PS, BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, 4, 1 << 20);
  set_size (&m, 10);
  g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);
  g_assert_cmpint (path_size (path), ==, 5000);
  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 0);
  g_assert_cmpuint (bigfile_handle_get_size (m.handle), ==, 5000);

  mapping_teardown (&m);
  temp_dir_remove (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_data_func ("/size/keeps-size/4k", GSIZE_TO_POINTER (PS), test_keeps_size);
  g_test_add_data_func ("/size/keeps-size/64k", GSIZE_TO_POINTER (PS_64K), test_keeps_size);
  g_test_add_func ("/size/grows-over-write", test_grows_over_write);
  g_test_add_func ("/size/zeros-keep-size", test_zeros_keep_size);
  g_test_add_func ("/size/zeros-past-size", test_zeros_past_size);
  g_test_add_func ("/size/set/smaller", test_set_smaller);
  g_test_add_func ("/size/set/larger", test_set_larger);
  g_test_add_func ("/size/set/shrink-then-grow", test_shrink_then_grow);
  g_test_add_func ("/size/set/discard-reverts", test_discard_reverts);
  g_test_add_func ("/size/set/fails", test_set_size_fails);
  g_test_add_func ("/size/set/waits-for-store", test_set_size_waits_for_store);
  g_test_add_data_func ("/size/odd/4k", GSIZE_TO_POINTER (PS), test_odd_sizes);
  g_test_add_data_func ("/size/odd/64k", GSIZE_TO_POINTER (PS_64K), test_odd_sizes);
  g_test_add_func ("/size/no-size", test_no_size);
  g_test_add_data_func ("/size/async/thread", GINT_TO_POINTER (TRUE), test_async);
  g_test_add_data_func ("/size/async/slices", GINT_TO_POINTER (FALSE), test_async);
  g_test_add_func ("/size/local-file/basic", test_local_file);
  g_test_add_func ("/size/local-file/clean-pages", test_local_file_clean_pages);
  g_test_add_func ("/size/local-file/read-only", test_local_file_read_only);

  return g_test_run ();
}
