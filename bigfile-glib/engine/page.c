/* bigfile-glib - handles and their pages: states, lists, loading, dropping
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A handle is the table page index -> BfPage of one file (like the kernel's
 * address_space), with its list of dirty pages and its VMAs (that list is
 * kept here and filled by vma.c).  Its pages come from one pool of its RAM.
 * The page state machine is drawn in engine.h; the structures and their
 * invariants are in engine-private.h.
 *
 * Every function here that is static, or says "locked", runs with the
 * engine lock held, and asserts it where it is an entry point.  A page
 * reaches its mappings only through handle->rmap (set by vma.c), and its
 * memory through ram.c.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "engine-private.h"

void
bf_set_generic_error (GError **error, const char *what, guint64 block)
{
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
               "%s block %" G_GUINT64_FORMAT " failed without giving a reason", what, block);
}

/* Make @page read-only wherever it is mapped writable: writes from now on
 * fault, and so are seen.  FALSE if the kernel refused somewhere: writes
 * may then go on unseen there. */
gboolean
bf_page_write_protect (BfPage *page)
{
  bf_assert_locked ();
  return page->handle->rmap == NULL || page->handle->rmap->write_protect (page);
}

/* -- page lists -------------------------------------------------------------- */

/* Put @page in, or take it out of, the LRU list, as the invariant in
 * engine-private.h says.  @touch: it was just used, move it to the tail. */
void
bf_page_update_lru (BfPage *page, gboolean touch)
{
  BfRam *ram = page->handle->ram;
  gboolean want = page->state == BF_PAGE_LOADED && page->pin_count == 0 && page->io_refs == 0
                  && !page->orphaned;

  bf_assert_locked ();

  if (page->in_lru && (!want || touch))
    {
      g_queue_unlink (&ram->lru, &page->lru_link);
      page->in_lru = FALSE;
    }
  if (want && !page->in_lru)
    {
      g_queue_push_tail_link (&ram->lru, &page->lru_link);
      page->in_lru = TRUE;
    }
}

static void page_unlink_dirty (BfPage *page);

/* LOADED -> DIRTY.  FALSE (and still LOADED) if the changed page could not
 * be shown over the base file everywhere: the file would go on showing
 * there, and the write would seem lost. */
static gboolean
page_set_dirty (BfPage *page, GError **error)
{
  BfHandle *handle = page->handle;

  bf_assert_locked ();

  g_assert (page->state == BF_PAGE_LOADED);
  page->state = BF_PAGE_DIRTY;
  page->store_intact = FALSE; /* not stored yet */
  g_queue_push_tail_link (&handle->dirty, &page->dirty_link);
  page->in_dirty = TRUE;
  handle->n_dirty++;
  handle->ram->n_dirty++;
  bf_handle_dirty_changed (handle);
  bf_page_update_lru (page, FALSE);

  /* Over a base file, every VMA that shows the file's page must show the
   * changed copy from now on. */
  if (handle->base_fd >= 0 && handle->rmap != NULL && !handle->rmap->show_dirty (page))
    {
      page->state = BF_PAGE_LOADED;
      page_unlink_dirty (page);
      bf_page_update_lru (page, FALSE);
      g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_MAP_FAILED,
                   "Could not show changed page %" G_GUINT64_FORMAT
                   " over the file in every mapping: the process has reached vm.max_map_count "
                   "mappings",
                   page->index);
      return FALSE;
    }
  return TRUE;
}

/* Take @page out of its handle's dirty list, if it is there. */
static void
page_unlink_dirty (BfPage *page)
{
  BfHandle *handle = page->handle;

  bf_assert_locked ();

  if (!page->in_dirty)
    return;
  g_queue_unlink (&handle->dirty, &page->dirty_link);
  page->in_dirty = FALSE;
  handle->n_dirty--;
  handle->ram->n_dirty--;
  bf_handle_dirty_changed (handle);
}

void
bf_page_set_clean (BfPage *page)
{
  bf_assert_locked ();
  g_assert (page->state == BF_PAGE_DIRTY);
  page->state = BF_PAGE_LOADED;
  page->store_intact = FALSE;
  page->conflict = FALSE;
  page_unlink_dirty (page);
  bf_page_update_lru (page, TRUE);
}

