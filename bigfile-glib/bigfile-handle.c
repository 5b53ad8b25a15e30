/* bigfile-glib - a changeable snapshot of a BigfileFile
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bigfile-private.h"

/**
 * SECTION:bigfile-handle
 * @title: BigfileHandle
 * @short_description: A changeable snapshot of a file: pages, changes, writeout
 * @include: bigfile-glib/bigfile.h
 * @see_also: #BigfileVma, #BigfileFile, #BigfileRam
 *
 * A #BigfileHandle opens a #BigfileFile, with its pages kept in a
 * #BigfileRam. Map ranges of it with bigfile_handle_map() and use them as
 * memory; what the program writes stays in memory as dirty pages until
 * bigfile_handle_writeout() or bigfile_handle_writeout_async() stores it,
 * or bigfile_handle_discard() drops it. Each page is EMPTY, LOADING, LOADED
 * or DIRTY (#BigfilePageState): the [overview][bigfile-concepts] draws how
 * one state leads to another, and states the rules of [threads and
 * signals][bigfile-threads] and of [asynchronous writeout][bigfile-async].
 */

/**
 * BigfileHandle:
 *
 * An open #BigfileFile: its pages in memory, and the changes made to them.
 *
 * A handle splits its file into pages of the file's block size and keeps in
 * memory (taken from a #BigfileRam) the pages that were touched. Map ranges
 * of it with bigfile_handle_map() and use them as plain memory: reading a
 * page that is not in memory loads it from the file; writing a page marks it
 * dirty. Changes stay in memory, invisible to the file, until
 * bigfile_handle_writeout() stores them, or bigfile_handle_discard() throws
 * them away. A handle is thus a snapshot of the file that the program can
 * change and then save or abandon, like a transaction.
 *
 * Clean pages come and go as the budget of the #BigfileRam requires; dirty
 * pages stay in memory until written out or discarded.
 *
 * |[<!-- language="C" -->
 * g_autoptr(GError) error = NULL;
 * g_autoptr(BigfileLocalFile) file = NULL;
 * g_autoptr(BigfileRam) ram = NULL;
 * g_autoptr(BigfileHandle) handle = NULL;
 * g_autoptr(BigfileVma) vma = NULL;
 * guint8 *data;
 *
 * file = bigfile_local_file_new ("data.bin", 2 * 1024 * 1024,
 *                                BIGFILE_LOCAL_FILE_FLAGS_CREATE, &error);
 * if (file == NULL)
 *   return FALSE;
 * ram = bigfile_ram_new (0);
 * handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
 * if (handle == NULL)
 *   return FALSE;
 *
 * // 1024 pages of 2 MiB: 2 GiB of address space, no memory yet
 * vma = bigfile_handle_map (handle, 0, 1024, &error);
 * if (vma == NULL)
 *   return FALSE;
 *
 * data = bigfile_vma_get_data (vma);
 * data[5000000] += 1;  // loads page 2, then marks it dirty
 *
 * return bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error);
 * ]|
 *
 * ## Threads and main contexts
 *
 * A handle belongs to the thread that created it, and to that thread's
 * thread-default #GMainContext (its owner context). Its signals and
 * property notifications are emitted there only, never from the thread that
 * faulted or from a worker thread, so handlers written in JavaScript or
 * Python work. #BigfileHandle:n-dirty-pages changes inside page faults, so
 * its notification comes from an idle on the owner context, shortly after.
 *
 * The methods of a handle may be called from any thread. Blocks of a file
 * that is not thread-safe (bigfile_file_is_thread_safe()), such as one
 * implemented in a script, are loaded and stored on the owner thread only:
 * elsewhere, an access that needs a load fails with
 * %BIGFILE_FILE_ERROR_WRONG_THREAD. Closing a handle, or dropping its last
 * reference, while other threads use it is a programmer error.
 *
 * ## fork()
 *
 * A handle belongs to the process that opened it. In a child made by
 * fork() its methods that would use pages (writeouts, mapping it) fail with
 * %BIGFILE_HANDLE_ERROR_FORKED, those that return no error
 * (bigfile_handle_discard(), bigfile_handle_invalidate_page()) do nothing,
 * and closing or dropping it frees only what the child holds: the parent's
 * pages and file are never touched. To use the file in the child, open it
 * there again with a new #BigfileRam. See [fork()][bigfile-fork].
 *
 * Since: 1.0
 */

struct _BigfileHandle
{
  GObject parent_instance;

  /* Strong references: the engine handle calls back into @file, and its
   * pages live in @ram. Both are kept after close (for the getters) and
   * dropped in dispose, once the engine handle is gone. */
  BigfileFile *file;
  BigfileRam *ram;

