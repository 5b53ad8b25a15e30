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
 * change and then save or abandon.
 *
 * What a save does and does not promise today: bigfile_handle_writeout()
 * stores the dirty pages one by one, in order of their index, through the
 * file's store method, and marks each clean once it is stored (see
 * #BigfileWriteoutFlags). It is not atomic: if it fails, or the program
 * dies, in the middle, the file holds the pages stored so far and the
 * older contents of the others (the pages not stored stay dirty in memory,
 * and a retry stores them). It is not durable by itself: whether stored
 * blocks survive a crash of the machine is up to the file (for
 * #BigfileLocalFile, until the kernel writes its page cache back). Nor is
 * the snapshot isolated from other writers: clean pages are loaded when
 * first needed and reloaded after reclaim, so they show the file as it is
 * then, not as it was when the handle was opened.
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
 * Python work. #BigfileHandle:n-dirty-pages changes inside page faults, and
 * #BigfileHandle:size may change in a writeout on a worker thread, so their
 * notifications come from an idle on the owner context, shortly after.
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

/* Consecutive pages whose page-invalidated is pending. */
typedef struct
{
  guint64 first;
  guint64 last; /* inclusive, so that page G_MAXUINT64 has a run too */
} PageRun;

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

  /* n-dirty-pages and size change with the engine lock held, often in the
   * fault handler or a writeout's worker thread: the engine's dirty_changed
   * and size_changed hooks set these flags and wake notify_source, which
   * notifies on the owner context. */
  gint dirty_changed;
  gint size_changed;
  GSource *notify_source;

  /* page-invalidated for invalidations made off the owner thread or in a
   * fault: emit_page_invalidated() adds the page to the pending set and
   * wakes invalidated_source, which emits on the owner context (see
   * "page-invalidated from other threads" below).  invalidated_lock
   * protects the set, runs and collapsed marker; it is a leaf, held only
   * around the set's own operations: never with the engine lock held (the
   * engine's invalidation is over when it is taken), never while waking the
   * source or while a handler runs. */
  GMutex invalidated_lock;
  GArray *invalidated_runs; /* of PageRun; never NULL */
  gboolean invalidated_many;
  GSource *invalidated_source;

  /* Whether the file has a size (set once by bigfile_handle_new()), and the
   * size when the handle was closed, for the getters. */
  gboolean has_size;
  guint64 closed_size;

  /* Snapshots ("Snapshots and conflicts" below).  refresh_lock keeps one
   * refresh at a time, from the file's refresh to the engine knowing what
   * changed, so that a writeout's conflict check (in the begin op) never
   * runs between the two; it is taken with the engine lock NOT held, and
   * nothing is emitted while it is held.  auto_refresh and the handler are
   * the owner thread's; refresh_source runs the refresh on the owner
   * context after ::changed. */
  GMutex refresh_lock;
  gboolean auto_refresh;
  gboolean refresh_wanted; /* ::changed came since the last refresh */
  gulong changed_handler;
  GSource *refresh_source;
  /* This handle holds its file's one handle slot (files with snapshots). */
  gboolean claimed_file;
};

enum
{
  PROP_0,
  PROP_FILE,
  PROP_RAM,
  PROP_PAGE_SIZE,
  PROP_N_DIRTY_PAGES,
  PROP_CLOSED,
  PROP_SIZE,
  PROP_AUTO_REFRESH,
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
G_STATIC_ASSERT ((int)BIGFILE_WRITEOUT_OVERWRITE == (int)BF_WRITEOUT_OVERWRITE);
G_STATIC_ASSERT ((int)BIGFILE_WRITEOUT_DURABLE == (int)BF_WRITEOUT_DURABLE);

#define WRITEOUT_ALL_FLAGS                                                                         \
  (BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARK_STORED | BIGFILE_WRITEOUT_OVERWRITE              \
   | BIGFILE_WRITEOUT_DURABLE)
#define WRITEOUT_FLAGS_VALID(flags)                                                                \
  (((flags)&BIGFILE_WRITEOUT_DEFAULT) != 0 && ((flags) & ~WRITEOUT_ALL_FLAGS) == 0)

/* The qdata of a file with snapshots that has its one handle. */
#define FILE_HANDLE_KEY "bigfile-handle-of-file"

/* The engine's callbacks; @data is the BigfileHandle, which outlives its
 * engine handle.  load and store run with the engine lock released, on the
 * thread that needs the page (any thread, for a fault).  The invokers make
 * sure a failure carries an error, even from an implementation in a binding
 * that forgot to set one. */
static gboolean
thread_may_call (BigfileHandle *self)
{
  return self->thread_safe || g_thread_self () == self->owner_thread;
}

static gboolean
check_thread (BigfileHandle *self, const char *what, guint64 block, GError **error)
{
  if (thread_may_call (self))
    return TRUE;

  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_WRONG_THREAD,
               "%s block %" G_GUINT64_FORMAT " of %s needs the thread that opened the handle: "
               "the file is not thread-safe",
               what, block, G_OBJECT_TYPE_NAME (self->file));
  return FALSE;
}

/* check_thread() for what is not about one block: "@what FILE". */
static gboolean
check_thread_for (BigfileHandle *self, const char *what, GError **error)
{
  if (thread_may_call (self))
    return TRUE;

  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_WRONG_THREAD,
               "%s %s needs the thread that opened the handle: the file is not thread-safe", what,
               G_OBJECT_TYPE_NAME (self->file));
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

