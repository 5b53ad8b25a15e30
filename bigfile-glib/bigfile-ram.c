/* bigfile-glib - page memory with a budget
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bigfile-private.h"

#include <string.h>
#include <unistd.h>

/**
 * SECTION:bigfile-ram
 * @title: BigfileRam
 * @short_description: Page memory with a budget, shared by handles
 * @include: bigfile-glib/bigfile.h
 * @see_also: #BigfileHandle, #GMemoryMonitor
 *
 * A #BigfileRam is where the pages of one or more #BigfileHandle live, and
 * how much memory they may take together. Make one for the program, or one
 * for each group of files that should share a budget, and give it to
 * bigfile_handle_new().
 *
 * When the budget is used up, the least recently used clean page is dropped
 * to make room: it loads again from its file when next touched. Dirty and
 * pinned pages are never dropped, so a budget full of them makes loads fail
 * with %BIGFILE_RAM_ERROR_FULL until changes are written out or discarded.
 * bigfile_ram_reclaim() gives clean pages back ahead of time, and
 * #BigfileRam:reclaim-on-low-memory does it when the system runs short of
 * memory; #BigfileRam::reclaimed reports both.
 */

/**
 * BigfileRam:
 *
 * A budget of memory for the pages of one or more #BigfileHandle.
 *
 * Every page that a handle loads from its #BigfileFile, or that a program
 * writes to through a #BigfileVma, lives in memory taken from a #BigfileRam.
 * The budget caps how many bytes of pages it holds at once: when a new page
 * is needed and the budget is used up, the least recently used clean page of
 * any handle sharing this #BigfileRam is dropped (it can be loaded again from
 * its file). Dirty pages (changed and not yet written out) and pinned pages are
 * never dropped: when the whole budget is dirty or pinned, loading a page fails
 * with %BIGFILE_RAM_ERROR_FULL until changes are written out or discarded.
 *
 * Several handles may share one #BigfileRam, so that a program's mapped files
 * stay within one budget together.
 *
 * The statistics (#BigfileRam:used-bytes, #BigfileRam:n-pages,
 * #BigfileRam:n-dirty-pages) change as pages fault in, from any thread, so
 * they are not notified: read them when you need them.
 *
 * When pages are reclaimed, by the budget or by bigfile_ram_reclaim(),
 * #BigfileRam::reclaimed is emitted on the main context that was the
 * thread-default one when the #BigfileRam was created (its owner context).
 * By default (#BigfileRam:reclaim-on-low-memory) a #BigfileRam also gives
 * its clean pages back when #GMemoryMonitor warns of low memory.
 *
 * |[<!-- language="C" -->
 * g_autoptr(BigfileRam) ram = bigfile_ram_new (512 * 1024 * 1024);  // 512 MiB
 * g_autoptr(BigfileHandle) handle = bigfile_handle_new (file, ram, &error);
 *
 * // ... map and use the handle ...
 *
 * g_print ("%" G_GUINT64_FORMAT " pages in memory, %" G_GUINT64_FORMAT " dirty\n",
 *          bigfile_ram_get_n_pages (ram), bigfile_ram_get_n_dirty_pages (ram));
 * ]|
 *
 * #BigfileRam is thread-safe. It belongs to the process that made it: in
 * a child made by fork() no handle can be opened in it
 * (%BIGFILE_HANDLE_ERROR_FORKED), bigfile_ram_reclaim() and
 * bigfile_ram_set_budget() do nothing and the getters give what the parent
 * had at fork() (see [fork()][bigfile-fork]); make a new one there.
 *
 * Since: 1.0
 */

struct _BigfileRam
{
  GObject parent_instance;

  /* The engine's RAM; NULL only if bf_ram_new() failed at construction,
   * which it cannot with a budget that passed budget_is_valid(). */
  BfRam *engine;
  gboolean constructed;

  /* The effective budget in bytes (never 0: 0 is resolved to the default).
   * Written under budget_lock so that concurrent setters notify correctly. */
  GMutex budget_lock;
  guint64 budget;

  /* Reclaims happen with the engine lock held, on any thread and often in
   * the fault handler: the engine's hook adds to pending_reclaimed and wakes
   * reclaimed_source, which emits ::reclaimed on the owner context. */
  GThread *owner_thread;
  GMainContext *owner_context;
  GSource *reclaimed_source;
  gint pending_reclaimed;

  gboolean reclaim_on_low_memory;
  GMemoryMonitor *monitor; /* while reclaim-on-low-memory */
  gulong monitor_handler;
};

