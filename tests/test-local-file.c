/* bigfile-glib tests - BigfileLocalFile, a BigfileFile over a local file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "test-util.h"

#define PS ((gsize)4096)

static goffset
file_size (const char *path)
{
  GStatBuf st;

  g_assert_cmpint (g_stat (path, &st), ==, 0);
  return st.st_size;
}

static guint8
file_pattern (gsize i)
{
  return (guint8)((i * 7 + (i >> 12) * 13 + 5) & 0xff);
}

static guint8 *
make_pattern (gsize len)
{
  guint8 *buf = g_malloc (len);

  for (gsize i = 0; i < len; i++)
    buf[i] = file_pattern (i);
  return buf;
}

/* -- opening ------------------------------------------------------------------ */

static void
test_open_missing (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "missing", NULL);
  GError *error = NULL;
  BigfileLocalFile *file;

  file = bigfile_local_file_new (path, PS, BIGFILE_LOCAL_FILE_FLAGS_NONE, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, path));
  g_assert_null (file);
  g_clear_error (&error);

  file = bigfile_local_file_new (path, PS, BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, &error);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_null (file);
  g_clear_error (&error);

  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  temp_dir_remove (dir);
}

static void
test_open_create (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "new", NULL);
  GError *error = NULL;
  BigfileLocalFile *file;
  const guint8 contents[] = "existing contents";
  g_autofree guint8 *back = NULL;
  gsize len;

  file = bigfile_local_file_new (path, PS, BIGFILE_LOCAL_FILE_FLAGS_CREATE, &error);
  g_assert_no_error (error);
  g_assert_nonnull (file);
  g_assert_true (g_file_test (path, G_FILE_TEST_IS_REGULAR));
  g_assert_cmpint (file_size (path), ==, 0);
  g_assert_cmpstr (bigfile_local_file_get_path (file), ==, path);
  g_assert_cmpint (bigfile_local_file_get_flags (file), ==, BIGFILE_LOCAL_FILE_FLAGS_CREATE);
  g_assert_cmpuint (bigfile_file_get_block_size (BIGFILE_FILE (file)), ==, PS);
  g_object_unref (file);

  /* CREATE on an existing file opens it as it is: no truncation. */
  write_file (path, contents, sizeof contents);
  file = bigfile_local_file_new (path, PS, BIGFILE_LOCAL_FILE_FLAGS_CREATE, &error);
  g_assert_no_error (error);
  g_object_unref (file);
  back = read_file (path, &len);
  g_assert_cmpmem (back, len, contents, sizeof contents);

  temp_dir_remove (dir);
}

/* A bad block size is refused before anything is opened or created. */
static void
test_open_invalid_block_size (void)
{
  const gsize sizes[] = { 0, 1000, 2048, 3 * 4096, (gsize)4 << 20 };
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "never", NULL);

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      GError *error = NULL;
      BigfileLocalFile *file;

      file = bigfile_local_file_new (path, sizes[i], BIGFILE_LOCAL_FILE_FLAGS_CREATE, &error);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_null (file);
      g_clear_error (&error);
      g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
    }

  temp_dir_remove (dir);
}

/* -- loading and storing ---------------------------------------------------------- */

/* Past the end of the file, pages read as zeros: the partial last block is
 * padded, and whole blocks beyond it are all zeros. */