static gboolean
handle_set_size (gpointer data, guint64 size, GError **error)
{
  BigfileHandle *self = data;

  return check_thread_for (self, "Setting the size of", error)
         && bigfile_file_set_size (self->file, size, error);
}

/* Engine lock held, any thread, maybe in the fault handler: note @flag and
 * wake the notify source. */
static void
note_change (BigfileHandle *self, gint *flag)
{
  g_atomic_int_set (flag, TRUE);
  if (self->notify_source != NULL)
    _bigfile_wake_source_wake (self->notify_source);
}

static void
handle_dirty_changed (gpointer data)
{
  BigfileHandle *self = data;

  note_change (self, &self->dirty_changed);
}

static void
handle_size_changed (gpointer data)
{
  BigfileHandle *self = data;

  note_change (self, &self->size_changed);
}

static gboolean refresh_now (BigfileHandle *self, GError **error);

static gboolean
handle_begin (gpointer data, GError **error)
{
  BigfileHandle *self = data;

  if (!check_thread_for (self, "Writing out", error))
    return FALSE;
  if (!bigfile_file_begin_transaction (self->file, error))
    return FALSE;
  /* Inside the transaction no other client commits: the snapshot is now
   * the newest there is, and the engine knows every conflict. */
  if (!refresh_now (self, error))
    {
      bigfile_file_abort_transaction (self->file);
      return FALSE;
    }
  return TRUE;
}

static gboolean
handle_commit (gpointer data, gboolean durable, GError **error)
{
  BigfileHandle *self = data;

  return bigfile_file_commit_transaction (
      self->file, durable ? BIGFILE_COMMIT_FLAGS_DURABLE : BIGFILE_COMMIT_FLAGS_NONE, error);
}

static void
handle_abort (gpointer data)
{
  BigfileHandle *self = data;

  bigfile_file_abort_transaction (self->file);
}

static const BfFileOps file_ops = {
  .load = handle_load,
  .store = handle_store,
  .dirty_changed = handle_dirty_changed,
  .set_size = handle_set_size,
  .size_changed = handle_size_changed,
};

/* For transactional files (bigfile_file_is_transactional()). */
static const BfFileOps file_ops_transactional = {
  .load = handle_load,
  .store = handle_store,
  .dirty_changed = handle_dirty_changed,
  .set_size = handle_set_size,
  .size_changed = handle_size_changed,
  .begin = handle_begin,
  .commit = handle_commit,
  .abort = handle_abort,
};

/* On the owner context (from notify_source, or at once on the owner thread
 * outside a fault): the notifications noted since the last time. */
static void
notify_changes (GObject *object)
{
  BigfileHandle *self = BIGFILE_HANDLE (object);

  if (g_atomic_int_compare_and_exchange (&self->dirty_changed, TRUE, FALSE))
    g_object_notify_by_pspec (object, props[PROP_N_DIRTY_PAGES]);
  if (g_atomic_int_compare_and_exchange (&self->size_changed, TRUE, FALSE))
    g_object_notify_by_pspec (object, props[PROP_SIZE]);
}

/* After a call that may have noted changes: notify now if this is a place
 * to emit from, else leave it to notify_source. */
static void
notify_changes_now (BigfileHandle *self)
{
  if (_bigfile_can_emit_now (self->owner_thread))
    notify_changes (G_OBJECT (self));
}