  /* NULL when closed, or when the handle was made by g_object_new() and not
   * by bigfile_handle_new(): such a handle is born closed. */
  BfHandle *engine;
  gsize page_size;
  gboolean closed;

  /* Where signals go: the thread that created the handle and its
   * thread-default context.  Non-thread-safe files are used there only. */
  GThread *owner_thread;
  GMainContext *owner_context;
  gboolean thread_safe;

  /* n-dirty-pages changes with the engine lock held, often in the fault
   * handler: the engine's dirty_changed hook sets this flag and wakes
   * notify_source, which notifies on the owner context. */
  gint dirty_changed;
  GSource *notify_source;
};

enum
{
  PROP_0,
  PROP_FILE,
  PROP_RAM,
  PROP_PAGE_SIZE,
  PROP_N_DIRTY_PAGES,
  PROP_CLOSED,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

enum
{
  SIGNAL_PAGE_INVALIDATED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_TYPE (BigfileHandle, bigfile_handle, G_TYPE_OBJECT)

/* The public flags are passed to the engine as they are. */
G_STATIC_ASSERT ((int)BIGFILE_WRITEOUT_STORE == (int)BF_WRITEOUT_STORE);
G_STATIC_ASSERT ((int)BIGFILE_WRITEOUT_MARK_STORED == (int)BF_WRITEOUT_MARKSTORED);

/* The engine's callbacks; @data is the BigfileHandle, which outlives its
 * engine handle.  load and store run with the engine lock released, on the
 * thread that needs the page (any thread, for a fault).  The invokers make
 * sure a failure carries an error, even from an implementation in a binding
 * that forgot to set one. */
static gboolean
check_thread (BigfileHandle *self, const char *what, guint64 block, GError **error)
{
  if (self->thread_safe || g_thread_self () == self->owner_thread)
    return TRUE;

  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_WRONG_THREAD,
               "%s block %" G_GUINT64_FORMAT " of %s needs the thread that opened the handle: "
               "the file is not thread-safe",
               what, block, G_OBJECT_TYPE_NAME (self->file));
  return FALSE;
}

static gboolean
handle_load (gpointer data, guint64 block, void *buf, gsize len, GError **error)
{
  BigfileHandle *self = data;

  return check_thread (self, "Loading", block, error)
         && bigfile_file_load_block_raw (self->file, block, buf, len, error);
}

static gboolean
handle_store (gpointer data, guint64 block, const void *buf, gsize len, GError **error)
{
  BigfileHandle *self = data;

  return check_thread (self, "Storing", block, error)
         && bigfile_file_store_block_raw (self->file, block, buf, len, error);
}

/* Engine lock held, any thread, maybe in the fault handler: note and wake. */
static void
handle_dirty_changed (gpointer data)
{
  BigfileHandle *self = data;

  g_atomic_int_set (&self->dirty_changed, TRUE);
  if (self->notify_source != NULL)
    _bigfile_wake_source_wake (self->notify_source);
}

static const BfFileOps file_ops = {
  .load = handle_load,
  .store = handle_store,
  .dirty_changed = handle_dirty_changed,
};

/* On the owner context, after the dirty count changed. */
static void
notify_dirty_changed (GObject *object)
{
  BigfileHandle *self = BIGFILE_HANDLE (object);

  if (g_atomic_int_compare_and_exchange (&self->dirty_changed, TRUE, FALSE))
    g_object_notify_by_pspec (object, props[PROP_N_DIRTY_PAGES]);
}

static void
set_closed_error (GError **error)
{
  g_set_error_literal (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CLOSED,
                       "The handle is closed");
}

/* Closes the engine handle if it is open. FALSE if the engine refused
 * because mappings are still alive or a writeout runs (it emitted a
 * critical then). */
static gboolean
close_engine (BigfileHandle *self)
{
  if (self->engine == NULL)
    return TRUE;

  if (!bf_handle_close (self->engine))
    return FALSE;

  self->engine = NULL;
  self->closed = TRUE;

  return TRUE;
}

static void
bigfile_handle_dispose (GObject *object)
{
  BigfileHandle *self = BIGFILE_HANDLE (object);

  /* Every BigfileVma holds a reference on its handle, so when the last
   * reference goes there is no mapping and the close succeeds. It can fail
   * only if someone ran dispose by hand with mappings alive: then the file
   * and RAM must stay, since the engine handle still uses them. */
  if (close_engine (self))
    {
      g_clear_object (&self->file);
      g_clear_object (&self->ram);
      /* Only now: an engine handle still open may call the dirty hook. */
      g_clear_pointer (&self->notify_source, _bigfile_wake_source_free);
    }

  G_OBJECT_CLASS (bigfile_handle_parent_class)->dispose (object);
}

static void
bigfile_handle_finalize (GObject *object)
{
  BigfileHandle *self = BIGFILE_HANDLE (object);

  /* After a failed close in dispose: the VMAs are gone now. */
  if (close_engine (self))
    {
      g_clear_object (&self->file);
      g_clear_object (&self->ram);
    }
  else
    {
      /* Cannot happen while VMAs hold references. Leaking the engine handle
       * with its file and RAM is the only safe thing left. */
      g_critical ("A BigfileHandle was finalized with mappings alive; leaking it");
    }
  g_clear_pointer (&self->notify_source, _bigfile_wake_source_free);
  g_clear_pointer (&self->owner_context, g_main_context_unref);

  G_OBJECT_CLASS (bigfile_handle_parent_class)->finalize (object);
}

static void
bigfile_handle_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  BigfileHandle *self = BIGFILE_HANDLE (object);

