/* bigfile-glib demo: use a file several times bigger than the RAM budget as memory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * What it does, printing each step and the RAM figures along the way:
 *
 *   1. writes a data file (64 MiB by default) with a deterministic pattern,
 *      using plain write();
 *   2. opens it as a BigfileLocalFile (2 MiB blocks), gives it a BigfileRam
 *      with a budget of 8 MiB (4 pages: an eighth of the file) and a
 *      BigfileHandle, and maps the whole file;
 *   3. reads the mapping as ordinary memory and checks the pattern: each
 *      first touch of a page faults, and the library loads the block,
 *      dropping clean pages to stay within the budget;
 *   4. adds 1 to one byte in every 4 KiB through the same memory: each page
 *      written becomes dirty.  Dirty pages cannot be dropped to make room,
 *      so whenever they fill half the budget it saves them with
 *      bigfile_handle_writeout(), as a program editing a big file would;
 *   5. writes out the last dirty pages, unmaps and closes the handle;
 *   6. checks the file on disk with plain read().
 *
 * Exit status: 0 when every byte is as expected, 1 on a mismatch or an
 * error, 2 on a bad command line.
 *
 * It uses only the public API.
 */
#include <bigfile-glib/bigfile.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <locale.h>

#define KIB ((guint64)1024)
#define MIB (1024 * KIB)

/* One counter byte is changed in each piece of this size. */
#define EDIT_STRIDE (4 * KIB)

/* Chunk size for the plain read() and write() of the file. */
#define IO_CHUNK (1 * MIB)

typedef struct
{
  BigfileRam *ram;
  BigfileHandle *handle;
  guint64 budget;
  guint64 max_used; /* highest used_bytes seen */
} Demo;

/* The pattern: a 64-bit word per 8 bytes, a splitmix64 hash of the word's
 * index, stored little-endian so the file is the same on every host.  Every
 * page differs from every other, so a page loaded from the wrong block, or
 * stale bytes, cannot go unnoticed. */
static guint64
pattern_word (guint64 index)
{
  guint64 z = index + G_GUINT64_CONSTANT (0x9e3779b97f4a7c15);

  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  return GUINT64_TO_LE (z ^ (z >> 31));
}

/* Fills @buf, @len bytes (a multiple of 8), with the pattern as it is at
 * byte @offset of the file (a multiple of 8); with @edited, as it is after
 * step 4, with the first byte of each EDIT_STRIDE incremented. */
static void
fill_expected (guint8 *buf, guint64 offset, gsize len, gboolean edited)
{
  for (gsize i = 0; i < len; i += 8)
    {
      guint64 w = pattern_word ((offset + i) / 8);
      memcpy (buf + i, &w, 8);
    }
  if (edited)
    {
      for (gsize i = 0; i < len; i++)
        if ((offset + i) % EDIT_STRIDE == 0)
          buf[i]++;
    }
}

/* Reports where @data and @expected first differ, if they do. */
static gboolean
check_bytes (const char *what, const guint8 *data, const guint8 *expected, guint64 offset,
             gsize len)
{
  if (memcmp (data, expected, len) == 0)
    return TRUE;

  for (gsize i = 0; i < len; i++)
    if (data[i] != expected[i])
      {
        g_printerr ("MISMATCH (%s) at byte %" G_GUINT64_FORMAT ": got 0x%02x, expected 0x%02x\n",
                    what, offset + i, data[i], expected[i]);
        break;
      }
  return FALSE;
}

/* Like g_format_size(), but in plain ASCII whatever the locale. */
static char *
format_size (guint64 bytes)
{
  if (bytes >= MIB)
    return g_strdup_printf ("%.1f MiB", (double)bytes / MIB);
  if (bytes >= KIB)
    return g_strdup_printf ("%.1f KiB", (double)bytes / KIB);
  return g_strdup_printf ("%" G_GUINT64_FORMAT " bytes", bytes);
}

static double
rate_mib_s (guint64 bytes, gint64 usec)
{
  return usec > 0 ? (double)bytes / MIB / ((double)usec / G_USEC_PER_SEC) : 0.0;
}

