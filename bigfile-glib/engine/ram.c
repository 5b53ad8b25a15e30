/* bigfile-glib - RAM: page memory pools with a budget
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Page memory lives in memfds (anonymous shared memory: no name in any file
 * system, so no other process can open it), one pool per page size.  A pool's
 * memfd is mapped read-write into a window of segments that double in size
 * as the pool grows, so growing never moves memory the engine is using and
 * a pool takes address space in proportion to its use.  See
 * engine-private.h for the window, the slot states and the budget invariant.
 *
 * Allocation order (bf_ram_alloc_slot), cheapest first:
 *   1. a populated free slot of the pool: its memory is already allocated;
 *   2. a hole, while the budget has room: new shmem memory, populated in a
 *      batch so a run of faults does not pay one page allocation each;
 *   3. room made by punching populated free slots of *other* pools;
 *   4. reclaim of the least recently used clean page (of any pool);
 *   5. otherwise the budget is full of dirty or pinned pages: an error.
 *
 * All functions here run with the engine lock held (the public ones take it).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine-private.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* New holes are made this many bytes at a time (or one page, if larger);
 * it is also the most that the first window segment maps. */
#define POOL_GROW_BYTES ((gsize)2 << 20)

/* The smallest page size there is (bf_page_size_is_valid()). */
#define PAGE_SIZE_MIN ((gsize)4096)

/* How much fresh memory one allocation populates ahead, at most. */
#define POOL_POPULATE_BYTES ((gsize)256 << 10)

/* The first slot of segment @k, and the first slot past it. */
static inline guint64
pool_segment_start (const BfPool *pool, guint k)
{
  return (((guint64)1 << k) - 1) << pool->seg0_shift;
}

static inline guint64
pool_segment_end (const BfPool *pool, guint k)
{
  return pool_segment_start (pool, k + 1);
}

/* In a child after fork(): let go of the parent's page memory, so that
 * nothing here can reach it again.  The slot bookkeeping stays (freeing a
 * slot still works, as bookkeeping only). */
static void
pool_forget (BfPool *pool)
{
  for (guint k = 0; k < pool->n_segments; k++)
    {
      guint64 start = pool_segment_start (pool, k);

      munmap ((guint8 *)(pool->seg_bias[k] + (guintptr)(start * pool->page_size)),
              (pool_segment_end (pool, k) - start) * pool->page_size);
    }
  pool->n_segments = 0; /* forgotten: nothing to unmap again */
  if (pool->memfd >= 0)
    close (pool->memfd);
  pool->memfd = -1;
}

static void
pool_free (BfPool *pool)
{
  pool_forget (pool);
  g_array_unref (pool->populated);
  g_array_unref (pool->holes);
  g_free (pool);
}

static BfPool *
pool_new (BfRam *ram, gsize page_size, GError **error)
{
  BfPool *pool = g_new0 (BfPool, 1);
  char name[64];
  guint64 seg0;

  pool->ram = ram;
  pool->page_size = page_size;
  /* The first segment holds the budget, up to one growth step: a small RAM
   * takes little address space, a large one starts with few segments. */
  seg0 = CLAMP (ram->budget / page_size, 1, MAX (POOL_GROW_BYTES / page_size, 1));
  while (((guint64)1 << pool->seg0_shift) < seg0)
    pool->seg0_shift++;
  pool->populated = g_array_new (FALSE, FALSE, sizeof (guint64));
  pool->holes = g_array_new (FALSE, FALSE, sizeof (guint64));

  g_snprintf (name, sizeof name, "bigfile-ram-%" G_GSIZE_FORMAT, page_size);
  pool->memfd = memfd_create (name, MFD_CLOEXEC);
  if (pool->memfd < 0)
    {
      int errsv = errno;
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "Could not create page memory (memfd_create): %s", g_strerror (errsv));
      pool_free (pool);
      return NULL;
    }

  return pool;
}