static void
test_read_past_eof (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "short", NULL);
  g_autofree guint8 *contents = make_pattern (PS + 904);
  g_autofree guint8 *zeros = g_malloc0 (PS);
  Mapping m;

  write_file (path, contents, PS + 904);

  /* A budget of one page: each page reuses the memory of the one before, so
   * zeros past the end must come from the load, not from fresh memory. */
  mapping_setup_local_file (&m, path, PS, BIGFILE_LOCAL_FILE_FLAGS_NONE, 4, PS);
  g_assert_cmpint (memcmp (m.data, contents, PS), ==, 0);
  g_assert_cmpint (memcmp (m.data + PS, contents + PS, 904), ==, 0);
  g_assert_cmpint (memcmp (m.data + PS + 904, zeros, PS - 904), ==, 0);
  g_assert_cmpint (memcmp (m.data + 2 * PS, zeros, PS), ==, 0);
  g_assert_cmpint (memcmp (m.data + 3 * PS, zeros, PS), ==, 0);
  g_assert_cmpint (bigfile_handle_get_page_state (m.handle, 3), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 1);

  /* The API reads the same across the end. */
  {
    GError *error = NULL;
    g_autoptr (GBytes) bytes = bigfile_vma_read (m.vma, PS + 900, 8, &error);
    const guint8 *got;

    g_assert_no_error (error);
    got = g_bytes_get_data (bytes, NULL);
    g_assert_cmpmem (got, 4, contents + PS + 900, 4);
    g_assert_cmpmem (got + 4, 4, zeros, 4);
  }
  mapping_teardown (&m);

  /* Reading does not change the file. */
  g_assert_cmpint (file_size (path), ==, PS + 904);
  temp_dir_remove (dir);
}

/* The file keeps its size: a store inside it writes only the bytes below
 * its end, and writing past the end makes it exactly as long as what was
 * written (up to the last byte that is not zero); blocks never stored read
 * as zeros. */
static void
test_writeout_extends (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = NULL;
  g_autofree guint8 *contents = make_pattern (PS + 904);
  g_autofree guint8 *expected = NULL;
  g_autofree guint8 *back = NULL;
  GError *error = NULL;
  gsize len;
  Mapping m;

  /* An empty new file. */
  path = g_build_filename (dir, "empty", NULL);
  mapping_setup_local_file (&m, path, PS, BIGFILE_LOCAL_FILE_FLAGS_CREATE, 4, 1 << 20);
  raw_write (m.data + 0, 0x01);
  raw_write (m.data + 2 * PS + 10, 0x02);
  g_assert_cmpint (file_size (path), ==, 0);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  mapping_teardown (&m);

  g_assert_cmpint (file_size (path), ==, 2 * PS + 11);
  expected = g_malloc0 (2 * PS + 11);
  expected[0] = 0x01;
  expected[2 * PS + 10] = 0x02;
  back = read_file (path, &len);
  g_assert_cmpmem (back, len, expected, 2 * PS + 11);
  g_clear_pointer (&back, g_free);
  g_clear_pointer (&expected, g_free);
  g_clear_pointer (&path, g_free);

  /* A file ending inside a block. */
  path = g_build_filename (dir, "short", NULL);
  write_file (path, contents, PS + 904);
  mapping_setup_local_file (&m, path, PS, BIGFILE_LOCAL_FILE_FLAGS_NONE, 4, 1 << 20);
  raw_write (m.data + 5, 0xF5);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpint (file_size (path), ==, PS + 904); /* block 0 lies within the file */
  raw_write (m.data + PS + 1000, 0xF6);
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpint (file_size (path), ==, PS + 1001);
  mapping_teardown (&m);

  expected = g_malloc0 (PS + 1001);
  memcpy (expected, contents, PS + 904);
  expected[5] = 0xF5;
  expected[PS + 1000] = 0xF6;
  back = read_file (path, &len);
  g_assert_cmpmem (back, len, expected, PS + 1001);

  temp_dir_remove (dir);
}

/* A file opened read-only can be changed in memory, but not stored: the
 * writeout fails with BIGFILE_FILE_ERROR_READ_ONLY and the changes stay. */