/* Free the page and its slot.  It is out of the table and of every list. */
static void
page_free (BfPage *page)
{
  BfHandle *handle = page->handle;

  bf_assert_locked ();

  g_assert (page->io_refs == 0 && page->pin_count == 0 && !page->in_lru && !page->in_dirty);
  bf_ram_free_slot (handle->ram, handle->pool, page->slot);
  g_free (page);
}

gboolean
bf_page_drop (BfPage *page)
{
  BfHandle *handle = page->handle;

  bf_assert_locked ();
  g_assert (!page->orphaned);
  /* A slot must never be reused while a mapping may still show it. */
  if (handle->rmap != NULL && !handle->rmap->unmap (page))
    return FALSE;
  g_hash_table_remove (handle->pages, &page->index);

  page_unlink_dirty (page);
  if (page->in_lru)
    {
      g_queue_unlink (&handle->ram->lru, &page->lru_link);
      page->in_lru = FALSE;
    }

  if (page->io_refs > 0 || page->pin_count > 0)
    {
      /* A load, a store, a copy or a pin is using the slot: whoever lets
       * go of it last frees the page. */
      page->orphaned = TRUE;
      if (page->state == BF_PAGE_LOADING)
        page->state = BF_PAGE_LOADING_INVALIDATED;
      if (page->storing)
        g_hash_table_insert (handle->dropped_storing, &page->index, page);
      return TRUE;
    }
  page_free (page);
  return TRUE;
}

/* Reclaim @page (clean, in the LRU).  The reverse map unmaps the pages
 * after it in the LRU too: see vma_unmap_for_reclaim(). */

gboolean
bf_page_reclaim (BfPage *page)
{
  BfHandle *handle = page->handle;

  bf_assert_locked ();
  g_assert (page->in_lru);
  if (handle->rmap != NULL && !handle->rmap->unmap_for_reclaim (page))
    return FALSE;
  return bf_page_drop (page);
}

/* After an I/O reference or a pin went: free an orphan nobody uses any more. */
static void
page_release (BfPage *page)
{
  bf_assert_locked ();
  if (page->orphaned && page->io_refs == 0 && page->pin_count == 0)
    {
      page_free (page);
      return;
    }
  bf_page_update_lru (page, FALSE);
}

void
bf_page_io_unref (BfPage *page)
{
  bf_assert_locked ();
  g_assert (page->io_refs > 0);
  page->io_refs--;
  page_release (page);
}

void
bf_page_pin (BfPage *page, gboolean writable)
{
  bf_assert_locked ();
  g_assert (!writable || (page->state == BF_PAGE_DIRTY && !page->store_intact));
  page->pin_count++;
  if (writable)
    page->write_pins++;
  bf_page_update_lru (page, FALSE);
}

void
bf_page_unpin (BfPage *page, gboolean writable)
{
  bf_assert_locked ();
  g_assert (page->pin_count > 0);
  page->pin_count--;
  if (writable)
    page->write_pins--;
  page_release (page);
}

/* -- getting a page ------------------------------------------------------------ */

/* Sleep until some I/O ends, for the load or store of @page by another
 * thread, unless that wait could never end.  The thread doing @page's I/O
 * may itself be waiting for a page whose I/O a third thread does, and so
 * on: waits form chains, which end at a thread that is not waiting.  If the
 * chain comes back to this thread (two files whose loads read each other's
 * mappings, faulted from two threads at once; or a load that reads its own
 * page), every thread on it would sleep forever: fail this one instead,
 * which lets the others go on.  The chain is walked under the engine lock,
 * and each waiter holds an io reference on the page it waits for, so every
 * link stays valid. */
gboolean
bf_page_wait_io (BfPage *page, GError **error)
{
  BfThread *self = bf_thread_self ();
  BfPage *p = page;

  bf_assert_locked ();
  g_assert (self->waiting_for == NULL);
  while (p != NULL && p->io_thread != NULL)
    {
      if (p->io_thread == self)
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DEADLOCK,
                       "Page %" G_GUINT64_FORMAT " is being %s by a thread that waits for this "
                       "one%s: giving up instead of waiting forever (a load or store must not "
                       "read pages whose loads read its own)",
                       page->index, page->storing ? "stored" : "loaded",
                       p == page ? " (its own load or store callback)" : ", through other loads");
          return FALSE;
        }
      p = p->io_thread->waiting_for;
    }

  page->io_refs++;
  self->waiting_for = page;
  bf_wait ();
  self->waiting_for = NULL;
  bf_page_io_unref (page);
  return TRUE;
}

