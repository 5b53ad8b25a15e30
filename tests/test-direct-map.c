/* bigfile-glib tests - BigfileLocalFile with MAP_CLEAN_PAGES: clean pages
 * straight from the kernel's page cache
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * With BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, every VMA of a handle shows
 * the file's complete pages (those wholly below the file's size when the VMA
 * is mapped) through a shared read-only mapping of the file.  What these
 * tests hold the engine to:
 *
 *   - reading such a page, through raw memory or bigfile_vma_read(), takes
 *     no fault and no RAM: the page stays EMPTY and the RAM counts no page
 *     for it;
 *   - the first write copies the page into RAM (DIRTY), and every VMA of
 *     the handle shows the copy, those mapped before and after the write;
 *     the file and other handles do not see it;
 *   - writeout stores it and drops the copy; discard, invalidate and
 *     reclaim drop it too, and the file shows again;
 *   - a clean page shows the file as it is now, also after someone else
 *     wrote to it, whether it was read, populated or pinned for reading
 *     before (which load nothing); a dirty page shows the handle's changes
 *     until they are written out or dropped, and starts from the file as it
 *     is when it is first written, so writeout keeps the other writer's
 *     changes to the rest of it;
 *   - pages from the last, partial one on load as before (zeros past the
 *     end of the file); when the file grows (our writeout, another writer),
 *     the handle notices at its next look at the size, and from then on
 *     every view shows the file;
 *   - dropping mappings to stay under vm.max_map_count never lets a dirty
 *     page show the file's data, leaves read-pinned pages alone, and still
 *     keeps the count under the cap; the engine's count of kernel mappings
 *     stays exact.
 *
 * A random run checks all of it against a model of the file and of the
 * memory the handle shows.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "test-util.h"

#define PS ((gsize)4096)
#define MiB ((gsize)1 << 20)
#define CLEAN_PAGES BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES

/* -- helpers ---------------------------------------------------------------------- */

/* The byte at @offset of a file as the tests make it: it differs from its
 * neighbours, and from the same byte of other pages of 4 KiB and of 2 MiB. */
static guint8
file_byte (guint64 offset)
{
  return (guint8)(offset * 7 + (offset >> 12) * 13 + (offset >> 21) * 29 + 5);
}

/* A temporary file of file_byte() and a mapping of it. */
typedef struct
{
  char *dir;
  char *path;
  guint8 *contents; /* what the file held when it was made */
  gsize len;
  Mapping m;
} Fixture;

/* A file of @len bytes of file_byte(), opened with @flags in @block_size
 * blocks, with a RAM of @budget_pages pages and its first @n_pages pages
 * mapped (none if 0). */
static void
fixture_setup (Fixture *f, gsize block_size, gsize len, BigfileLocalFileFlags flags,
               guint64 n_pages, guint64 budget_pages)
{
  f->dir = temp_dir_new ();
  f->path = g_build_filename (f->dir, "data", NULL);
  f->len = len;
  f->contents = g_malloc (len);
  for (gsize i = 0; i < len; i++)
    f->contents[i] = file_byte (i);
  write_file (f->path, f->contents, len);
  mapping_setup_local_file (&f->m, f->path, block_size, flags, n_pages, budget_pages * block_size);
}

static void
fixture_teardown (Fixture *f)
{
  mapping_teardown (&f->m);
  temp_dir_remove (f->dir);
  g_free (f->dir);
  g_free (f->path);
  g_free (f->contents);
}

static BigfileVma *
vma_new (BigfileHandle *handle, guint64 first_page, guint64 n_pages)
{
  GError *error = NULL;
  BigfileVma *vma = bigfile_handle_map (handle, first_page, n_pages, &error);

  g_assert_no_error (error);
  g_assert_nonnull (vma);
  return vma;
}

static void
vma_free (BigfileVma *vma)
{
  bigfile_vma_unmap (vma);
  g_object_unref (vma);
}

/* Asserts that bigfile_vma_read() of @vma at @offset gives @expected. */
static void
assert_api_read (BigfileVma *vma, gsize offset, const guint8 *expected, gsize len)
{
  GError *error = NULL;
  g_autoptr (GBytes) bytes = bigfile_vma_read (vma, offset, len, &error);

  g_assert_no_error (error);
  g_assert_cmpmem (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes), expected, len);
}

static void
assert_file_is (const char *path, const guint8 *expected, gsize len)
{
  g_autofree guint8 *back = NULL;
  gsize back_len = 0;

  back = read_file (path, &back_len);
  g_assert_cmpmem (back, back_len, expected, len);
}

/* Changes the file behind the handle's back, with plain POSIX I/O. */
static void
external_write (const char *path, goffset offset, const guint8 *data, gsize len)
{
  int fd = open (path, O_WRONLY | O_CLOEXEC);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pwrite (fd, data, len, (off_t)offset), ==, (gssize)len);
  g_assert_cmpint (close (fd), ==, 0);
}

/* -- reads ---------------------------------------------------------------------------- */

/* Every page of the file, read through raw memory: the right data, and not
 * a single page in RAM. */
static void
test_read (gconstpointer data)
{
  const gsize ps = GPOINTER_TO_SIZE (data);
  const guint64 n = 16;
  Fixture f;

  /* A budget that holds every page: had they been loaded, they would all
   * still be there to count. */
  fixture_setup (&f, ps, n * ps, CLEAN_PAGES, n, n);

  for (guint64 p = 0; p < n; p++)
    {
      g_assert_cmpuint (raw_read (f.m.data + p * ps + 5), ==, file_byte (p * ps + 5));
      g_assert_cmpint (memcmp (f.m.data + p * ps, f.contents + p * ps, ps), ==, 0);
      g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
    }
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_used_bytes (f.m.ram), ==, 0);

  fixture_teardown (&f);
}

/* The same through bigfile_vma_read(): a read, so it needs no RAM either. */
static void
test_read_api (void)
{
  const guint64 n = 16;
  Fixture f;

  fixture_setup (&f, PS, n * PS, CLEAN_PAGES, n, n);

  assert_api_read (f.m.vma, 0, f.contents, n * PS);
  assert_api_read (f.m.vma, 3 * PS - 7, f.contents + 3 * PS - 7, 14);
  for (guint64 p = 0; p < n; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);

  fixture_teardown (&f);
}

/* -- writes --------------------------------------------------------------------------- */

/* A write copies its page into RAM; every VMA of the handle shows the copy;
 * the file and another handle of the same file do not. */
static void
test_write (void)
{
  Fixture f;
  BigfileVma *before, *after;
  guint8 *b, *a;
  const guint8 v3 = (guint8)~file_byte (3 * PS + 10), v4 = (guint8)~file_byte (4 * PS);

  fixture_setup (&f, PS, 8 * PS, CLEAN_PAGES, 8, 8);
  before = vma_new (f.m.handle, 2, 4); /* pages 2-5 */
  b = bigfile_vma_get_data (before);
  g_assert_cmpuint (raw_read (b + 1 * PS + 10), ==, file_byte (3 * PS + 10));

  raw_write (f.m.data + 3 * PS + 10, v3);
  g_assert_cmpint (page_state (&f.m, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f.m.handle), ==, 1);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 1);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (f.m.ram), ==, 1);
  /* Only the page written was copied. */
  g_assert_cmpint (page_state (&f.m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (page_state (&f.m, 4), ==, BIGFILE_PAGE_STATE_EMPTY);

  /* The copy holds the rest of the page, and the VMA mapped before the
   * write shows it. */
  g_assert_cmpuint (raw_read (f.m.data + 3 * PS + 10), ==, v3);
  g_assert_cmpuint (raw_read (b + 1 * PS + 10), ==, v3);
  g_assert_cmpint (memcmp (b + 1 * PS, f.contents + 3 * PS, 10), ==, 0);
  g_assert_cmpint (memcmp (b + 1 * PS + 11, f.contents + 3 * PS + 11, PS - 11), ==, 0);
  g_assert_cmpint (memcmp (f.m.data + 3 * PS + 11, f.contents + 3 * PS + 11, PS - 11), ==, 0);
  assert_api_read (before, 1 * PS + 10, &v3, 1);

  /* So does one mapped after it. */
  after = vma_new (f.m.handle, 3, 1);
  a = bigfile_vma_get_data (after);
  g_assert_cmpuint (raw_read (a + 10), ==, v3);
  g_assert_cmpint (memcmp (a + 11, f.contents + 3 * PS + 11, PS - 11), ==, 0);

  /* A write through another VMA shows in the first. */
  raw_write (b + 2 * PS, v4);
  g_assert_cmpint (page_state (&f.m, 4), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (f.m.data + 4 * PS), ==, v4);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 2);
  /* And a write through the one mapped last shows in the others. */
  raw_write (a + 11, 0x5A);
  g_assert_cmpuint (raw_read (f.m.data + 3 * PS + 11), ==, 0x5A);
  g_assert_cmpuint (raw_read (b + 1 * PS + 11), ==, 0x5A);
  g_assert_cmpuint (raw_read (f.m.data + 3 * PS + 10), ==, v3);

  /* The file has not changed. */
  assert_file_is (f.path, f.contents, f.len);

  /* Another handle, of the very same BigfileLocalFile and of a second one
   * opened on the same path, shows the file. */
  for (guint i = 0; i < 2; i++)
    {
      GError *error = NULL;
      g_autoptr (BigfileLocalFile) second = NULL;
      BigfileFile *file;
      BigfileRam *ram = bigfile_ram_new (8 * PS);
      BigfileHandle *other;
      BigfileVma *vma;
      guint8 *o;

      if (i == 0)
        file = bigfile_handle_get_file (f.m.handle);
      else
        {
          second = bigfile_local_file_new (f.path, PS, CLEAN_PAGES, &error);
          g_assert_no_error (error);
          file = BIGFILE_FILE (second);
        }
      other = bigfile_handle_new (file, ram, &error);
      g_assert_no_error (error);
      vma = vma_new (other, 0, 8);
      o = bigfile_vma_get_data (vma);

      g_assert_cmpint (memcmp (o, f.contents, 8 * PS), ==, 0);
      g_assert_cmpint (bigfile_handle_get_page_state (other, 3), ==, BIGFILE_PAGE_STATE_EMPTY);
      g_assert_cmpuint (bigfile_ram_get_n_pages (ram), ==, 0);
      /* Its own write is its own, too. */
      raw_write (o + 3 * PS + 12, 0xC3);
      g_assert_cmpuint (raw_read (f.m.data + 3 * PS + 12), ==, file_byte (3 * PS + 12));
      g_assert_cmpuint (bigfile_handle_discard (other), ==, 1);

      vma_free (vma);
      g_assert_true (bigfile_handle_close (other));
      g_object_unref (other);
      g_object_unref (ram);
    }

  vma_free (after);
  vma_free (before);
  bigfile_handle_discard (f.m.handle);
  fixture_teardown (&f);
}

/* -- writeout ------------------------------------------------------------------------- */