static void emit_pending_invalidated (GObject *object);

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
  guint64 size;

  if (self->engine == NULL)
    return TRUE;

  size = bf_handle_get_size (self->engine);
  if (!bf_handle_close (self->engine))
    return FALSE;

  self->closed_size = size;
  self->engine = NULL;
  self->closed = TRUE;

  g_clear_signal_handler (&self->changed_handler, self->file);
  if (self->claimed_file)
    {
      g_object_set_data (G_OBJECT (self->file), FILE_HANDLE_KEY, NULL);
      self->claimed_file = FALSE;
    }

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
      /* Only now: an engine handle still open may call the dirty hook, and
       * an open handle may be invalidated. */
      g_clear_pointer (&self->notify_source, _bigfile_wake_source_free);
      g_clear_pointer (&self->invalidated_source, _bigfile_wake_source_free);
      g_clear_pointer (&self->refresh_source, _bigfile_wake_source_free);
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
  g_clear_pointer (&self->invalidated_source, _bigfile_wake_source_free);
  g_clear_pointer (&self->refresh_source, _bigfile_wake_source_free);
  g_clear_pointer (&self->owner_context, g_main_context_unref);
  /* What was still pending is dropped: there is nobody to tell. */
  g_array_unref (self->invalidated_runs);
  g_mutex_clear (&self->invalidated_lock);
  g_mutex_clear (&self->refresh_lock);

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

      case PROP_SIZE:
        g_value_set_uint64 (value, bigfile_handle_get_size (self));
        break;

      case PROP_AUTO_REFRESH:
        g_value_set_boolean (value, self->auto_refresh);
        break;

      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_handle_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  BigfileHandle *self = BIGFILE_HANDLE (object);

  switch (prop_id)
    {
      case PROP_AUTO_REFRESH:
        bigfile_handle_set_auto_refresh (self, g_value_get_boolean (value));
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
  object_class->set_property = bigfile_handle_set_property;

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

  /**
   * BigfileHandle:size:
   *
   * The size of the file as the handle shows it, in bytes, or %G_MAXUINT64
   * for a file without a size (bigfile_handle_has_size()).
   *
   * A handle learns the size of its file when it opens it
   * (bigfile_file_get_size()) and keeps it as part of its snapshot: reads
   * show zeros past the size, whatever the file's loads return there, and
   * writeout stores no byte past it. It changes only when:
   *
   * - the program sets it, with bigfile_handle_set_size();
   * - bigfile_handle_discard() puts it back to the size the file has;
   * - a writeout (%BIGFILE_WRITEOUT_STORE) finds that the program wrote
   *   something other than zeros past the size: the size then grows to
   *   cover the last such byte (its offset plus one), and the file with it,
   *   before the page is stored. Zeros written past the size change
   *   nothing: they are what the handle shows there already. So a file the
   *   program did not write beyond keeps its size, and nothing written past
   *   it is dropped.
   *
   * The notification is emitted on the handle's owner context: at once
   * when bigfile_handle_set_size() or bigfile_handle_discard() changed it
   * on the owner thread, else (a writeout in a worker thread, another
   * thread) from an idle there, shortly after.
   *
   * Since: 1.0
   */
  props[PROP_SIZE]
      = g_param_spec_uint64 ("size", NULL, NULL, 0, G_MAXUINT64, G_MAXUINT64,
                             G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileHandle:auto-refresh:
   *
   * Whether the handle refreshes by itself (bigfile_handle_refresh()) when
   * its file emits #BigfileFile::changed: another client committed. The
   * refresh runs on the handle's owner context, from an idle soon after
   * the signal, so a program that runs its main loop sees other clients'
   * commits as #BigfileHandle::page-invalidated without asking. Turn it
   * off to move the snapshot only when the program says so (between two
   * steps of a computation that must see one consistent state, say);
   * writeouts still refresh, inside their transaction.
   *
   * Since: 1.0
   */
  props[PROP_AUTO_REFRESH]
      = g_param_spec_boolean ("auto-refresh", NULL, NULL, TRUE,
                              G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, props);

  /**
   * BigfileHandle::page-invalidated:
   * @handle: the #BigfileHandle
   * @page: the index of the page invalidated, or %G_MAXUINT64 for "any
   *   page" (see below)
   *
   * Emitted for every call of bigfile_handle_invalidate_page() on an open
   * handle, whether the page was in memory or not: the call says that the
   * block changed in the file, and a listener may keep data derived from it
   * (a cache, an index, a decoded object) that it must now drop, even though
   * the handle had no copy of the page. It is emitted on the handle's owner
   * context only, after the page left memory, so that a handler that reads
   * the page sees the file as it is now.
   *
   * For a call on the owner thread, it is emitted at once, before
   * bigfile_handle_invalidate_page() returns (except from inside a load,
   * which runs in a page fault: then as for another thread).
   *
   * Calls on other threads are noted, and emitted later from one source on
   * the owner context, when its main loop runs: each page once, however
   * often it was invalidated meanwhile, in increasing page order (not in
   * the order of the calls), in batches of at most 1024 per main loop
   * iteration. A page invalidated again after its emission is emitted
   * again. Noting a page costs no memory when it is already pending or next
   * to a pending page, so a flood of invalidations of consecutive pages is
   * cheap; but when 4096 separate runs of consecutive pages are pending and
   * one more comes, they are all replaced by a single emission with @page
   * set to %G_MAXUINT64 (no page a handle can map has that index): any page
   * may have changed, and a listener should drop all it derived from the
   * file. Handlers that look at @page should check for this value.
   *
   * What is pending does not keep @handle alive: if its last reference
   * goes first, on any thread, the handle is finalized at once and the
   * pending emissions are dropped.
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
  g_mutex_init (&self->invalidated_lock);
  self->invalidated_runs = g_array_new (FALSE, FALSE, sizeof (PageRun));
  g_mutex_init (&self->refresh_lock);
  self->auto_refresh = TRUE;
}

static void auto_refresh (GObject *object);

/* ::changed of the file, on the file's context: the refresh itself runs
 * from refresh_source on the owner context, so that several commits make
 * one refresh, and never inside the file's own emission. */
static void
file_changed_cb (BigfileFile *file, BigfileHandle *self)
{
  /* Kept while auto-refresh is off, for when it is turned on again. */
  self->refresh_wanted = TRUE;
  if (self->auto_refresh && self->refresh_source != NULL)
    _bigfile_wake_source_wake (self->refresh_source);
}

/**
 * bigfile_handle_new:
 * @file: the #BigfileFile to open
 * @ram: the #BigfileRam to keep its pages in
 * @error: return location for a #GError
 *
 * Opens @file: creates a handle with no page in memory yet. Its page size
 * is the block size of @file, which must be a power of two from 4 KiB to
 * 2 MiB (%BIGFILE_HANDLE_ERROR_INVALID_BLOCK_SIZE otherwise). The budget
 * of @ram must hold at least one such page (%BIGFILE_RAM_ERROR_FULL
 * otherwise: no page could ever load).
 *
 * The handle keeps references on @file and @ram. Several handles may share
 * one @ram, and several handles may open the same @file: each is its own
 * snapshot, and they do not see each other's unsaved changes. A file with
 * snapshots of shared storage (one that implements `refresh`, as
 * #BigfileSqliteFile and #BigfilePgFile do) is one client's view, and
 * serves one open handle: another fails with %BIGFILE_HANDLE_ERROR_BUSY
 * (open the storage again, as another file object, for another handle).
 * The handle then follows other clients' commits: see
 * #BigfileHandle:auto-refresh.
 *
 * If @file has a size (bigfile_file_get_size()), the handle asks for it
 * now and keeps it: see #BigfileHandle:size. An error getting it fails
 * the call.
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
  GError *local_error = NULL;
  guint64 size = BF_NO_SIZE;
  gboolean has_size, has_snapshots;

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

  has_size = bigfile_file_get_size (file, &size, &local_error);
  if (local_error != NULL)
    {
      g_propagate_prefixed_error (error, local_error,
                                  "Could not open %s: ", G_OBJECT_TYPE_NAME (file));
      return NULL;
    }
  if (!has_size)
    size = BF_NO_SIZE;

  /* A file with snapshots is one client's view of shared storage: its
   * snapshot moves with its handle's refreshes, which a second handle
   * would miss. */
  has_snapshots = BIGFILE_FILE_GET_IFACE (file)->refresh != NULL;
  if (has_snapshots && g_object_get_data (G_OBJECT (file), FILE_HANDLE_KEY) != NULL)
    {
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_BUSY,
                   "Cannot open %s: it has an open handle already (a file with snapshots "
                   "serves one handle: open the storage again for another)",
                   G_OBJECT_TYPE_NAME (file));
      return NULL;
    }

  self = g_object_new (BIGFILE_TYPE_HANDLE, NULL);
  self->file = g_object_ref (file);
  self->ram = g_object_ref (ram);
  self->page_size = block_size;
  self->owner_thread = g_thread_self ();
  self->owner_context = g_main_context_ref_thread_default ();
  self->thread_safe = bigfile_file_is_thread_safe (file);
  self->has_size = has_size;
  self->notify_source = _bigfile_wake_source_new (self->owner_context, "BigfileHandle notify",
                                                  G_OBJECT (self), notify_changes);
  self->invalidated_source
      = _bigfile_wake_source_new (self->owner_context, "BigfileHandle page-invalidated",
                                  G_OBJECT (self), emit_pending_invalidated);

  /* A local file may let clean pages come straight from its page cache;
   * the handle's reference keeps the descriptor open for the engine. */
  engine = bf_handle_new (
      engine_ram, block_size,
      bigfile_file_is_transactional (file) ? &file_ops_transactional : &file_ops, self,
      BIGFILE_IS_LOCAL_FILE (file) ? _bigfile_local_file_get_map_fd (BIGFILE_LOCAL_FILE (file))
                                   : -1,
      size, error);
  if (engine == NULL)
    {
      g_object_unref (self);
      return NULL;
    }
  self->engine = engine;
  self->closed = FALSE;

  if (has_snapshots)
    {
      g_object_set_data (G_OBJECT (file), FILE_HANDLE_KEY, self);
      self->claimed_file = TRUE;
      self->refresh_source = _bigfile_wake_source_new (
          self->owner_context, "BigfileHandle auto-refresh", G_OBJECT (self), auto_refresh);
      self->changed_handler
          = g_signal_connect_object (file, "changed", G_CALLBACK (file_changed_cb), self, 0);
    }

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
 * bigfile_handle_has_size:
 * @handle: a #BigfileHandle
 *
 * Tells whether the file of @handle has a size (bigfile_file_get_size()),
 * which the handle then keeps: see #BigfileHandle:size. A file without one
 * is an endless array of blocks.
 *
 * Returns: %TRUE if @handle has a size
 *
 * Since: 1.0
 */
gboolean
bigfile_handle_has_size (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), FALSE);

  return handle->has_size;
}

