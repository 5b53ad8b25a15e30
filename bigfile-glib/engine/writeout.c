/* bigfile-glib - writeout: storing dirty pages
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A writeout takes a snapshot of the handle's dirty pages at begin(), in
 * file order, and each step() stores and/or marks one of them, with the
 * seed's two flags: STORE hands the page to the file's store callback,
 * MARKSTORED makes it clean.  One handle has at most one writeout at a time.
 *
 * Writes during writeout
 * ----------------------
 * Before a dirty page is stored, it is marked "storing" and made read-only in
 * every VMA.  A write to it then faults, finds it storing and waits on the
 * engine condition until the store returns.  So the store always sees a
 * stable page, and the write lands after it: the page is dirty again after
 * the writeout.  Pages dirtied while writeout runs (but not being stored)
 * are not in its snapshot and simply stay dirty.
 *
 * Sizes
 * -----
 * For a handle with a size ("Sizes" in page.c), each STORE step first makes
 * the file's size the handle's (writeout_sync_size), and a page stores only
 * its bytes below the size (writeout_store_len).  A dirty page that reaches
 * past the size is scanned, while it is write-protected for its store, for
 * the last byte that is not zero past the size: if there is one, the size
 * grows to cover it, the file is resized, and the store covers it.
 */
#include "config.h"

#include <string.h>

#include "engine-private.h"

struct _BfWriteout
{
  /* Immutable. */
  BfHandle *handle; /* a reference */
  BfWriteoutFlags flags;
  GPtrArray *pages; /* the dirty pages at begin(), by index; each holds an io ref */

  /* Engine lock. */
  guint next;
};

static gint
page_cmp_index (gconstpointer a, gconstpointer b)
{
  const BfPage *pa = *(BfPage *const *)a;
  const BfPage *pb = *(BfPage *const *)b;

  return pa->index < pb->index ? -1 : pa->index > pb->index;
}

BfWriteout *
bf_writeout_begin (BfHandle *handle, BfWriteoutFlags flags, GError **error)
{
  BfWriteout *wo;

  g_return_val_if_fail (flags != 0 && (flags & ~(BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED)) == 0,
                        NULL);

  bf_lock ();
  if (bf_ram_is_forked (handle->ram))
    {
      bf_set_forked_error (error, handle->ram, "Cannot write out");
      bf_unlock ();
      return NULL;
    }
  if (handle->closed)
    {
      bf_unlock ();
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CLOSED,
                   "Cannot write out: the handle is closed");
      return NULL;
    }
  if (handle->writeout_running)
    {
      bf_unlock ();
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_BUSY,
                   "Cannot write out: another writeout of this handle is in progress");
      return NULL;
    }

  wo = g_new0 (BfWriteout, 1);
  wo->handle = handle;
  wo->flags = flags;
  wo->pages = g_ptr_array_sized_new (handle->dirty.length);
  handle->refs++;
  handle->writeout_running = TRUE;

  for (GList *l = handle->dirty.head; l != NULL; l = l->next)
    {
      BfPage *page = l->data;
      page->io_refs++; /* keeps the slot alive even if the page is discarded meanwhile */
      g_ptr_array_add (wo->pages, page);
    }
  /* Stores go in file order: what storage (and a reader of it) expects. */
  g_ptr_array_sort (wo->pages, page_cmp_index);
  bf_unlock ();
  return wo;
}

void
bf_writeout_get_progress (BfWriteout *wo, guint64 *pages_done, guint64 *pages_total)
{
  bf_lock ();
  if (pages_done != NULL)
    *pages_done = wo->next;
  if (pages_total != NULL)
    *pages_total = wo->pages->len;
  bf_unlock ();
}

/* Make the file's size the handle's: down to zero_from first (the bytes
 * the handle clears past a lower size it had are gone from the file too),
 * then to the size.  Lock held; released around ops->set_size, while
 * bf_handle_set_size() and discard wait (size_syncing), so that nothing
 * changes the sizes meanwhile but this thread. */