/* Writeout stores the copy and keeps it, clean, until it is reclaimed;
 * then the file shows, with the stored data. */
static void
test_writeout (void)
{
  Fixture f;
  GError *error = NULL;
  g_autofree guint8 *expected = NULL;
  BigfileRam *ram2 = bigfile_ram_new (8 * PS);
  BigfileHandle *h2;
  BigfileVma *b, *vma2;
  guint8 *bd, *d2;
  const guint8 v = (guint8)~file_byte (3 * PS + 10);

  fixture_setup (&f, PS, 8 * PS, CLEAN_PAGES, 8, 8);
  expected = g_memdup2 (f.contents, f.len);
  b = vma_new (f.m.handle, 2, 4);
  bd = bigfile_vma_get_data (b);
  h2 = bigfile_handle_new (bigfile_handle_get_file (f.m.handle), ram2, &error);
  g_assert_no_error (error);
  vma2 = vma_new (h2, 0, 8);
  d2 = bigfile_vma_get_data (vma2);

  raw_write (f.m.data + 3 * PS + 10, v);
  expected[3 * PS + 10] = v;
  g_assert_cmpuint (raw_read (d2 + 3 * PS + 10), ==, file_byte (3 * PS + 10));

  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  assert_file_is (f.path, expected, f.len);
  /* Stored, the copy goes: the file shows through, with what was stored. */
  g_assert_cmpint (page_state (&f.m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f.m.handle), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (f.m.ram), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);
  g_assert_cmpint (memcmp (f.m.data, expected, 8 * PS), ==, 0);
  g_assert_cmpint (memcmp (bd, expected + 2 * PS, 4 * PS), ==, 0);
  /* The other handle's clean page shows the file as it is now. */
  g_assert_cmpint (memcmp (d2, expected, 8 * PS), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (ram2), ==, 0);

  g_assert_cmpuint (bigfile_ram_reclaim (f.m.ram), ==, 0);
  g_assert_cmpint (page_state (&f.m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);
  g_assert_cmpuint (raw_read (f.m.data + 3 * PS + 10), ==, v);
  g_assert_cmpuint (raw_read (bd + 1 * PS + 10), ==, v);
  g_assert_cmpint (memcmp (f.m.data, expected, 8 * PS), ==, 0);
  g_assert_cmpint (memcmp (bd, expected + 2 * PS, 4 * PS), ==, 0);
  g_assert_cmpint (page_state (&f.m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);
  assert_api_read (f.m.vma, 0, expected, 8 * PS);

  /* A page written again after its writeout: dirty again (copied from the
   * file, which has the first write), and stored again. */
  raw_write (f.m.data + 5 * PS, 0x55);
  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpint (page_state (&f.m, 5), ==, BIGFILE_PAGE_STATE_EMPTY);
  raw_write (bd + 3 * PS + 1, 0x56);
  g_assert_cmpint (page_state (&f.m, 5), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (f.m.data + 5 * PS + 1), ==, 0x56);
  g_assert_cmpuint (raw_read (f.m.data + 5 * PS), ==, 0x55);
  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpint (page_state (&f.m, 5), ==, BIGFILE_PAGE_STATE_EMPTY);
  expected[5 * PS] = 0x55;
  expected[5 * PS + 1] = 0x56;
  assert_file_is (f.path, expected, f.len);
  bigfile_ram_reclaim (f.m.ram);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);
  g_assert_cmpint (memcmp (f.m.data, expected, 8 * PS), ==, 0);
  g_assert_cmpint (page_state (&f.m, 5), ==, BIGFILE_PAGE_STATE_EMPTY);

  vma_free (vma2);
  g_assert_true (bigfile_handle_close (h2));
  g_object_unref (h2);
  g_object_unref (ram2);
  vma_free (b);
  fixture_teardown (&f);
}

/* -- discard -------------------------------------------------------------------------- */

static void
test_discard (void)
{
  Fixture f;
  BigfileVma *b;
  guint8 *bd;

  fixture_setup (&f, PS, 8 * PS, CLEAN_PAGES, 8, 8);
  b = vma_new (f.m.handle, 2, 4); /* pages 2-5 */
  bd = bigfile_vma_get_data (b);

  raw_write (f.m.data + 1 * PS + 1, (guint8)~file_byte (1 * PS + 1));
  raw_write (bd + 1 * PS + 3, (guint8)~file_byte (3 * PS + 3));
  raw_write (f.m.data + 4 * PS + 4, (guint8)~file_byte (4 * PS + 4));
  g_assert_cmpuint (raw_read (bd + 2 * PS + 4), ==, (guint8)~file_byte (4 * PS + 4));
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 3);

  g_assert_cmpuint (bigfile_handle_discard (f.m.handle), ==, 3);
  for (guint64 p = 0; p < 8; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f.m.handle), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);

  /* Every VMA shows the file again, and it was never written. */
  g_assert_cmpint (memcmp (f.m.data, f.contents, 8 * PS), ==, 0);
  g_assert_cmpint (memcmp (bd, f.contents + 2 * PS, 4 * PS), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);
  assert_api_read (b, 0, f.contents + 2 * PS, 4 * PS);
  assert_file_is (f.path, f.contents, f.len);

  /* The page can be written again: a fresh copy of the file's data. */
  raw_write (bd + 1 * PS + 3, 0x33);
  g_assert_cmpint (page_state (&f.m, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (f.m.data + 3 * PS + 3), ==, 0x33);
  g_assert_cmpuint (raw_read (f.m.data + 3 * PS + 4), ==, file_byte (3 * PS + 4));

  vma_free (b);
  g_assert_cmpuint (bigfile_handle_discard (f.m.handle), ==, 1);
  bigfile_ram_reclaim (f.m.ram);
  fixture_teardown (&f);
}

/* -- changes to the file by someone else ---------------------------------------------- */

/* A clean page shows them at once; a dirty page keeps the handle's data
 * until it is invalidated. */
static void
test_external_change (void)
{
  Fixture f;
  BigfileVma *b;
  guint8 *bd;
  guint8 news[PS], copy_source[PS];
  const guint8 mine = 0x11;

  fixture_setup (&f, PS, 8 * PS, CLEAN_PAGES, 8, 8);
  b = vma_new (f.m.handle, 0, 8);
  bd = bigfile_vma_get_data (b);

  /* A clean page, read before. */
  g_assert_cmpuint (raw_read (f.m.data + 2 * PS + 100), ==, file_byte (2 * PS + 100));
  memset (news, 0x22, PS);
  external_write (f.path, 2 * PS + 100, news, 50);
  g_assert_cmpuint (raw_read (f.m.data + 2 * PS + 100), ==, 0x22);
  g_assert_cmpuint (raw_read (f.m.data + 2 * PS + 149), ==, 0x22);
  g_assert_cmpuint (raw_read (f.m.data + 2 * PS + 150), ==, file_byte (2 * PS + 150));
  g_assert_cmpuint (raw_read (bd + 2 * PS + 120), ==, 0x22);
  g_assert_cmpint (page_state (&f.m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);
  assert_api_read (f.m.vma, 2 * PS + 100, news, 50);

  /* A write now copies the file as it is now. */
  raw_write (f.m.data + 2 * PS, 0x01);
  memcpy (copy_source, f.contents + 2 * PS, PS);
  memset (copy_source + 100, 0x22, 50);
  copy_source[0] = 0x01;
  g_assert_cmpint (memcmp (bd + 2 * PS, copy_source, PS), ==, 0);
  g_assert_cmpuint (bigfile_handle_discard (f.m.handle), ==, 1);

  /* A dirty page keeps the handle's data... */
  raw_write (f.m.data + 5 * PS + 10, mine);
  memset (news, 0x33, PS);
  external_write (f.path, 5 * PS, news, PS);
  g_assert_cmpuint (raw_read (f.m.data + 5 * PS + 10), ==, mine);
  g_assert_cmpuint (raw_read (f.m.data + 5 * PS + 20), ==, file_byte (5 * PS + 20));
  g_assert_cmpuint (raw_read (bd + 5 * PS + 20), ==, file_byte (5 * PS + 20));
  assert_api_read (b, 5 * PS + 10, &mine, 1);
  g_assert_cmpint (page_state (&f.m, 5), ==, BIGFILE_PAGE_STATE_DIRTY);

  /* ...until it is invalidated: then the file shows, in every VMA. */
  bigfile_handle_invalidate_page (f.m.handle, 5);
  g_assert_cmpint (page_state (&f.m, 5), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);
  g_assert_cmpint (memcmp (f.m.data + 5 * PS, news, PS), ==, 0);
  g_assert_cmpint (memcmp (bd + 5 * PS, news, PS), ==, 0);
  g_assert_cmpint (page_state (&f.m, 5), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f.m.handle), ==, 0);

  vma_free (b);
  fixture_teardown (&f);
}

/* A page written out shows the file again (its copy goes), and clean pages
 * show the file as it is now: a change by someone else must show through
 * it too, and a write after it must not undo it. */
static void
test_external_change_written_out (void)
{
  Fixture f;
  GError *error = NULL;
  guint8 news[64];
  g_autofree guint8 *expected = NULL;

  fixture_setup (&f, PS, 8 * PS, CLEAN_PAGES, 8, 8);
  expected = g_memdup2 (f.contents, f.len);
  raw_write (f.m.data + 6 * PS + 1, 0x61);
  expected[6 * PS + 1] = 0x61;
  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpint (page_state (&f.m, 6), ==, BIGFILE_PAGE_STATE_EMPTY);

  memset (news, 0x62, sizeof news);
  external_write (f.path, 6 * PS + 64, news, sizeof news);
  memcpy (expected + 6 * PS + 64, news, sizeof news);
  g_assert_cmpint (memcmp (f.m.data + 6 * PS, expected + 6 * PS, PS), ==, 0);
  assert_api_read (f.m.vma, 6 * PS, expected + 6 * PS, PS);

  raw_write (f.m.data + 6 * PS + 2, 0x63);
  expected[6 * PS + 2] = 0x63;
  g_assert_cmpint (memcmp (f.m.data + 6 * PS, expected + 6 * PS, PS), ==, 0);
  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  assert_file_is (f.path, expected, f.len);

  bigfile_ram_reclaim (f.m.ram);
  fixture_teardown (&f);
}

/* bigfile_vma_read() of a clean page shows the file as it is now, as raw
 * memory does, and a write after someone else's change keeps it. */