/* Say that a page of @page_size bytes cannot fit in the budget at all. */
static void
set_budget_too_small_error (BfRam *ram, gsize page_size, const char *what, GError **error)
{
  g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL,
               "%s: the RAM budget of %" G_GUINT64_FORMAT
               " bytes is smaller than one page of %" G_GSIZE_FORMAT
               " bytes: raise it to at least %" G_GSIZE_FORMAT " bytes",
               what, ram->budget, page_size, page_size);
}

BfPool *
bf_ram_get_pool (BfRam *ram, gsize page_size, GError **error)
{
  BfPool *pool;

  g_assert (bf_lock_held ());

  /* Refused here rather than at the first fault: with a budget below one
   * page, not a single page of the handle could ever load.  (The budget
   * may still be lowered below it later; loads then say why they fail.) */
  if (page_size > ram->budget)
    {
      set_budget_too_small_error (ram, page_size, "Cannot open a handle", error);
      return NULL;
    }

  for (guint i = 0; i < ram->pools->len; i++)
    {
      pool = g_ptr_array_index (ram->pools, i);
      if (pool->page_size == page_size)
        return pool;
    }

  pool = pool_new (ram, page_size, error);
  if (pool != NULL)
    g_ptr_array_add (ram->pools, pool);
  return pool;
}

static inline guint64
slot_stack_pop (GArray *stack)
{
  guint64 slot = g_array_index (stack, guint64, stack->len - 1);
  g_array_set_size (stack, stack->len - 1);
  return slot;
}

static inline guint64
slot_stack_peek (GArray *stack)
{
  return g_array_index (stack, guint64, stack->len - 1);
}

/* Add the next window segment: lengthen the memfd to its end (a memfd's
 * length costs no memory) and map it read-write, anywhere. */
static gboolean
pool_add_segment (BfPool *pool, GError **error)
{
  guint k = pool->n_segments;
  gsize ps = pool->page_size;
  guint64 start = pool_segment_start (pool, k);
  guint64 end = pool_segment_end (pool, k);
  void *p;

  g_assert (start == pool->capacity);

  if (k == BF_POOL_MAX_SEGMENTS || end > (guint64)G_MAXINT64 / ps)
    {
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "Page memory for %" G_GSIZE_FORMAT
                   "-byte pages is at its limit of %" G_GUINT64_FORMAT " pages",
                   ps, pool->capacity);
      return FALSE;
    }

  if (ftruncate (pool->memfd, (off_t)(end * ps)) != 0)
    {
      int errsv = errno;
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "Could not grow page memory to %" G_GUINT64_FORMAT " bytes (ftruncate): %s",
                   end * ps, g_strerror (errsv));
      return FALSE;
    }

  p = mmap (NULL, (end - start) * ps, PROT_READ | PROT_WRITE, MAP_SHARED, pool->memfd,
            (off_t)(start * ps));
  if (p == MAP_FAILED)
    {
      int errsv = errno;
      /* The memfd stays longer than the window: harmless, it holds no
       * memory there and no slot past the window is handed out. */
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "Could not map %" G_GUINT64_FORMAT " bytes of page memory (mmap): %s",
                   (end - start) * ps, g_strerror (errsv));
      return FALSE;
    }

  pool->seg_bias[k] = (guintptr)p - (guintptr)(start * ps);
  pool->n_segments = k + 1;
  pool->capacity = end;
  return TRUE;
}

/* Make a chunk of new holes, adding a window segment when the window is
 * full.  They are stacked so that the lowest is used first: a run of
 * allocations then gets ascending slots, and a VMA that maps them in file
 * order stays one kernel mapping (vm.max_map_count), also across segments. */
static gboolean
pool_grow (BfPool *pool, GError **error)
{
  guint64 chunk = MAX (POOL_GROW_BYTES / pool->page_size, 1);
  guint64 old = pool->n_slots;

  if (old == pool->capacity && !pool_add_segment (pool, error))
    return FALSE;

  chunk = MIN (chunk, pool->capacity - old);
  pool->n_slots = old + chunk;
  for (guint64 s = old + chunk; s > old; s--)
    {
      guint64 slot = s - 1;
      g_array_append_val (pool->holes, slot);
    }
  return TRUE;
}