  switch (prop_id)
    {
      case PROP_FILE:
        g_value_set_object (value, self->file);
        break;

      case PROP_RAM:
        g_value_set_object (value, self->ram);
        break;

      case PROP_PAGE_SIZE:
        g_value_set_uint64 (value, self->page_size);
        break;

      case PROP_N_DIRTY_PAGES:
        g_value_set_uint64 (value, bigfile_handle_get_n_dirty_pages (self));
        break;

      case PROP_CLOSED:
        g_value_set_boolean (value, self->closed);
        break;

      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_handle_class_init (BigfileHandleClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = bigfile_handle_dispose;
  object_class->finalize = bigfile_handle_finalize;
  object_class->get_property = bigfile_handle_get_property;

  /**
   * BigfileHandle:file:
   *
   * The #BigfileFile whose pages the handle holds.
   *
   * Since: 1.0
   */
  props[PROP_FILE] = g_param_spec_object ("file", NULL, NULL, BIGFILE_TYPE_FILE,
                                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileHandle:ram:
   *
   * The #BigfileRam the handle's pages live in.
   *
   * Since: 1.0
   */
  props[PROP_RAM] = g_param_spec_object ("ram", NULL, NULL, BIGFILE_TYPE_RAM,
                                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileHandle:page-size:
   *
   * The size of the handle's pages in bytes: the block size of its file.
   *
   * Since: 1.0
   */
  props[PROP_PAGE_SIZE] = g_param_spec_uint64 ("page-size", NULL, NULL, 0, G_MAXUINT64, 0,
                                               G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileHandle:n-dirty-pages:
   *
   * The number of dirty pages: changed, and not yet written out or
   * discarded. It changes as pages are written to, from any thread; the
   * notification is emitted on the handle's owner context, from an idle
   * shortly after the change (several changes may make one notification).
   *
   * Since: 1.0
   */
  props[PROP_N_DIRTY_PAGES]
      = g_param_spec_uint64 ("n-dirty-pages", NULL, NULL, 0, G_MAXUINT64, 0,
                             G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileHandle:closed:
   *
   * Whether the handle was closed with bigfile_handle_close().
   *
   * Since: 1.0
   */
  props[PROP_CLOSED]
      = g_param_spec_boolean ("closed", NULL, NULL, FALSE,
                              G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, props);

  /**
   * BigfileHandle::page-invalidated:
   * @handle: the #BigfileHandle
   * @page: the index of the page
   *
   * Emitted after bigfile_handle_invalidate_page() dropped a page, on the
   * handle's owner context: at once when it was called on the owner
   * thread, else from an idle there.
   *
   * Since: 1.0
   */
  signals[SIGNAL_PAGE_INVALIDATED]
      = g_signal_new ("page-invalidated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                      NULL, NULL, G_TYPE_NONE, 1, G_TYPE_UINT64);
}

static void
bigfile_handle_init (BigfileHandle *self)
{
  /* Open only once bigfile_handle_new() has an engine handle. */
  self->closed = TRUE;
}

/**
 * bigfile_handle_new:
 * @file: the #BigfileFile to open
 * @ram: the #BigfileRam to keep its pages in
 * @error: return location for a #GError
 *
 * Opens @file: creates a handle with no page in memory yet. Its page size
 * is the block size of @file, which must be a power of two from 4 KiB to
 * 2 MiB (%BIGFILE_HANDLE_ERROR_INVALID_BLOCK_SIZE otherwise).
 *
 * The handle keeps references on @file and @ram. Several handles may share
 * one @ram, and several handles may open the same @file: each is its own
 * snapshot, and they do not see each other's unsaved changes.
 *
 * Returns: (transfer full): a new #BigfileHandle, or %NULL on error
 *
 * Since: 1.0
 */
BigfileHandle *
bigfile_handle_new (BigfileFile *file, BigfileRam *ram, GError **error)
{
  BigfileHandle *self;
  BfHandle *engine;
  BfRam *engine_ram;
  gsize block_size;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), NULL);
  g_return_val_if_fail (BIGFILE_IS_RAM (ram), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  block_size = bigfile_file_get_block_size (file);
  if (!bf_page_size_is_valid (block_size))
    {
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_INVALID_BLOCK_SIZE,
                   "The block size of %s, %" G_GSIZE_FORMAT
                   " bytes, is not a power of two from 4 KiB to 2 MiB",
                   G_OBJECT_TYPE_NAME (file), block_size);
      return NULL;
    }

  engine_ram = _bigfile_ram_get_engine (ram);
  if (engine_ram == NULL)
    {
      g_set_error_literal (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                           "The page memory could not be set up");
      return NULL;
    }

  self = g_object_new (BIGFILE_TYPE_HANDLE, NULL);
  self->file = g_object_ref (file);
  self->ram = g_object_ref (ram);
  self->page_size = block_size;
  self->owner_thread = g_thread_self ();
  self->owner_context = g_main_context_ref_thread_default ();
  self->thread_safe = bigfile_file_is_thread_safe (file);
  self->notify_source = _bigfile_wake_source_new (self->owner_context, "BigfileHandle notify",
                                                  G_OBJECT (self), notify_dirty_changed);

  /* A local file may let clean pages come straight from its page cache;
   * the handle's reference keeps the descriptor open for the engine. */
  engine = bf_handle_new (engine_ram, block_size, &file_ops, self,
                          BIGFILE_IS_LOCAL_FILE (file)
                              ? _bigfile_local_file_get_map_fd (BIGFILE_LOCAL_FILE (file))
                              : -1,
                          error);
  if (engine == NULL)
    {
      g_object_unref (self);
      return NULL;
    }
  self->engine = engine;
  self->closed = FALSE;

  return self;
}

/**
 * bigfile_handle_get_file:
 * @handle: a #BigfileHandle
 *
 * Gets the file whose pages @handle holds.
 *
 * Returns: (transfer none): the #BigfileFile of @handle
 *
 * Since: 1.0
 */
BigfileFile *
bigfile_handle_get_file (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), NULL);

  return handle->file;
}

/**
 * bigfile_handle_get_ram:
 * @handle: a #BigfileHandle
 *
 * Gets the page memory @handle keeps its pages in.
 *
 * Returns: (transfer none): the #BigfileRam of @handle
 *
 * Since: 1.0
 */
BigfileRam *
bigfile_handle_get_ram (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), NULL);

  return handle->ram;
}

/**
 * bigfile_handle_get_page_size:
 * @handle: a #BigfileHandle
 *
 * Gets the size of the pages of @handle: the block size of its file.
 *
 * Returns: the page size in bytes
 *
 * Since: 1.0
 */
gsize
bigfile_handle_get_page_size (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), 0);

  return handle->page_size;
}