/* Prints the RAM figures, and remembers the highest use seen. */
static void
report_ram (Demo *demo, const char *when)
{
  guint64 used = bigfile_ram_get_used_bytes (demo->ram);
  g_autofree char *used_str = format_size (used);
  g_autofree char *budget_str = format_size (demo->budget);

  demo->max_used = MAX (demo->max_used, used);
  g_print ("    [ram] %-28s budget %s, used %s in %" G_GUINT64_FORMAT " pages, "
           "%" G_GUINT64_FORMAT " dirty\n",
           when, budget_str, used_str, bigfile_ram_get_n_pages (demo->ram),
           bigfile_ram_get_n_dirty_pages (demo->ram));
}

/* Step 1: writes the file with the pattern, by plain write(). */
static gboolean
generate_file (const char *path, guint64 size, GError **error)
{
  g_autofree guint8 *chunk = g_malloc (IO_CHUNK);
  int fd = g_open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  if (fd < 0)
    {
      int saved_errno = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "Cannot create %s: %s",
                   path, g_strerror (saved_errno));
      return FALSE;
    }

  for (guint64 offset = 0; offset < size; offset += IO_CHUNK)
    {
      gsize len = MIN (IO_CHUNK, size - offset);

      fill_expected (chunk, offset, len, FALSE);
      for (gsize done = 0; done < len;)
        {
          gssize n = write (fd, chunk + done, len - done);
          if (n < 0 && errno == EINTR)
            continue;
          if (n < 0)
            {
              int saved_errno = errno;
              g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                           "Cannot write %s at byte %" G_GUINT64_FORMAT ": %s", path, offset + done,
                           g_strerror (saved_errno));
              close (fd);
              return FALSE;
            }
          done += n;
        }
    }

  if (fsync (fd) != 0 || close (fd) != 0)
    {
      int saved_errno = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "Cannot save %s: %s",
                   path, g_strerror (saved_errno));
      return FALSE;
    }
  return TRUE;
}

/* Step 3: reads the whole mapping as memory and checks the pattern. */
static gboolean
verify_mapping (Demo *demo, const guint8 *data, guint64 size, gsize page_size)
{
  g_autofree guint8 *expected = g_malloc (page_size);
  guint64 report_every = MAX (size / page_size / 4, 1); /* pages: four reports */
  gboolean ok = TRUE;

  for (guint64 offset = 0; offset < size; offset += page_size)
    {
      /* The first read of data[offset] faults the page in. */
      fill_expected (expected, offset, page_size, FALSE);
      if (!check_bytes ("mapping", data + offset, expected, offset, page_size))
        ok = FALSE;

      if ((offset / page_size + 1) % report_every == 0)
        {
          g_autofree char *when
              = g_strdup_printf ("read %" G_GUINT64_FORMAT " MiB:", (offset + page_size) / MIB);
          report_ram (demo, when);
        }
    }
  return ok;
}

/* Step 4: changes a byte in every EDIT_STRIDE, saving as dirty pages pile up. */
static gboolean
edit_mapping (Demo *demo, guint8 *data, guint64 size, gsize page_size, GError **error)
{
  /* Save when dirty pages fill half of the budget, so that the other half
   * stays free for pages being read and written. */
  guint64 max_dirty = MAX (demo->budget / 2 / page_size, 1);
  guint n_writeouts = 0;

  for (guint64 offset = 0; offset < size; offset += page_size)
    {
      if (bigfile_handle_get_n_dirty_pages (demo->handle) >= max_dirty)
        {
          n_writeouts++;
          if ((n_writeouts & (n_writeouts - 1)) == 0) /* 1, 2, 4, 8...: not every one */
            {
              g_autofree char *when = g_strdup_printf ("before writeout %u:", n_writeouts);
              report_ram (demo, when);
            }
          if (!bigfile_handle_writeout (demo->handle, BIGFILE_WRITEOUT_DEFAULT, error))
            return FALSE;
        }

      for (gsize i = 0; i < page_size; i += EDIT_STRIDE)
        data[offset + i]++; /* the first write of a page faults: the page becomes dirty */
    }

  g_print ("    changed %" G_GUINT64_FORMAT " bytes in %" G_GUINT64_FORMAT " pages, "
           "%u writeouts on the way\n",
           size / EDIT_STRIDE, size / page_size, n_writeouts);
  return TRUE;
}

