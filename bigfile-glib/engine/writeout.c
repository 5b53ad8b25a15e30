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
 */
#include "config.h"

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
  if (wo->next >= wo->pages->len)
    {
      *done = TRUE;
      bf_unlock ();
      return TRUE;
    }
  *done = FALSE;
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

          page->storing = TRUE;
          page->io_thread = bf_thread_self ();
          /* A writable pin promises the holder write access (the kernel may
           * be doing I/O into the page): such a page is stored as it is. */
          if (page->write_pins == 0)
            bf_page_write_protect (page);

          bf_unlock ();
          ok = handle->ops->store (handle->data, page->index,
                                   bf_pool_slot_addr (handle->pool, page->slot), handle->page_size,
                                   &local_error);
          bf_lock ();

          page->storing = FALSE;
          page->io_thread = NULL;
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

      /* ...and stays dirty, since it may have changed while stored. */
      if (ok && (wo->flags & BF_WRITEOUT_MARKSTORED) && !page->orphaned
          && page->state == BF_PAGE_DIRTY && page->write_pins == 0)
        {
          /* Writes from now on must fault again, to dirty the page anew. */
          bf_page_write_protect (page);
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