/**
 * bigfile_handle_get_n_dirty_pages:
 * @handle: a #BigfileHandle
 *
 * Gets the number of dirty pages of @handle: changed, and not yet written
 * out or discarded. Other threads writing to mappings may change it at any
 * moment.
 *
 * Returns: the number of dirty pages; 0 once @handle is closed
 *
 * Since: 1.0
 */
guint64
bigfile_handle_get_n_dirty_pages (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), 0);

  if (handle->engine == NULL)
    return 0;

  return bf_handle_get_n_dirty (handle->engine);
}

/**
 * bigfile_handle_is_closed:
 * @handle: a #BigfileHandle
 *
 * Tells whether @handle was closed with bigfile_handle_close().
 *
 * Returns: %TRUE if @handle is closed
 *
 * Since: 1.0
 */
gboolean
bigfile_handle_is_closed (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), TRUE);

  return handle->closed;
}

/**
 * bigfile_handle_get_page_state:
 * @handle: a #BigfileHandle
 * @page: the index of a page, from 0
 *
 * Tells what state page @page of @handle is in. Other threads may change
 * it at any moment; this is mostly for tests and diagnostics.
 *
 * Returns: the state of the page; %BIGFILE_PAGE_STATE_EMPTY once @handle is
 *   closed
 *
 * Since: 1.0
 */
BigfilePageState
bigfile_handle_get_page_state (BigfileHandle *handle, guint64 page)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), BIGFILE_PAGE_STATE_EMPTY);

  if (handle->engine == NULL)
    return BIGFILE_PAGE_STATE_EMPTY;

  switch (bf_handle_get_page_state (handle->engine, page))
    {
      case BF_PAGE_LOADING:
        return BIGFILE_PAGE_STATE_LOADING;

      case BF_PAGE_LOADED:
        return BIGFILE_PAGE_STATE_LOADED;

      case BF_PAGE_DIRTY:
        return BIGFILE_PAGE_STATE_DIRTY;

      /* A page whose load was invalidated has already left the table, so the
       * lookup cannot return it: for the handle it is empty, like anything
       * else the engine might add. */
      case BF_PAGE_LOADING_INVALIDATED:
      case BF_PAGE_EMPTY:
      default:
        return BIGFILE_PAGE_STATE_EMPTY;
    }
}