/**
 * bigfile_handle_get_size:
 * @handle: a #BigfileHandle
 *
 * Gets the size of @handle in bytes: the size of its file as the handle
 * shows it (see #BigfileHandle:size), which writeout gives the file. A
 * writeout may change it on another thread, when the program wrote past
 * it.
 *
 * Returns: the size in bytes, or %G_MAXUINT64 if the file has no size;
 *   after bigfile_handle_close(), the size at the close
 *
 * Since: 1.0
 */
guint64
bigfile_handle_get_size (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), G_MAXUINT64);

  if (!handle->has_size)
    return G_MAXUINT64;
  if (handle->engine == NULL)
    return handle->closed_size;
  return bf_handle_get_size (handle->engine);
}

/**
 * bigfile_handle_set_size:
 * @handle: a #BigfileHandle
 * @size: the new size in bytes, at most %G_MAXINT64
 * @error: return location for a #GError
 *
 * Makes @handle @size bytes long, like `ftruncate()` on its snapshot:
 * what the mappings show changes at once, the file changes at the next
 * writeout.
 *
 * At once, in memory: the bytes past @size read as zeros from now on. The
 * pages wholly past @size are dropped from memory, dirty ones too: what
 * the program wrote there is thrown away, since it asked for the
 * truncation. The rest of the page that holds @size is cleared (its state
 * stays: a clean page stays clean, its copy in the file still has the old
 * bytes). Growing shows zeros from the old size to @size, also if the file
 * had other bytes there, and if @size was lower since the last writeout,
 * from that lower size.
 *
 * At the next writeout with %BIGFILE_WRITEOUT_STORE, before any page is
 * stored: the file is resized with bigfile_file_set_size(), down to the
 * lowest size set since (which drops the file's bytes past it) and then
 * to @size (zeros from there). A failure stops the writeout with the
 * file's error; the next one tries again. Until then,
 * bigfile_handle_discard() puts the size back to the file's (the pages
 * that showed zeros where the file has data load again), and
 * bigfile_handle_close() forgets it, as it forgets changes.
 *
 * Fails with %BIGFILE_FILE_ERROR_NOT_SUPPORTED if the file has no size
 * (bigfile_handle_has_size()), and %BIGFILE_HANDLE_ERROR_CLOSED if @handle
 * is closed. A file that has a size but cannot change it (no `set_size`,
 * or opened read-only) fails only at writeout, as writes to a read-only
 * file do.
 *
 * May be called from any thread. A writeout that is storing the page that
 * holds @size, or resizing the file, is waited for.
 *
 * Emits #GObject::notify for #BigfileHandle:size if the size changed.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_handle_set_size (BigfileHandle *handle, guint64 size, GError **error)
{
  gboolean ok;

  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), FALSE);
  g_return_val_if_fail (size <= (guint64)G_MAXINT64, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (handle->engine == NULL)
    {
      set_closed_error (error);
      return FALSE;
    }
  if (!handle->has_size)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
                   "Cannot set the size of a handle of %s: the file has no size",
                   G_OBJECT_TYPE_NAME (handle->file));
      return FALSE;
    }

  ok = bf_handle_set_size (handle->engine, size, error);
  notify_changes_now (handle);
  return ok;
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

  /* Our SIGSEGV handler in front of any installed since (faulthandler):
   * a mapping without it would kill the program at its first touch. */
  if (!bf_fault_install_handler (error))
    return NULL;
  /* The engine checks the range itself (INVALID_RANGE). */
  engine_vma = bf_vma_map (handle->engine, first_page, n_pages, error);
  if (engine_vma == NULL)
    return NULL;

  return _bigfile_vma_new (handle, engine_vma);
}