/* How many bytes at the start of page @index a load takes from the file:
 * those below zero_from (the rest shows zeros, whatever the file has
 * there), all of them without a size. */
static gsize
page_bytes_from_file (BfHandle *handle, guint64 index)
{
  if (handle->size == BF_NO_SIZE)
    return handle->page_size;
  return bf_handle_offset_in_page (handle, index, handle->zero_from);
}

/* The heart of the engine: make page @index of @handle present, loading it
 * if needed; for @write, make it dirty.  Runs with the lock held, but may
 * release it (to load, or to wait for another thread's load or store) and
 * then returns BF_GET_RETRY: whatever the caller looked up before may be gone.
 *
 * A page is loaded at most once at a time: the first thread puts it in the
 * table as LOADING and drops the lock; any other thread that wants it finds
 * it LOADING and waits on the engine condition. */
BfGetResult
bf_page_get (BfHandle *handle, guint64 index, gboolean write, BfPage **out, GError **error)
{
  BfPage *page;
  GError *local_error = NULL;
  gboolean ok;

  /* Before anything that could wait: in a forked child, the thread loading
   * or storing a page may not exist. */
  if (bf_ram_is_forked (handle->ram))
    {
      char *what = g_strdup_printf ("Cannot use page %" G_GUINT64_FORMAT, index);
      bf_set_forked_error (error, handle->ram, what);
      g_free (what);
      return BF_GET_ERROR;
    }

  bf_assert_locked ();
  page = g_hash_table_lookup (handle->pages, &index);
  if (page == NULL)
    {
      BfPage *dropped = g_hash_table_lookup (handle->dropped_storing, &index);
      guint64 slot;
      gsize from_file;
      guint8 *mem;

      if (dropped != NULL && dropped->io_thread != bf_thread_self ())
        return bf_page_wait_io (dropped, error) ? BF_GET_RETRY : BF_GET_ERROR;
      if (handle->closed)
        {
          g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CLOSED,
                       "Cannot load page %" G_GUINT64_FORMAT ": the handle is closed", index);
          return BF_GET_ERROR;
        }
      if (!bf_ram_alloc_slot (handle->ram, handle->pool, &slot, error))
        return BF_GET_ERROR;

      page = g_new0 (BfPage, 1);
      page->index = index;
      page->handle = handle;
      page->slot = slot;
      page->state = BF_PAGE_LOADING;
      page->io_refs = 1;
      page->io_thread = bf_thread_self ();
      page->lru_link.data = page;
      page->dirty_link.data = page;
      g_hash_table_insert (handle->pages, &page->index, page);
      handle->refs++; /* the handle must outlive the load, even if closed meanwhile */

      /* A page wholly past the size is zeros: nothing to read. */
      from_file = page_bytes_from_file (handle, index);
      mem = bf_pool_slot_addr (handle->pool, slot);
      bf_unlock ();
      if (from_file == 0)
        {
          memset (mem, 0, handle->page_size);
          ok = TRUE;
        }
      else
        ok = handle->ops->load (handle->data, index, mem, handle->page_size, &local_error);
      bf_lock ();

      if (!ok && local_error == NULL)
        bf_set_generic_error (&local_error, "Loading", index);
      page->io_thread = NULL;

      /* Past the size the handle shows zeros, whatever the file gave.
       * zero_from may have moved during the load: down (set_size), or up
       * (a writeout extended the file, with zeros); the lower counts. */
      from_file = MIN (from_file, page_bytes_from_file (handle, index));
      if (ok && !page->orphaned && from_file < handle->page_size)
        memset (mem + from_file, 0, handle->page_size - from_file);

      if (page->orphaned)
        {
          /* Invalidated (or its handle closed) while loading: the data is
           * stale, throw it away; the next access loads afresh. */
          g_clear_error (&local_error);
          bf_page_io_unref (page);
        }
      else if (!ok)
        {
          /* Out of the table; freed with the last io reference (threads
           * that waited for the load hold some). */
          g_hash_table_remove (handle->pages, &page->index);
          page->orphaned = TRUE;
          page->state = BF_PAGE_LOADING_INVALIDATED;
          bf_page_io_unref (page);
        }
      else
        {
          page->state = BF_PAGE_LOADED;
          bf_page_io_unref (page);
        }

      bf_wake_all ();
      bf_handle_unref_locked (handle);
      if (local_error != NULL)
        {
          g_propagate_error (error, local_error);
          return BF_GET_ERROR;
        }
      return BF_GET_RETRY;
    }

  if (page->state == BF_PAGE_LOADING || (write && page->storing))
    return bf_page_wait_io (page, error) ? BF_GET_RETRY : BF_GET_ERROR;

  g_assert (page->state == BF_PAGE_LOADED || page->state == BF_PAGE_DIRTY);
  if (write && page->state == BF_PAGE_LOADED && !page_set_dirty (page, error))
    return BF_GET_ERROR;
  /* Whoever asked for a write (a write fault, an API copy, a writable pin)
   * may change the page: its memory may no longer be what was stored, and
   * from now on it may be mapped writable (bf_page_map_writable). */
  if (write)
    page->store_intact = FALSE;
  bf_page_update_lru (page, TRUE);
  *out = page;
  return BF_GET_OK;
}