/**
 * bigfile_handle_map:
 * @handle: a #BigfileHandle
 * @first_page: the index of the first page to map
 * @n_pages: how many pages to map; not 0
 * @error: return location for a #GError
 *
 * Maps pages @first_page to @first_page + @n_pages - 1 of @handle at a new
 * range of addresses. Nothing is loaded yet: each page loads when it is
 * first read, and becomes dirty when it is first written to. Mapping costs
 * address space, not memory, so mapping a file much larger than the RAM
 * budget is fine.
 *
 * Several mappings may cover the same pages: they share them, and a change
 * made through one is seen through all.
 *
 * Fails with %BIGFILE_HANDLE_ERROR_CLOSED if @handle is closed,
 * %BIGFILE_HANDLE_ERROR_INVALID_RANGE if the range does not fit in the
 * address space, or %BIGFILE_VMA_ERROR_MAP_FAILED if the system refused.
 *
 * Returns: (transfer full): the mapping, or %NULL on error
 *
 * Since: 1.0
 */
BigfileVma *
bigfile_handle_map (BigfileHandle *handle, guint64 first_page, guint64 n_pages, GError **error)
{
  BfVma *engine_vma;

  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), NULL);
  g_return_val_if_fail (n_pages > 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (handle->engine == NULL)
    {
      set_closed_error (error);
      return NULL;
    }

  /* The engine checks the range itself (INVALID_RANGE). */
  bf_fault_install ();
  engine_vma = bf_vma_map (handle->engine, first_page, n_pages, error);
  if (engine_vma == NULL)
    return NULL;

  return _bigfile_vma_new (handle, engine_vma);
}

/**
 * bigfile_handle_writeout:
 * @handle: a #BigfileHandle
 * @flags: what to do with the dirty pages: not 0
 * @error: return location for a #GError
 *
 * Saves the changes of @handle: stores each dirty page through its file,
 * and/or marks it clean, as @flags say (%BIGFILE_WRITEOUT_DEFAULT does
 * both). Pages are stored in order of their index.
 *
 * While a page is being stored it is read-only: a thread writing to it
 * waits until its store returns. Other pages stay writable.
 *
 * Pages are handled one at a time: with %BIGFILE_WRITEOUT_DEFAULT each is
 * marked clean as soon as its store returns. If a store fails, writeout
 * stops there and returns its error: the pages before it are done, that
 * page and the ones after it stay dirty, and a retry stores them. Pages
 * discarded or invalidated while the writeout runs are skipped.
 *
 * Fails with %BIGFILE_HANDLE_ERROR_BUSY if another writeout of @handle is
 * running, and %BIGFILE_HANDLE_ERROR_CLOSED if @handle is closed.
 *
 * This calls the file's store method on the caller's thread: for a file
 * implemented in JavaScript, call it from the main thread.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_handle_writeout (BigfileHandle *handle, BigfileWriteoutFlags flags, GError **error)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), FALSE);
  g_return_val_if_fail (flags != 0, FALSE);
  g_return_val_if_fail ((flags & ~BIGFILE_WRITEOUT_DEFAULT) == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (handle->engine == NULL)
    {
      set_closed_error (error);
      return FALSE;
    }

  return bf_handle_writeout (handle->engine, (BfWriteoutFlags)flags, error);
}

/* -- asynchronous writeout ----------------------------------------------------
 *
 * The engine's writeout goes page by page (bf_writeout_step), so it can be
 * driven from anywhere.  Two drivers:
 *
 *  - a worker thread (GTask), for files that are thread-safe: stores run
 *    there, and the calling thread keeps running its main loop;
 *  - slices from an idle source on the handle's owner context, for the others
 *    (files implemented in JavaScript or Python must be called on the owner
 *    thread): each dispatch stores pages for about WRITEOUT_SLICE_USEC, then
 *    returns to the main loop.
 *
 * Either way progress goes to the caller's context (the task's) through one
 * coalescing idle source, cancellation is checked between pages, and the
 * engine keeps what was stored clean and the rest dirty.
 */

#define WRITEOUT_SLICE_USEC 5000