/* Take the next hole (the pool must have one) and, while the budget has room,
 * the holes right after it, and populate them in one call: one madvise costs
 * far less than one first-touch fault per page.  The first slot is returned;
 * the others become populated free slots.  Returns how many were populated. */
static guint64
pool_take_hole_populated (BfRam *ram, BfPool *pool, guint64 *slot_out)
{
  gsize ps = pool->page_size;
  guint64 first = slot_stack_pop (pool->holes);
  guint64 n = 1;
  guint64 room = (ram->budget - ram->resident_bytes) / ps; /* >= 1 on entry */
  guint64 max = MIN (MAX (POOL_POPULATE_BYTES / ps, 1), room);

  /* One madvise covers one segment: the next may lie anywhere. */
  max = MIN (max, pool_segment_end (pool, bf_pool_slot_segment (pool, first)) - first);

  while (n < max && pool->holes->len > 0 && slot_stack_peek (pool->holes) == first + n)
    {
      slot_stack_pop (pool->holes);
      n++;
    }

  /* Failure (old kernel, or no memory right now) is harmless: the load's
   * first write will allocate the memory instead. */
  madvise (bf_pool_slot_addr (pool, first), n * ps, MADV_POPULATE_WRITE);

  /* Slots after the first go to the populated stack, lowest on top. */
  for (guint64 s = first + n; s > first + 1; s--)
    {
      guint64 slot = s - 1;
      g_array_append_val (pool->populated, slot);
    }

  ram->resident_bytes += n * ps;
  *slot_out = first;
  return n;
}

/* Give back the memory of one populated free slot of @pool. */
static void
pool_punch_one (BfRam *ram, BfPool *pool)
{
  gsize ps = pool->page_size;
  guint64 slot = slot_stack_pop (pool->populated);

  /* A forked pool has no memory of its own to give back. */
  if (!bf_ram_is_forked (ram)
      && fallocate (pool->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(slot * ps),
                    (off_t)ps)
             != 0)
    {
      /* Cannot happen on a memfd; if it did, the memory would stay in use but
       * unaccounted, which is safe. */
      g_warning ("Could not release page memory: %s", g_strerror (errno));
    }
  g_array_append_val (pool->holes, slot);
  ram->resident_bytes -= ps;
}

/* Punch populated free slots of pools other than @except until @bytes fit in
 * the budget.  Returns TRUE if they fit. */
static gboolean
ram_trim_for (BfRam *ram, BfPool *except, gsize bytes)
{
  for (guint i = 0; i < ram->pools->len; i++)
    {
      BfPool *pool = g_ptr_array_index (ram->pools, i);

      if (pool == except)
        continue;
      while (pool->populated->len > 0 && ram->resident_bytes + bytes > ram->budget)
        pool_punch_one (ram, pool);
    }
  return ram->resident_bytes + bytes <= ram->budget;
}

/* Reclaim the least recently used clean page.  Its slot becomes a populated
 * free slot of its pool. */
static gboolean
ram_reclaim_one (BfRam *ram)
{
  /* A page the kernel will not let go of (at vm.max_map_count) stays in
   * the LRU: try the next one. */
  for (GList *link = ram->lru.head, *next; link != NULL; link = next)
    {
      next = link->next;
      if (!ram->evict (link->data))
        continue;
      ram->n_reclaimed++;
      if (ram->reclaimed != NULL)
        ram->reclaimed (ram->reclaimed_data, 1);
      return TRUE;
    }
  return FALSE;
}

/* Say why no page of @page_size bytes can be had: every page in the budget
 * is in use and none is reclaimable.  Dirty pages are counted; the other
 * pages are clean but held: pinned, loading, or in a copy or store (an
 * orphan, dropped while held, is one of those until let go). */