/* -- handles ------------------------------------------------------------------- */

#define PAGE_SIZE_MIN ((gsize)4096)
#define PAGE_SIZE_MAX ((gsize)2 << 20)

gboolean
bf_page_size_is_valid (gsize page_size)
{
  gsize sys = (gsize)sysconf (_SC_PAGESIZE);

  return page_size >= MAX (PAGE_SIZE_MIN, sys) && page_size <= PAGE_SIZE_MAX
         && (page_size & (page_size - 1)) == 0;
}

void
bf_handle_unref_locked (BfHandle *handle)
{
  bf_assert_locked ();
  g_assert (handle->refs > 0);
  if (--handle->refs > 0)
    return;

  g_assert (g_hash_table_size (handle->pages) == 0);
  g_hash_table_unref (handle->pages);
  g_hash_table_unref (handle->dropped_storing);
  bf_ram_unref_locked (handle->ram);
  g_free (handle);
}

BfHandle *
bf_handle_new (BfRam *ram, gsize page_size, const BfFileOps *ops, gpointer data, int base_fd,
               guint64 size, GError **error)
{
  BfHandle *handle;
  BfPool *pool;

  if (!bf_page_size_is_valid (page_size))
    {
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_INVALID_BLOCK_SIZE,
                   "Block size %" G_GSIZE_FORMAT " is not a power of two from 4 KiB to 2 MiB",
                   page_size);
      return NULL;
    }

  bf_lock ();
  if (bf_ram_is_forked (ram))
    {
      bf_set_forked_error (error, ram, "Cannot open a handle in this page memory");
      bf_unlock ();
      return NULL;
    }
  pool = bf_ram_get_pool (ram, page_size, error);
  if (pool == NULL)
    {
      bf_unlock ();
      return NULL;
    }

  handle = g_new0 (BfHandle, 1);
  handle->refs = 1;
  handle->ram = ram;
  bf_ram_ref (ram);
  handle->pool = pool;
  handle->page_size = page_size;
  handle->page_shift = (guint)g_bit_nth_lsf (page_size, -1);
  handle->ops = ops;
  handle->data = data;
  handle->base_fd = base_fd;
  handle->size = size;
  handle->stored_size = size;
  handle->zero_from = size;
  handle->pages = g_hash_table_new (g_int64_hash, g_int64_equal);
  handle->dropped_storing = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_queue_init (&handle->dirty);
  g_queue_init (&handle->vmas);
  /* RAM reclaims through this: it knows pages only as LRU entries. */
  ram->evict = bf_page_reclaim;
  bf_unlock ();
  return handle;
}

/* The pages of @handle whose index is in [first, end), in an array of
 * their own: dropping a page changes the table, which must not be walked
 * meanwhile.  Lock held. */
static GPtrArray *
handle_pages_in_range (BfHandle *handle, guint64 first, guint64 end)
{
  GPtrArray *pages = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  bf_assert_locked ();
  g_hash_table_iter_init (&iter, handle->pages);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (((BfPage *)value)->index >= first && ((BfPage *)value)->index < end)
      g_ptr_array_add (pages, value);
  return pages;
}