static gboolean
writeout_sync_size (BfHandle *handle, GError **error)
{
  if (handle->size == BF_NO_SIZE)
    return TRUE;

  for (;;)
    {
      GError *local_error = NULL;
      guint64 target;
      gboolean ok;

      if (handle->zero_from < handle->stored_size)
        target = handle->zero_from;
      else if (handle->size != handle->stored_size)
        target = handle->size;
      else
        return TRUE;

      handle->size_syncing = bf_thread_self ();
      bf_unlock ();
      if (handle->ops->set_size != NULL)
        ok = handle->ops->set_size (handle->data, target, &local_error);
      else
        {
          g_set_error (&local_error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
                       "Cannot make the file %" G_GUINT64_FORMAT
                       " bytes long: it cannot change its size",
                       target);
          ok = FALSE;
        }
      bf_lock ();
      handle->size_syncing = NULL;
      bf_wake_all ();

      if (!ok)
        {
          if (local_error == NULL)
            g_set_error (&local_error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                         "Making the file %" G_GUINT64_FORMAT
                         " bytes long failed without giving a reason",
                         target);
          g_propagate_error (error, local_error);
          return FALSE;
        }
      /* The file is @target bytes long, zeros from its old size on if it
       * grew: the handle shows it as it is up to there. */
      handle->stored_size = target;
      handle->zero_from = target;
    }
}

/* The end of the data in mem[from, end): the offset after its last byte
 * that is not zero, or @from if all are.  Whole words first: pages are
 * aligned. */
static gsize
find_data_end (const guint8 *mem, gsize from, gsize end)
{
  while (end - from >= sizeof (guint64))
    {
      guint64 word;

      memcpy (&word, mem + end - sizeof word, sizeof word);
      if (word != 0)
        break;
      end -= sizeof word;
    }
  while (end > from && mem[end - 1] == 0)
    end--;
  return end;
}

/* How many bytes of @page (storing, so stable unless write-pinned) to store:
 * those below the size, after growing the size over what the program wrote
 * past it, in this page.  Lock held.  Fails if the data lies past the
 * largest file offset. */
static gboolean
writeout_store_len (BfHandle *handle, BfPage *page, gsize *len, GError **error)
{
  const guint8 *mem = bf_pool_slot_addr (handle->pool, page->slot);
  gsize from, end;

  if (handle->size == BF_NO_SIZE)
    {
      *len = handle->page_size;
      return TRUE;
    }

  from = bf_handle_offset_in_page (handle, page->index, handle->size);
  end = from < handle->page_size ? find_data_end (mem, from, handle->page_size) : from;
  if (end > from)
    {
      if (page->index > ((guint64)G_MAXINT64 >> handle->page_shift)
          || (page->index << handle->page_shift) > (guint64)G_MAXINT64 - end)
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_DATA,
                       "Cannot store page %" G_GUINT64_FORMAT
                       ": it holds data past the largest file size",
                       page->index);
          return FALSE;
        }
      handle->size = (page->index << handle->page_shift) + end;
      bf_handle_size_changed (handle);
    }
  *len = end;
  return TRUE;
}