static void
set_full_error (BfRam *ram, gsize page_size, GError **error)
{
  guint64 held = ram->n_pages - ram->n_dirty;

  if (held == 0)
    g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL,
                 "No room for a page of %" G_GSIZE_FORMAT
                 " bytes: the RAM budget of %" G_GUINT64_FORMAT
                 " bytes is full of unsaved changes (%" G_GUINT64_FORMAT
                 " dirty pages): write out or discard changes, or raise the budget",
                 page_size, ram->budget, ram->n_dirty);
  else
    g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL,
                 "No room for a page of %" G_GSIZE_FORMAT " bytes: none of the %" G_GUINT64_FORMAT
                 " pages in the RAM budget of %" G_GUINT64_FORMAT
                 " bytes can be reclaimed (%" G_GUINT64_FORMAT " dirty; %" G_GUINT64_FORMAT
                 " clean but pinned, loading, or in a copy or store): write out or discard "
                 "changes, unpin pages, let loads finish, or raise the budget",
                 page_size, ram->n_pages, ram->budget, ram->n_dirty, held);
}

gboolean
bf_ram_alloc_slot (BfRam *ram, BfPool *pool, guint64 *slot, GError **error)
{
  gsize ps = pool->page_size;

  g_assert (bf_lock_held ());

  /* The budget was lowered below one page after the handle was opened:
   * reclaiming everything would not help. */
  if (ps > ram->budget)
    {
      set_budget_too_small_error (ram, ps, "Cannot load a page", error);
      return FALSE;
    }

  for (;;)
    {
      /* In the loop: the reclaim hook below runs with the lock held, and
       * a fork() from there (a signal handler's) goes on here in the child
       * too. */
      if (bf_ram_is_forked (ram))
        {
          bf_set_forked_error (error, ram, "Cannot allocate page memory");
          return FALSE;
        }
      if (pool->populated->len > 0)
        {
          *slot = slot_stack_pop (pool->populated);
          break;
        }

      if (ram->resident_bytes + ps <= ram->budget)
        {
          if (pool->holes->len == 0 && !pool_grow (pool, error))
            return FALSE;
          pool_take_hole_populated (ram, pool, slot);
          break;
        }

      if (ram_trim_for (ram, pool, ps))
        continue;

      if (ram_reclaim_one (ram))
        continue;

      set_full_error (ram, ps, error);
      return FALSE;
    }

  ram->used_bytes += ps;
  ram->n_pages++;
  return TRUE;
}

void
bf_ram_free_slot (BfRam *ram, BfPool *pool, guint64 slot)
{
  g_array_append_val (pool->populated, slot);
  ram->used_bytes -= pool->page_size;
  ram->n_pages--;

  /* The budget may have been lowered while this page was in use. */
  while (ram->resident_bytes > ram->budget && pool->populated->len > 0)
    pool_punch_one (ram, pool);
}

/* Bring resident memory down to the budget: free cached memory first, then
 * clean pages, least recently used first.  Dirty and pinned pages stay. */
static void
ram_shrink_to_budget (BfRam *ram)
{
  while (ram->resident_bytes > ram->budget)
    {
      if (ram_trim_for (ram, NULL, 0))
        break;
      if (!ram_reclaim_one (ram))
        break;
    }
}

guint64
bf_ram_min_budget (void)
{
  long sys = sysconf (_SC_PAGESIZE);

  return MAX (PAGE_SIZE_MIN, sys > 0 ? (gsize)sys : 0);
}

/* -- fork() ---------------------------------------------------------------------
 *
 * Every RAM, so that a forked child can let go of all page memory at once
 * (engine-private.h, "fork()"). */

static GQueue all_rams = G_QUEUE_INIT;

/* The child hook: every RAM there is belongs to the parent. */
static void
ram_fork_child (void)
{
  for (GList *l = all_rams.head; l != NULL; l = l->next)
    {
      BfRam *ram = l->data;
      for (guint i = 0; i < ram->pools->len; i++)
        pool_forget (g_ptr_array_index (ram->pools, i));
    }
}