gboolean
bf_handle_close (BfHandle *handle)
{
  GPtrArray *pages;

  bf_lock ();
  if (!g_queue_is_empty (&handle->vmas))
    {
      bf_unlock ();
      g_critical ("Closing a bigfile handle that still has %u mapping(s): unmap them first",
                  g_queue_get_length (&handle->vmas));
      return FALSE;
    }
  if (handle->writeout_running)
    {
      bf_unlock ();
      g_critical ("Closing a bigfile handle while its writeout runs");
      return FALSE;
    }

  /* What a STORE-only writeout left uncommitted goes with the changes. */
  if (handle->txn_open && !bf_ram_is_forked (handle->ram))
    {
      handle->writeout_running = TRUE;
      bf_handle_abort_transaction_locked (handle);
      handle->writeout_running = FALSE;
    }

  /* Drop every page, dirty or not.  A load still in flight (its VMA was
   * unmapped under it) finishes on an orphan and releases our last ref. */
  handle->closed = TRUE;
  pages = handle_pages_in_range (handle, 0, G_MAXUINT64);
  for (guint i = 0; i < pages->len; i++)
    bf_page_drop (g_ptr_array_index (pages, i));
  g_ptr_array_unref (pages);

  bf_handle_unref_locked (handle);
  bf_unlock ();
  return TRUE;
}

guint64
bf_handle_get_n_dirty (BfHandle *handle)
{
  guint64 n;

  bf_lock ();
  n = handle->n_dirty;
  bf_unlock ();
  return n;
}

BfPageState
bf_handle_get_page_state (BfHandle *handle, guint64 index)
{
  BfPage *page;
  BfPageState state;

  bf_lock ();
  page = g_hash_table_lookup (handle->pages, &index);
  state = page != NULL ? page->state : BF_PAGE_EMPTY;
  bf_unlock ();
  return state;
}

/* Drop every page of @handle whose index is in [first, end). */
static void
handle_drop_range (BfHandle *handle, guint64 first, guint64 end)
{
  GPtrArray *pages = handle_pages_in_range (handle, first, end);

  for (guint i = 0; i < pages->len; i++)
    bf_page_drop (g_ptr_array_index (pages, i));
  g_ptr_array_unref (pages);
}

/* Wait until writeout is not resizing the file (a resize changes
 * stored_size when it returns); TRUE if it waited, so that the caller
 * looks at the handle again.  A resize by this thread (a call from inside
 * the file's set_size) is not waited for: it would be waiting for itself. */
static gboolean
handle_wait_size_sync (BfHandle *handle)
{
  gboolean waited = FALSE;

  while (handle->size_syncing != NULL && handle->size_syncing != bf_thread_self ())
    {
      bf_wait ();
      waited = TRUE;
    }
  return waited;
}

guint
bf_handle_discard (BfHandle *handle)
{
  guint n = 0;

  bf_lock ();
  /* The parent's changes are the parent's to drop, and a size change in
   * flight is a parent thread's, which is not in this child (see
   * "fork()"). */
  if (bf_ram_is_forked (handle->ram))
    {
      bf_unlock ();
      return 0;
    }
  handle_wait_size_sync (handle);
  for (GList *l = handle->dirty.head, *next; l != NULL; l = next)
    {
      next = l->next;
      n += bf_page_drop (l->data);
    }
  if (!g_queue_is_empty (&handle->dirty))
    g_warning ("Could not discard %u changed page(s): they could not be unmapped "
               "(the process has reached vm.max_map_count mappings); they stay changed",
               handle->dirty.length);

  /* The size goes back to what the file has.  Pages that show zeros where
   * the file has data (past a lower size set since) go, to load again. */
  if (handle->size != BF_NO_SIZE)
    {
      if (handle->zero_from < handle->stored_size)
        handle_drop_range (handle, handle->zero_from >> handle->page_shift,
                           ((handle->stored_size - 1) >> handle->page_shift) + 1);
      handle->zero_from = handle->stored_size;
      if (handle->size != handle->stored_size)
        {
          handle->size = handle->stored_size;
          bf_handle_size_changed (handle);
        }
    }
  bf_unlock ();
  return n;
}

