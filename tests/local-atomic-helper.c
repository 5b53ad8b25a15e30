/* bigfile-glib tests - the child of test-local-atomic's crash tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   local-atomic-helper write PATH FLAGS N_BLOCKS BLOCK_SIZE HOW [POINT N]
 *       Opens PATH as a BigfileLocalFile (FLAGS: words joined by '+' of
 *       plain, atomic, durable, map) and saves version after version of it
 *       (local-atomic-common.h), from the one it holds, for ever: HOW is
 *       "file" (bigfile_file_begin_transaction(), set_size, stores, commit)
 *       or "handle" (a mapping written with memcpy, then
 *       bigfile_handle_writeout()).  Prints "ready" once the first save is
 *       done, so that a kill after it lands among saves, not in the setup.
 *   local-atomic-helper recover PATH FLAGS [POINT N]
 *       Opens PATH (which recovers its journal) and prints what the open
 *       recovered: none, applied or discarded.
 *   local-atomic-helper hold PATH FLAGS
 *       Opens PATH, prints "ready", and keeps it open until stdin closes.
 *
 * With POINT N, the program kills itself with SIGKILL right before the Nth
 * step named POINT of a commit or a recovery (bf_journal_set_fault_hook()),
 * as a kill -9 at that exact moment would; if that step has not come after
 * a few saves, it exits with status 3 instead of saving for ever.  It is a separate program, run
 * with exec, so that it is killed with no GLib thread of the test's in it.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bigfile-private.h"
#include "bigfile-local-journal.h"
#include "local-atomic-common.h"

static const char *crash_point;
static guint crash_count;

static int
crash_hook (const char *point, gpointer user_data)
{
  if (g_str_equal (point, crash_point) && --crash_count == 0)
    kill (getpid (), SIGKILL);
  return 0;
}

static BigfileLocalFileFlags
parse_flags (const char *text)
{
  g_auto (GStrv) words = g_strsplit (text, "+", -1);
  BigfileLocalFileFlags flags = BIGFILE_LOCAL_FILE_FLAGS_NONE;

  for (guint i = 0; words[i] != NULL; i++)
    {
      if (g_str_equal (words[i], "atomic"))
        flags |= BIGFILE_LOCAL_FILE_FLAGS_ATOMIC;
      else if (g_str_equal (words[i], "durable"))
        flags |= BIGFILE_LOCAL_FILE_FLAGS_DURABLE;
      else if (g_str_equal (words[i], "map"))
        flags |= BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES;
      else if (g_str_equal (words[i], "ro"))
        flags |= BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY;
      else if (!g_str_equal (words[i], "plain"))
        g_error ("unknown flag %s", words[i]);
    }
  return flags;
}

static G_GNUC_NORETURN void
fail (const char *what, GError *error)
{
  fprintf (stderr, "local-atomic-helper: %s: %s\n", what, error != NULL ? error->message : "");
  exit (1);
}

/* The version the file holds (0 for an empty one). */
static guint64
current_version (BigfileFile *file)
{
  GError *error = NULL;
  GBytes *block = bigfile_file_load_block (file, 0, &error);
  guint64 v;

  if (block == NULL)
    fail ("load", error);
  memcpy (&v, g_bytes_get_data (block, NULL), 8);
  g_bytes_unref (block);
  return GUINT64_FROM_LE (v);
}

static void
say_ready (void)
{
  printf ("ready\n");
  fflush (stdout);
}

/* Called after each save. */
static void
saved (guint64 v, guint64 first)
{
  if (v == first)
    say_ready ();
  if (crash_point != NULL && v - first >= 4)
    {
      fprintf (stderr, "local-atomic-helper: %s never came\n", crash_point);
      exit (3);
    }
}

static G_GNUC_NORETURN void
write_with_file (BigfileFile *file, guint64 n_blocks, gsize bs)
{
  guint8 *buf = g_malloc (bs);
  GError *error = NULL;

  guint64 first = current_version (file) + 1;

  for (guint64 v = first;; v++)
    {
      guint64 size = version_size (v, n_blocks, bs);

      if (!bigfile_file_begin_transaction (file, &error))
        fail ("begin", error);
      if (!bigfile_file_set_size (file, size, &error))
        fail ("set_size", error);
      for (guint64 b = 0; b * bs < size; b++)
        {
          gsize len = MIN (bs, size - b * bs);

          version_fill (buf, v, b, len);
          if (!bigfile_file_store_block_raw (file, b, buf, len, &error))
            fail ("store", error);
        }
      if (!bigfile_file_commit_transaction (file, BIGFILE_COMMIT_FLAGS_NONE, &error))
        fail ("commit", error);
      saved (v, first);
    }
}

static G_GNUC_NORETURN void
write_with_handle (BigfileFile *file, guint64 n_blocks, gsize bs)
{
  BigfileRam *ram = bigfile_ram_new (2 * n_blocks * bs);
  GError *error = NULL;
  BigfileHandle *handle = bigfile_handle_new (file, ram, &error);
  BigfileVma *vma;
  guint8 *data;

  if (handle == NULL)
    fail ("handle", error);
  vma = bigfile_handle_map (handle, 0, n_blocks, &error);
  if (vma == NULL)
    fail ("map", error);
  data = bigfile_vma_get_data (vma);

  guint64 first = current_version (file) + 1;

  for (guint64 v = first;; v++)
    {
      guint64 size = version_size (v, n_blocks, bs);

      if (!bigfile_handle_set_size (handle, size, &error))
        fail ("set_size", error);
      for (guint64 b = 0; b * bs < size; b++)
        version_fill (data + b * bs, v, b, MIN (bs, size - b * bs));
      if (!bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error))
        fail ("writeout", error);
      saved (v, first);
    }
}

int
main (int argc, char **argv)
{
  const char *mode, *path;
  BigfileLocalFile *file;
  GError *error = NULL;
  int point_arg;

  if (argc < 4)
    {
      fprintf (stderr, "usage: see local-atomic-helper.c\n");
      return 2;
    }
  mode = argv[1];
  path = argv[2];
  point_arg = g_str_equal (mode, "write") ? 7 : 4;
  if (argc >= point_arg + 2)
    {
      crash_point = argv[point_arg];
      crash_count = (guint)g_ascii_strtoull (argv[point_arg + 1], NULL, 10);
      bf_journal_set_fault_hook (crash_hook, NULL);
    }

  file = bigfile_local_file_new (path,
                                 g_str_equal (mode, "write") ? strtoul (argv[5], NULL, 10) : 4096,
                                 parse_flags (argv[3]), &error);
  if (file == NULL)
    fail ("open", error);

  if (g_str_equal (mode, "recover"))
    {
      static const char *const names[] = { "none", "applied", "discarded" };

      printf ("%s\n", names[bigfile_local_file_get_recovery (file)]);
      g_object_unref (file);
      return 0;
    }

  if (g_str_equal (mode, "hold"))
    {
      say_ready ();
      char c;

      while (read (0, &c, 1) > 0)
        ;
      g_object_unref (file);
      return 0;
    }

  if (argc < 7)
    {
      fprintf (stderr, "usage: see local-atomic-helper.c\n");
      return 2;
    }
  if (g_str_equal (argv[6], "handle"))
    write_with_handle (BIGFILE_FILE (file), g_ascii_strtoull (argv[4], NULL, 10),
                       strtoul (argv[5], NULL, 10));
  write_with_file (BIGFILE_FILE (file), g_ascii_strtoull (argv[4], NULL, 10),
                   strtoul (argv[5], NULL, 10));
}
