/* bigfile-glib tests - the writer that test-crash kills
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   crash-writer BACKEND LOCATION N_PAGES FIRST_VERSION handle|file [durable]
 *
 * Opens the storage at LOCATION with the backend of test-backends.c named
 * BACKEND and writes version after version of its first N_PAGES blocks,
 * from FIRST_VERSION on: every block of version V holds TEST_VAL (V, block).
 * "handle" writes the pages of a handle and writes them out; "file" stores
 * the blocks itself, in one transaction per version. It prints "ready" once
 * open; then for each line it reads on stdin, it prints "start V", writes
 * version V and prints "committed V" once it is written out (the writeout
 * or the commit returned), so that the test knows when a version starts
 * and can kill it at a chosen moment of one. It ends at the end of stdin, or when its
 * parent dies.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "test-backends.h"

static G_NORETURN void
fail (const char *what, GError *error)
{
  fprintf (stderr, "crash-writer: %s: %s\n", what, error != NULL ? error->message : "failed");
  exit (1);
}

static void
fill (guint8 *buffer, gsize length, guint64 value)
{
  for (gsize i = 0; i + 8 <= length; i += 8)
    memcpy (buffer + i, &value, 8);
}

int
main (int argc, char **argv)
{
  const TestBackend *backend;
  BigfileFile *file;
  guint64 n_pages;
  guint version;
  gboolean use_handle, durable;
  gsize bs = 4096;
  g_autofree guint8 *buffer = NULL;
  BigfileRam *ram = NULL;
  BigfileHandle *handle = NULL;
  BigfileVma *vma = NULL;
  GError *error = NULL;
  char line[64];

  if (argc < 6 || (strcmp (argv[5], "handle") != 0 && strcmp (argv[5], "file") != 0))
    {
      fprintf (stderr, "usage: crash-writer BACKEND LOCATION N_PAGES FIRST_VERSION handle|file "
                       "[durable]\n");
      return 2;
    }
  /* No writer outlives the test that spawned it. */
  prctl (PR_SET_PDEATHSIG, SIGKILL);

  backend = test_backends_lookup (argv[1]);
  if (backend == NULL)
    {
      fprintf (stderr, "crash-writer: no backend %s\n", argv[1]);
      return 2;
    }
  n_pages = g_ascii_strtoull (argv[3], NULL, 10);
  version = (guint)g_ascii_strtoull (argv[4], NULL, 10);
  use_handle = strcmp (argv[5], "handle") == 0;
  durable = argc > 6 && strcmp (argv[6], "durable") == 0;

  file = backend->open (argv[2], bs, &error);
  if (file == NULL)
    fail ("open", error);
  buffer = g_malloc (bs);
  if (use_handle)
    {
      ram = bigfile_ram_new (MAX (n_pages * 2 * bs, (guint64)1 << 20));
      handle = bigfile_handle_new (file, ram, &error);
      if (handle == NULL)
        fail ("bigfile_handle_new", error);
      vma = bigfile_handle_map (handle, 0, n_pages, &error);
      if (vma == NULL)
        fail ("bigfile_handle_map", error);
    }
  printf ("ready\n");
  fflush (stdout);

  for (; fgets (line, sizeof line, stdin) != NULL; version++)
    {
      printf ("start %u\n", version);
      fflush (stdout);
      if (use_handle)
        {
          for (guint64 p = 0; p < n_pages; p++)
            {
              g_autoptr (GBytes) bytes = NULL;

              fill (buffer, bs, TEST_VAL (version, p));
              bytes = g_bytes_new (buffer, bs);
              if (!bigfile_vma_write (vma, p * bs, bytes, &error))
                fail ("bigfile_vma_write", error);
            }
          if (!bigfile_handle_writeout (
                  handle, BIGFILE_WRITEOUT_DEFAULT | (durable ? BIGFILE_WRITEOUT_DURABLE : 0),
                  &error))
            fail ("bigfile_handle_writeout", error);
        }
      else
        {
          guint64 size = 0;

          if (!bigfile_file_begin_transaction (file, &error))
            fail ("begin_transaction", error);
          if (backend->has_size)
            {
              if (!bigfile_file_get_size (file, &size, &error) && error != NULL)
                fail ("get_size", error);
              if (size < n_pages * bs && !bigfile_file_set_size (file, n_pages * bs, &error))
                fail ("set_size", error);
            }
          for (guint64 p = 0; p < n_pages; p++)
            {
              fill (buffer, bs, TEST_VAL (version, p));
              if (!bigfile_file_store_block_raw (file, p, buffer, bs, &error))
                fail ("store_block_raw", error);
            }
          if (!bigfile_file_commit_transaction (
                  file, durable ? BIGFILE_COMMIT_FLAGS_DURABLE : BIGFILE_COMMIT_FLAGS_NONE, &error))
            fail ("commit_transaction", error);
        }
      printf ("committed %u\n", version);
      fflush (stdout);
    }

  if (handle != NULL)
    {
      bigfile_vma_unmap (vma);
      g_object_unref (vma);
      bigfile_handle_close (handle);
      g_object_unref (handle);
      g_object_unref (ram);
    }
  g_object_unref (file);
  return 0;
}