/* -- sizes ------------------------------------------------------------------------
 *
 * A handle may have a size in bytes (its file's, at open), not a multiple
 * of the page size.  The program sees the file's bytes below it and zeros
 * past it; writeout makes the file that long:
 *
 *   - loads clear what lies at or past zero_from (page_bytes_from_file),
 *     and a page wholly past it is zeros without a load: so a clean page
 *     shows zeros past the size, whatever the file's load gave there;
 *   - bf_handle_set_size() drops the pages wholly past the new size, dirty
 *     ones too (the program asked for the truncation), and clears the rest
 *     of the page that holds it, in memory (the page's state stays: loading
 *     it again would give the same bytes); it lowers zero_from, since the
 *     file's bytes past the new size are gone for the handle even if it
 *     grows again;
 *   - writeout (STORE, writeout.c) first resizes the file when zero_from
 *     or size differs from stored_size (ops->set_size: down to zero_from,
 *     then up to size), stores the page that holds the size with only the
 *     bytes below it, does not store pages wholly past it, and grows the
 *     size over anything but zeros the program wrote past it, before that
 *     page is stored: nothing written is dropped, and a program that wrote
 *     only zeros (or nothing) past the size keeps it;
 *   - discard puts size and zero_from back to stored_size;
 *   - over a base file (MAP_CLEAN_PAGES), whose clean pages show the file
 *     as it is now, the size follows the file's when another writer
 *     changes it, unless the handle has a size change of its own to write
 *     out (bf_handle_follow_file_size).
 *
 * A handle without a size (BF_NO_SIZE) does none of this: its pages are
 * loaded as the file gives them and stored whole.
 */

/* The base file is @length bytes long now (vma.c looked).  If the handle's
 * size is the file's as last stored (no size change of its own pending),
 * it follows: another writer changed the file, and clean pages show the
 * file as it is. */
void
bf_handle_follow_file_size (BfHandle *handle, guint64 length)
{
  bf_assert_locked ();
  if (handle->size == BF_NO_SIZE || handle->size_syncing != NULL || length == handle->stored_size
      || handle->size != handle->stored_size || handle->zero_from != handle->stored_size)
    return;
  handle->size = handle->stored_size = handle->zero_from = length;
  bf_handle_size_changed (handle);
}

guint64
bf_handle_get_size (BfHandle *handle)
{
  guint64 size;

  bf_lock ();
  size = handle->size;
  bf_unlock ();
  return size;
}

gboolean
bf_handle_set_size (BfHandle *handle, guint64 size, GError **error)
{
  gsize ps = handle->page_size;
  gsize in_page = (gsize)(size & (ps - 1));
  guint64 index = size >> handle->page_shift;
  BfPage *page;

  g_return_val_if_fail (size <= (guint64)G_MAXINT64, FALSE);

  bf_lock ();
  for (;;)
    {
      if (handle->closed)
        {
          bf_unlock ();
          g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CLOSED,
                       "Cannot set the size: the handle is closed");
          return FALSE;
        }
      if (handle->size == BF_NO_SIZE)
        {
          bf_unlock ();
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
                       "Cannot set the size of a handle whose file has no size");
          return FALSE;
        }
      if (handle_wait_size_sync (handle))
        continue;

      /* The rest of the page that holds the new size is cleared below:
       * not while a store reads it, nor under an API copy into it. */
      page = in_page != 0 ? bf_handle_lookup (handle, index) : NULL;
      if (page != NULL && (page->storing || page->writers > 0))
        {
          if (page->io_thread == bf_thread_self ())
            {
              bf_unlock ();
              g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                           "Cannot set the size from the store callback of page %" G_GUINT64_FORMAT
                           ", which holds the new size",
                           index);
              return FALSE;
            }
          bf_wait ();
          continue;
        }
      break;
    }

  handle->zero_from = MIN (handle->zero_from, size);
  /* Before dropping pages, which would show the base file again. */
  if (handle->rmap != NULL)
    handle->rmap->clip_base (handle, handle->zero_from >> handle->page_shift);
  handle_drop_range (handle, index + (in_page != 0), G_MAXUINT64);
  /* A page still loading clears its tail itself, from zero_from, when its
   * load returns. */
  if (page != NULL && (page->state == BF_PAGE_LOADED || page->state == BF_PAGE_DIRTY))
    memset (bf_pool_slot_addr (handle->pool, page->slot) + in_page, 0, ps - in_page);

  if (handle->size != size)
    {
      handle->size = size;
      bf_handle_size_changed (handle);
    }
  bf_unlock ();
  return TRUE;
}