gboolean
bf_ram_is_forked (BfRam *ram)
{
  /* fork_gen never changes, and the generation only in a child that has
   * one thread. */
  return ram->fork_gen != bf_fork_generation ();
}

void
bf_set_forked_error (GError **error, BfRam *ram, const char *what)
{
  g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_FORKED,
               "%s: it belongs to the parent process (pid %d); a child process after fork() "
               "cannot use the bigfile handles and mappings of its parent: open and map the "
               "file again in the child, with a new BigfileRam",
               what, (int)ram->pid);
}

BfRam *
bf_ram_new (guint64 budget, GError **error)
{
  BfRam *ram;

  if (budget < bf_ram_min_budget ())
    {
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "A RAM budget of %" G_GUINT64_FORMAT
                   " bytes cannot hold a single page: it must be at least %" G_GUINT64_FORMAT
                   " bytes",
                   budget, bf_ram_min_budget ());
      return NULL;
    }
  if (!bf_fork_watch (error))
    return NULL;

  ram = g_new0 (BfRam, 1);
  ram->fork_gen = bf_fork_generation ();
  ram->pid = getpid ();
  ram->refs = 1;
  ram->budget = budget;
  ram->pools = g_ptr_array_new_with_free_func ((GDestroyNotify)pool_free);
  g_queue_init (&ram->lru);
  ram->all_link.data = ram;

  bf_lock ();
  bf_fork_add_child_hook (ram_fork_child);
  g_queue_push_tail_link (&all_rams, &ram->all_link);
  bf_unlock ();
  return ram;
}

void
bf_ram_ref (BfRam *ram)
{
  ram->refs++;
}

void
bf_ram_unref_locked (BfRam *ram)
{
  g_assert (ram->refs > 0);
  if (--ram->refs > 0)
    return;

  /* Handles hold a reference, so no page can be left. */
  g_assert (ram->n_pages == 0 && g_queue_is_empty (&ram->lru));
  g_queue_unlink (&all_rams, &ram->all_link);
  g_ptr_array_unref (ram->pools);
  g_free (ram);
}

void
bf_ram_unref (BfRam *ram)
{
  bf_lock ();
  bf_ram_unref_locked (ram);
  bf_unlock ();
}

void
bf_ram_set_reclaim_hook (BfRam *ram, void (*reclaimed) (gpointer data, guint n_pages),
                         gpointer data)
{
  bf_lock ();
  ram->reclaimed = reclaimed;
  ram->reclaimed_data = data;
  bf_unlock ();
}

void
bf_ram_set_budget (BfRam *ram, guint64 budget)
{
  g_return_if_fail (budget >= bf_ram_min_budget ());

  bf_lock ();
  /* A forked RAM keeps its pages as bookkeeping: nothing to shrink. */
  if (!bf_ram_is_forked (ram))
    {
      ram->budget = budget;
      ram_shrink_to_budget (ram);
    }
  bf_unlock ();
}

void
bf_ram_get_stats (BfRam *ram, BfRamStats *stats)
{
  bf_lock ();
  stats->budget = ram->budget;
  stats->resident_bytes = ram->resident_bytes;
  stats->used_bytes = ram->used_bytes;
  stats->n_pages = ram->n_pages;
  stats->n_dirty = ram->n_dirty;
  stats->n_reclaimed = ram->n_reclaimed;
  bf_unlock ();
}

guint
bf_ram_reclaim (BfRam *ram)
{
  guint n = 0;

  bf_lock ();
  /* A forked RAM has no memory of its own to give back. */
  if (bf_ram_is_forked (ram))
    {
      bf_unlock ();
      return 0;
    }
  while (ram_reclaim_one (ram))
    n++;
  /* Give back every cached slot. */
  for (guint i = 0; i < ram->pools->len; i++)
    {
      BfPool *pool = g_ptr_array_index (ram->pools, i);
      while (pool->populated->len > 0)
        pool_punch_one (ram, pool);
    }
  bf_unlock ();
  return n;
}
