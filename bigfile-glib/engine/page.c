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

#include <unistd.h>

#include "engine-private.h"

void
bf_set_generic_error (GError **error, const char *what, guint64 block)
{
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
               "%s block %" G_GUINT64_FORMAT " failed without giving a reason", what, block);
}

/* Make @page read-only wherever it is mapped writable: writes from now on
 * fault, and so are seen. */
void
bf_page_write_protect (BfPage *page)
{
  bf_assert_locked ();
  if (page->handle->rmap != NULL)
    page->handle->rmap->write_protect (page);
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

static void
page_set_dirty (BfPage *page)
{
  BfHandle *handle = page->handle;

  g_assert (page->state == BF_PAGE_LOADED);
  page->state = BF_PAGE_DIRTY;
  g_queue_push_tail_link (&handle->dirty, &page->dirty_link);
  page->in_dirty = TRUE;
  handle->n_dirty++;
  handle->ram->n_dirty++;
  bf_handle_dirty_changed (handle);
  bf_page_update_lru (page, FALSE);

  /* Over a base file, every VMA that shows the file's page must show the
   * changed copy from now on. */
  if (handle->base_fd >= 0 && handle->rmap != NULL)
    handle->rmap->show_dirty (page);
}

/* Take @page out of its handle's dirty list, if it is there. */
static void
page_unlink_dirty (BfPage *page)
{
  BfHandle *handle = page->handle;

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
  page_unlink_dirty (page);
  bf_page_update_lru (page, TRUE);
}

/* Free the page and its slot.  It is out of the table and of every list. */
static void
page_free (BfPage *page)
{
  BfHandle *handle = page->handle;

  g_assert (page->io_refs == 0 && page->pin_count == 0 && !page->in_lru && !page->in_dirty);
  bf_ram_free_slot (handle->ram, handle->pool, page->slot);
  g_free (page);
}

void
bf_page_drop (BfPage *page)
{
  BfHandle *handle = page->handle;

  bf_assert_locked ();
  g_assert (!page->orphaned);
  if (handle->rmap != NULL)
    handle->rmap->unmap (page);
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
      return;
    }
  page_free (page);
}

/* Reclaim @page (clean, in the LRU).  The reverse map unmaps the pages
 * after it in the LRU too: see vma_unmap_for_reclaim(). */

void
bf_page_reclaim (BfPage *page)
{
  BfHandle *handle = page->handle;

  bf_assert_locked ();
  g_assert (page->in_lru);
  if (handle->rmap != NULL)
    handle->rmap->unmap_for_reclaim (page);
  bf_page_drop (page);
}

/* After an I/O reference or a pin went: free an orphan nobody uses any more. */
static void
page_release (BfPage *page)
{
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
  g_assert (page->io_refs > 0);
  page->io_refs--;
  page_release (page);
}

void
bf_page_pin (BfPage *page, gboolean writable)
{
  g_assert (!writable || page->state == BF_PAGE_DIRTY);
  page->pin_count++;
  if (writable)
    page->write_pins++;
  bf_page_update_lru (page, FALSE);
}

void
bf_page_unpin (BfPage *page, gboolean writable)
{
  g_assert (page->pin_count > 0);
  page->pin_count--;
  if (writable)
    page->write_pins--;
  page_release (page);
}

/* -- getting a page ------------------------------------------------------------ */

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

  page = g_hash_table_lookup (handle->pages, &index);
  if (page == NULL)
    {
      BfPage *dropped = g_hash_table_lookup (handle->dropped_storing, &index);
      guint64 slot;

      if (dropped != NULL && dropped->io_thread != bf_thread_self ())
        {
          bf_wait ();
          return BF_GET_RETRY;
        }
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

      bf_unlock ();
      ok = handle->ops->load (handle->data, index, bf_pool_slot_addr (handle->pool, slot),
                              handle->page_size, &local_error);
      bf_lock ();

      if (!ok && local_error == NULL)
        bf_set_generic_error (&local_error, "Loading", index);
      page->io_thread = NULL;

      if (page->orphaned)
        {
          /* Invalidated (or its handle closed) while loading: the data is
           * stale, throw it away; the next access loads afresh. */
          g_clear_error (&local_error);
          bf_page_io_unref (page);
        }
      else if (!ok)
        {
          page->io_refs--;
          g_hash_table_remove (handle->pages, &page->index);
          page_free (page);
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
    {
      if (page->io_thread == bf_thread_self ())
        {
          /* Waiting would be waiting for ourselves, forever. */
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                       "Page %" G_GUINT64_FORMAT " was accessed from its own %s callback", index,
                       page->storing ? "store" : "load");
          return BF_GET_ERROR;
        }
      bf_wait ();
      return BF_GET_RETRY;
    }

  g_assert (page->state == BF_PAGE_LOADED || page->state == BF_PAGE_DIRTY);
  if (write && page->state == BF_PAGE_LOADED)
    page_set_dirty (page);
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
               GError **error)
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
  handle->pages = g_hash_table_new (g_int64_hash, g_int64_equal);
  handle->dropped_storing = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_queue_init (&handle->dirty);
  g_queue_init (&handle->vmas);
  /* RAM reclaims through this: it knows pages only as LRU entries. */
  ram->evict = bf_page_reclaim;
  bf_unlock ();
  return handle;
}

gboolean
bf_handle_close (BfHandle *handle)
{
  GPtrArray *pages;
  GHashTableIter iter;
  gpointer value;

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

  /* Drop every page, dirty or not.  A load still in flight (its VMA was
   * unmapped under it) finishes on an orphan and releases our last ref. */
  handle->closed = TRUE;
  pages = g_ptr_array_new ();
  g_hash_table_iter_init (&iter, handle->pages);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (pages, value);
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

guint
bf_handle_discard (BfHandle *handle)
{
  guint n = 0;

  bf_lock ();
  /* The parent's changes are the parent's to drop (see "fork()"). */
  while (!bf_ram_is_forked (handle->ram) && !g_queue_is_empty (&handle->dirty))
    {
      bf_page_drop (handle->dirty.head->data);
      n++;
    }
  bf_unlock ();
  return n;
}

void
bf_handle_invalidate_page (BfHandle *handle, guint64 index)
{
  BfPage *page;

  bf_lock ();
  page = g_hash_table_lookup (handle->pages, &index);
  if (page != NULL && !bf_ram_is_forked (handle->ram))
    bf_page_drop (page);
  bf_unlock ();
}
