/* bigfile-glib - page memory with a budget
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bigfile-private.h"

#include <string.h>
#include <unistd.h>

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
 * #BigfileRam is thread-safe.
 *
 * Since: 1.0
 */

struct _BigfileRam
{
  GObject parent_instance;

  /* The engine's RAM; NULL only if bf_ram_new() failed at construction,
   * which it does only on absurd input (a critical was emitted then). */
  BfRam *engine;
  gboolean constructed;

  /* The effective budget in bytes (never 0: 0 is resolved to the default).
   * Written under budget_lock so that concurrent setters notify correctly. */
  GMutex budget_lock;
  guint64 budget;
};

enum
{
  PROP_0,
  PROP_BUDGET,
  PROP_USED_BYTES,
  PROP_N_PAGES,
  PROP_N_DIRTY_PAGES,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

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

  self->constructed = TRUE;
}

static void
bigfile_ram_finalize (GObject *object)
{
  BigfileRam *self = BIGFILE_RAM (object);

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
          /* constructed() makes the engine with this budget. */
          self->budget = resolve_budget (g_value_get_uint64 (value));
        else
          bigfile_ram_set_budget (self, g_value_get_uint64 (value));
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
  object_class->finalize = bigfile_ram_finalize;
  object_class->get_property = bigfile_ram_get_property;
  object_class->set_property = bigfile_ram_set_property;

  /**
   * BigfileRam:budget:
   *
   * The most bytes of pages held at once. Setting 0 selects the default,
   * a quarter of the machine's physical memory; reading gives the budget in
   * force, never 0.
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

  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
bigfile_ram_init (BigfileRam *self)
{
  g_mutex_init (&self->budget_lock);
  self->budget = default_budget ();
}

/**
 * bigfile_ram_new:
 * @budget: the most bytes of pages to hold at once, or 0 for a quarter of
 *   physical memory
 *
 * Creates page memory with a budget, to be shared by one or more
 * #BigfileHandle.
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

  g_mutex_lock (&ram->budget_lock);
  budget = ram->budget;
  g_mutex_unlock (&ram->budget_lock);

  return budget;
}

/**
 * bigfile_ram_set_budget:
 * @ram: a #BigfileRam
 * @budget: the most bytes of pages to hold at once, or 0 for a quarter of
 *   physical memory
 *
 * Changes the budget. Lowering it below what is in use drops clean pages
 * (least recently used first) until the use fits, or until only dirty and
 * pinned pages are left: those stay until written out, discarded or
 * unpinned, and new loads fail with %BIGFILE_RAM_ERROR_FULL meanwhile.
 *
 * Since: 1.0
 */
void
bigfile_ram_set_budget (BigfileRam *ram, guint64 budget)
{
  gboolean changed;

  g_return_if_fail (BIGFILE_IS_RAM (ram));

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
  g_return_val_if_fail (BIGFILE_IS_RAM (ram), 0);

  if (ram->engine == NULL)
    return 0;

  return bf_ram_reclaim (ram->engine);
}

/* The engine RAM behind @ram: NULL if it could not be set up. */
BfRam *
_bigfile_ram_get_engine (BigfileRam *ram)
{
  g_return_val_if_fail (BIGFILE_IS_RAM (ram), NULL);

  return ram->engine;
}