typedef struct
{
  BfWriteout *wo;
  gsize page_size;

  BigfileProgressCallback progress;
  gpointer progress_data;
  GDestroyNotify progress_data_destroy;

  /* The caller's callback: the task calls writeout_task_done() first, on
   * the caller's context, so that the progress data is freed there too
   * (not on the worker thread that may drop the task's last reference). */
  GAsyncReadyCallback callback;
  gpointer user_data;

  /* Progress noted by the driver, delivered by an idle on the task's
   * context; progress_pending says one is attached. */
  GMutex progress_lock;
  guint64 progress_done;
  guint64 progress_total;
  gboolean progress_pending;
} WriteoutData;

static void
release_progress (WriteoutData *data)
{
  GDestroyNotify destroy = data->progress_data_destroy;

  data->progress = NULL;
  data->progress_data_destroy = NULL;
  if (destroy != NULL)
    destroy (data->progress_data);
}

static void
writeout_data_free (gpointer user_data)
{
  WriteoutData *data = user_data;

  if (data->wo != NULL)
    bf_writeout_end (data->wo);
  release_progress (data);
  g_mutex_clear (&data->progress_lock);
  g_free (data);
}

/* Delivers the progress noted last, if not yet delivered. */
static void
flush_progress (GTask *task)
{
  WriteoutData *data = g_task_get_task_data (task);
  guint64 done, total;

  g_mutex_lock (&data->progress_lock);
  if (!data->progress_pending || data->progress == NULL)
    {
      g_mutex_unlock (&data->progress_lock);
      return;
    }
  done = data->progress_done;
  total = data->progress_total;
  data->progress_pending = FALSE;
  g_mutex_unlock (&data->progress_lock);

  data->progress (done, total, data->progress_data);
}

static gboolean
deliver_progress_cb (gpointer user_data)
{
  flush_progress (user_data);
  return G_SOURCE_REMOVE;
}

/* On the caller's context: the caller's callback, then the progress data
 * goes (a late delivery idle finds no callback). */
static void
writeout_task_done (GObject *source_object, GAsyncResult *result, gpointer unused)
{
  WriteoutData *data = g_task_get_task_data (G_TASK (result));

  if (data->callback != NULL)
    data->callback (source_object, result, data->user_data);
  release_progress (data);
}

/* Any thread.  Coalesced: while one delivery is pending, later progress
 * only updates what it will deliver. */
static void
post_progress (GTask *task)
{
  WriteoutData *data = g_task_get_task_data (task);
  guint64 pages_done, pages_total;
  gboolean attach;

  if (data->progress == NULL)
    return;

  bf_writeout_get_progress (data->wo, &pages_done, &pages_total);
  g_mutex_lock (&data->progress_lock);
  data->progress_done = pages_done * data->page_size;
  data->progress_total = pages_total * data->page_size;
  attach = !data->progress_pending;
  data->progress_pending = TRUE;
  g_mutex_unlock (&data->progress_lock);

  if (attach)
    {
      GSource *source = g_idle_source_new ();

      g_source_set_priority (source, g_task_get_priority (task));
      g_source_set_static_name (source, "BigfileHandle writeout progress");
      g_source_set_callback (source, deliver_progress_cb, g_object_ref (task), g_object_unref);
      g_source_attach (source, g_task_get_context (task));
      g_source_unref (source);
    }
}

/* Runs writeout steps until done, an error, cancellation, or @deadline
 * (monotonic µs; 0: none).  Returns TRUE when the writeout is over, with
 * *error set if it failed. */
static gboolean
writeout_run (GTask *task, gint64 deadline, GError **error)
{
  WriteoutData *data = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);
  gboolean done = FALSE;

  while (!done)
    {
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return TRUE;
      if (!bf_writeout_step (data->wo, &done, error))
        return TRUE;
      post_progress (task);
      if (!done && deadline != 0 && g_get_monotonic_time () >= deadline)
        return FALSE;
    }
  return TRUE;
}