static void
test_external_change_after_api_read (void)
{
  Fixture f;
  GError *error = NULL;
  guint8 news[64];
  g_autofree guint8 *expected = NULL;

  fixture_setup (&f, PS, 8 * PS, CLEAN_PAGES, 8, 8);
  expected = g_memdup2 (f.contents, f.len);
  assert_api_read (f.m.vma, 2 * PS, expected + 2 * PS, PS);

  memset (news, 0x44, sizeof news);
  external_write (f.path, 2 * PS + 64, news, sizeof news);
  memcpy (expected + 2 * PS + 64, news, sizeof news);
  g_assert_cmpint (memcmp (f.m.data + 2 * PS, expected + 2 * PS, PS), ==, 0);
  assert_api_read (f.m.vma, 2 * PS, expected + 2 * PS, PS);

  raw_write (f.m.data + 2 * PS, 0x45);
  expected[2 * PS] = 0x45;
  g_assert_cmpint (memcmp (f.m.data + 2 * PS, expected + 2 * PS, PS), ==, 0);
  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  assert_file_is (f.path, expected, f.len);

  bigfile_ram_reclaim (f.m.ram);
  fixture_teardown (&f);
}

/* -- past the end of the file --------------------------------------------------------- */

/* Pages past the last complete one load as before: the partial page holds
 * the file's bytes then zeros, the pages after it zeros; they take RAM.  A
 * page stored past the end makes the file as long as what was written. */
static void
test_past_eof (void)
{
  Fixture f;
  GError *error = NULL;
  const gsize len = 5 * PS + PS / 2;
  g_autofree guint8 *zeros = g_malloc0 (PS);
  g_autofree guint8 *expected = g_malloc0 (9 * PS);
  BigfileVma *later;
  guint8 *ld;
  GStatBuf st;

  fixture_setup (&f, PS, len, CLEAN_PAGES, 10, 10);

  g_assert_cmpint (memcmp (f.m.data, f.contents, 5 * PS), ==, 0);
  for (guint64 p = 0; p < 5; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);

  g_assert_cmpint (memcmp (f.m.data + 5 * PS, f.contents + 5 * PS, PS / 2), ==, 0);
  g_assert_cmpint (memcmp (f.m.data + 5 * PS + PS / 2, zeros, PS / 2), ==, 0);
  for (guint64 p = 6; p < 10; p++)
    g_assert_cmpint (memcmp (f.m.data + p * PS, zeros, PS), ==, 0);
  for (guint64 p = 5; p < 10; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 5);

  raw_write (f.m.data + 9 * PS - 1, 0x99);
  g_assert_cmpint (page_state (&f.m, 8), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);

  g_assert_cmpint (g_stat (f.path, &st), ==, 0);
  g_assert_cmpint (st.st_size, ==, 9 * PS);
  memcpy (expected, f.contents, len);
  expected[9 * PS - 1] = 0x99;
  assert_file_is (f.path, expected, 9 * PS);

  /* Stored, page 8's copy went at once; the file is longer, so pages 5-8
   * are complete now: the mapping shows them from the file, and the
   * copies of pages 5-7 went too.  Page 9 is still past the end. */
  for (guint64 p = 5; p < 9; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (page_state (&f.m, 9), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 1);
  g_assert_cmpint (memcmp (f.m.data, expected, 9 * PS), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 1);
  g_assert_cmpuint (bigfile_ram_reclaim (f.m.ram), ==, 1);
  g_assert_cmpint (memcmp (f.m.data + 9 * PS, zeros, PS), ==, 0);

  /* A VMA mapped now shows pages 5-8 from the file, without RAM. */
  g_assert_cmpuint (bigfile_ram_reclaim (f.m.ram), >, 0);
  later = vma_new (f.m.handle, 0, 10);
  ld = bigfile_vma_get_data (later);
  g_assert_cmpint (memcmp (ld, expected, 9 * PS), ==, 0);
  for (guint64 p = 0; p < 9; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);
  g_assert_cmpint (memcmp (ld + 9 * PS, zeros, PS), ==, 0);
  g_assert_cmpint (page_state (&f.m, 9), ==, BIGFILE_PAGE_STATE_LOADED);

  vma_free (later);
  fixture_teardown (&f);
}

/* -- staying under vm.max_map_count --------------------------------------------------- */

/* With a small cap, the mappings of pages are dropped over and over: clean
 * copies (written out, or past the end of the file) and dirty pages past
 * the end may go, and come back on the next fault; a dirty page over the
 * file must never show the file's data. */
static void
test_map_count_flush (void)
{
  const guint64 n_file = 512, n = n_file + 64, cap = 16;
  Fixture f;
  GError *error = NULL;
  g_autofree guint8 *expected = g_malloc0 (n * PS);
  g_autofree guint8 *buf = g_malloc (n * PS);
  BigfileVma *other;
  guint8 *od;
  guint64 most_maps = 0, file_end = n_file * PS;
  guint n_dirty = 0;

  bf_set_kernel_maps_cap (cap);
  fixture_setup (&f, PS, n_file * PS, CLEAN_PAGES, n, n); /* every page fits: no reclaim */
  other = vma_new (f.m.handle, 0, n);
  od = bigfile_vma_get_data (other);
  memcpy (expected, f.contents, n_file * PS);

  /* Every third page, alone, through one VMA or the other, with a
   * writeout halfway (so that clean copies are mapped too); then every
   * ninth page again, after many flushes. */
  for (guint pass = 0; pass < 2; pass++)
    for (guint64 p = 0; p < n; p += pass == 0 ? 3 : 9)
      {
        gsize off = (gsize)(p * 37 + pass * 1001) % PS;
        guint8 v = expected[p * PS + off] ^ (guint8)(0xA5 + pass);
        guint8 *data = p % 2 == 0 ? f.m.data : od;

        if (pass == 0 && p == 3 * 100)
          {
            g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
            g_assert_no_error (error);
          }
        raw_write (data + p * PS + off, v);
        expected[p * PS + off] = v;
        file_end = MAX (file_end, p * PS + off + 1);
        most_maps = MAX (most_maps, bf_get_kernel_maps ());
      }
  for (guint64 p = 0; p < n; p += 3)
    n_dirty += p >= 3 * 100 || p % 9 == 0;
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f.m.handle), ==, n_dirty);

  /* Page by page through raw memory, in both VMAs, then through the API. */
  for (guint64 p = 0; p < n; p++)
    {
      const char *what = p % 3 != 0 ? "clean" : p >= 3 * 100 || p % 9 == 0 ? "dirty" : "stored";

      if (memcmp (f.m.data + p * PS, expected + p * PS, PS) != 0)
        g_error ("page %" G_GUINT64_FORMAT " (%s) reads wrong through the first VMA", p, what);
      if (memcmp (od + p * PS, expected + p * PS, PS) != 0)
        g_error ("page %" G_GUINT64_FORMAT " (%s) reads wrong through the second VMA", p, what);
      most_maps = MAX (most_maps, bf_get_kernel_maps ());
    }
  g_assert_true (bigfile_vma_read_into (f.m.vma, 0, buf, n * PS, &error));
  g_assert_no_error (error);
  g_assert_cmpint (memcmp (buf, expected, n * PS), ==, 0);
  g_assert_true (bigfile_vma_read_into (other, 0, buf, n * PS, &error));
  g_assert_no_error (error);
  g_assert_cmpint (memcmp (buf, expected, n * PS), ==, 0);
  g_test_message ("at most %" G_GUINT64_FORMAT " kernel mappings, with a cap of %" G_GUINT64_FORMAT,
                  most_maps, cap);

  /* Nothing was lost on the way.  The file now ends with the last byte
   * written. */
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f.m.handle), ==, n_dirty);
  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  assert_file_is (f.path, expected, file_end);

  vma_free (other);
  bigfile_ram_reclaim (f.m.ram);
  fixture_teardown (&f);
  bf_set_kernel_maps_cap (0);
}

/* The cap holds with dirty pages over the file too: they are what costs
 * mappings there (each one splits the mapping of the file), so the engine
 * must find a way to drop theirs that does not show the file. */
static void
test_map_count_cap (void)
{
  const guint64 n = 128, cap = 16;
  Fixture f;

  bf_set_kernel_maps_cap (cap);
  fixture_setup (&f, PS, n * PS, CLEAN_PAGES, n, n);

  for (guint64 p = 0; p < n; p += 3)
    {
      raw_write (f.m.data + p * PS, (guint8)~file_byte (p * PS));
      if (bf_get_kernel_maps () > cap)
        g_error ("%" G_GUINT64_FORMAT " kernel mappings, over the cap of %" G_GUINT64_FORMAT
                 ", after writing %" G_GUINT64_FORMAT " scattered pages",
                 bf_get_kernel_maps (), cap, p / 3 + 1);
    }
  for (guint64 p = 0; p < n; p++)
    g_assert_cmpuint (raw_read (f.m.data + p * PS), ==,
                      p % 3 == 0 ? (guint8)~file_byte (p * PS) : file_byte (p * PS));

  bigfile_handle_discard (f.m.handle);
  fixture_teardown (&f);
  bf_set_kernel_maps_cap (0);
}

/* A single instruction that reads across two pages needs both mapped at
 * once.  Over the cap, the fault for the second page must not drop the
 * mapping of the first for good, or the instruction faults forever.  In a
 * subprocess, which fails if it does not finish in time. */
typedef guint64 __attribute__ ((aligned (1))) UnalignedU64;

G_NO_INLINE static guint64
raw_read_u64 (const guint8 *p)
{
  return *(const volatile UnalignedU64 *)p;
}

