/* shared-edit: two clients of one SQLite database, as two processes would be
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Client A and client B each open the bigfile "notes" of one database (the
 * path given, or a temporary one) with bigfile_sqlite_file_new(): each is a
 * snapshot of the storage, with its own handle and mapping.  The program
 *
 *   1. writes page 3 in A and writes it out: one atomic, durable commit;
 *   2. runs B's main loop until B's handle emits page-invalidated for
 *      page 3 (B's file saw A's commit), and reads A's data through B;
 *   3. writes page 5 in both; B writes out first, so A's writeout fails
 *      with BIGFILE_HANDLE_ERROR_CONFLICT, naming page 5, and stores
 *      nothing; A's change is still in memory;
 *   4. A resolves it: with --overwrite it writes out again with
 *      BIGFILE_WRITEOUT_OVERWRITE (A's data wins), else it discards its
 *      page and reads B's.
 *
 * Exits 0 when every step went as described.  Swap the two constructors for
 * bigfile_pg_file_new ("dbname=...", "notes", ...) and the same program runs
 * against PostgreSQL, with clients on different hosts.
 */
#include <bigfile-glib/bigfile.h>

#include <glib/gstdio.h>
#include <string.h>

#define BLOCK_SIZE (64 * 1024)
#define N_PAGES 16

typedef struct
{
  BigfileFile *file;
  BigfileHandle *handle;
  BigfileVma *vma;
  guint8 *data;
} Client;

static gboolean
client_open (Client *c, const char *path, BigfileRam *ram, GError **error)
{
  c->file = BIGFILE_FILE (
      bigfile_sqlite_file_new (path, "notes", BLOCK_SIZE, BIGFILE_SQLITE_FILE_FLAGS_CREATE, error));
  if (c->file == NULL)
    return FALSE;
  c->handle = bigfile_handle_new (c->file, ram, error);
  if (c->handle == NULL)
    return FALSE;
  c->vma = bigfile_handle_map (c->handle, 0, N_PAGES, error);
  if (c->vma == NULL)
    return FALSE;
  c->data = bigfile_vma_get_data (c->vma);
  return TRUE;
}

static void
client_close (Client *c)
{
  if (c->vma != NULL)
    bigfile_vma_unmap (c->vma);
  g_clear_object (&c->vma);
  g_clear_object (&c->handle);
  g_clear_object (&c->file);
}

static void
on_invalidated (BigfileHandle *handle, guint64 page, gpointer user_data)
{
  gboolean *seen = user_data;

  g_print ("B: page %" G_GUINT64_FORMAT " changed in the storage\n", page);
  if (page == 3)
    *seen = TRUE;
}

static gboolean
on_timeout (gpointer user_data)
{
  g_printerr ("B never heard of A's commit\n");
  *(gboolean *)user_data = TRUE;
  return G_SOURCE_REMOVE;
}

int
main (int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (BigfileRam) ram = bigfile_ram_new (8 * BLOCK_SIZE * 2);
  g_autofree char *dir = NULL, *path = NULL;
  gboolean overwrite = argc > 1 && strcmp (argv[argc - 1], "--overwrite") == 0;
  gboolean seen = FALSE, timed_out = FALSE;
  Client a = { 0 }, b = { 0 };
  int status = 1;

  if (argc > 1 && argv[1][0] != '-')
    path = g_strdup (argv[1]);
  else
    {
      dir = g_dir_make_tmp ("shared-edit-XXXXXX", &error);
      if (dir == NULL)
        goto out;
      path = g_build_filename (dir, "notes.db", NULL);
    }

  if (!client_open (&a, path, ram, &error) || !client_open (&b, path, ram, &error))
    goto out;
  g_signal_connect (b.handle, "page-invalidated", G_CALLBACK (on_invalidated), &seen);
  /* B reads page 3 first, so that it has a copy for A's commit to replace. */
  g_print ("B: page 3 starts with %d\n", b.data[3 * BLOCK_SIZE]);

  /* 1. A changes page 3 and saves: one commit, all or nothing. */
  memcpy (a.data + 3 * BLOCK_SIZE, "hello from A", 12);
  if (!bigfile_handle_writeout (a.handle, BIGFILE_WRITEOUT_DEFAULT, &error))
    goto out;
  g_print ("A: saved page 3\n");

  /* 2. B's main loop hears of it. */
  g_timeout_add_seconds (10, on_timeout, &timed_out);
  while (!seen && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!seen || memcmp (b.data + 3 * BLOCK_SIZE, "hello from A", 12) != 0)
    goto out;
  g_print ("B: page 3 says \"%.12s\"\n", (const char *)b.data + 3 * BLOCK_SIZE);

  /* 3. Both change page 5; B saves first. */
  memcpy (a.data + 5 * BLOCK_SIZE, "A's line", 8);
  memcpy (b.data + 5 * BLOCK_SIZE, "B's line", 8);
  if (!bigfile_handle_writeout (b.handle, BIGFILE_WRITEOUT_DEFAULT, &error))
    goto out;
  if (bigfile_handle_writeout (a.handle, BIGFILE_WRITEOUT_DEFAULT, &error)
      || !g_error_matches (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT))
    {
      g_printerr ("A's writeout should have met a conflict\n");
      goto out;
    }
  g_print ("A: %s\n", error->message);
  g_clear_error (&error);

  /* 4. A's change is still there: keep it, or take B's. */
  if (overwrite)
    {
      if (!bigfile_handle_writeout (a.handle, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_OVERWRITE,
                                    &error))
        goto out;
      g_print ("A: overwrote page 5 with \"%.8s\"\n", (const char *)a.data + 5 * BLOCK_SIZE);
    }
  else
    {
      bigfile_handle_discard (a.handle);
      if (memcmp (a.data + 5 * BLOCK_SIZE, "B's line", 8) != 0)
        goto out;
      g_print ("A: discarded, page 5 says \"%.8s\"\n", (const char *)a.data + 5 * BLOCK_SIZE);
    }
  status = 0;

out:
  if (error != NULL)
    g_printerr ("shared-edit: %s\n", error->message);
  client_close (&a);
  client_close (&b);
  if (dir != NULL)
    {
      g_autofree char *wal = g_strconcat (path, "-wal", NULL);
      g_autofree char *shm = g_strconcat (path, "-shm", NULL);

      g_unlink (wal);
      g_unlink (shm);
      g_unlink (path);
      g_rmdir (dir);
    }
  return status;
}