static void
writeout_return (GTask *task, GError *error)
{
  WriteoutData *data = g_task_get_task_data (task);

  /* End the engine writeout before completing: the callback may start
   * another one. */
  bf_writeout_end (data->wo);
  data->wo = NULL;

  /* The last progress goes before the callback.  From a worker thread the
   * pending idle runs first (same priority, queued earlier); on the task's
   * own context GTask may call back at once, so deliver it here. */
  if (data->progress != NULL && g_main_context_is_owner (g_task_get_context (task)))
    flush_progress (task);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
writeout_thread (GTask *task, gpointer source_object, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;

  writeout_run (task, 0, &error);
  writeout_return (task, error);
}

static gboolean
writeout_slice (gpointer user_data)
{
  GTask *task = user_data;
  GError *error = NULL;

  if (!writeout_run (task, g_get_monotonic_time () + WRITEOUT_SLICE_USEC, &error))
    return G_SOURCE_CONTINUE;

  writeout_return (task, error);
  return G_SOURCE_REMOVE;
}

/**
 * bigfile_handle_writeout_async:
 * @handle: a #BigfileHandle
 * @flags: what to do with the dirty pages: not 0
 * @io_priority: the I/O priority of the request, e.g. %G_PRIORITY_DEFAULT
 * @cancellable: (nullable): a #GCancellable, or %NULL
 * @progress_callback: (nullable) (scope notified) (closure progress_data)
 *   (destroy progress_data_destroy): called with the bytes written so far
 * @progress_data: data for @progress_callback
 * @progress_data_destroy: (nullable): frees @progress_data on the caller's
 *   main context, right after @callback returns
 * @callback: (scope async): called when the writeout is over
 * @user_data: (closure callback): data for @callback
 *
 * Starts writing out @handle, like bigfile_handle_writeout(), without
 * blocking the caller's main loop; @callback runs on the caller's
 * thread-default main context when it is over: call
 * bigfile_handle_writeout_finish() there.
 *
 * Which pages are written out is decided now: the dirty pages at this call,
 * stored in the order of their index. The program may go on reading and
 * writing the mappings meanwhile: a page is read-only only while it is being
 * stored (a writer waits for that one store), and what the program changes
 * during the writeout is dirty after it.
 *
 * If the file is thread-safe (bigfile_file_is_thread_safe()), pages are
 * stored in a worker thread. Otherwise (files implemented in JavaScript or
 * Python) they are stored on the handle's owner context, in slices of about
 * 5 ms from an idle source of priority @io_priority or
 * %G_PRIORITY_DEFAULT_IDLE, whichever is lower, so that the main loop stays
 * responsive; that context must be running.
 *
 * @progress_callback, if given, is called on the caller's main context as
 * pages are stored, with the bytes stored so far and the bytes to store in
 * all; the last call (done == total) comes before @callback, when the
 * writeout succeeds.
 *
 * Cancelling @cancellable stops the writeout between two pages: the pages
 * stored before stay stored (and, with %BIGFILE_WRITEOUT_MARK_STORED,
 * clean), the others stay dirty, and the finish function fails with
 * %G_IO_ERROR_CANCELLED. A failed store stops it the same way with the
 * store's error. Nothing is lost: a later writeout stores what is left.
 *
 * Only one writeout of a handle runs at a time: another one fails with
 * %BIGFILE_HANDLE_ERROR_BUSY. The handle must not be closed before
 * @callback runs.
 *
 * Since: 1.0
 */
void
bigfile_handle_writeout_async (BigfileHandle *handle, BigfileWriteoutFlags flags, int io_priority,
                               GCancellable *cancellable, BigfileProgressCallback progress_callback,
                               gpointer progress_data, GDestroyNotify progress_data_destroy,
                               GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  WriteoutData *data;
  GError *error = NULL;
  GSource *source;

  g_return_if_fail (BIGFILE_IS_HANDLE (handle));
  g_return_if_fail (flags != 0 && (flags & ~BIGFILE_WRITEOUT_DEFAULT) == 0);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (handle, cancellable, writeout_task_done, NULL);
  g_task_set_source_tag (task, bigfile_handle_writeout_async);
  g_task_set_priority (task, io_priority);
  g_task_set_name (task, "bigfile_handle_writeout_async");

  data = g_new0 (WriteoutData, 1);
  data->page_size = handle->page_size;
  data->progress = progress_callback;
  data->progress_data = progress_data;
  data->progress_data_destroy = progress_data_destroy;
  data->callback = callback;
  data->user_data = user_data;
  g_mutex_init (&data->progress_lock);
  g_task_set_task_data (task, data, writeout_data_free);

  if (handle->engine == NULL)
    {
      g_task_return_new_error (task, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CLOSED,
                               "The handle is closed");
      return;
    }

  data->wo = bf_writeout_begin (handle->engine, (BfWriteoutFlags)flags, &error);
  if (data->wo == NULL)
    {
      g_task_return_error (task, error);
      return;
    }

  if (handle->thread_safe)
    {
      g_task_run_in_thread (task, writeout_thread);
      return;
    }

  source = g_idle_source_new ();
  g_source_set_priority (source, MAX (io_priority, G_PRIORITY_DEFAULT_IDLE));
  g_source_set_static_name (source, "BigfileHandle writeout slices");
  g_source_set_callback (source, writeout_slice, g_object_ref (task), g_object_unref);
  g_source_attach (source, handle->owner_context);
  g_source_unref (source);
}

/**
 * bigfile_handle_writeout_finish:
 * @handle: a #BigfileHandle
 * @result: the #GAsyncResult given to the callback
 * @error: return location for a #GError
 *
 * Finishes bigfile_handle_writeout_async().
 *
 * Returns: %TRUE if every page was written out; %FALSE with @error set if a
 *   store failed, the writeout was cancelled (%G_IO_ERROR_CANCELLED), or it
 *   could not start
 *
 * Since: 1.0
 */
gboolean
bigfile_handle_writeout_finish (BigfileHandle *handle, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, handle), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == bigfile_handle_writeout_async,
                        FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * bigfile_handle_discard:
 * @handle: a #BigfileHandle
 *
 * Throws away the changes of @handle: every dirty page is dropped from
 * memory, so that the next access loads it again from the file as it was
 * last stored. Clean pages stay.
 *
 * May be called from any thread, also while a writeout of @handle runs (the
 * pages discarded are then not stored) and from inside a load or store of
 * @handle's file (the engine lock is not held there).
 *
 * Returns: the number of pages discarded; 0 once @handle is closed
 *
 * Since: 1.0
 */
guint
bigfile_handle_discard (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), 0);

  if (handle->engine == NULL)
    return 0;

  return bf_handle_discard (handle->engine);
}