static void
test_map_count_straddle (void)
{
  const guint64 n_file = 64, cap = 16;
  Fixture f;

  if (!g_test_subprocess ())
    {
      g_test_trap_subprocess (NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
      g_test_trap_assert_passed ();
      return;
    }

  bf_set_kernel_maps_cap (cap);
  /* Two pages past the end of the file: they need copies in RAM. */
  fixture_setup (&f, PS, n_file * PS, CLEAN_PAGES, n_file + 2, n_file + 2);
  for (guint64 p = 0; p < n_file; p += 3)
    raw_write (f.m.data + p * PS, (guint8)~file_byte (p * PS));

  g_assert_cmpuint (raw_read_u64 (f.m.data + (n_file + 1) * PS - 4), ==, 0);

  bigfile_handle_discard (f.m.handle);
  fixture_teardown (&f);
  bf_set_kernel_maps_cap (0);
}

/* -- a read-only file ------------------------------------------------------------------ */

/* Reads come from the file; a write makes a copy as ever, which cannot be
 * stored and stays until discarded. */
static void
test_read_only (void)
{
  Fixture f;
  GError *error = NULL;

  fixture_setup (&f, PS, 4 * PS, CLEAN_PAGES | BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, 4, 4);

  g_assert_cmpint (memcmp (f.m.data, f.contents, 4 * PS), ==, 0);
  g_assert_cmpint (page_state (&f.m, 1), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 0);

  raw_write (f.m.data + 1 * PS + 3, 0xEE);
  g_assert_cmpint (page_state (&f.m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f.m.ram), ==, 1);
  g_assert_cmpuint (raw_read (f.m.data + 1 * PS + 3), ==, 0xEE);
  g_assert_cmpuint (raw_read (f.m.data + 1 * PS + 4), ==, file_byte (1 * PS + 4));

  g_assert_false (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_clear_error (&error);
  g_assert_cmpint (page_state (&f.m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (f.m.handle), ==, 1);
  g_assert_cmpuint (raw_read (f.m.data + 1 * PS + 3), ==, 0xEE);
  assert_file_is (f.path, f.contents, f.len);

  g_assert_cmpuint (bigfile_handle_discard (f.m.handle), ==, 1);
  g_assert_cmpint (memcmp (f.m.data, f.contents, 4 * PS), ==, 0);
  fixture_teardown (&f);
}

/* -- clean pages always show the file: populate, pin, growing files ----------- *
 *
 * Issue 6, item 4: a read populate or pin, or a page touched while past
 * the end of the file, used to leave a private clean copy that shadowed
 * the file: raw memory, bigfile_vma_read() and a new mapping disagreed, and
 * a write to the copy took its stale bytes to the file at writeout, over
 * another writer's change. */

/* The engine's count of kernel mappings, made afresh, is the one it keeps. */
static void
assert_kernel_maps_exact (void)
{
  g_assert_cmpuint (bf_count_kernel_maps (), ==, bf_get_kernel_maps ());
}

static void
populate (BigfileVma *vma, gsize offset, gsize len, gboolean writable)
{
  GError *error = NULL;

  g_assert_true (bigfile_vma_populate (vma, offset, len, writable, &error));
  g_assert_no_error (error);
}

static void
pin (BigfileVma *vma, gsize offset, gsize len, gboolean writable)
{
  GError *error = NULL;

  g_assert_true (bigfile_vma_pin (vma, offset, len, writable, &error));
  g_assert_no_error (error);
}

static void
external_truncate (const char *path, goffset size)
{
  g_assert_cmpint (truncate (path, (off_t)size), ==, 0);
}

/* Another writer sets byte @offset of the file to @value; @expected
 * follows. */
static void
external_write_byte (Fixture *f, guint8 *expected, gsize offset, guint8 value)
{
  external_write (f->path, (goffset)offset, &value, 1);
  expected[offset] = value;
}

/* Pages [first, end) have no copy in RAM, nor has any other page. */
static void
assert_no_copies (Fixture *f, guint64 first, guint64 end)
{
  for (guint64 p = first; p < end; p++)
    g_assert_cmpint (page_state (&f->m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_ram_get_n_pages (f->m.ram), ==, 0);
}

/* Raw memory of @vma, bigfile_vma_read() of it and a mapping made now of
 * the same pages all show @expected (the pages from @first, @n of them). */
static void
assert_all_show (BigfileHandle *handle, BigfileVma *vma, guint64 first, guint64 n,
                 const guint8 *expected)
{
  const guint8 *data = bigfile_vma_get_data (vma);
  guint64 vma_first = bigfile_vma_get_first_page (vma);
  gsize at = (first - vma_first) * PS;
  BigfileVma *fresh;

  g_assert_cmpmem (data + at, n * PS, expected + first * PS, n * PS);
  assert_api_read (vma, at, expected + first * PS, n * PS);
  fresh = vma_new (handle, first, n);
  g_assert_cmpmem (bigfile_vma_get_data (fresh), n * PS, expected + first * PS, n * PS);
  vma_free (fresh);
  g_assert_cmpmem (data + at, n * PS, expected + first * PS, n * PS);
  assert_kernel_maps_exact ();
}

/* populate (read) loads nothing over the file: the mapping keeps showing
 * the file, another writer's change included. */
static void
test_populate_read (void)
{
  Fixture f;
  g_autofree guint8 *expected = NULL;

  g_test_summary ("A read populate over the file loads no copy: the pages keep showing "
                  "the file, as it is now");
  fixture_setup (&f, PS, 8 * PS, CLEAN_PAGES, 8, 8);
  expected = g_memdup2 (f.contents, f.len);

  populate (f.m.vma, 2 * PS, 3 * PS, FALSE);
  assert_no_copies (&f, 2, 5);
  assert_kernel_maps_exact ();

  external_write_byte (&f, expected, 3 * PS + 100, (guint8)~file_byte (3 * PS + 100));
  assert_all_show (f.m.handle, f.m.vma, 0, 8, expected);
  assert_no_copies (&f, 0, 8);

  fixture_teardown (&f);
}

/* A read pin holds nothing over the file, and keeps its pages readable
 * from the file; after the unpin as well. */
static void
test_pin_read (void)
{
  Fixture f;
  g_autofree guint8 *expected = NULL;

  g_test_summary ("A read pin over the file holds no copy: the pages show the file as it is "
                  "now, while pinned and after the unpin");
  fixture_setup (&f, PS, 8 * PS, CLEAN_PAGES, 8, 8);
  expected = g_memdup2 (f.contents, f.len);

  pin (f.m.vma, 2 * PS + 5, 2 * PS, FALSE); /* pages 2-4 */
  assert_no_copies (&f, 2, 5);

  external_write_byte (&f, expected, 3 * PS + 100, 0x21);
  assert_all_show (f.m.handle, f.m.vma, 0, 8, expected);

  /* Nested pins of the range, and a write to a pinned page: dirty, copied
   * from the file as it is now, then written out and the file shows. */
  pin (f.m.vma, 2 * PS + 5, 2 * PS, FALSE);
  raw_write (f.m.data + 3 * PS + 7, 0x37);
  expected[3 * PS + 7] = 0x37;
  g_assert_cmpint (page_state (&f.m, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  assert_all_show (f.m.handle, f.m.vma, 0, 8, expected);
  bigfile_vma_unpin (f.m.vma, 2 * PS + 5, 2 * PS);
  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, NULL));
  assert_file_is (f.path, expected, f.len);
  g_assert_cmpint (page_state (&f.m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);

  external_write_byte (&f, expected, 4 * PS + 100, 0x22);
  assert_all_show (f.m.handle, f.m.vma, 0, 8, expected);

  bigfile_vma_unpin (f.m.vma, 2 * PS + 5, 2 * PS);
  external_write_byte (&f, expected, 2 * PS + 100, 0x23);
  assert_all_show (f.m.handle, f.m.vma, 0, 8, expected);
  assert_no_copies (&f, 0, 8);

  fixture_teardown (&f);
}

/* A read pin across the end of the file: the partial last page and the
 * one after it are copies (the file cannot show there); the copy of the
 * partial page goes with the unpin, so it shows what another writer put
 * there meanwhile. */
static void
test_pin_read_past_eof (void)
{
  Fixture f;
  g_autofree guint8 *expected = g_malloc0 (8 * PS);

  g_test_summary ("A read pin across the end of the file pins copies of the partial last "
                  "page and the pages past it; the partial page's copy goes at the unpin");
  fixture_setup (&f, PS, 4 * PS + PS / 2, CLEAN_PAGES, 8, 8);
  memcpy (expected, f.contents, f.len);

  pin (f.m.vma, 3 * PS, 3 * PS, FALSE); /* pages 3 (file), 4 (partial), 5 (zeros) */
  g_assert_cmpint (page_state (&f.m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (page_state (&f.m, 4), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&f.m, 5), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpmem (f.m.data, 8 * PS, expected, 8 * PS);

  external_write_byte (&f, expected, 4 * PS + 100, 0x44);
  bigfile_vma_unpin (f.m.vma, 3 * PS, 3 * PS);
  g_assert_cmpint (page_state (&f.m, 4), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (page_state (&f.m, 5), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_all_show (f.m.handle, f.m.vma, 0, 8, expected);

  fixture_teardown (&f);
}

/* The map-count flush hides whole mappings, but not what a read pin
 * holds over the file: those pages stay readable, without a fault, and
 * show the file. */
static void
test_pin_read_flush (void)
{
  const guint64 n = 128, cap = 16;
  Fixture f;
  g_autofree guint8 *expected = NULL;

  g_test_summary ("The map-count flush leaves pages read-pinned over the file showing it");
  bf_set_kernel_maps_cap (cap);
  fixture_setup (&f, PS, n * PS, CLEAN_PAGES, n, n);
  expected = g_memdup2 (f.contents, f.len);

  pin (f.m.vma, 64 * PS, 4 * PS, FALSE);
  for (guint64 p = 0; p < n; p += 3)
    if (p < 64 || p >= 68)
      {
        expected[p * PS] = (guint8)~expected[p * PS];
        raw_write (f.m.data + p * PS, expected[p * PS]);
      }
  external_write_byte (&f, expected, 65 * PS + 9, 0x55);
  g_assert_cmpmem (f.m.data + 64 * PS, 4 * PS, expected + 64 * PS, 4 * PS);
  for (guint64 p = 64; p < 68; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
  assert_kernel_maps_exact ();

  bigfile_vma_unpin (f.m.vma, 64 * PS, 4 * PS);
  bigfile_handle_discard (f.m.handle);
  fixture_teardown (&f);
  bf_set_kernel_maps_cap (0);
}

/* Pages touched past the end of the file, then the file grows: by our own
 * writeout of a page past them, or by another writer (ftruncate, then
 * pwrite).  The handle notices at a writeout, an access past the end it
 * knew (an API call or a fault), a new mapping, or an invalidation; from
 * then on every view shows the file. */
typedef enum
{
  GROW_SEEN_BY_WRITEOUT,
  GROW_SEEN_BY_API_READ,
  GROW_SEEN_BY_FAULT,
  GROW_SEEN_BY_MAP,
  GROW_SEEN_BY_INVALIDATE,
} GrowSeenBy;

static void
test_grow (gconstpointer data)
{
  GrowSeenBy seen_by = GPOINTER_TO_INT (data);
  const gsize len = 4 * PS + PS / 2;
  Fixture f;
  g_autofree guint8 *expected = g_malloc0 (10 * PS);
  g_autofree guint8 *news = g_malloc (4 * PS);
  GError *error = NULL;
  BigfileVma *other;
  gsize new_len;

  g_test_summary ("Copies of pages past the end of the file give way to the file when it "
                  "grows, by our writeout or another writer");
  fixture_setup (&f, PS, len, CLEAN_PAGES, 10, 10);
  memcpy (expected, f.contents, len);
  other = vma_new (f.m.handle, 3, 7); /* pages 3-9, mapped before the growth */

  /* Copies of the partial page 4 and of pages 5 and 6, in both mappings. */
  g_assert_cmpmem (f.m.data, 7 * PS, expected, 7 * PS);
  g_assert_cmpmem (bigfile_vma_get_data (other), 4 * PS, expected + 3 * PS, 4 * PS);
  for (guint64 p = 4; p < 7; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_LOADED);

  if (seen_by == GROW_SEEN_BY_WRITEOUT)
    {
      raw_write (f.m.data + 8 * PS + 9, 0x99);
      expected[8 * PS + 9] = 0x99;
      g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
      g_assert_no_error (error);
      /* The file keeps a size: it grows to the last byte written. */
      new_len = 8 * PS + 10;
      /* And then another writer changes what became complete. */
      memset (news, 0x5E, 4 * PS);
      external_write (f.path, 4 * PS + 10, news, 10);
      memcpy (expected + 4 * PS + 10, news, 10);
      external_write (f.path, 6 * PS + 10, news, 10);
      memcpy (expected + 6 * PS + 10, news, 10);
    }
  else
    {
      /* Another writer: longer, with a partial last page, then data in the
       * old partial page and the pages after it. */
      new_len = 7 * PS + 100;
      external_truncate (f.path, (goffset)new_len);
      for (gsize i = 0; i < 4 * PS; i++)
        news[i] = (guint8)(i * 3 + 1);
      external_write (f.path, (goffset)len, news, new_len - len);
      memcpy (expected + len, news, new_len - len);
      switch (seen_by)
        {
          case GROW_SEEN_BY_API_READ:
            assert_api_read (f.m.vma, 5 * PS, expected + 5 * PS, 10);
            break;
          case GROW_SEEN_BY_FAULT:
            /* Page 9 was never touched: a fault past the end. */
            g_assert_cmpuint (raw_read (f.m.data + 9 * PS), ==, 0);
            break;
          case GROW_SEEN_BY_MAP:
            vma_free (vma_new (f.m.handle, 0, 1));
            break;
          case GROW_SEEN_BY_INVALIDATE:
            bigfile_handle_invalidate_page (f.m.handle, 0);
            break;
          case GROW_SEEN_BY_WRITEOUT:
          default:
            g_assert_not_reached ();
        }
    }

  /* The pages now complete show the file in the mappings made before, and
   * their copies are gone. */
  for (guint64 p = 4; p < new_len / PS; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpmem (f.m.data, 10 * PS, expected, 10 * PS);
  g_assert_cmpmem (bigfile_vma_get_data (other), 7 * PS, expected + 3 * PS, 7 * PS);
  assert_all_show (f.m.handle, f.m.vma, 0, 10, expected);
  assert_all_show (f.m.handle, other, 3, 7, expected);
  for (guint64 p = 4; p < new_len / PS; p++)
    g_assert_cmpint (page_state (&f.m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
  assert_file_is (f.path, expected, new_len);

  vma_free (other);
  fixture_teardown (&f);
}

/* A write to a page that was read before (and so might have had a clean
 * copy) while another writer changed another byte of it: the dirty page
 * starts from the file as it is at the write, so writeout keeps the other
 * writer's change. */
typedef enum
{
  STALE_AFTER_POPULATE,
  STALE_AFTER_PIN,
  STALE_WHILE_PINNED,
  STALE_PARTIAL_PAGE,
  STALE_PARTIAL_PAGE_API_WRITE,
  STALE_PAST_EOF,
  STALE_HIDDEN,
} StaleCase;

static void
test_stale_write (gconstpointer data)
{
  StaleCase c = GPOINTER_TO_INT (data);
  const guint64 n = 128;
  const gsize len = c == STALE_PARTIAL_PAGE || c == STALE_PARTIAL_PAGE_API_WRITE ? 4 * PS + PS / 2
                    : c == STALE_PAST_EOF                                        ? 4 * PS
                                                                                 : n * PS;
  const guint64 page = c == STALE_PAST_EOF ? 6 : c == STALE_HIDDEN ? 64 : len / PS == 4 ? 4 : 3;
  Fixture f;
  GError *error = NULL;
  g_autofree guint8 *expected = g_malloc0 (n * PS);
  const guint8 theirs = 0x7E, mine = 0x3C;
  gsize file_len = len;

  g_test_summary ("A write never takes a stale clean copy to the file: another writer's "
                  "change to the rest of the page is kept");
  if (c == STALE_HIDDEN)
    bf_set_kernel_maps_cap (16);
  fixture_setup (&f, PS, len, CLEAN_PAGES, 8, n);
  if (c == STALE_HIDDEN)
    {
      /* A mapping of its own, over scattered dirty pages that make the
       * flush hide it: its clean pages are copies from then on. */
      vma_free (f.m.vma);
      f.m.vma = vma_new (f.m.handle, 0, n);
      f.m.data = bigfile_vma_get_data (f.m.vma);
      for (guint64 p = 0; p < 60; p += 3)
        raw_write (f.m.data + p * PS, 1);
    }
  memcpy (expected, f.contents, len);

  /* Read it first, the way the case says. */
  switch (c)
    {
      case STALE_AFTER_POPULATE:
        populate (f.m.vma, page * PS, PS, FALSE);
        break;
      case STALE_AFTER_PIN:
        pin (f.m.vma, page * PS, PS, FALSE);
        bigfile_vma_unpin (f.m.vma, page * PS, PS);
        break;
      case STALE_WHILE_PINNED:
        pin (f.m.vma, page * PS, PS, FALSE);
        break;
      case STALE_PARTIAL_PAGE:
      case STALE_PARTIAL_PAGE_API_WRITE:
      case STALE_PAST_EOF:
      case STALE_HIDDEN:
        g_assert_cmpuint (raw_read (f.m.data + page * PS + 100), ==, expected[page * PS + 100]);
        /* The file cannot show there: a copy was loaded. */
        if (c == STALE_HIDDEN)
          g_assert_cmpint (page_state (&f.m, page), ==, BIGFILE_PAGE_STATE_LOADED);
        break;
      default:
        g_assert_not_reached ();
    }

  /* Another writer changes byte 100 of the page (past the end: the file
   * grows over it). */
  if (c == STALE_PAST_EOF)
    {
      file_len = (page + 1) * PS;
      external_truncate (f.path, (goffset)file_len);
    }
  external_write_byte (&f, expected, page * PS + 100, theirs);

  /* We change byte 7, and write out. */
  if (c == STALE_PARTIAL_PAGE_API_WRITE)
    {
      g_autoptr (GBytes) bytes = g_bytes_new (&mine, 1);
      g_assert_true (bigfile_vma_write (f.m.vma, page * PS + 7, bytes, &error));
      g_assert_no_error (error);
    }
  else
    raw_write (f.m.data + page * PS + 7, mine);
  expected[page * PS + 7] = mine;
  g_assert_true (bigfile_handle_writeout (f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);

  /* The file keeps its size: a stored partial page stores only its bytes
   * below it. */
  {
    g_autofree guint8 *back = NULL;
    gsize back_len = 0;

    back = read_file (f.path, &back_len);
    g_assert_cmpuint (back_len, >=, page * PS + 101);
    g_assert_cmpuint (back[page * PS + 100], ==, theirs);
    g_assert_cmpuint (back[page * PS + 7], ==, mine);
    if (c != STALE_HIDDEN)
      assert_file_is (f.path, expected, file_len);
  }
  g_assert_cmpuint (raw_read (f.m.data + page * PS + 100), ==, theirs);
  g_assert_cmpuint (raw_read (f.m.data + page * PS + 7), ==, mine);
  assert_api_read (f.m.vma, page * PS + 100, &theirs, 1);
  assert_kernel_maps_exact ();

  if (c == STALE_WHILE_PINNED)
    bigfile_vma_unpin (f.m.vma, page * PS, PS);
  bigfile_handle_discard (f.m.handle);
  fixture_teardown (&f);
  bf_set_kernel_maps_cap (0);
}

/* -- random operations against a model ------------------------------------------------- *
 *
 * A file of M_FILE_SIZE bytes (its last page partial), two VMAs of M_PAGES
 * pages that reach past its end, a budget of M_BUDGET pages, and random
 * operations: reads and writes through raw memory and the API, populates
 * and pins (read or write) and unpins, writeouts (which make the file
 * longer when they store pages past its end), discards, reclaims,
 * invalidations, changes to the file behind the handle's back (writes to
 * complete pages with no unsaved changes; the file made longer, with data;
 * the file made shorter, then an invalidation, so the handle notices before
 * anything reads past the new end), and remapping the second VMA.  The
 * model:
 *
 *   file     what the file holds (M_PAGES pages; zeros past its size)
 *   memory   what the handle shows: the file, overlaid with the dirty pages
 *   dirty    the pages with unsaved changes
 *   pins     the pins held; a page pinned writable stays dirty through
 *            writeouts (until it is dropped: gen counts the drops)
 *
 * After every step, raw memory of both VMAs, bigfile_vma_read() of them and
 * a fresh mapping must all show the model's memory.  Raw memory is looked at
 * first (an API read drops the clean copies it finds over the file, and
 * could hide a stale one), except, after the file grew behind the handle's
 * back, the pages the handle has not seen grow: it notices at its next
 * access past the end it knew, which the API read is.
 *
 * At most M_MAX_DIRTY pages are dirty or pinned (a write that would go over
 * writes out first, and drops the pins if that is not enough), so raw
 * accesses never meet a budget full of dirty pages.
 *   BIGFILE_TEST_DIRECT_MAP_SEED=<seed>    replay one seed
 *   BIGFILE_TEST_DIRECT_MAP_STEPS=<n>      steps (default M_STEPS)
 */

#define M_FILE_PAGES 24
#define M_FILE_SIZE (M_FILE_PAGES * PS - 1000)
#define M_PAGES 26
#define M_BUDGET 16
#define M_MAX_DIRTY 9
#define M_MAX_PINS 2
#define M_PIN_PAGES 2
#define M_STEPS 4000
#define M_CHECK_EVERY 100

typedef enum
{
  M_RAW_READ,
  M_RAW_WRITE,
  M_API_READ,
  M_API_WRITE,
  M_WRITEOUT,
  M_DISCARD,
  M_RECLAIM,
  M_INVALIDATE,
  M_EXTERNAL_WRITE,
  M_REMAP,
  M_POPULATE,
  M_PIN,
  M_UNPIN,
  M_EXTERNAL_GROW,
  M_EXTERNAL_SHRINK,
  M_N_OPS
} MOp;

/* How often each operation is picked, out of the sum. */
static const guint m_weights[M_N_OPS] = { 20, 20, 10, 10, 5, 3, 5, 8, 12, 3, 6, 5, 5, 3, 1 };

typedef struct
{
  guint64 first, n;
  BigfileVma *vma;
  guint8 *data;
} MVma;

typedef struct
{
  guint v;           /* of vmas[] */
  gsize offset, len; /* as given to bigfile_vma_pin() */
  guint64 first, n;  /* the pages, absolute */
  gboolean writable;
  guint gen[M_PIN_PAGES]; /* Model.gen of each page when pinned */
} MPin;

typedef struct
{
  guint32 seed;
  guint step;
  GRand *rand;
  char *last_op;
  TestOpLog log; /* the last operations, for failure reports */
  Fixture f;     /* no VMA of its own */
  int fd;        /* the file, for changes behind the handle's back */
  MVma vmas[2];

  guint8 *file;
  gsize file_size;
  gsize seen_size; /* the file's size the handle surely knows */
  guint8 *memory;
  gboolean dirty[M_PAGES];
  guint n_dirty;
  guint gen[M_PAGES]; /* how many times the page was dropped while dirty */
  MPin pins[M_MAX_PINS];
  guint n_pins;
  guint n_ops[M_N_OPS];
} Model;

static void model_fail (Model *mo, const char *file, int line, const char *func, const char *expr,
                        const char *format, ...) G_GNUC_PRINTF (6, 7);

static void
model_fail (Model *mo, const char *file, int line, const char *func, const char *expr,
            const char *format, ...)
{
  va_list args;
  char *detail, *message;

  va_start (args, format);
  detail = g_strdup_vprintf (format, args);
  va_end (args);
  test_op_log_dump (&mo->log);
  message = g_strdup_printf ("model check failed (%s): %s [step %u, after: %s; replay with "
                             "BIGFILE_TEST_DIRECT_MAP_SEED=%u]",
                             expr, detail, mo->step, mo->last_op, mo->seed);
  g_assertion_message (G_LOG_DOMAIN, file, line, func, message);
  g_free (message);
  g_free (detail);
  g_abort ();
}

#define model_assert(mo, expr, ...)                                                                \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (G_LIKELY (expr))                                                                           \
      ;                                                                                            \
    else                                                                                           \
      model_fail ((mo), __FILE__, __LINE__, G_STRFUNC, #expr, __VA_ARGS__);                        \
  }                                                                                                \
  G_STMT_END

#define model_assert_no_error(mo, error, what)                                                     \
  model_assert ((mo), (error) == NULL, "%s failed: %s", (what),                                    \
                (error) != NULL ? (error)->message : "")

static void model_log (Model *mo, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
model_log (Model *mo, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  g_free (mo->last_op);
  mo->last_op = g_strdup_vprintf (format, args);
  va_end (args);
  test_op_log_add (&mo->log, "step %u: %s", mo->step, mo->last_op);
}

/* Reports where @got first differs from @want, the model's bytes from @base. */
static void
model_assert_same (Model *mo, const guint8 *got, const guint8 *want, gsize len, gsize base,
                   const char *what)
{
  if (memcmp (got, want, len) == 0)
    return;
  for (gsize i = 0; i < len; i++)
    model_assert (mo, got[i] == want[i],
                  "%s: byte %" G_GSIZE_FORMAT " (page %" G_GSIZE_FORMAT ", %s) is 0x%02x, want "
                  "0x%02x",
                  what, base + i, (base + i) / PS, mo->dirty[(base + i) / PS] ? "dirty" : "clean",
                  got[i], want[i]);
}

/* In [begin, end). */
static guint64
m_rand (Model *mo, guint64 begin, guint64 end)
{
  return begin + (guint64)g_rand_int_range (mo->rand, 0, (gint32)(end - begin));
}

static void
m_fill (Model *mo, guint8 *buf, gsize len)
{
  guint8 value = (guint8)g_rand_int (mo->rand);

  for (gsize i = 0; i < len; i++)
    buf[i] = value++;
}

static MVma *
m_pick_vma (Model *mo)
{
  return &mo->vmas[m_rand (mo, 0, 2)];
}

/* A random range of @mv: small and anywhere, or across a page boundary, or
 * up to two pages. */
static void
m_pick_range (Model *mo, MVma *mv, gsize *offset, gsize *len)
{
  gsize vlen = mv->n * PS, max_len;

  /* Across a boundary needs two pages. */
  switch (mv->n < 2 ? 0 : m_rand (mo, 0, 3))
    {
      case 0:
        *offset = m_rand (mo, 0, vlen);
        max_len = 64;
        break;
      case 1:
        *offset = m_rand (mo, 1, mv->n) * PS - m_rand (mo, 1, 17);
        max_len = 64;
        break;
      default:
        *offset = m_rand (mo, 0, vlen);
        max_len = 2 * PS;
        break;
    }
  *len = m_rand (mo, 1, MIN (max_len, vlen - *offset) + 1);
}

static guint
m_new_dirty (Model *mo, gsize at, gsize len)
{
  guint n = 0;

  for (gsize p = at / PS; p <= (at + len - 1) / PS; p++)
    n += !mo->dirty[p];
  return n;
}

static void
m_vma_map (Model *mo, MVma *mv, guint64 first, guint64 n)
{
  GError *error = NULL;

  mv->first = first;
  mv->n = n;
  mv->vma = bigfile_handle_map (mo->f.m.handle, first, n, &error);
  model_assert_no_error (mo, error, "map");
  mv->data = bigfile_vma_get_data (mv->vma);
}

/* Pages the pins hold (or would, were they copies). */
static guint
m_pinned_pages (Model *mo)
{
  guint n = 0;

  for (guint k = 0; k < mo->n_pins; k++)
    n += (guint)mo->pins[k].n;
  return n;
}

/* Does a writable pin hold page @p as it is now (not dropped since)? */
static gboolean
m_write_pinned (Model *mo, guint64 p)
{
  for (guint k = 0; k < mo->n_pins; k++)
    {
      MPin *pin = &mo->pins[k];

      if (pin->writable && p >= pin->first && p < pin->first + pin->n
          && pin->gen[p - pin->first] == mo->gen[p])
        return TRUE;
    }
  return FALSE;
}

/* The handle's view of the file's size is up to date after this. */
static void
m_seen (Model *mo)
{
  mo->seen_size = mo->file_size;
}

static void
m_writeout (Model *mo)
{
  GError *error = NULL;

  model_log (mo, "writeout of %u dirty pages", mo->n_dirty);
  bigfile_handle_writeout (mo->f.m.handle, BIGFILE_WRITEOUT_DEFAULT, &error);
  model_assert_no_error (mo, error, "writeout");
  /* It stored pages, so it looked at the file's size. */
  if (mo->n_dirty > 0)
    m_seen (mo);
  for (guint64 p = 0; p < M_PAGES; p++)
    if (mo->dirty[p])
      {
        memcpy (mo->file + p * PS, mo->memory + p * PS, PS);
        /* The file grows to the last byte written that is not zero. */
        for (gsize end = (p + 1) * PS; end > mo->file_size; end--)
          if (mo->memory[end - 1] != 0)
            {
              mo->file_size = end;
              break;
            }
        /* A page pinned writable is stored as it is and stays dirty. */
        if (!m_write_pinned (mo, p))
          {
            mo->dirty[p] = FALSE;
            mo->n_dirty--;
          }
      }
}

static void
m_unpin (Model *mo, guint k)
{
  MPin *pin = &mo->pins[k];

  model_log (mo,
             "unpin of %" G_GSIZE_FORMAT " bytes at %" G_GSIZE_FORMAT
             " of VMA %u (%s, pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT ")",
             pin->len, pin->offset, pin->v, pin->writable ? "writable" : "read", pin->first,
             pin->n);
  bigfile_vma_unpin (mo->vmas[pin->v].vma, pin->offset, pin->len);
  mo->pins[k] = mo->pins[--mo->n_pins];
}

/* Room for @n_new more dirty or pinned pages within M_MAX_DIRTY: a
 * writeout first if needed, then the pins go if that was not enough. */
static void
m_make_room (Model *mo, guint n_new)
{
  if (mo->n_dirty + m_pinned_pages (mo) + n_new <= M_MAX_DIRTY)
    return;
  m_writeout (mo);
  while (mo->n_dirty + m_pinned_pages (mo) + n_new > M_MAX_DIRTY && mo->n_pins > 0)
    m_unpin (mo, 0);
  if (mo->n_dirty + n_new > M_MAX_DIRTY)
    m_writeout (mo); /* what the pins held writable was still dirty */
}

/* A write range that keeps the dirty pages within M_MAX_DIRTY. */
static void
m_pick_write_range (Model *mo, MVma *mv, gsize *offset, gsize *len)
{
  m_pick_range (mo, mv, offset, len);
  m_make_room (mo, m_new_dirty (mo, mv->first * PS + *offset, *len));
}

/* A range of @mv for a populate or a pin: up to M_PIN_PAGES pages, not
 * always aligned. */
static void
m_pick_pin_range (Model *mo, MVma *mv, gsize *offset, gsize *len, guint64 *first, guint64 *n)
{
  guint64 fp = m_rand (mo, 0, mv->n);
  gsize head;

  *n = MIN (m_rand (mo, 1, M_PIN_PAGES + 1), mv->n - fp);
  head = m_rand (mo, 0, PS / 2);
  *offset = fp * PS + head;
  *len = *n * PS - head - m_rand (mo, 0, PS / 2);
  *first = mv->first + fp;
}

/* Pages [first, first + n) become dirty, unchanged (a writable populate or
 * pin). */
static void
m_dirty_range (Model *mo, guint64 first, guint64 n)
{
  for (guint64 p = first; p < first + n; p++)
    if (!mo->dirty[p])
      {
        mo->dirty[p] = TRUE;
        mo->n_dirty++;
      }
}

/* Clean pages show the file: after the file changed behind the handle's
 * back, make the model's memory say so. */
static void
m_sync_clean (Model *mo)
{
  for (guint64 p = 0; p < M_PAGES; p++)
    if (!mo->dirty[p])
      memcpy (mo->memory + p * PS, mo->file + p * PS, PS);
}

static void
m_write (Model *mo, gsize at, const guint8 *data, gsize len)
{
  memcpy (mo->memory + at, data, len);
  for (gsize p = at / PS; p <= (at + len - 1) / PS; p++)
    if (!mo->dirty[p])
      {
        mo->dirty[p] = TRUE;
        mo->n_dirty++;
      }
}

/* The handle's changes to @page are gone: it shows the file. */
static void
m_drop (Model *mo, guint64 page)
{
  memcpy (mo->memory + page * PS, mo->file + page * PS, PS);
  if (mo->dirty[page])
    {
      mo->dirty[page] = FALSE;
      mo->n_dirty--;
      mo->gen[page]++; /* a pin of it holds an orphan now */
    }
}

static void
m_step (Model *mo, MOp op)
{
  GError *error = NULL;
  MVma *mv;
  gsize offset, len;
  guint8 *buf;
  GBytes *bytes;
  guint64 page;

  switch (op)
    {
      case M_RAW_READ:
        mv = m_pick_vma (mo);
        m_pick_range (mo, mv, &offset, &len);
        model_log (mo,
                   "raw read of %" G_GSIZE_FORMAT " bytes at %" G_GSIZE_FORMAT
                   " of pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT,
                   len, offset, mv->first, mv->n);
        buf = g_malloc (len);
        memcpy (buf, mv->data + offset, len);
        model_assert_same (mo, buf, mo->memory + mv->first * PS + offset, len,
                           mv->first * PS + offset, "raw read");
        g_free (buf);
        break;

      case M_RAW_WRITE:
        mv = m_pick_vma (mo);
        m_pick_write_range (mo, mv, &offset, &len);
        model_log (mo,
                   "raw write of %" G_GSIZE_FORMAT " bytes at %" G_GSIZE_FORMAT
                   " of pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT,
                   len, offset, mv->first, mv->n);
        buf = g_malloc (len);
        m_fill (mo, buf, len);
        memcpy (mv->data + offset, buf, len);
        m_write (mo, mv->first * PS + offset, buf, len);
        g_free (buf);
        break;

      case M_API_READ:
        mv = m_pick_vma (mo);
        m_pick_range (mo, mv, &offset, &len);
        model_log (mo,
                   "API read of %" G_GSIZE_FORMAT " bytes at %" G_GSIZE_FORMAT
                   " of pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT,
                   len, offset, mv->first, mv->n);
        bytes = bigfile_vma_read (mv->vma, offset, len, &error);
        model_assert_no_error (mo, error, "bigfile_vma_read");
        model_assert (mo, g_bytes_get_size (bytes) == len, "read %" G_GSIZE_FORMAT " bytes",
                      g_bytes_get_size (bytes));
        model_assert_same (mo, g_bytes_get_data (bytes, NULL), mo->memory + mv->first * PS + offset,
                           len, mv->first * PS + offset, "API read");
        g_bytes_unref (bytes);
        break;

      case M_API_WRITE:
        mv = m_pick_vma (mo);
        m_pick_write_range (mo, mv, &offset, &len);
        model_log (mo,
                   "API write of %" G_GSIZE_FORMAT " bytes at %" G_GSIZE_FORMAT
                   " of pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT,
                   len, offset, mv->first, mv->n);
        buf = g_malloc (len);
        m_fill (mo, buf, len);
        bytes = g_bytes_new_take (buf, len);
        bigfile_vma_write (mv->vma, offset, bytes, &error);
        model_assert_no_error (mo, error, "bigfile_vma_write");
        m_write (mo, mv->first * PS + offset, buf, len);
        g_bytes_unref (bytes);
        break;

      case M_WRITEOUT:
        m_writeout (mo);
        break;

      case M_DISCARD:
        {
          guint n_dirty = mo->n_dirty, n;

          model_log (mo, "discard of %u dirty pages", n_dirty);
          n = bigfile_handle_discard (mo->f.m.handle);
          model_assert (mo, n == n_dirty, "discarded %u pages, want %u", n, n_dirty);
          for (page = 0; page < M_PAGES; page++)
            m_drop (mo, page);
        }
        break;

      case M_RECLAIM:
        {
          guint64 left;

          model_log (mo, "reclaim");
          bigfile_ram_reclaim (mo->f.m.ram);
          /* What stays: the dirty pages, the pinned copies, and pinned pages
           * dropped while pinned (kept for their pins). */
          left = bigfile_ram_get_n_pages (mo->f.m.ram);
          model_assert (mo, left >= mo->n_dirty && left <= mo->n_dirty + 2 * m_pinned_pages (mo),
                        "%" G_GUINT64_FORMAT " pages left after reclaim, %u dirty, %u pinned", left,
                        mo->n_dirty, m_pinned_pages (mo));
        }
        break;

      case M_INVALIDATE:
        page = m_rand (mo, 0, M_PAGES);
        model_log (mo, "invalidate page %" G_GUINT64_FORMAT " (%s)", page,
                   mo->dirty[page] ? "dirty" : "clean");
        bigfile_handle_invalidate_page (mo->f.m.handle, page);
        m_drop (mo, page);
        m_seen (mo);
        break;

      case M_EXTERNAL_WRITE:
        /* A complete page the handle has no changes to: both views change.
         * (The partial last page is a copy, not the file: it would show
         * such a change only once the handle has a reason to look.) */
        if (mo->file_size < PS)
          {
            model_log (mo, "nothing (no complete page)");
            break;
          }
        page = m_rand (mo, 0, MIN (mo->file_size / PS, M_PAGES));
        if (mo->dirty[page])
          {
            model_log (mo, "nothing (page %" G_GUINT64_FORMAT " is dirty)", page);
            break;
          }
        offset = page * PS + m_rand (mo, 0, PS);
        len = m_rand (mo, 1, (page + 1) * PS - offset + 1);
        model_log (mo,
                   "external write of %" G_GSIZE_FORMAT " bytes at %" G_GSIZE_FORMAT
                   " (page %" G_GUINT64_FORMAT ", %s)",
                   len, offset, page,
                   bigfile_handle_get_page_state (mo->f.m.handle, page) == BIGFILE_PAGE_STATE_LOADED
                       ? "LOADED"
                       : "EMPTY");
        buf = g_malloc (len);
        m_fill (mo, buf, len);
        model_assert (mo, pwrite (mo->fd, buf, len, (off_t)offset) == (gssize)len, "pwrite: %s",
                      g_strerror (errno));
        memcpy (mo->file + offset, buf, len);
        memcpy (mo->memory + offset, buf, len);
        g_free (buf);
        break;

      case M_REMAP:
        {
          guint64 first = m_rand (mo, 0, M_PAGES);
          guint64 n = m_rand (mo, 1, M_PAGES - first + 1);

          model_log (mo,
                     "remap the second VMA as pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                     " (file size %" G_GSIZE_FORMAT ")",
                     first, n, mo->file_size);
          /* Its pins go with it. */
          for (guint k = mo->n_pins; k > 0; k--)
            if (mo->pins[k - 1].v == 1)
              mo->pins[k - 1] = mo->pins[--mo->n_pins];
          vma_free (mo->vmas[1].vma);
          m_vma_map (mo, &mo->vmas[1], first, n);
          m_seen (mo);
        }
        break;

      case M_POPULATE:
      case M_PIN:
        {
          gboolean writable = m_rand (mo, 0, 3) == 0, hold = op == M_PIN, ok;
          guint v = (guint)m_rand (mo, 0, 2);
          guint64 first, n;

          mv = &mo->vmas[v];
          m_pick_pin_range (mo, mv, &offset, &len, &first, &n);
          if (hold && mo->n_pins == M_MAX_PINS)
            m_unpin (mo, (guint)m_rand (mo, 0, mo->n_pins));
          m_make_room (mo, (guint)n);
          model_log (mo,
                     "%s (%s) of %" G_GSIZE_FORMAT " bytes at %" G_GSIZE_FORMAT
                     " of VMA %u (pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT ")",
                     hold ? "pin" : "populate", writable ? "writable" : "read", len, offset, v,
                     first, n);
          if (hold)
            ok = bigfile_vma_pin (mv->vma, offset, len, writable, &error);
          else
            ok = bigfile_vma_populate (mv->vma, offset, len, writable, &error);
          model_assert_no_error (mo, error, hold ? "pin" : "populate");
          model_assert (mo, ok, "%s failed", hold ? "pin" : "populate");
          if (writable)
            m_dirty_range (mo, first, n);
          if (hold)
            {
              MPin *pin = &mo->pins[mo->n_pins++];

              *pin = (MPin){ v, offset, len, first, n, writable, { 0 } };
              for (guint64 p = 0; p < n; p++)
                pin->gen[p] = mo->gen[first + p];
            }
        }
        break;

      case M_UNPIN:
        if (mo->n_pins == 0)
          {
            model_log (mo, "nothing (no pin)");
            break;
          }
        m_unpin (mo, (guint)m_rand (mo, 0, mo->n_pins));
        break;

      case M_EXTERNAL_GROW:
        {
          gsize old = mo->file_size, size, at, end;

          if (old >= M_PAGES * PS)
            {
              model_log (mo, "nothing (the file covers the VMAs)");
              break;
            }
          /* Longer, then data somewhere past the old end: in the old
           * partial page, the pages after it, the new partial page. */
          size = m_rand (mo, old + 1, M_PAGES * PS + 1);
          at = m_rand (mo, old, size);
          end = m_rand (mo, at + 1, size + 1);
          model_log (mo,
                     "external growth from %" G_GSIZE_FORMAT " to %" G_GSIZE_FORMAT
                     " bytes, data at [%" G_GSIZE_FORMAT ", %" G_GSIZE_FORMAT ")",
                     old, size, at, end);
          model_assert (mo, ftruncate (mo->fd, (off_t)size) == 0, "ftruncate: %s",
                        g_strerror (errno));
          buf = g_malloc (end - at);
          m_fill (mo, buf, end - at);
          model_assert (mo, pwrite (mo->fd, buf, end - at, (off_t)at) == (gssize)(end - at),
                        "pwrite: %s", g_strerror (errno));
          memcpy (mo->file + at, buf, end - at);
          g_free (buf);
          mo->file_size = size;
          m_sync_clean (mo);
        }
        break;

      case M_EXTERNAL_SHRINK:
        {
          gsize old = mo->file_size, size;

          if (old <= M_FILE_PAGES / 2 * PS)
            {
              model_log (mo, "nothing (the file is short)");
              break;
            }
          /* Shorter: a read of the file's mapping past the new end is
           * SIGBUS until the handle notices, so it is told at once. */
          size = m_rand (mo, M_FILE_PAGES / 2 * PS, old);
          page = m_rand (mo, 0, M_PAGES);
          model_log (mo,
                     "external truncation from %" G_GSIZE_FORMAT " to %" G_GSIZE_FORMAT
                     " bytes, then invalidate page %" G_GUINT64_FORMAT,
                     old, size, page);
          model_assert (mo, ftruncate (mo->fd, (off_t)size) == 0, "ftruncate: %s",
                        g_strerror (errno));
          memset (mo->file + size, 0, old - size);
          mo->file_size = size;
          m_sync_clean (mo);
          bigfile_handle_invalidate_page (mo->f.m.handle, page);
          m_drop (mo, page);
          m_seen (mo);
        }
        break;

      default:
        g_assert_not_reached ();
    }
  mo->n_ops[op]++;
}

/* Raw memory of @mv against the model, but for pages [skip_from, skip_to). */
static void
m_check_raw (Model *mo, MVma *mv, guint64 skip_from, guint64 skip_to, const char *what)
{
  for (guint64 k = 0; k < mv->n; k++)
    {
      guint64 p = mv->first + k;

      if (p >= skip_from && p < skip_to)
        continue;
      model_assert_same (mo, mv->data + k * PS, mo->memory + p * PS, PS, p * PS, what);
    }
}

/* After every step: states and counts; raw memory, bigfile_vma_read() and
 * a fresh mapping against the model; the kernel-map accounting; with @full,
 * the file too. */
static void
m_check (Model *mo, gboolean full)
{
  static const char *const names[2] = { "first VMA", "second VMA" };
  guint n_present = 0, n_pinned = m_pinned_pages (mo);
  guint64 n_ram, skip_from = 0, skip_to = 0;
  BigfileVma *fresh;
  g_autofree char *broken = _bigfile_handle_check (mo->f.m.handle, TRUE);

  model_assert (mo, broken == NULL, "engine invariants: %s", broken);

  for (guint64 p = 0; p < M_PAGES; p++)
    {
      BigfilePageState state = bigfile_handle_get_page_state (mo->f.m.handle, p);

      if (mo->dirty[p])
        model_assert (mo, state == BIGFILE_PAGE_STATE_DIRTY,
                      "page %" G_GUINT64_FORMAT " has changes but is in state %d", p, state);
      else
        model_assert (mo, state == BIGFILE_PAGE_STATE_EMPTY || state == BIGFILE_PAGE_STATE_LOADED,
                      "page %" G_GUINT64_FORMAT " is clean but is in state %d", p, state);
      n_present += state != BIGFILE_PAGE_STATE_EMPTY;
    }
  model_assert (mo, bigfile_handle_get_n_dirty_pages (mo->f.m.handle) == mo->n_dirty,
                "the handle counts %" G_GUINT64_FORMAT " dirty pages, want %u",
                bigfile_handle_get_n_dirty_pages (mo->f.m.handle), mo->n_dirty);
  model_assert (mo, bigfile_ram_get_n_dirty_pages (mo->f.m.ram) == mo->n_dirty,
                "the RAM counts %" G_GUINT64_FORMAT " dirty pages, want %u",
                bigfile_ram_get_n_dirty_pages (mo->f.m.ram), mo->n_dirty);
  /* Pinned pages dropped from the handle keep their memory until unpinned. */
  n_ram = bigfile_ram_get_n_pages (mo->f.m.ram);
  model_assert (mo, n_ram >= n_present && n_ram <= n_present + n_pinned,
                "the RAM counts %" G_GUINT64_FORMAT " pages, the handle has %u, %u pinned", n_ram,
                n_present, n_pinned);

  /* Raw memory first.  After the file grew behind the handle's back, the
   * pages it has not seen grow may still show what they did. */
  if (mo->seen_size < mo->file_size)
    {
      skip_from = mo->seen_size / PS;
      skip_to = (mo->file_size + PS - 1) / PS;
    }
  for (guint v = 0; v < 2; v++)
    m_check_raw (mo, &mo->vmas[v], skip_from, skip_to, names[v]);

  /* bigfile_vma_read() of all of the first VMA reaches past the end of the
   * file the handle knew (if the file grew within the VMAs): from now on
   * the handle knows the file's size. */
  for (guint v = 0; v < 2; v++)
    {
      MVma *mv = &mo->vmas[v];
      GError *error = NULL;
      g_autoptr (GBytes) bytes = bigfile_vma_read (mv->vma, 0, mv->n * PS, &error);

      model_assert_no_error (mo, error, "bigfile_vma_read");
      model_assert_same (mo, g_bytes_get_data (bytes, NULL), mo->memory + mv->first * PS,
                         mv->n * PS, mv->first * PS,
                         v == 0 ? "API read, first VMA" : "API read, second VMA");
    }
  m_seen (mo);
  for (guint v = 0; v < 2; v++)
    m_check_raw (mo, &mo->vmas[v], 0, 0, names[v]);

  fresh = bigfile_handle_map (mo->f.m.handle, 0, M_PAGES, NULL);
  model_assert (mo, fresh != NULL, "mapping the handle afresh failed");
  model_assert_same (mo, bigfile_vma_get_data (fresh), mo->memory, M_PAGES * PS, 0, "fresh VMA");
  vma_free (fresh);
  model_assert (mo, bf_count_kernel_maps () == bf_get_kernel_maps (),
                "the engine counts %" G_GUINT64_FORMAT
                " kernel mappings, its VMAs need %" G_GUINT64_FORMAT,
                bf_get_kernel_maps (), bf_count_kernel_maps ());

  if (full)
    {
      g_autofree guint8 *back = NULL;
      gsize len = 0;

      back = read_file (mo->f.path, &len);
      model_assert (mo, len == mo->file_size,
                    "the file has %" G_GSIZE_FORMAT " bytes, want %" G_GSIZE_FORMAT, len,
                    mo->file_size);
      model_assert_same (mo, back, mo->file, len, 0, "file");
    }
}

static guint
env_uint (const char *name, guint fallback)
{
  const char *value = g_getenv (name);
  guint64 n;

  if (value == NULL || *value == '\0')
    return fallback;
  if (!g_ascii_string_to_unsigned (value, 10, 0, G_MAXUINT32, &n, NULL))
    g_error ("%s=%s is not a number", name, value);
  return (guint)n;
}

static void
test_model (void)
{
  Model mo = { 0 };
  guint n_steps = env_uint ("BIGFILE_TEST_DIRECT_MAP_STEPS", M_STEPS);
  guint total_weight = 0;

  mo.seed = g_getenv ("BIGFILE_TEST_DIRECT_MAP_SEED") != NULL
                ? env_uint ("BIGFILE_TEST_DIRECT_MAP_SEED", 0)
                : (guint32)g_test_rand_int ();
  g_test_message ("%u steps, seed %u (replay with BIGFILE_TEST_DIRECT_MAP_SEED=%u)", n_steps,
                  mo.seed, mo.seed);
  mo.rand = g_rand_new_with_seed (mo.seed);
  mo.last_op = g_strdup ("nothing");

  fixture_setup (&mo.f, PS, M_FILE_SIZE, CLEAN_PAGES, 0, M_BUDGET);
  mo.fd = open (mo.f.path, O_WRONLY | O_CLOEXEC);
  g_assert_cmpint (mo.fd, >=, 0);
  mo.file = g_malloc0 (M_PAGES * PS);
  memcpy (mo.file, mo.f.contents, mo.f.len);
  mo.file_size = mo.f.len;
  mo.seen_size = mo.f.len;
  mo.memory = g_memdup2 (mo.file, M_PAGES * PS);
  m_vma_map (&mo, &mo.vmas[0], 0, M_PAGES);
  m_vma_map (&mo, &mo.vmas[1], 4, M_PAGES - 4);

  for (guint op = 0; op < M_N_OPS; op++)
    total_weight += m_weights[op];

  for (mo.step = 0; mo.step < n_steps; mo.step++)
    {
      guint r = (guint)m_rand (&mo, 0, total_weight);
      MOp op = 0;

      while (r >= m_weights[op])
        r -= m_weights[op++];
      m_step (&mo, op);
      m_check (&mo, (mo.step + 1) % M_CHECK_EVERY == 0);
    }
  m_check (&mo, TRUE);

  g_test_message ("ops: %u raw reads, %u raw writes, %u API reads, %u API writes, %u writeouts, "
                  "%u discards, %u reclaims, %u invalidations, %u external writes, %u remaps, "
                  "%u populates, %u pins, %u unpins, %u external growths, %u external "
                  "truncations",
                  mo.n_ops[M_RAW_READ], mo.n_ops[M_RAW_WRITE], mo.n_ops[M_API_READ],
                  mo.n_ops[M_API_WRITE], mo.n_ops[M_WRITEOUT], mo.n_ops[M_DISCARD],
                  mo.n_ops[M_RECLAIM], mo.n_ops[M_INVALIDATE], mo.n_ops[M_EXTERNAL_WRITE],
                  mo.n_ops[M_REMAP], mo.n_ops[M_POPULATE], mo.n_ops[M_PIN], mo.n_ops[M_UNPIN],
                  mo.n_ops[M_EXTERNAL_GROW], mo.n_ops[M_EXTERNAL_SHRINK]);

  while (mo.n_pins > 0)
    m_unpin (&mo, 0);
  vma_free (mo.vmas[0].vma);
  vma_free (mo.vmas[1].vma);
  bigfile_handle_discard (mo.f.m.handle);
  g_assert_cmpint (close (mo.fd), ==, 0);
  fixture_teardown (&mo.f);
  g_free (mo.file);
  g_free (mo.memory);
  g_free (mo.last_op);
  test_op_log_clear (&mo.log);
  g_rand_free (mo.rand);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_data_func ("/direct-map/read/4k", GSIZE_TO_POINTER (PS), test_read);
  g_test_add_data_func ("/direct-map/read/2m", GSIZE_TO_POINTER (2 * MiB), test_read);
  g_test_add_func ("/direct-map/read/api", test_read_api);
  g_test_add_func ("/direct-map/write", test_write);
  g_test_add_func ("/direct-map/writeout", test_writeout);
  g_test_add_func ("/direct-map/discard", test_discard);
  g_test_add_func ("/direct-map/external-change/clean-and-dirty", test_external_change);
  g_test_add_func ("/direct-map/external-change/written-out", test_external_change_written_out);
  g_test_add_func ("/direct-map/external-change/after-api-read",
                   test_external_change_after_api_read);
  g_test_add_func ("/direct-map/past-eof", test_past_eof);
  g_test_add_func ("/direct-map/map-count/flush", test_map_count_flush);
  g_test_add_func ("/direct-map/map-count/cap", test_map_count_cap);
  g_test_add_func ("/direct-map/map-count/straddle", test_map_count_straddle);
  g_test_add_func ("/direct-map/read-only", test_read_only);
  g_test_add_func ("/direct-map/populate/read", test_populate_read);
  g_test_add_func ("/direct-map/pin/read", test_pin_read);
  g_test_add_func ("/direct-map/pin/read-past-eof", test_pin_read_past_eof);
  g_test_add_func ("/direct-map/pin/read-flush", test_pin_read_flush);
  g_test_add_data_func ("/direct-map/grow/by-writeout", GINT_TO_POINTER (GROW_SEEN_BY_WRITEOUT),
                        test_grow);
  g_test_add_data_func ("/direct-map/grow/seen-by-api-read",
                        GINT_TO_POINTER (GROW_SEEN_BY_API_READ), test_grow);
  g_test_add_data_func ("/direct-map/grow/seen-by-fault", GINT_TO_POINTER (GROW_SEEN_BY_FAULT),
                        test_grow);
  g_test_add_data_func ("/direct-map/grow/seen-by-map", GINT_TO_POINTER (GROW_SEEN_BY_MAP),
                        test_grow);
  g_test_add_data_func ("/direct-map/grow/seen-by-invalidate",
                        GINT_TO_POINTER (GROW_SEEN_BY_INVALIDATE), test_grow);
  g_test_add_data_func ("/direct-map/stale-write/after-populate",
                        GINT_TO_POINTER (STALE_AFTER_POPULATE), test_stale_write);
  g_test_add_data_func ("/direct-map/stale-write/after-pin", GINT_TO_POINTER (STALE_AFTER_PIN),
                        test_stale_write);
  g_test_add_data_func ("/direct-map/stale-write/while-pinned",
                        GINT_TO_POINTER (STALE_WHILE_PINNED), test_stale_write);
  g_test_add_data_func ("/direct-map/stale-write/partial-page",
                        GINT_TO_POINTER (STALE_PARTIAL_PAGE), test_stale_write);
  g_test_add_data_func ("/direct-map/stale-write/partial-page-api",
                        GINT_TO_POINTER (STALE_PARTIAL_PAGE_API_WRITE), test_stale_write);
  g_test_add_data_func ("/direct-map/stale-write/past-eof", GINT_TO_POINTER (STALE_PAST_EOF),
                        test_stale_write);
  g_test_add_data_func ("/direct-map/stale-write/hidden", GINT_TO_POINTER (STALE_HIDDEN),
                        test_stale_write);
  g_test_add_func ("/direct-map/model/random", test_model);

  return g_test_run ();
}