/* Step 5: reads the file back with plain read() and checks every byte. */
static gboolean
verify_file (const char *path, guint64 size, GError **error)
{
  g_autofree guint8 *chunk = g_malloc (IO_CHUNK);
  g_autofree guint8 *expected = g_malloc (IO_CHUNK);
  gboolean ok = TRUE;
  guint64 offset = 0;
  int fd = g_open (path, O_RDONLY | O_CLOEXEC, 0);

  if (fd < 0)
    {
      int saved_errno = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "Cannot open %s: %s",
                   path, g_strerror (saved_errno));
      return FALSE;
    }

  while (ok)
    {
      gsize len = 0;

      while (len < IO_CHUNK)
        {
          gssize n = read (fd, chunk + len, IO_CHUNK - len);
          if (n < 0 && errno == EINTR)
            continue;
          if (n < 0)
            {
              int saved_errno = errno;
              g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                           "Cannot read %s at byte %" G_GUINT64_FORMAT ": %s", path, offset + len,
                           g_strerror (saved_errno));
              close (fd);
              return FALSE;
            }
          if (n == 0)
            break;
          len += n;
        }
      if (len == 0)
        break;

      if (offset + len > size || len % 8 != 0)
        {
          g_printerr ("MISMATCH (file): the file grew past %" G_GUINT64_FORMAT " bytes\n", size);
          ok = FALSE;
          break;
        }
      fill_expected (expected, offset, len, TRUE);
      ok = check_bytes ("file", chunk, expected, offset, len);
      offset += len;
    }
  close (fd);

  if (ok && offset != size)
    {
      g_printerr ("MISMATCH (file): %" G_GUINT64_FORMAT
                  " bytes on disk, expected %" G_GUINT64_FORMAT "\n",
                  offset, size);
      ok = FALSE;
    }
  return ok;
}

static void
print_step (const char *text, gint64 start_usec, guint64 bytes)
{
  gint64 usec = g_get_monotonic_time () - start_usec;

  if (bytes > 0)
    g_print ("    %s in %.1f ms (%.0f MiB/s)\n", text, usec / 1000.0, rate_mib_s (bytes, usec));
  else
    g_print ("    %s in %.1f ms\n", text, usec / 1000.0);
}

/* Steps 2 to 6.  Returns FALSE with @error set on an error, FALSE with
 * @error unset on a mismatch (already printed). */
static gboolean
run_demo (const char *path, guint64 size, gsize block_size, guint64 budget, GError **error)
{
  g_autoptr (BigfileLocalFile) file = NULL;
  g_autoptr (BigfileRam) ram = NULL;
  g_autoptr (BigfileHandle) handle = NULL;
  g_autoptr (BigfileVma) vma = NULL;
  g_autofree char *budget_str = format_size (budget);
  g_autofree char *size_str = format_size (size);
  Demo demo = { 0 };
  gsize page_size;
  guint8 *data;
  gint64 start;
  gboolean ok;

  g_print ("2. open it: BigfileLocalFile + BigfileRam (budget %s) + BigfileHandle, map it all\n",
           budget_str);
  file = bigfile_local_file_new (path, block_size, BIGFILE_LOCAL_FILE_FLAGS_NONE, error);
  if (file == NULL)
    return FALSE;
  ram = bigfile_ram_new (budget);
  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, error);
  if (handle == NULL)
    return FALSE;

  page_size = bigfile_handle_get_page_size (handle);
  vma = bigfile_handle_map (handle, 0, size / page_size, error);
  if (vma == NULL)
    return FALSE;
  data = bigfile_vma_get_data (vma);

  demo.ram = ram;
  demo.handle = handle;
  demo.budget = budget;
  g_print ("    %s mapped at %p: %" G_GUINT64_FORMAT " pages of %" G_GSIZE_FORMAT
           " KiB, the budget holds %" G_GUINT64_FORMAT "\n",
           size_str, (void *)data, size / page_size, page_size / KIB, budget / page_size);
  report_ram (&demo, "after map:");

  g_print ("3. read all of it through memory and check the pattern\n");
  start = g_get_monotonic_time ();
  ok = verify_mapping (&demo, data, size, page_size);
  print_step (ok ? "pattern OK" : "pattern WRONG", start, size);
  if (!ok)
    return FALSE;

  g_print ("4. add 1 to a byte in every %" G_GUINT64_FORMAT " KiB through memory, "
           "writing out as dirty pages pile up\n",
           EDIT_STRIDE / KIB);
  start = g_get_monotonic_time ();
  if (!edit_mapping (&demo, data, size, page_size, error))
    return FALSE;
  print_step ("edited", start, size);

  g_print ("5. bigfile_handle_writeout (BIGFILE_WRITEOUT_DEFAULT), unmap, close\n");
  report_ram (&demo, "before last writeout:");
  start = g_get_monotonic_time ();
  if (!bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, error))
    return FALSE;
  print_step ("written out", start, 0);
  report_ram (&demo, "after writeout:");
  if (bigfile_handle_get_n_dirty_pages (handle) != 0)
    {
      g_printerr ("MISMATCH: %" G_GUINT64_FORMAT " pages still dirty after writeout\n",
                  bigfile_handle_get_n_dirty_pages (handle));
      return FALSE;
    }

  bigfile_vma_unmap (vma);
  if (!bigfile_handle_close (handle))
    {
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_BUSY,
                   "bigfile_handle_close() refused to close %s", path);
      return FALSE;
    }
  g_print ("    handle closed\n");

  /* The point of the budget: the file never needed more RAM than it. */
  {
    g_autofree char *max_str = format_size (demo.max_used);
    g_print ("    highest RAM use seen: %s (budget %s) for a %s file\n", max_str, budget_str,
             size_str);
  }
  if (demo.max_used > budget)
    {
      g_printerr ("MISMATCH: RAM use went over the budget\n");
      return FALSE;
    }

  g_print ("6. check the file on disk with plain read()\n");
  start = g_get_monotonic_time ();
  if (!verify_file (path, size, error))
    return FALSE;
  print_step ("file OK", start, size);
  return TRUE;
}

