/* bigfile-glib tests - helpers shared by the test programs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdarg.h>

#include <glib/gstdio.h>

#include "test-util.h"

/* -- a mapped handle ---------------------------------------------------------- */

/* Takes the reference on @ram; m->file and m->shared_ram are set already. */
static void
mapping_init (Mapping *m, BigfileFile *file, BigfileRam *ram, gsize block_size, guint64 n_pages)
{
  GError *error = NULL;

  m->ps = block_size;
  m->n_pages = n_pages;
  m->ram = ram;
  m->handle = bigfile_handle_new (file, m->ram, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m->handle);
  m->vma = NULL;
  m->data = NULL;
  if (n_pages == 0)
    return;

  m->vma = bigfile_handle_map (m->handle, 0, n_pages, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m->vma);
  m->data = bigfile_vma_get_data (m->vma);
  g_assert_nonnull (m->data);
  g_assert_cmpuint (bigfile_vma_get_length (m->vma), ==, n_pages * block_size);
}

void
mapping_setup (Mapping *m, gsize block_size, guint64 n_blocks, guint64 n_pages, guint64 budget)
{
  m->file = test_mem_file_new (block_size, n_blocks);
  m->shared_ram = FALSE;
  mapping_init (m, BIGFILE_FILE (m->file), bigfile_ram_new (budget), block_size, n_pages);
}

void
mapping_setup_sized (Mapping *m, gsize block_size, guint64 size, guint64 n_pages, guint64 budget)
{
  m->file = test_mem_file_new_sized (block_size, size);
  m->shared_ram = FALSE;
  mapping_init (m, BIGFILE_FILE (m->file), bigfile_ram_new (budget), block_size, n_pages);
}

void
mapping_setup_in_ram (Mapping *m, BigfileRam *ram, gsize block_size, guint64 n_blocks,
                      guint64 n_pages)
{
  m->file = test_mem_file_new (block_size, n_blocks);
  m->shared_ram = TRUE;
  mapping_init (m, BIGFILE_FILE (m->file), g_object_ref (ram), block_size, n_pages);
}

void
mapping_setup_local_file (Mapping *m, const char *path, gsize block_size,
                          BigfileLocalFileFlags flags, guint64 n_pages, guint64 budget)
{
  GError *error = NULL;
  g_autoptr (BigfileLocalFile) file = bigfile_local_file_new (path, block_size, flags, &error);

  g_assert_no_error (error);
  g_assert_nonnull (file);
  /* The handle keeps the file. */
  m->file = NULL;
  m->shared_ram = FALSE;
  mapping_init (m, BIGFILE_FILE (file), bigfile_ram_new (budget), block_size, n_pages);
}

void
assert_engine_invariants (BigfileHandle *handle, gboolean kernel)
{
  g_autofree char *broken = _bigfile_handle_check (handle, kernel);

  if (broken != NULL)
    g_error ("engine invariants do not hold: %s", broken);
}

void
mapping_teardown (Mapping *m)
{
  /* Whatever the test did, every rule of the engine still holds, down to
   * what the kernel maps (the test's threads are gone by now). */
  assert_engine_invariants (m->handle, TRUE);

  /* The hooks' data is usually on the test's stack. */
  if (m->file != NULL)
    {
      test_mem_file_set_load_hook (m->file, NULL, NULL);
      test_mem_file_set_store_hook (m->file, NULL, NULL);
    }
  if (m->vma != NULL)
    {
      bigfile_vma_unmap (m->vma);
      g_clear_object (&m->vma);
    }
  m->data = NULL;
  g_assert_true (bigfile_handle_close (m->handle));
  /* Closing drops every page of the handle, dirty or not: in a RAM of its
   * own, none is left. */
  if (!m->shared_ram)
    g_assert_cmpuint (bigfile_ram_get_n_pages (m->ram), ==, 0);
  g_clear_object (&m->handle);
  g_clear_object (&m->ram);
  g_clear_object (&m->file);
}

BigfilePageState
page_state (Mapping *m, guint64 page)
{
  return bigfile_handle_get_page_state (m->handle, page);
}

G_NO_INLINE guint8
raw_read (const guint8 *p)
{
  return *(const volatile guint8 *)p;
}

G_NO_INLINE void
raw_write (guint8 *p, guint8 value)
{
  *(volatile guint8 *)p = value;
}

void
assert_store_log (TestMemFile *file, const guint64 *blocks, guint n_blocks)
{
  GArray *log = test_mem_file_get_store_log (file);

  g_assert_cmpuint (log->len, ==, n_blocks);
  for (guint i = 0; i < n_blocks; i++)
    g_assert_cmpuint (g_array_index (log, guint64, i), ==, blocks[i]);
}

/* -- an operation log for failure reports ------------------------------------ */

void
test_op_log_add (TestOpLog *log, const char *format, ...)
{
  guint slot = log->n_logged++ % TEST_OP_LOG_SIZE;
  va_list args;

  va_start (args, format);
  g_free (log->entries[slot]);
  log->entries[slot] = g_strdup_vprintf (format, args);
  va_end (args);
}

void
test_op_log_dump (TestOpLog *log)
{
  g_test_message ("The last operations, oldest first:");
  for (guint i = 0; i < TEST_OP_LOG_SIZE; i++)
    {
      const char *op = log->entries[(log->n_logged + i) % TEST_OP_LOG_SIZE];

      if (op != NULL)
        g_test_message ("  %s", op);
    }
}

void
test_op_log_clear (TestOpLog *log)
{
  for (guint i = 0; i < TEST_OP_LOG_SIZE; i++)
    g_clear_pointer (&log->entries[i], g_free);
  log->n_logged = 0;
}

/* -- temporary files ---------------------------------------------------------- */

char *
temp_dir_new (void)
{
  g_autofree char *program = g_path_get_basename (g_get_prgname ());
  g_autofree char *tmpl = g_strdup_printf ("bigfile-%s-XXXXXX", program);
  GError *error = NULL;
  char *dir = g_dir_make_tmp (tmpl, &error);

  g_assert_no_error (error);
  return dir;
}

void
temp_dir_remove (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;

  g_assert_nonnull (d);
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      g_assert_cmpint (g_remove (path), ==, 0);
    }
  g_dir_close (d);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

void
write_file (const char *path, const guint8 *data, gsize len)
{
  GError *error = NULL;

  g_assert_true (g_file_set_contents (path, (const char *)data, (gssize)len, &error));
  g_assert_no_error (error);
}

guint8 *
read_file (const char *path, gsize *len)
{
  GError *error = NULL;
  char *contents = NULL;

  g_assert_true (g_file_get_contents (path, &contents, len, &error));
  g_assert_no_error (error);
  return (guint8 *)contents;
}