/**
 * bigfile_handle_writeout:
 * @handle: a #BigfileHandle
 * @flags: what to do with the dirty pages: %BIGFILE_WRITEOUT_STORE,
 *   %BIGFILE_WRITEOUT_MARK_STORED or both, maybe with
 *   %BIGFILE_WRITEOUT_OVERWRITE and %BIGFILE_WRITEOUT_DURABLE
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
 * discarded or invalidated while the writeout runs are skipped. A page is
 * marked clean only if its memory is what was stored (see
 * #BigfileWriteoutFlags): a page written during its own store (through a
 * writable pin) stays dirty.
 *
 * For a file with a size (#BigfileHandle:size), %BIGFILE_WRITEOUT_STORE
 * also makes the file the handle's size: first, if it was set with
 * bigfile_handle_set_size(); and before storing a page to which the
 * program wrote something other than zeros past the size, which grows the
 * size to cover it. The page that holds the size is stored with only the
 * bytes below it, and pages wholly past the size (all zeros) are not
 * stored. A failed resize stops the writeout like a failed store.
 *
 * For a transactional file (bigfile_file_is_transactional()) a writeout
 * is atomic instead, all of its pages or none (see
 * [Transactions][bigfile-transactions]): it begins a transaction,
 * refreshes the handle's snapshot inside it (bigfile_handle_refresh()),
 * fails with %BIGFILE_HANDLE_ERROR_CONFLICT before storing anything if a
 * page to store is a conflict (unless @flags has
 * %BIGFILE_WRITEOUT_OVERWRITE), stores, commits (durably with
 * %BIGFILE_WRITEOUT_DURABLE), and marks pages clean only after the commit.
 * Any failure aborts the transaction: the storage holds none of the
 * writeout, and every page stays dirty for a retry. With
 * %BIGFILE_WRITEOUT_STORE alone the transaction stays open until a
 * writeout with %BIGFILE_WRITEOUT_MARK_STORED commits it, or
 * bigfile_handle_abort_writeout(), bigfile_handle_discard() or
 * bigfile_handle_close() throws it away.
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
  gboolean ok;

  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), FALSE);
  g_return_val_if_fail (WRITEOUT_FLAGS_VALID (flags), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (handle->engine == NULL)
    {
      set_closed_error (error);
      return FALSE;
    }

  ok = bf_handle_writeout (handle->engine, (BfWriteoutFlags)flags, error);
  /* The size may have grown, the dirty count gone down. */
  notify_changes_now (handle);
  return ok;
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
      guint64 n_done, n_total;

      /* Cancelling stops what is left; once nothing is, the writeout has
       * succeeded, and says so. */
      bf_writeout_get_progress (data->wo, &n_done, &n_total);
      if (n_done < n_total && g_cancellable_set_error_if_cancelled (cancellable, error))
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
 * @flags: what to do with the dirty pages: %BIGFILE_WRITEOUT_STORE,
 *   %BIGFILE_WRITEOUT_MARK_STORED or both, maybe with
 *   %BIGFILE_WRITEOUT_OVERWRITE and %BIGFILE_WRITEOUT_DURABLE
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
 * store's error, which is what the finish function reports even if
 * @cancellable was cancelled too. A writeout cancelled after its last page
 * was done has succeeded, and the finish function returns %TRUE. Nothing
 * is lost: a later writeout stores what is left. For a transactional file
 * the writeout is all or nothing: cancelling it, or a failure, aborts its
 * transaction, and every page stays dirty.
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
  g_return_if_fail (WRITEOUT_FLAGS_VALID (flags));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (handle, cancellable, writeout_task_done, NULL);
  /* Report what happened (success, or a store's own error), not merely
   * that the cancellable was cancelled meanwhile: writeout_run() decides
   * when cancelling applies. */
  g_task_set_check_cancellable (task, FALSE);
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
 * last stored. Clean pages stay. A size set with bigfile_handle_set_size()
 * and not yet written out is thrown away too: the size goes back to the
 * file's (#BigfileHandle:size), and clean pages that showed zeros where
 * the file has data are dropped, to load again.
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
  guint n;

  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), 0);

  if (handle->engine == NULL)
    return 0;

  /* What a STORE-only writeout stored goes with the changes; not while a
   * writeout runs (its own failure or success decides then). */
  bf_handle_abort_transaction (handle->engine, NULL);
  n = bf_handle_discard (handle->engine);
  notify_changes_now (handle);
  return n;
}