enum
{
  PROP_0,
  PROP_BUDGET,
  PROP_USED_BYTES,
  PROP_N_PAGES,
  PROP_N_DIRTY_PAGES,
  PROP_RECLAIM_ON_LOW_MEMORY,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

enum
{
  SIGNAL_RECLAIMED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_TYPE (BigfileRam, bigfile_ram, G_TYPE_OBJECT)

/* Used when the system cannot tell its amount of physical memory. */
#define FALLBACK_BUDGET ((guint64)1024 * 1024 * 1024)

/* A quarter of physical memory: the budget that 0 stands for. */
static guint64
default_budget (void)
{
  long n_pages = sysconf (_SC_PHYS_PAGES);
  long page_size = sysconf (_SC_PAGESIZE);
  guint64 total;

  if (n_pages <= 0 || page_size <= 0)
    return FALLBACK_BUDGET;

  if ((guint64)n_pages > G_MAXUINT64 / (guint64)page_size)
    return G_MAXUINT64 / 4;

  total = (guint64)n_pages * (guint64)page_size;
  if (total / 4 == 0)
    return FALLBACK_BUDGET;

  return total / 4;
}

static guint64
resolve_budget (guint64 budget)
{
  return budget != 0 ? budget : default_budget ();
}

/* 0 (the default) or enough for one page of the smallest size: a budget
 * below that could never hold a page, and every load would fail. */
static gboolean
budget_is_valid (guint64 budget)
{
  return budget == 0 || budget >= bf_ram_min_budget ();
}

/* Engine lock held, any thread, maybe in the fault handler: note and wake. */
static void
engine_reclaimed (gpointer data, guint n_pages)
{
  BigfileRam *self = data;

  g_atomic_int_add (&self->pending_reclaimed, (gint)n_pages);
  _bigfile_wake_source_wake (self->reclaimed_source);
}

/* On the owner context. */
static void
emit_pending_reclaimed (GObject *object)
{
  BigfileRam *self = BIGFILE_RAM (object);
  guint n = (guint)g_atomic_int_and (&self->pending_reclaimed, 0);

  if (n > 0)
    g_signal_emit (self, signals[SIGNAL_RECLAIMED], 0, n);
}

static void
on_low_memory_warning (GMemoryMonitor *monitor, GMemoryMonitorWarningLevel level,
                       gpointer user_data)
{
  bigfile_ram_reclaim (BIGFILE_RAM (user_data));
}

static void
watch_memory_monitor (BigfileRam *self, gboolean watch)
{
  if (watch && self->monitor == NULL)
    {
      self->monitor = g_memory_monitor_dup_default ();
      self->monitor_handler = g_signal_connect_object (self->monitor, "low-memory-warning",
                                                       G_CALLBACK (on_low_memory_warning), self, 0);
    }
  else if (!watch && self->monitor != NULL)
    {
      g_clear_signal_handler (&self->monitor_handler, self->monitor);
      g_clear_object (&self->monitor);
    }
}

static void
bigfile_ram_constructed (GObject *object)
{
  BigfileRam *self = BIGFILE_RAM (object);
  GError *error = NULL;

  G_OBJECT_CLASS (bigfile_ram_parent_class)->constructed (object);

  self->engine = bf_ram_new (self->budget, &error);
  if (self->engine == NULL)
    {
      /* Only absurd input gets here; the object stays usable (its
       * statistics read 0) and bigfile_handle_new() reports an error. */
      g_critical ("Could not set up page memory with a budget of %" G_GUINT64_FORMAT " bytes: %s",
                  self->budget, error != NULL ? error->message : "no reason given");
      g_clear_error (&error);
    }

  self->owner_thread = g_thread_self ();
  self->owner_context = g_main_context_ref_thread_default ();
  self->reclaimed_source = _bigfile_wake_source_new (self->owner_context, "BigfileRam reclaimed",
                                                     G_OBJECT (self), emit_pending_reclaimed);
  if (self->engine != NULL)
    bf_ram_set_reclaim_hook (self->engine, engine_reclaimed, self);

  self->constructed = TRUE;
  if (self->reclaim_on_low_memory)
    watch_memory_monitor (self, TRUE);
}

static void
bigfile_ram_dispose (GObject *object)
{
  BigfileRam *self = BIGFILE_RAM (object);

  watch_memory_monitor (self, FALSE);

  G_OBJECT_CLASS (bigfile_ram_parent_class)->dispose (object);
}

static void
bigfile_ram_finalize (GObject *object)
{
  BigfileRam *self = BIGFILE_RAM (object);

  /* No handle is left (each holds a reference), so no reclaim can run. */
  if (self->engine != NULL)
    bf_ram_set_reclaim_hook (self->engine, NULL, NULL);
  g_clear_pointer (&self->reclaimed_source, _bigfile_wake_source_free);
  g_clear_pointer (&self->owner_context, g_main_context_unref);

  /* Every handle holds a reference on its BigfileRam, so no engine handle
   * uses this RAM any more. */
  g_clear_pointer (&self->engine, bf_ram_unref);
  g_mutex_clear (&self->budget_lock);

  G_OBJECT_CLASS (bigfile_ram_parent_class)->finalize (object);
}

static void
bigfile_ram_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  BigfileRam *self = BIGFILE_RAM (object);