typedef struct
{
  BigfileHandle *handle;
  guint64 page;
} InvalidatedData;

static gboolean
emit_page_invalidated_cb (gpointer user_data)
{
  InvalidatedData *data = user_data;

  g_signal_emit (data->handle, signals[SIGNAL_PAGE_INVALIDATED], 0, data->page);
  return G_SOURCE_REMOVE;
}

static void
invalidated_data_free (gpointer user_data)
{
  InvalidatedData *data = user_data;

  g_object_unref (data->handle);
  g_free (data);
}

/* Signals are emitted on the owner context only: at once on the owner
 * thread (unless inside a page fault), else from an idle there. */
static void
emit_page_invalidated (BigfileHandle *self, guint64 page)
{
  InvalidatedData *data;
  GSource *source;

  if (_bigfile_can_emit_now (self->owner_thread))
    {
      g_signal_emit (self, signals[SIGNAL_PAGE_INVALIDATED], 0, page);
      return;
    }

  data = g_new (InvalidatedData, 1);
  data->handle = g_object_ref (self);
  data->page = page;
  source = g_idle_source_new ();
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_static_name (source, "BigfileHandle page-invalidated");
  g_source_set_callback (source, emit_page_invalidated_cb, data, invalidated_data_free);
  g_source_attach (source, self->owner_context);
  g_source_unref (source);
}

/**
 * bigfile_handle_invalidate_page:
 * @handle: a #BigfileHandle
 * @page: the index of the page
 *
 * Drops page @page from memory whatever its state, so that the next access
 * loads it again from the file. Call it when the block changed in the
 * file behind the handle's back (another process or handle stored it).
 *
 * A dirty page loses its changes. A page being loaded by another thread
 * is loaded again on its next access: the data of the load in progress is
 * thrown away. A page not in memory is left as it is.
 *
 * May be called from any thread, also while a writeout runs and from inside
 * a load or store of @handle's file. A page invalidated while it is being
 * stored is dropped from memory; the store in flight still completes, and
 * the next access to the page waits for it before loading the block.
 * Does nothing once @handle is closed.
 *
 * Emits #BigfileHandle::page-invalidated on the owner context.
 *
 * Since: 1.0
 */
void
bigfile_handle_invalidate_page (BigfileHandle *handle, guint64 page)
{
  g_return_if_fail (BIGFILE_IS_HANDLE (handle));

  if (handle->engine == NULL)
    return;

  bf_handle_invalidate_page (handle->engine, page);
  emit_page_invalidated (handle, page);
}

/**
 * bigfile_handle_close:
 * @handle: a #BigfileHandle
 *
 * Closes @handle: drops all its pages from memory, clean or dirty (write
 * out first to keep changes). Afterwards @handle can no longer be mapped
 * or written out, and its getters give harmless defaults; bigfile_handle_get_file()
 * and bigfile_handle_get_ram() still work.
 *
 * All mappings of @handle must be unmapped first (bigfile_vma_unmap()), and
 * no writeout of it may be running: closing a handle that is still mapped
 * or writing out is a programmer error, reported with a critical warning,
 * and leaves the handle open.
 *
 * Dropping the last reference to a handle closes it.
 *
 * Returns: %TRUE if @handle is closed (also when it already was), %FALSE if
 *   it still had mappings or a writeout running
 *
 * Since: 1.0
 */
gboolean
bigfile_handle_close (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), FALSE);

  if (handle->closed)
    return TRUE;

  if (!close_engine (handle))
    return FALSE;

  g_object_notify_by_pspec (G_OBJECT (handle), props[PROP_CLOSED]);

  return TRUE;
}

/* The engine handle behind @handle: NULL once closed. */
BfHandle *
_bigfile_handle_get_engine (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), NULL);

  return handle->engine;
}