void
bf_handle_invalidate_page (BfHandle *handle, guint64 index)
{
  BfPage *page;

  bf_lock ();
  page = g_hash_table_lookup (handle->pages, &index);
  /* In a forked child, nothing of the parent's is dropped (see "fork()"). */
  if (bf_ram_is_forked (handle->ram))
    {
      bf_unlock ();
      return;
    }
  if (page != NULL && !bf_page_drop (page))
    g_warning ("Could not invalidate page %" G_GUINT64_FORMAT
               ": it could not be unmapped (the process has reached vm.max_map_count "
               "mappings)",
               index);
  /* The file changed: over a base file, its size may have too. */
  if (handle->base_fd >= 0 && handle->rmap != NULL)
    handle->rmap->base_changed (handle);
  bf_unlock ();
}

/* -- other clients' changes ----------------------------------------------------
 *
 * A file whose storage other clients change (a database) keeps a
 * snapshot, which the GObject layer moves (bigfile_file_refresh()) and then
 * tells the handle which blocks changed in between.  A clean page of such a
 * block shows the old snapshot: it goes, and the next access loads the new
 * data (a load in flight is thrown away, as by invalidation: it may have
 * read the old snapshot).  A dirty page holds the program's change, made
 * over the old data: it is kept, never lost, and marked as a conflict,
 * which a writeout refuses to store unless asked to overwrite (writeout.c),
 * so that another client's change is never replaced unknowingly.
 */

/* One block: TRUE if the handle now shows it anew (not a conflict). */
static gboolean
handle_block_changed (BfHandle *handle, BfPage *page)
{
  bf_assert_locked ();
  if (page->state == BF_PAGE_DIRTY)
    {
      page->conflict = TRUE;
      return FALSE;
    }
  if (!bf_page_drop (page))
    g_warning ("Could not drop page %" G_GUINT64_FORMAT
               " that another client changed: it could not be unmapped (the process has "
               "reached vm.max_map_count mappings); it shows the old data until it is reclaimed",
               page->index);
  return TRUE;
}

void
bf_handle_storage_changed (BfHandle *handle, const guint64 *blocks, guint n_blocks,
                           GArray *invalidated)
{
  gboolean all = FALSE;

  for (guint i = 0; i < n_blocks; i++)
    all |= blocks[i] == BF_ALL_BLOCKS;

  bf_lock ();
  /* In a forked child, nothing of the parent's is dropped (see "fork()"). */
  if (bf_ram_is_forked (handle->ram) || handle->closed)
    {
      bf_unlock ();
      return;
    }
  if (all)
    {
      GPtrArray *pages = handle_pages_in_range (handle, 0, G_MAXUINT64);

      for (guint i = 0; i < pages->len; i++)
        handle_block_changed (handle, g_ptr_array_index (pages, i));
      g_ptr_array_unref (pages);
      if (invalidated != NULL)
        {
          guint64 any = BF_ALL_BLOCKS;
          g_array_append_val (invalidated, any);
        }
    }
  else
    for (guint i = 0; i < n_blocks; i++)
      {
        BfPage *page = bf_handle_lookup (handle, blocks[i]);

        if ((page == NULL || handle_block_changed (handle, page)) && invalidated != NULL)
          g_array_append_val (invalidated, blocks[i]);
      }
  if (handle->base_fd >= 0 && handle->rmap != NULL)
    handle->rmap->base_changed (handle);
  bf_unlock ();
}

static gint
index_cmp (gconstpointer a, gconstpointer b)
{
  guint64 ia = *(const guint64 *)a, ib = *(const guint64 *)b;

  return ia < ib ? -1 : ia > ib;
}