int
main (int argc, char **argv)
{
  gint64 size_mib = 64;
  gint64 block_kib = 2048;
  gint64 budget_mib = 8;
  g_autofree char *tmp_dir = NULL;
  g_autofree char *path = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GOptionContext) context = NULL;
  g_autofree char *size_str = NULL;
  gboolean ok;
  gint64 start;
  const GOptionEntry entries[] = {
    { "size", 's', 0, G_OPTION_ARG_INT64, &size_mib, "Size of the data file in MiB (64)", "MIB" },
    { "block", 'b', 0, G_OPTION_ARG_INT64, &block_kib, "Block (page) size in KiB (2048)", "KIB" },
    { "budget", 'r', 0, G_OPTION_ARG_INT64, &budget_mib, "RAM budget in MiB (8)", "MIB" },
    { NULL }
  };

  setlocale (LC_ALL, "");
  context = g_option_context_new ("[FILE] - use a file bigger than the RAM budget as memory");
  g_option_context_set_description (
      context, "FILE is created (or overwritten) with the test pattern and "
               "kept.\nWithout it, a temporary directory is used and removed.");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }
  if (argc > 2 || size_mib <= 0 || block_kib <= 0 || budget_mib <= 0
      || ((guint64)size_mib * MIB) % ((guint64)block_kib * KIB) != 0)
    {
      g_printerr ("Bad arguments: the size must be a multiple of the block size. See --help.\n");
      return 2;
    }

  if (argc == 2)
    path = g_strdup (argv[1]);
  else
    {
      tmp_dir = g_dir_make_tmp ("bigfile-demo-XXXXXX", &error);
      if (tmp_dir == NULL)
        {
          g_printerr ("Cannot make a temporary directory: %s\n", error->message);
          return 1;
        }
      path = g_build_filename (tmp_dir, "demo.data", NULL);
    }

  size_str = format_size ((guint64)size_mib * MIB);
  g_print ("bigfile-glib demo: a %s file as memory, with a RAM budget of %" G_GINT64_FORMAT
           " MiB\n",
           size_str, budget_mib);
  g_print ("1. write %s with a test pattern (plain write())\n", path);
  start = g_get_monotonic_time ();
  ok = generate_file (path, (guint64)size_mib * MIB, &error);
  if (ok)
    {
      print_step ("written", start, (guint64)size_mib * MIB);
      ok = run_demo (path, (guint64)size_mib * MIB, (gsize)block_kib * KIB,
                     (guint64)budget_mib * MIB, &error);
    }

  if (tmp_dir != NULL)
    {
      g_unlink (path);
      g_rmdir (tmp_dir);
    }

  if (error != NULL)
    g_printerr ("ERROR: %s\n", error->message);
  g_print ("%s\n", ok ? "demo: SUCCESS, every byte as expected" : "demo: FAILED");
  return ok ? 0 : 1;
}
