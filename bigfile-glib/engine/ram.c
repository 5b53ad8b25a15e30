/* bigfile-glib - RAM: page memory pools with a budget
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Page memory lives in memfds (anonymous shared memory: no name in any file
 * system, so no other process can open it), one pool per page size.  A pool's
 * memfd is mapped read-write once into a window whose address range is
 * reserved up front, so growing the pool never moves memory the engine is
 * using.  See engine-private.h for the slot states and the budget invariant.
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

/* Address space reserved for one pool's window: the most memory one page
 * size can ever use.  Reserving costs nothing but address space (PROT_NONE,
 * MAP_NORESERVE); we halve it until the kernel agrees. */
#define POOL_RESERVE_MAX ((guint64)1 << 40) /* 1 TiB */
#define POOL_RESERVE_MIN ((guint64)1 << 30) /* 1 GiB */

/* The memfd grows by this much at a time (or one page, if larger). */
#define POOL_GROW_BYTES ((gsize)2 << 20)

/* How much fresh memory one allocation populates ahead, at most. */
#define POOL_POPULATE_BYTES ((gsize)256 << 10)

/* In a child after fork(): let go of the parent's page memory, so that
 * nothing here can reach it again.  The slot bookkeeping stays (freeing a
 * slot still works, as bookkeeping only). */
static void
pool_forget (BfPool *pool)
{
  if (pool->window != NULL)
    munmap (pool->window, pool->capacity * pool->page_size);
  pool->window = NULL;
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
  guint64 reserve;

  pool->ram = ram;
  pool->page_size = page_size;
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

  for (reserve = POOL_RESERVE_MAX; reserve >= POOL_RESERVE_MIN; reserve /= 2)
    {
      void *p = mmap (NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p != MAP_FAILED)
        {
          pool->window = p;
          pool->capacity = reserve / page_size;
          return pool;
        }
    }

  g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
               "Could not reserve address space for page memory: %s", g_strerror (ENOMEM));
  pool_free (pool);
  return NULL;
}

BfPool *
bf_ram_get_pool (BfRam *ram, gsize page_size, GError **error)
{
  BfPool *pool;

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

/* Lengthen the memfd by a chunk and map the new part into the window.  The
 * new slots become holes, stacked so that the lowest is used first: a run of
 * allocations then gets ascending slots, and a VMA that maps them in file
 * order stays one kernel mapping (vm.max_map_count). */
static gboolean
pool_grow (BfPool *pool, GError **error)
{
  guint64 chunk = MAX (POOL_GROW_BYTES / pool->page_size, 1);
  guint64 old = pool->n_slots;
  gsize ps = pool->page_size;
  void *p;

  chunk = MIN (chunk, pool->capacity - old);
  if (chunk == 0)
    {
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "Page memory for %" G_GSIZE_FORMAT
                   "-byte pages is at its limit of %" G_GUINT64_FORMAT " pages",
                   ps, pool->capacity);
      return FALSE;
    }

  if (ftruncate (pool->memfd, (off_t)((old + chunk) * ps)) != 0)
    {
      int errsv = errno;
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "Could not grow page memory to %" G_GUINT64_FORMAT " bytes: %s",
                   (old + chunk) * ps, g_strerror (errsv));
      return FALSE;
    }

  p = mmap (pool->window + old * ps, chunk * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
            pool->memfd, (off_t)(old * ps));
  if (p == MAP_FAILED)
    {
      int errsv = errno;
      /* The reservation is still ours: put PROT_NONE back over the range. */
      mmap (pool->window + old * ps, chunk * ps, PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "Could not map page memory: %s", g_strerror (errsv));
      return FALSE;
    }

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
  GList *link = ram->lru.head;

  if (link == NULL)
    return FALSE;
  ram->evict (link->data);
  ram->n_reclaimed++;
  if (ram->reclaimed != NULL)
    ram->reclaimed (ram->reclaimed_data, 1);
  return TRUE;
}

gboolean
bf_ram_alloc_slot (BfRam *ram, BfPool *pool, guint64 *slot, GError **error)
{
  gsize ps = pool->page_size;

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

      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL,
                   "The RAM budget of %" G_GUINT64_FORMAT " bytes is full of unsaved changes "
                   "(%" G_GUINT64_FORMAT " dirty pages, %" G_GUINT64_FORMAT
                   " pages in use): write out or discard changes, or raise the budget",
                   ram->budget, ram->n_dirty, ram->n_pages);
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

  if (budget == 0)
    {
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "A RAM budget must be at least one page");
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
  g_return_if_fail (budget > 0);

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