guint64 *
bf_handle_get_conflicts (BfHandle *handle, gsize *n_pages)
{
  GArray *conflicts = g_array_new (FALSE, FALSE, sizeof (guint64));

  bf_lock ();
  for (GList *l = handle->dirty.head; l != NULL; l = l->next)
    {
      BfPage *page = l->data;

      if (page->conflict)
        g_array_append_val (conflicts, page->index);
    }
  bf_unlock ();

  g_array_sort (conflicts, index_cmp);
  *n_pages = conflicts->len;
  if (conflicts->len == 0)
    {
      g_array_free (conflicts, TRUE);
      return NULL;
    }
  return (guint64 *)(void *)g_array_free (conflicts, FALSE);
}

void
bf_handle_storage_resized (BfHandle *handle, guint64 size, GArray *invalidated)
{
  guint64 low, high;
  GPtrArray *pages;

  g_return_if_fail (size <= (guint64)G_MAXINT64);

  bf_lock ();
  if (bf_ram_is_forked (handle->ram) || handle->closed || handle->size == BF_NO_SIZE
      || handle->stored_size == size)
    {
      bf_unlock ();
      return;
    }
  /* The pages between the two sizes show something else now: the part of
   * the old last page past the old size shows zeros, data may lie there
   * now, and data past a new lower size is gone.  They change like blocks
   * another client stored. */
  low = MIN (size, handle->stored_size) >> handle->page_shift;
  high = MAX (size, handle->stored_size);
  high = high == 0 ? 0 : ((high - 1) >> handle->page_shift) + 1;
  pages = handle_pages_in_range (handle, low, high);
  for (guint i = 0; i < pages->len; i++)
    {
      BfPage *page = g_ptr_array_index (pages, i);
      guint64 index = page->index;

      if (handle_block_changed (handle, page) && invalidated != NULL)
        g_array_append_val (invalidated, index);
    }
  g_ptr_array_unref (pages);

  /* The handle follows unless it has a size change of its own to write
   * out, which then wins at the next writeout.  Either way the file has
   * @size now. */
  if (handle->size == handle->stored_size && handle->zero_from == handle->stored_size
      && handle->size_syncing == NULL)
    {
      handle->size = handle->zero_from = size;
      bf_handle_size_changed (handle);
    }
  else
    handle->zero_from = MIN (handle->zero_from, size);
  handle->stored_size = size;
  bf_unlock ();
}

/* -- transactions --------------------------------------------------------------
 *
 * The state a writeout's transaction leaves on a handle ("Transactions" in
 * writeout.c), kept here so that close and discard can throw an open one
 * away without calling up into writeout.c.
 */

/* Lock held.  The storage is as it was at begin: nothing stored since is
 * intact any more, and the file has the size it had then (a size change of
 * the handle's own since is kept, to be written out again). */
void
bf_handle_txn_forget (BfHandle *handle)
{
  bf_assert_locked ();
  for (GList *l = handle->dirty.head; l != NULL; l = l->next)
    ((BfPage *)l->data)->store_intact = FALSE;
  if (handle->size != BF_NO_SIZE)
    {
      handle->stored_size = handle->txn_stored_size;
      handle->zero_from = MIN (handle->zero_from, handle->txn_zero_from);
      handle->zero_from = MIN (handle->zero_from, handle->stored_size);
    }
}

/* Lock held; released around ops->abort.  The caller keeps
 * writeout_running set (a writeout, or an abort outside of one), so that no
 * other writeout begins a transaction while the abort runs. */
void
bf_handle_abort_transaction_locked (BfHandle *handle)
{
  bf_assert_locked ();
  g_assert (handle->txn_open && handle->writeout_running);

  handle->txn_open = FALSE;
  bf_unlock ();
  handle->ops->abort (handle->data);
  bf_lock ();
  bf_handle_txn_forget (handle);
}

gboolean
bf_handle_in_transaction (BfHandle *handle)
{
  gboolean open;

  bf_lock ();
  open = handle->txn_open;
  bf_unlock ();
  return open;
}

gboolean
bf_handle_abort_transaction (BfHandle *handle, GError **error)
{
  bf_lock ();
  if (handle->writeout_running)
    {
      bf_unlock ();
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_BUSY,
                   "Cannot abort the writeout's transaction: a writeout of this handle is in "
                   "progress");
      return FALSE;
    }
  if (handle->txn_open && !bf_ram_is_forked (handle->ram))
    {
      handle->writeout_running = TRUE;
      bf_handle_abort_transaction_locked (handle);
      handle->writeout_running = FALSE;
    }
  bf_unlock ();
  return TRUE;
}