/* -- page-invalidated from other threads --------------------------------------
 *
 * An invalidation made off the owner thread (or inside a page fault) is
 * noted in the handle's pending set and signalled later by one wake source
 * on the owner context.  Nothing is allocated per call, and nothing holds a
 * reference on the handle: the wake source holds it weakly, so the last
 * unref, on any thread, finalizes the handle and drops what was pending.
 *
 * The pending set is an array of runs of consecutive pages, disjoint and
 * never adjacent (adjacent runs are merged), sorted from the highest page to
 * the lowest, so that the next page to signal, the lowest, is taken from the
 * end of the array:
 *
 *   pages pending:  3 4 5 6 7        100000 ... 100999        (each once)
 *   invalidated_runs:  [0] = {100000, 100999}   [1] = {3, 7}   <- taken here
 *
 * A flood of invalidations of consecutive pages thus costs one run, and
 * invalidating a pending page again costs nothing.  The array never holds
 * more than BIGFILE_HANDLE_MAX_PENDING_RUNS runs (64 KiB): one more collapses
 * the set into invalidated_many, a single emission for "any page", and
 * frees the array; while that is pending, later invalidations add nothing.
 *
 * Delivery takes at most INVALIDATED_BATCH pages per dispatch, so that a
 * long run does not stall the main loop, and wakes the source again while
 * pages are left. */

#define INVALIDATED_BATCH 1024

/* The @page of the emission that stands for every page. */
#define ALL_PAGES G_MAXUINT64

/* With invalidated_lock held: adds @page to the pending set.  Returns TRUE
 * if the set was empty, so that the caller wakes the source: a set that is
 * not empty has a dispatch coming, which takes pages until it finds the set
 * empty (deciding so under the lock). */
static gboolean
pending_add (BigfileHandle *self, guint64 page)
{
  GArray *runs = self->invalidated_runs;
  PageRun *above, *below;
  guint lo = 0, hi = runs->len;

  if (self->invalidated_many)
    return FALSE;

  /* The runs wholly above @page are runs[0 .. lo - 1]; runs[lo] is the
   * first run that starts at or below @page. */
  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;

      if (g_array_index (runs, PageRun, mid).first > page)
        lo = mid + 1;
      else
        hi = mid;
    }
  above = lo > 0 ? &g_array_index (runs, PageRun, lo - 1) : NULL;
  below = lo < runs->len ? &g_array_index (runs, PageRun, lo) : NULL;

  if (below != NULL && below->last >= page)
    return FALSE; /* pending already */

  /* above->first > page and below->last < page: neither + 1 overflows. */
  if (above != NULL && above->first == page + 1)
    {
      if (below != NULL && below->last + 1 == page)
        {
          above->first = below->first;
          g_array_remove_index (runs, lo);
        }
      else
        above->first = page;
      return FALSE;
    }
  if (below != NULL && below->last + 1 == page)
    {
      below->last = page;
      return FALSE;
    }

  if (runs->len == BIGFILE_HANDLE_MAX_PENDING_RUNS)
    {
      /* Not empty before: a dispatch is coming. */
      self->invalidated_many = TRUE;
      g_array_free (runs, TRUE);
      self->invalidated_runs = g_array_new (FALSE, FALSE, sizeof (PageRun));
      return FALSE;
    }

  g_array_insert_val (runs, lo, ((PageRun){ page, page }));
  return runs->len == 1;
}

/* With invalidated_lock held: takes the lowest pending page into *page
 * (ALL_PAGES for the collapsed set).  FALSE if none is pending. */
static gboolean
pending_take (BigfileHandle *self, guint64 *page)
{
  GArray *runs = self->invalidated_runs;
  PageRun *lowest;

  if (self->invalidated_many)
    {
      self->invalidated_many = FALSE;
      *page = ALL_PAGES;
      return TRUE;
    }
  if (runs->len == 0)
    return FALSE;

  lowest = &g_array_index (runs, PageRun, runs->len - 1);
  *page = lowest->first;
  if (lowest->first == lowest->last)
    g_array_set_size (runs, runs->len - 1);
  else
    lowest->first++;
  return TRUE;
}

/* On the owner context, woken by emit_page_invalidated(). */
static void
emit_pending_invalidated (GObject *object)
{
  BigfileHandle *self = BIGFILE_HANDLE (object);
  guint64 page;
  guint n;

  for (n = 0; n < INVALIDATED_BATCH; n++)
    {
      gboolean have;

      /* Not held while handlers run: they may invalidate pages too. */
      g_mutex_lock (&self->invalidated_lock);
      have = pending_take (self, &page);
      g_mutex_unlock (&self->invalidated_lock);
      if (!have)
        return;

      g_signal_emit (self, signals[SIGNAL_PAGE_INVALIDATED], 0, page);
    }

  /* A full batch: come back for the rest on the next dispatch. */
  if (self->invalidated_source != NULL)
    _bigfile_wake_source_wake (self->invalidated_source);
}

/* Signals are emitted on the owner context only: at once on the owner
 * thread (unless inside a page fault), else by invalidated_source. */
static void
emit_page_invalidated (BigfileHandle *self, guint64 page)
{
  gboolean wake;

  if (_bigfile_can_emit_now (self->owner_thread))
    {
      g_signal_emit (self, signals[SIGNAL_PAGE_INVALIDATED], 0, page);
      return;
    }

  g_mutex_lock (&self->invalidated_lock);
  wake = pending_add (self, page);
  g_mutex_unlock (&self->invalidated_lock);
  if (wake)
    _bigfile_wake_source_wake (self->invalidated_source);
}