gboolean
bf_writeout_step (BfWriteout *wo, gboolean *done, GError **error)
{
  BfHandle *handle = wo->handle;
  BfPage *page;
  gboolean ok = TRUE;

  bf_lock ();
  /* A writeout the parent began: its writers and stores may be threads
   * that are not in this child (see "fork()"), and the file is the
   * parent's to write. */
  if (bf_ram_is_forked (handle->ram))
    {
      bf_set_forked_error (error, handle->ram, "Cannot write out");
      bf_unlock ();
      return FALSE;
    }
  *done = FALSE;
  /* The size first: a truncation goes before the stores, a growth that
   * comes from bf_handle_set_size() too; and the last step makes the file
   * the handle's size even when no page is dirty. */
  if ((wo->flags & BF_WRITEOUT_STORE) && !writeout_sync_size (handle, error))
    {
      bf_unlock ();
      return FALSE;
    }
  if (wo->next >= wo->pages->len)
    {
      *done = TRUE;
      bf_unlock ();
      return TRUE;
    }
  page = g_ptr_array_index (wo->pages, wo->next);

  /* An API write is copying into the page: let it finish, so the store sees
   * all of it and marking clean does not lose it. */
  while (page->writers > 0 && !page->orphaned)
    bf_wait ();

  /* Discarded or invalidated since begin(): nothing to write. */
  if (!page->orphaned && page->state == BF_PAGE_DIRTY)
    {
      if (wo->flags & BF_WRITEOUT_STORE)
        {
          GError *local_error = NULL;
          gsize len = 0;

          /* Whether the store sees a stable page is decided now, from the
           * page as its store starts: a writable pin promises its holder
           * write access (the kernel may be doing I/O into the page), so
           * such a page is stored as it is and cannot be known intact
           * afterwards, even if the pin goes while the store runs. */
          gboolean stable;

          page->storing = TRUE;
          page->store_intact = FALSE;
          page->io_thread = bf_thread_self ();
          /* A page the kernel would not protect (at vm.max_map_count) is
           * stored as it is too, and stays dirty. */
          stable = page->write_pins == 0 && bf_page_write_protect (page);

          /* Past the size, the page is stable now: anything written there
           * grows the size (and the file, before the store) to cover it. */
          ok = writeout_store_len (handle, page, &len, &local_error)
               && writeout_sync_size (handle, &local_error);
          if (ok && !page->orphaned)
            len = MIN (len, bf_handle_offset_in_page (handle, page->index, handle->size));
          if (ok && !page->orphaned && len > 0)
            {
              bf_unlock ();
              ok = handle->ops->store (handle->data, page->index,
                                       bf_pool_slot_addr (handle->pool, page->slot), len,
                                       &local_error);
              bf_lock ();
            }

          page->storing = FALSE;
          page->io_thread = NULL;
          /* Writers waited for the store, so the memory is what was
           * stored, until the next write makes the page writable again. */
          page->store_intact = ok && stable;
          if (page->orphaned)
            g_hash_table_remove (handle->dropped_storing, &page->index);
          bf_wake_all ();
          if (!ok)
            {
              /* The page stays dirty: nothing is lost, a retry stores it. */
              if (local_error == NULL)
                bf_set_generic_error (&local_error, "Storing", page->index);
              g_propagate_error (error, local_error);
            }
        }

      /* Clean only what is exactly what was stored: a page written since
       * its store (or never stored, or stored while writable) stays
       * dirty, so MARKSTORED after STORE can never lose a write. */
      if (ok && (wo->flags & BF_WRITEOUT_MARKSTORED) && !page->orphaned
          && page->state == BF_PAGE_DIRTY && page->store_intact)
        {
          g_assert (page->write_pins == 0 && page->writers == 0);
          /* Intact, so mapped read-only everywhere: writes from now on
           * fault, and dirty the page anew. */
          bf_page_set_clean (page);
          /* Over a base file the file has it now: let it show through, so
           * that clean pages show the file as it is (other writers too). */
          if (handle->base_fd >= 0)
            bf_page_drop (page);
        }
    }

  if (ok)
    {
      wo->next++;
      bf_page_io_unref (page);
    }
  bf_unlock ();
  return ok;
}

void
bf_writeout_end (BfWriteout *wo)
{
  BfHandle *handle = wo->handle;

  bf_lock ();
  for (guint i = wo->next; i < wo->pages->len; i++)
    bf_page_io_unref (g_ptr_array_index (wo->pages, i));
  handle->writeout_running = FALSE;
  /* Stores past the end of a base file made it longer: show it. */
  if (handle->base_fd >= 0 && handle->rmap != NULL && wo->next > 0)
    handle->rmap->base_changed (handle);
  bf_handle_unref_locked (handle);
  bf_unlock ();

  g_ptr_array_unref (wo->pages);
  g_free (wo);
}

gboolean
bf_handle_writeout (BfHandle *handle, BfWriteoutFlags flags, GError **error)
{
  BfWriteout *wo = bf_writeout_begin (handle, flags, error);
  gboolean done = FALSE, ok = wo != NULL;

  while (ok && !done)
    ok = bf_writeout_step (wo, &done, error);
  if (wo != NULL)
    bf_writeout_end (wo);
  return ok;
}