static void
test_read_only_store (void)
{
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "read-only", NULL);
  g_autofree guint8 *contents = make_pattern (4 * PS);
  g_autofree guint8 *back = NULL;
  GError *error = NULL;
  gsize len;
  Mapping m;

  write_file (path, contents, 4 * PS);

  mapping_setup_local_file (&m, path, PS, BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, 4, 1 << 20);
  g_assert_cmpuint (raw_read (m.data + PS + 3), ==, file_pattern (PS + 3));
  raw_write (m.data + PS + 3, 0x00);
  raw_write (m.data + 3 * PS, 0xFF);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);

  g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);

  g_assert_cmpint (bigfile_handle_get_page_state (m.handle, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (bigfile_handle_get_page_state (m.handle, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);
  g_assert_cmpuint (raw_read (m.data + PS + 3), ==, 0x00);
  g_assert_cmpuint (raw_read (m.data + 3 * PS), ==, 0xFF);

  /* The changes can still be thrown away. */
  g_assert_cmpuint (bigfile_handle_discard (m.handle), ==, 2);
  g_assert_cmpuint (raw_read (m.data + PS + 3), ==, file_pattern (PS + 3));
  mapping_teardown (&m);

  back = read_file (path, &len);
  g_assert_cmpmem (back, len, contents, 4 * PS);
  temp_dir_remove (dir);
}

/* A file five times the budget, changed all over through raw memory in 1 MiB
 * pages, written out as the budget fills with dirty pages, then compared
 * byte for byte with what was meant. */
static void
test_round_trip (void)
{
  const gsize bs = (gsize)1 << 20;
  const guint64 n_pages = 20;
  const gsize size = n_pages * bs;
  const guint64 budget = 4 * bs;
  g_autofree char *dir = temp_dir_new ();
  g_autofree char *path = g_build_filename (dir, "big", NULL);
  g_autofree guint8 *expected = make_pattern (size);
  g_autofree guint8 *back = NULL;
  GError *error = NULL;
  guint n_writeouts = 0;
  gsize len;
  Mapping m;

  write_file (path, expected, size);

  mapping_setup_local_file (&m, path, bs, BIGFILE_LOCAL_FILE_FLAGS_NONE, n_pages, budget);
  g_assert_cmpuint (bigfile_vma_get_length (m.vma), ==, size);

  for (guint64 p = 0; p < n_pages; p++)
    {
      guint8 *page = m.data + p * bs;

      /* Read-modify-write, from the first byte to the last of the page. */
      for (gsize i = p % 7; i < bs; i += 4093)
        {
          guint8 v = raw_read (page + i);

          g_assert_cmpuint (v, ==, expected[p * bs + i]);
          raw_write (page + i, v ^ 0x5A);
          expected[p * bs + i] ^= 0x5A;
        }
      raw_write (page + bs - 1, (guint8)p);
      expected[p * bs + bs - 1] = (guint8)p;

      g_assert_cmpint (bigfile_handle_get_page_state (m.handle, p), ==, BIGFILE_PAGE_STATE_DIRTY);
      g_assert_cmpuint (bigfile_ram_get_used_bytes (m.ram), <=, budget);

      /* Every page in the budget dirty: save, or the next page has no room. */
      if (bigfile_handle_get_n_dirty_pages (m.handle) == budget / bs)
        {
          g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
          g_assert_no_error (error);
          n_writeouts++;
        }
    }
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (n_writeouts, ==, n_pages / (budget / bs));
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), <=, budget / bs);

  /* Read back through the mapping (pages reload from the file)... */
  for (guint64 p = 0; p < n_pages; p++)
    g_assert_cmpuint (raw_read (m.data + p * bs + bs - 1), ==, (guint8)p);
  mapping_teardown (&m);

  /* ...and with plain I/O. */
  g_assert_cmpint (file_size (path), ==, size);
  back = read_file (path, &len);
  g_assert_cmpuint (len, ==, size);
  g_assert_true (memcmp (back, expected, size) == 0);

  temp_dir_remove (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/local-file/open/missing", test_open_missing);
  g_test_add_func ("/local-file/open/create", test_open_create);
  g_test_add_func ("/local-file/open/invalid-block-size", test_open_invalid_block_size);
  g_test_add_func ("/local-file/read-past-eof", test_read_past_eof);
  g_test_add_func ("/local-file/writeout-extends", test_writeout_extends);
  g_test_add_func ("/local-file/read-only-store", test_read_only_store);
  g_test_add_func ("/local-file/round-trip", test_round_trip);

  return g_test_run ();
}