/* For tests: how many runs of pages are pending, and whether they
 * collapsed into one "any page" emission. */
guint
_bigfile_handle_get_n_pending_runs (BigfileHandle *handle, gboolean *many)
{
  guint n;

  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), 0);

  g_mutex_lock (&handle->invalidated_lock);
  n = handle->invalidated_runs->len;
  if (many != NULL)
    *many = handle->invalidated_many;
  g_mutex_unlock (&handle->invalidated_lock);
  return n;
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
 * thrown away. A page not in memory is left as it is, and still signalled
 * (below).
 *
 * May be called from any thread, also while a writeout runs and from inside
 * a load or store of @handle's file. A page invalidated while it is being
 * stored is dropped from memory; the store in flight still completes, and
 * the next access to the page waits for it before loading the block.
 * Does nothing once @handle is closed, and emits nothing then.
 *
 * Emits #BigfileHandle::page-invalidated for @page on the owner context,
 * whether @page was in memory or not (listeners may cache data derived
 * from it): at once on the owner thread, else later from the owner
 * context's main loop, where invalidations from other threads are
 * coalesced as the signal describes. Any number of calls from other
 * threads takes bounded memory and no reference on @handle.
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
char *
_bigfile_handle_check (BigfileHandle *handle, gboolean kernel)
{
  return handle->engine != NULL ? bf_handle_check (handle->engine, kernel) : NULL;
}

BfHandle *
_bigfile_handle_get_engine (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), NULL);

  return handle->engine;
}

/* -- snapshots and conflicts --------------------------------------------------
 *
 * A file that implements `refresh` is one client's snapshot of storage that
 * other clients change (bigfile_file_refresh()).  The handle moves the
 * snapshot when the program asks (bigfile_handle_refresh()), on ::changed
 * (auto-refresh, from refresh_source on the owner context), and inside each
 * writeout's transaction (the begin op): the file says which blocks changed,
 * the engine drops the clean pages of them and marks the dirty ones as
 * conflicts (bf_handle_storage_changed()), and page-invalidated goes out
 * for each block whose data the handle now shows anew.
 *
 * refresh_lock covers the file's refresh and the engine's update together:
 * a writeout's conflict check, which comes after its own refresh, then
 * never misses changes that another refresh took from the file but had not
 * yet given to the engine.
 */

/* Any thread (the writeout's, for the begin op); engine lock not held. */
static gboolean
refresh_now (BigfileHandle *self, GError **error)
{
  g_autoptr (GArray) changed = NULL;
  g_autoptr (GArray) invalidated = NULL;
  GError *local_error = NULL;
  guint64 size = 0;
  gboolean has_size = FALSE;
  BfHandle *engine = self->engine;

  if (engine == NULL)
    {
      set_closed_error (error);
      return FALSE;
    }

  /* The file's connections and descriptors are the parent's after fork():
   * a child must not move their snapshot (see "fork()"). */
  if (bf_ram_is_forked (_bigfile_ram_get_engine (self->ram)))
    {
      g_set_error_literal (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_FORKED,
                           "Cannot refresh: the handle belongs to the parent process");
      return FALSE;
    }

  invalidated = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_mutex_lock (&self->refresh_lock);
  changed = bigfile_file_refresh (self->file, error);
  if (changed == NULL)
    {
      g_mutex_unlock (&self->refresh_lock);
      return FALSE;
    }
  if (self->has_size)
    {
      has_size = bigfile_file_get_size (self->file, &size, &local_error);
      if (local_error != NULL)
        {
          /* The blocks are known; the size is looked at again next time. */
          g_debug ("Refreshing %s: could not get its size: %s", G_OBJECT_TYPE_NAME (self->file),
                   local_error->message);
          g_clear_error (&local_error);
        }
    }
  bf_handle_storage_changed (engine, (const guint64 *)(void *)changed->data, changed->len,
                             invalidated);
  if (has_size)
    bf_handle_storage_resized (engine, size, invalidated);
  g_mutex_unlock (&self->refresh_lock);

  for (guint i = 0; i < invalidated->len; i++)
    emit_page_invalidated (self, g_array_index (invalidated, guint64, i));
  notify_changes_now (self);
  return TRUE;
}

/* From refresh_source, on the owner context, after ::changed. */
static void
auto_refresh (GObject *object)
{
  BigfileHandle *self = BIGFILE_HANDLE (object);
  g_autoptr (GError) error = NULL;

  if (!self->auto_refresh || self->engine == NULL || !self->refresh_wanted)
    return;
  self->refresh_wanted = FALSE;
  /* Nothing is lost: the snapshot stays where it was, and the next
   * refresh (a writeout's, the next ::changed) reports the same blocks. */
  if (!refresh_now (self, &error))
    g_debug ("Refreshing %s failed: %s", G_OBJECT_TYPE_NAME (self->file), error->message);
}