  switch (prop_id)
    {
      case PROP_BUDGET:
        g_value_set_uint64 (value, bigfile_ram_get_budget (self));
        break;

      case PROP_USED_BYTES:
        g_value_set_uint64 (value, bigfile_ram_get_used_bytes (self));
        break;

      case PROP_N_PAGES:
        g_value_set_uint64 (value, bigfile_ram_get_n_pages (self));
        break;

      case PROP_N_DIRTY_PAGES:
        g_value_set_uint64 (value, bigfile_ram_get_n_dirty_pages (self));
        break;

      case PROP_RECLAIM_ON_LOW_MEMORY:
        g_value_set_boolean (value, self->reclaim_on_low_memory);
        break;

      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_ram_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  BigfileRam *self = BIGFILE_RAM (object);

  switch (prop_id)
    {
      case PROP_BUDGET:
        if (!self->constructed)
          {
            guint64 budget = g_value_get_uint64 (value);

            /* constructed() makes the engine with this budget; an invalid
             * one leaves the default, as a setter's g_return_if_fail()
             * would leave the budget unchanged. */
            if (budget_is_valid (budget))
              self->budget = resolve_budget (budget);
            else
              g_critical ("BigfileRam:budget of %" G_GUINT64_FORMAT
                          " bytes cannot hold a single page: it must be 0 (the default) or at "
                          "least %" G_GUINT64_FORMAT " bytes; using the default",
                          budget, bf_ram_min_budget ());
          }
        else
          bigfile_ram_set_budget (self, g_value_get_uint64 (value));
        break;

      case PROP_RECLAIM_ON_LOW_MEMORY:
        if (!self->constructed)
          self->reclaim_on_low_memory = g_value_get_boolean (value);
        else
          bigfile_ram_set_reclaim_on_low_memory (self, g_value_get_boolean (value));
        break;

      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_ram_class_init (BigfileRamClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = bigfile_ram_constructed;
  object_class->dispose = bigfile_ram_dispose;
  object_class->finalize = bigfile_ram_finalize;
  object_class->get_property = bigfile_ram_get_property;
  object_class->set_property = bigfile_ram_set_property;

  /**
   * BigfileRam:budget:
   *
   * The most bytes of pages held at once. Setting 0 selects the default,
   * a quarter of the machine's physical memory; reading gives the budget in
   * force, never 0. Any other value must hold at least one page of the
   * smallest size, 4 KiB (or the system's page size, if larger): smaller
   * values are a programmer error, refused with a critical warning.
   *
   * A handle needs room for one page of its own size: bigfile_handle_new()
   * fails with %BIGFILE_RAM_ERROR_FULL when the budget is smaller than one
   * block of its file, and so do its loads if the budget is lowered below
   * that later.
   *
   * Lowering the budget below what is in use makes room by dropping clean
   * pages; dirty and pinned pages stay until written out, discarded or
   * unpinned.
   *
   * Since: 1.0
   */
  props[PROP_BUDGET] = g_param_spec_uint64 ("budget", NULL, NULL, 0, G_MAXUINT64, 0,
                                            G_PARAM_READWRITE | G_PARAM_CONSTRUCT
                                                | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileRam:used-bytes:
   *
   * The bytes of pages in use (loading, loaded or dirty). It changes as
   * pages fault in, from any thread, and is not notified.
   *
   * Since: 1.0
   */
  props[PROP_USED_BYTES] = g_param_spec_uint64 ("used-bytes", NULL, NULL, 0, G_MAXUINT64, 0,
                                                G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileRam:n-pages:
   *
   * The number of pages in use (loading, loaded or dirty), of every handle
   * sharing this #BigfileRam. Not notified.
   *
   * Since: 1.0
   */
  props[PROP_N_PAGES] = g_param_spec_uint64 ("n-pages", NULL, NULL, 0, G_MAXUINT64, 0,
                                             G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileRam:n-dirty-pages:
   *
   * The number of dirty pages (changed and not written out), of every handle
   * sharing this #BigfileRam. Not notified.
   *
   * Since: 1.0
   */
  props[PROP_N_DIRTY_PAGES] = g_param_spec_uint64 ("n-dirty-pages", NULL, NULL, 0, G_MAXUINT64, 0,
                                                   G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileRam:reclaim-on-low-memory:
   *
   * Whether to reclaim clean pages (as bigfile_ram_reclaim() does) when the
   * default #GMemoryMonitor emits #GMemoryMonitor::low-memory-warning.
   *
   * Since: 1.0
   */
  props[PROP_RECLAIM_ON_LOW_MEMORY] = g_param_spec_boolean (
      "reclaim-on-low-memory", NULL, NULL, TRUE,
      G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, props);

  /**
   * BigfileRam::reclaimed:
   * @ram: the #BigfileRam
   * @n_pages: how many pages were reclaimed
   *
   * Emitted on the owner context of @ram after clean pages were dropped to
   * make room or by bigfile_ram_reclaim(). Reclaims in page faults and on
   * other threads are counted and reported together, from an idle shortly
   * after; bigfile_ram_reclaim() called on the owner thread emits before it
   * returns.
   *
   * Since: 1.0
   */
  signals[SIGNAL_RECLAIMED]
      = g_signal_new ("reclaimed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 1, G_TYPE_UINT);
}

static void
bigfile_ram_init (BigfileRam *self)
{
  g_mutex_init (&self->budget_lock);
  self->budget = default_budget ();
}

/**
 * bigfile_ram_new:
 * @budget: the most bytes of pages to hold at once, at least 4 KiB (or the
 *   system's page size, if larger), or 0 for a quarter of physical memory
 *
 * Creates page memory with a budget, to be shared by one or more
 * #BigfileHandle. Each handle needs a budget of at least one block of its
 * file (see #BigfileRam:budget).
 *
 * The budget is a limit, not a reservation: memory is taken as pages are
 * loaded, and given back as they are reclaimed.
 *
 * Returns: (transfer full): a new #BigfileRam
 *
 * Since: 1.0
 */
BigfileRam *
bigfile_ram_new (guint64 budget)
{
  g_return_val_if_fail (budget_is_valid (budget), NULL);

  return g_object_new (BIGFILE_TYPE_RAM, "budget", budget, NULL);
}

/**
 * bigfile_ram_get_budget:
 * @ram: a #BigfileRam
 *
 * Gets the budget in force: the most bytes of pages held at once.
 *
 * Returns: the budget in bytes, never 0
 *
 * Since: 1.0
 */
guint64
bigfile_ram_get_budget (BigfileRam *ram)
{
  guint64 budget;

  g_return_val_if_fail (BIGFILE_IS_RAM (ram), 0);

  /* In a child after fork(), a thread of the parent that is not here may
   * have held budget_lock; the budget stays what it was. */
  if (ram->engine != NULL && bf_ram_is_forked (ram->engine))
    return ram->budget;

  g_mutex_lock (&ram->budget_lock);
  budget = ram->budget;
  g_mutex_unlock (&ram->budget_lock);

  return budget;
}

/**
 * bigfile_ram_set_budget:
 * @ram: a #BigfileRam
 * @budget: the most bytes of pages to hold at once, at least 4 KiB (or the
 *   system's page size, if larger), or 0 for a quarter of physical memory
 *
 * Changes the budget. Lowering it below what is in use drops clean pages
 * (least recently used first) until the use fits, or until only dirty,
 * pinned and loading pages are left: those stay until written out,
 * discarded, unpinned or loaded, and new loads fail with
 * %BIGFILE_RAM_ERROR_FULL meanwhile. Loads of a handle whose pages are
 * larger than the new budget fail with %BIGFILE_RAM_ERROR_FULL until it is
 * raised again.
 *
 * Since: 1.0
 */
void
bigfile_ram_set_budget (BigfileRam *ram, guint64 budget)
{
  gboolean changed;

  g_return_if_fail (BIGFILE_IS_RAM (ram));
  g_return_if_fail (budget_is_valid (budget));

  /* The parent's RAM, in a child after fork(): its budget is the parent's
   * (and budget_lock may be held by a thread that is not here). */
  if (ram->engine != NULL && bf_ram_is_forked (ram->engine))
    return;

  budget = resolve_budget (budget);

  g_mutex_lock (&ram->budget_lock);
  changed = ram->budget != budget;
  ram->budget = budget;
  if (ram->engine != NULL)
    bf_ram_set_budget (ram->engine, budget);
  g_mutex_unlock (&ram->budget_lock);

  if (changed)
    g_object_notify_by_pspec (G_OBJECT (ram), props[PROP_BUDGET]);
}

/* The engine's counts: all 0 if it could not be set up. */
static BfRamStats
get_stats (BigfileRam *ram)
{
  BfRamStats stats;

  if (ram->engine != NULL)
    bf_ram_get_stats (ram->engine, &stats);
  else
    memset (&stats, 0, sizeof stats);
  return stats;
}

/**
 * bigfile_ram_get_used_bytes:
 * @ram: a #BigfileRam
 *
 * Gets the bytes of pages in use (loading, loaded or dirty), of every
 * handle sharing @ram. The value may change at any moment as other threads
 * fault pages in.
 *
 * Returns: the bytes in use
 *
 * Since: 1.0
 */
guint64
bigfile_ram_get_used_bytes (BigfileRam *ram)
{
  g_return_val_if_fail (BIGFILE_IS_RAM (ram), 0);

  return get_stats (ram).used_bytes;
}

/**
 * bigfile_ram_get_n_pages:
 * @ram: a #BigfileRam
 *
 * Gets the number of pages in use (loading, loaded or dirty), of every
 * handle sharing @ram.
 *
 * Returns: the number of pages in use
 *
 * Since: 1.0
 */
guint64
bigfile_ram_get_n_pages (BigfileRam *ram)
{
  g_return_val_if_fail (BIGFILE_IS_RAM (ram), 0);

  return get_stats (ram).n_pages;
}

/**
 * bigfile_ram_get_n_dirty_pages:
 * @ram: a #BigfileRam
 *
 * Gets the number of dirty pages (changed and not yet written out), of
 * every handle sharing @ram. Dirty pages cannot be reclaimed: when they
 * fill the budget, loads fail until they are written out or discarded.
 *
 * Returns: the number of dirty pages
 *
 * Since: 1.0
 */
guint64
bigfile_ram_get_n_dirty_pages (BigfileRam *ram)
{
  g_return_val_if_fail (BIGFILE_IS_RAM (ram), 0);

  return get_stats (ram).n_dirty;
}

/**
 * bigfile_ram_reclaim:
 * @ram: a #BigfileRam
 *
 * Drops every clean page that no one pins, of every handle sharing @ram,
 * and gives their memory back to the system, also the memory kept for
 * reuse. Pages are reclaimed by themselves, least recently used first, when
 * the budget is reached; call this to give memory back ahead of time, for
 * example when the system reports memory pressure (#GMemoryMonitor). The
 * pages dropped load again from their files when next touched.
 *
 * Returns: the number of pages dropped: 0 when every page is dirty, pinned
 *   or loading, or there is none
 *
 * Since: 1.0
 */
guint
bigfile_ram_reclaim (BigfileRam *ram)
{
  guint n;

  g_return_val_if_fail (BIGFILE_IS_RAM (ram), 0);

  if (ram->engine == NULL)
    return 0;

  n = bf_ram_reclaim (ram->engine);
  if (_bigfile_can_emit_now (ram->owner_thread))
    emit_pending_reclaimed (G_OBJECT (ram));
  return n;
}

/**
 * bigfile_ram_get_reclaim_on_low_memory:
 * @ram: a #BigfileRam
 *
 * Gets #BigfileRam:reclaim-on-low-memory.
 *
 * Returns: whether @ram reclaims clean pages on a low-memory warning
 *
 * Since: 1.0
 */
gboolean
bigfile_ram_get_reclaim_on_low_memory (BigfileRam *ram)
{
  g_return_val_if_fail (BIGFILE_IS_RAM (ram), FALSE);

  return ram->reclaim_on_low_memory;
}

/**
 * bigfile_ram_set_reclaim_on_low_memory:
 * @ram: a #BigfileRam
 * @reclaim: whether to reclaim clean pages on a low-memory warning
 *
 * Sets #BigfileRam:reclaim-on-low-memory. Call it on the owner thread of
 * @ram.
 *
 * Since: 1.0
 */
void
bigfile_ram_set_reclaim_on_low_memory (BigfileRam *ram, gboolean reclaim)
{
  g_return_if_fail (BIGFILE_IS_RAM (ram));

  reclaim = !!reclaim;
  if (ram->reclaim_on_low_memory == reclaim)
    return;
  ram->reclaim_on_low_memory = reclaim;
  watch_memory_monitor (ram, reclaim);
  g_object_notify_by_pspec (G_OBJECT (ram), props[PROP_RECLAIM_ON_LOW_MEMORY]);
}

/* The engine RAM behind @ram: NULL if it could not be set up. */
BfRam *
_bigfile_ram_get_engine (BigfileRam *ram)
{
  g_return_val_if_fail (BIGFILE_IS_RAM (ram), NULL);

  return ram->engine;
}
