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
 *
 * Transactions
 * ------------
 * A handle whose file has begin, commit and abort ops is transactional,
 * and a writeout of it is all or nothing.  The first step that stores
 * begins a transaction (unless one is open: see below); the begin op also
 * brings the file's snapshot up to date, which marks the dirty pages whose
 * blocks another client changed as conflicts (bf_handle_storage_changed()),
 * and a writeout that would store one fails right there, before any store,
 * unless BF_WRITEOUT_OVERWRITE.  Steps then resize and store as above, but
 * mark nothing: with MARKSTORED, the last step commits, and only after the
 * commit succeeded are the pages whose memory is what was stored
 * (store_intact) marked clean.  So a page is never clean unless the storage
 * has it for good.
 *
 * Any failure (a store, a resize, the commit, a conflict, cancelling a
 * writeout between steps) aborts the transaction: the storage is as it was,
 * every page stays dirty, store_intact goes (what was stored is not in the
 * storage), and the file's size as the handle knows it goes back to what it
 * was at begin.  A retry stores everything again.
 *
 * The seed's two-phase commit maps onto this: a writeout with STORE alone
 * leaves its transaction open (txn_open), holding the storage's write
 * lock, and marks nothing; a later writeout with MARKSTORED (alone, or with
 * STORE, which then stores more in the same transaction) commits it and
 * marks.  bf_handle_abort_transaction() (and close) throws an open one
 * away.  A MARKSTORED writeout with no transaction open commits nothing
 * and marks nothing: no page is intact then.
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

  gboolean txn; /* the handle is transactional */

  /* Engine lock. */
  guint next;
  gboolean checked;  /* conflicts looked for, inside the transaction */
  gboolean finished; /* the last step succeeded (and committed, if asked) */
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

  g_return_val_if_fail ((flags & (BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED)) != 0, NULL);
  g_return_val_if_fail ((flags
                         & ~(BF_WRITEOUT_STORE | BF_WRITEOUT_MARKSTORED | BF_WRITEOUT_OVERWRITE
                             | BF_WRITEOUT_DURABLE))
                            == 0,
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
  wo->txn = bf_handle_is_transactional (handle);
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

/* Clean only what is exactly what was stored (and, in a transaction,
 * committed): a page written since its store (or never stored, or stored
 * while writable) stays dirty, so MARKSTORED after STORE can never lose a
 * write.  Lock held. */
static void
writeout_mark (BfPage *page)
{
  BfHandle *handle = page->handle;

  bf_assert_locked ();
  if (page->orphaned || page->state != BF_PAGE_DIRTY || !page->store_intact)
    return;
  g_assert (page->write_pins == 0 && page->writers == 0);
  /* Intact, so mapped read-only everywhere: writes from now on fault, and
   * dirty the page anew. */
  bf_page_set_clean (page);
  /* Over a base file the file has it now: let it show through, so that
   * clean pages show the file as it is (other writers too). */
  if (handle->base_fd >= 0)
    bf_page_drop (page);
}

/* The conflict error: the pages, in order, a few of them by number. */
static void
set_conflict_error (GError **error, GArray *conflicts)
{
  GString *list = g_string_new (NULL);
  guint n_listed = MIN (conflicts->len, 8);

  for (guint i = 0; i < n_listed; i++)
    g_string_append_printf (list, "%s%" G_GUINT64_FORMAT,
                            i == 0 ? "" : (i + 1 == conflicts->len ? " and " : ", "),
                            g_array_index (conflicts, guint64, i));
  if (n_listed < conflicts->len)
    g_string_append_printf (list, " and %u more", conflicts->len - n_listed);
  g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT,
               "Cannot write out: another client changed %s %s in the storage since this "
               "handle read %s; discard %s, or write out with BIGFILE_WRITEOUT_OVERWRITE to "
               "replace the other client's data",
               conflicts->len == 1 ? "page" : "pages", list->str,
               conflicts->len == 1 ? "it" : "them", conflicts->len == 1 ? "it" : "them");
  g_string_free (list, TRUE);
}