/**
 * bigfile_handle_refresh:
 * @handle: a #BigfileHandle
 * @error: return location for a #GError
 *
 * Brings the snapshot of @handle up to date with its storage: asks the
 * file which blocks other clients committed since the snapshot
 * (bigfile_file_refresh()), then drops the clean pages of those blocks
 * (the next access loads the other client's data, a load in progress is
 * done again) and emits #BigfileHandle::page-invalidated for each of them,
 * in memory or not, on the owner context. If the file's size changed, the
 * handle's follows (see #BigfileHandle:size), unless it has a size change
 * of its own to write out; the pages between the old size and the new one
 * count as changed (a dirty one there is a conflict, even if the other
 * client only resized: its writeout could otherwise cut off or cover
 * what the other client did).
 *
 * A dirty page of a changed block keeps the program's change: it is not
 * dropped and not signalled, but becomes a conflict
 * (bigfile_handle_get_conflicts()), which a writeout refuses to store with
 * %BIGFILE_HANDLE_ERROR_CONFLICT unless given %BIGFILE_WRITEOUT_OVERWRITE;
 * see [Conflicts][bigfile-conflicts].
 *
 * A handle refreshes by itself when the file signals another client's
 * commit (#BigfileHandle:auto-refresh), and every writeout refreshes
 * inside its transaction. For a file without snapshots (one that does not
 * implement `refresh`, as #BigfileLocalFile) it does nothing and succeeds.
 *
 * May be called from any thread, also while a writeout runs. Threads that
 * read mappings of @handle while it runs may see some changed pages old
 * and others new until it returns; the owner thread, which gets the
 * signals, sees the switch between two of its own statements.
 *
 * Returns: %TRUE on success; %FALSE with @error set if the file could not
 *   tell (the snapshot then stays as it was, and a later refresh reports
 *   the same changes)
 *
 * Since: 1.0
 */
gboolean
bigfile_handle_refresh (BigfileHandle *handle, GError **error)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (handle->engine == NULL)
    {
      set_closed_error (error);
      return FALSE;
    }
  if (BIGFILE_FILE_GET_IFACE (handle->file)->refresh == NULL)
    return TRUE;
  if (!check_thread_for (handle, "Refreshing", error))
    return FALSE;
  return refresh_now (handle, error);
}

/**
 * bigfile_handle_get_auto_refresh:
 * @handle: a #BigfileHandle
 *
 * Gets #BigfileHandle:auto-refresh.
 *
 * Returns: whether @handle refreshes by itself on #BigfileFile::changed
 *
 * Since: 1.0
 */
gboolean
bigfile_handle_get_auto_refresh (BigfileHandle *handle)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), FALSE);

  return handle->auto_refresh;
}

/**
 * bigfile_handle_set_auto_refresh:
 * @handle: a #BigfileHandle
 * @auto_refresh: whether to refresh on #BigfileFile::changed
 *
 * Sets #BigfileHandle:auto-refresh. Call it on the owner thread. Turning
 * it on refreshes soon (from an idle on the owner context) if the file
 * signalled another client's commit while it was off.
 *
 * Since: 1.0
 */
void
bigfile_handle_set_auto_refresh (BigfileHandle *handle, gboolean auto_refresh)
{
  g_return_if_fail (BIGFILE_IS_HANDLE (handle));

  auto_refresh = !!auto_refresh;
  if (handle->auto_refresh == auto_refresh)
    return;
  handle->auto_refresh = auto_refresh;
  /* Commits signalled while it was off are taken in now. */
  if (auto_refresh && handle->refresh_wanted && handle->refresh_source != NULL)
    _bigfile_wake_source_wake (handle->refresh_source);
  g_object_notify_by_pspec (G_OBJECT (handle), props[PROP_AUTO_REFRESH]);
}

/**
 * bigfile_handle_get_conflicts:
 * @handle: a #BigfileHandle
 * @n_pages: (out): the number of pages returned
 *
 * Lists the pages in conflict: dirty pages whose blocks another client
 * changed in the storage after @handle read them, as learnt by a refresh
 * (bigfile_handle_refresh(), or a writeout's). A writeout that would store
 * one fails with %BIGFILE_HANDLE_ERROR_CONFLICT unless given
 * %BIGFILE_WRITEOUT_OVERWRITE. A page stops being a conflict when it is
 * clean again: discarded, invalidated, or written out with
 * %BIGFILE_WRITEOUT_OVERWRITE.
 *
 * Returns: (array length=n_pages) (transfer full) (nullable): the pages in
 *   conflict, in increasing order, or %NULL if there are none
 *
 * Since: 1.0
 */
guint64 *
bigfile_handle_get_conflicts (BigfileHandle *handle, gsize *n_pages)
{
  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), NULL);
  g_return_val_if_fail (n_pages != NULL, NULL);

  *n_pages = 0;
  if (handle->engine == NULL)
    return NULL;
  return bf_handle_get_conflicts (handle->engine, n_pages);
}

/**
 * bigfile_handle_abort_writeout:
 * @handle: a #BigfileHandle
 *
 * Throws away the transaction that a writeout with
 * %BIGFILE_WRITEOUT_STORE alone left open (the first step of a two-phase
 * commit; see #BigfileWriteoutFlags): the storage is as it was before it,
 * and every page it stored stays dirty, with the program's data, for a
 * later writeout. Use it when another participant of the two-phase commit
 * failed. Does nothing if no such transaction is open, or if the file is
 * not transactional (a store to such a file cannot be undone).
 *
 * bigfile_handle_discard() and bigfile_handle_close() abort it too.
 *
 * Must not be called while a writeout of @handle runs (a critical
 * warning, and nothing is done).
 *
 * Since: 1.0
 */
void
bigfile_handle_abort_writeout (BigfileHandle *handle)
{
  g_autoptr (GError) error = NULL;

  g_return_if_fail (BIGFILE_IS_HANDLE (handle));

  if (handle->engine == NULL)
    return;
  if (!bf_handle_abort_transaction (handle->engine, &error))
    g_critical ("%s", error->message);
}