/* Lock held, released around ops->begin.  Opens the transaction unless
 * one is open, then looks for conflicts once: the begin op brought the
 * snapshot up to date, and while the transaction holds the storage no
 * other client commits. */
static gboolean
writeout_begin_transaction (BfWriteout *wo, GError **error)
{
  BfHandle *handle = wo->handle;
  GArray *conflicts;

  bf_assert_locked ();
  if (!handle->txn_open)
    {
      GError *local_error = NULL;
      gboolean ok;

      bf_unlock ();
      ok = handle->ops->begin (handle->data, &local_error);
      bf_lock ();
      if (!ok)
        {
          if (local_error == NULL)
            g_set_error_literal (&local_error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                                 "Beginning a transaction failed without giving a reason");
          g_propagate_error (error, local_error);
          return FALSE;
        }
      handle->txn_open = TRUE;
      handle->txn_stored_size = handle->stored_size;
      handle->txn_zero_from = handle->zero_from;
    }
  if (wo->checked)
    return TRUE;

  conflicts = g_array_new (FALSE, FALSE, sizeof (guint64));
  for (guint i = wo->next; i < wo->pages->len; i++)
    {
      BfPage *page = g_ptr_array_index (wo->pages, i);

      if (!page->orphaned && page->state == BF_PAGE_DIRTY && page->conflict)
        g_array_append_val (conflicts, page->index);
    }
  if (conflicts->len > 0 && !(wo->flags & BF_WRITEOUT_OVERWRITE))
    {
      set_conflict_error (error, conflicts);
      g_array_unref (conflicts);
      bf_handle_abort_transaction_locked (handle);
      return FALSE;
    }
  g_array_unref (conflicts);
  wo->checked = TRUE;
  return TRUE;
}

/* Lock held, released around ops->commit.  Commits the open transaction
 * (if any: a MARKSTORED writeout may come without one), then marks clean
 * what it holds. */
static gboolean
writeout_commit (BfWriteout *wo, GError **error)
{
  BfHandle *handle = wo->handle;

  bf_assert_locked ();
  if (handle->txn_open)
    {
      GError *local_error = NULL;
      gboolean ok;

      /* Over before the call: a commit that fails has ended the
       * transaction too (the file's contract). */
      handle->txn_open = FALSE;
      bf_unlock ();
      ok = handle->ops->commit (handle->data, (wo->flags & BF_WRITEOUT_DURABLE) != 0, &local_error);
      bf_lock ();
      if (!ok)
        {
          /* As an abort, but the file already threw the transaction away. */
          bf_handle_txn_forget (handle);
          if (local_error == NULL)
            g_set_error_literal (&local_error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                                 "Committing the writeout failed without giving a reason");
          g_propagate_error (error, local_error);
          return FALSE;
        }
    }
  for (guint i = 0; i < wo->pages->len; i++)
    writeout_mark (g_ptr_array_index (wo->pages, i));
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
  if (wo->txn && (wo->flags & BF_WRITEOUT_STORE) && !writeout_begin_transaction (wo, error))
    {
      bf_unlock ();
      return FALSE;
    }
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
      ok = !wo->txn || !(wo->flags & BF_WRITEOUT_MARKSTORED) || writeout_commit (wo, error);
      wo->finished = ok;
      *done = ok;
      bf_unlock ();
      return ok;
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
      if (ok && (wo->flags & BF_WRITEOUT_MARKSTORED) && !wo->txn)
        writeout_mark (page);
    }

  if (ok)
    {
      wo->next++;
      /* A transaction marks its pages after the commit. */
      if (!wo->txn)
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
  /* A transaction stays open only after a STORE-only writeout that went
   * through: anything else that stopped half way is thrown away. */
  if (wo->txn && handle->txn_open && !(wo->finished && !(wo->flags & BF_WRITEOUT_MARKSTORED)))
    bf_handle_abort_transaction_locked (handle);
  for (guint i = wo->txn ? 0 : wo->next; i < wo->pages->len; i++)
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
