/* bigfile-glib - engine internals shared by the engine's files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The engine, file by file, each calling only the ones below it:
 *
 *   fault.c     the SIGSEGV handler: serves a fault through vma.c
 *      |
 *   vma.c       VMAs: the registry, mapping pages into address ranges,
 *      |        kernel-map accounting, fault service, API copies, pins
 *      |
 *   writeout.c  storing dirty pages, stepwise
 *      |
 *   handle.c    handles: the page table of one file, discard, invalidate
 *      |
 *   page.c      page states and lists, getting (loading) a page, dropping it
 *      |
 *   ram.c       page memory: memfd pools, slots, the budget, the LRU
 *      |
 *   lock.c      the engine lock and condition
 *
 * Two arrows point up, each through a small table of callbacks that the
 * upper file fills in, so that no file calls a function of a file above it:
 *   - page.c reaches the mappings of a page through handle->rmap
 *     (BfRmapOps, set by vma.c when a handle gets its first VMA): unmap,
 *     write-protect, show over the base file, unmap ahead for reclaim;
 *   - ram.c reclaims a page of its LRU through ram->evict (set by handle.c).
 *
 * Lock order
 * ----------
 * There is one engine lock for every RAM, handle, page and VMA (lock.c): the
 * fault handler must find a VMA from a bare address, and everything it
 * touches then hangs off that VMA.  Locks outside the engine nest around it,
 * never inside it:
 *
 *   a file's own locks (taken in load/store callbacks, which run with the
 *   engine lock RELEASED)
 *     -> the engine lock (bf_lock)
 *          -> GLib's GMainContext lock (g_main_context_wakeup, g_source_attach
 *             from dirty_changed and the reclaim hook, which run with the
 *             engine lock held: BigfileHandle's wake source)
 *
 * Nothing takes the engine lock while holding a GMainContext lock, and no
 * callback that runs with the engine lock held (dirty_changed, reclaimed)
 * may take a lock that is held anywhere around an engine call.
 *
 * Fields
 * ------
 * Each structure below marks its fields as "immutable" (set before the
 * object is reachable by another thread, never changed after) or as
 * protected by the engine lock (the default: unless a field says
 * otherwise, it is read and written with the engine lock held).
 */
#pragma once

#include <sys/types.h>

#include "engine.h"
#include "bigfile-error.h"

G_BEGIN_DECLS

typedef struct _BfPool BfPool;
typedef struct _BfPage BfPage;

/* -- the engine lock (lock.c) ---------------------------------------------
 *
 * A plain (non-recursive) mutex; bf_lock_held() tells whether the calling
 * thread holds it, which lets the fault handler recognise a fault raised by
 * engine code itself (a bug) and crash instead of deadlocking.  Every
 * function that needs the lock asserts it at entry with bf_assert_locked().
 *
 * bf_wait() sleeps on the one engine condition until some page changes state
 * (load done, store done, writers drained); every such change calls
 * bf_wake_all().
 */
void bf_lock (void);
void bf_unlock (void);
gboolean bf_lock_held (void);
void bf_wait (void);
void bf_wake_all (void);
gconstpointer bf_thread_self (void);

#define bf_assert_locked() g_assert (bf_lock_held ())

/* -- fork() (lock.c) ----------------------------------------------------------
 *
 * The rule: a child process after fork() cannot use what the engine had at
 * fork time.  Page memory is one MAP_SHARED memfd per pool, and every VMA
 * maps slots of it (and, over a base file, the file) shared: left as they
 * are, a child's load, write, reclaim or writeout would change the
 * parent's pages, its allocator's slots or its file behind its back.
 * Giving the child a private snapshot instead would cost a copy of every
 * page in memory at each fork(), which fork()+exec() must not pay.
 *
 * So every RAM, pool, handle, VMA and page that exists when fork() is
 * called belongs to the parent, and in the child it is "forked":
 *
 *   forked (ram)    <=> ram->fork_gen != bf_fork_generation ()
 *   forked (pool)   <=> forked (pool->ram)
 *   forked (handle) <=> forked (handle->ram)
 *   forked (vma)    <=> forked (vma->handle->ram)
 *
 * bf_fork_generation() goes up by one in each child, so the objects a child
 * makes (a new RAM, and handles and VMAs in it) are its own and work as
 * usual, until it forks in turn.  The state belongs to the objects, not to
 * the process: a RAM does not become forked later, and a child's own RAM
 * never is, in that child.
 *
 * In the child, the atfork child handler (lock.c) runs before fork()
 * returns, so before any code of the program:
 *   1. the engine mutex and condition are made afresh (threads that held
 *      or waited on them do not exist in the child), and held again if the
 *      forking thread held them;
 *   2. bf_fork_generation() goes up: every object there is, is now forked;
 *   3. the child hooks run (bf_fork_add_child_hook), under the lock:
 *      vma.c puts one anonymous PROT_NONE mapping over each registered
 *      VMA's range (no slot and no page of a base file stays visible) and
 *      sets its handle's rmap to NULL (nothing is mapped any more); ram.c
 *      unmaps each pool's window and closes its memfd (pool_forget), so
 *      that nothing the child does can reach the parent's page memory.
 *      That is O(VMAs + pools) system calls; no page is copied or touched.
 *
 * After that, for forked objects, in the child:
 *   - bf_page_get() (so faults, copies, pins, populate), bf_vma_map(),
 *     bf_writeout_begin() and _step(), bf_handle_new() and
 *     bf_ram_alloc_slot() fail with BIGFILE_HANDLE_ERROR_FORKED
 *     (bf_set_forked_error()), before they wait for anything; a fault on a
 *     forked VMA ends in SIGBUS with that error;
 *   - discard, invalidate, reclaim and budget changes do nothing;
 *   - unpin, unmap, close and unref change the child's bookkeeping only:
 *     no system call on a pool (its memfd is closed: freed slots are not
 *     punched), none on a VMA's range but the final munmap (the range is
 *     the child's), and no callback (dirty_changed, reclaimed: the owner's
 *     main context may be locked by a thread that is not in the child);
 *   - pages that a thread of the parent was loading or storing stay so
 *     (LOADING, storing, io_refs, writers): nothing may wait for them, which
 *     the checks above make sure of, since they come before any bf_wait();
 *     an orphan of theirs is never freed, a leak in the child only;
 *   - the bitmaps of a forked VMA are stale: nothing reads them.  The
 *     invariants of VMAs, and of what is mapped where, hold for objects that
 *     are not forked only.
 *
 * The lock: the prepare handler takes the engine lock, so fork() comes
 * between two engine operations of every other thread (or while they wait
 * or run a load or store, with the lock released): the child's copy of the
 * structures is whole, and no thread was in a callback that runs with the
 * lock held, so none left a GMainContext lock held either.  A thread that
 * holds the lock already (fork() from a signal handler that interrupted the
 * engine) does not take it again.  fork() from inside a load or store
 * callback works in the parent; in the child the callback's buffer (a slot
 * of the window) is gone, so such a child must only exec or _exit.
 * posix_spawn() and vfork() run no atfork handler: their child shares the
 * parent's memory until it calls exec, and does nothing else.
 */
guint bf_fork_generation (void);
/* Registers the atfork handlers, once; call without the engine lock. */
gboolean bf_fork_watch (GError **error);
/* @hook runs in each child, under the lock, at step 3 above. */
void bf_fork_add_child_hook (void (*hook) (void));

/* -- RAM: pools of page memory (ram.c) -------------------------------------
 *
 * A pool holds the pages of one size in one memfd (never a named file).  The
 * whole memfd is mapped read-write once, in a window reserved at pool
 * creation: loads and stores work on the window, VMAs map single slots of the
 * memfd.  A slot is the memfd range [slot * page_size, +page_size).
 *
 * Each slot is in one of three states:
 *
 *   hole ----alloc----> used ----free----> populated ----alloc----> used
 *     ^                                       |
 *     +-----------------trim (punch)----------+
 *
 * "populated" slots keep their shmem memory, so reusing them costs no page
 * allocation (FACTS.md: allocation dominates the cost of a fault); they count
 * against the budget and are punched out first when room is needed.
 *
 * Budget invariant (unless the budget was lowered below the dirty pages):
 *   ram->resident_bytes == sum (used + populated slots) * page_size <= budget
 */
struct _BfPool
{
  /* Immutable (but that in a child after fork(), pool_forget() sets memfd
   * to -1 and window to NULL: see "fork()"). */
  BfRam *ram;
  gsize page_size;
  int memfd;
  guint8 *window;   /* RW view of the memfd, reserved for capacity slots */
  guint64 capacity; /* slots the reservation can hold */

  /* Engine lock. */
  guint64 n_slots;   /* slots the memfd is long and the window maps */
  GArray *populated; /* free slots with memory, guint64, next to use last */
  GArray *holes;     /* free slots without memory, guint64, next to use last */
};

struct _BfRam
{
  /* Immutable. */
  guint fork_gen; /* bf_fork_generation () when made: see "fork()" */
  pid_t pid;      /* the process that made it, for messages */

  /* Engine lock. */
  GList all_link; /* in ram.c's list of every RAM, for the child hook */
  gint refs;
  guint64 budget;
  guint64 resident_bytes;
  guint64 used_bytes;
  guint64 n_pages;
  guint64 n_dirty;
  guint64 n_reclaimed;
  GPtrArray *pools; /* BfPool*, one per page size in use */
  GQueue lru;       /* clean reclaimable pages (via lru_link), least recently used first */
  /* Reclaims one page of the LRU (page.c's bf_page_reclaim, set by
   * handle.c): RAM knows pages only as entries of its LRU. */
  void (*evict) (BfPage *page);
  void (*reclaimed) (gpointer data, guint n_pages);
  gpointer reclaimed_data;
};

BfPool *bf_ram_get_pool (BfRam *ram, gsize page_size, GError **error);
gboolean bf_ram_alloc_slot (BfRam *ram, BfPool *pool, guint64 *slot, GError **error);
void bf_ram_free_slot (BfRam *ram, BfPool *pool, guint64 slot);
void bf_ram_ref (BfRam *ram);
void bf_ram_unref_locked (BfRam *ram);

/* BIGFILE_HANDLE_ERROR_FORKED: "@what: ... belongs to the parent ...". */
void bf_set_forked_error (GError **error, BfRam *ram, const char *what);

static inline guint8 *
bf_pool_slot_addr (BfPool *pool, guint64 slot)
{
  return pool->window + slot * pool->page_size;
}

/* -- handles (handle.c) -----------------------------------------------------
 *
 * How page.c reaches the mappings of a page (its reverse map), without
 * calling up into vma.c.  All run with the engine lock held. */
typedef struct
{
  /* Unmap @page from every VMA (the base file shows through again where
   * there is one). */
  void (*unmap) (BfPage *page);
  /* Map @page read-only wherever it is mapped writable. */
  void (*write_protect) (BfPage *page);
  /* @page just became dirty: show it over the base file in every VMA. */
  void (*show_dirty) (BfPage *page);
  /* @page is about to be reclaimed: unmap it, and the LRU pages that
   * follow it in index order, in as few system calls as possible. */
  void (*unmap_for_reclaim) (BfPage *page);
} BfRmapOps;

struct _BfHandle
{
  /* Immutable. */
  BfRam *ram; /* a reference */
  BfPool *pool;
  gsize page_size;
  guint page_shift;
  const BfFileOps *ops;
  gpointer data; /* for ops */
  int base_fd;   /* >= 0: clean pages show this file (vma.c, "Clean pages from the page cache") */

  /* Engine lock. */
  gint refs;             /* owner, VMAs, loads and writeouts in flight */
  const BfRmapOps *rmap; /* NULL until the first VMA (and again in a forked
                          * child): then nothing is mapped */
  GHashTable *pages;     /* &page->index -> BfPage */
  GQueue dirty;          /* BfPage, via dirty_link */
  GQueue vmas;           /* BfVma, via handle_link */
  guint64 n_dirty;       /* == dirty.length */
  gboolean closed;
  gboolean writeout_running;
  /* Pages dropped (discard, invalidate) while their store runs, by index:
   * a new load of the index waits for that store, or it could read the
   * block half written. */
  GHashTable *dropped_storing;
};

void bf_handle_unref_locked (BfHandle *handle);

static inline BfPage *
bf_handle_lookup (BfHandle *handle, guint64 index)
{
  return g_hash_table_lookup (handle->pages, &index);
}

static inline void
bf_handle_dirty_changed (BfHandle *handle)
{
  /* Not in a forked child: see "fork()". */
  if (handle->ops->dirty_changed != NULL && !bf_ram_is_forked (handle->ram))
    handle->ops->dirty_changed (handle->data);
}

/* -- pages (page.c) ---------------------------------------------------------
 *
 * A page is in its handle's table from the moment its load starts until it is
 * dropped.  Invariants (checked by bf_handle_check()):
 *   - in_lru    <=> state == LOADED && pin_count == 0 && io_refs == 0 && !orphaned
 *   - in_dirty  <=> state == DIRTY && !orphaned
 *   - storing    => state == DIRTY, writers == 0, and no VMA maps the page
 *                   writable
 *   - writers > 0 => state == DIRTY (unless orphaned): bf_vma_write() is
 *                   copying into the slot with the lock released; writeout
 *                   waits for writers to drain before it stores or marks
 *   - orphaned  <=> dropped from the table while io_refs > 0 or pin_count > 0;
 *                   its slot stays allocated until the last io reference and
 *                   pin go (so a load, store, copy, or I/O the kernel does
 *                   into pinned memory never sees the slot reused)
 *   - write_pins > 0 => state == DIRTY: writeout stores the page as it is
 *                   (the pin holder may be writing it) and leaves it dirty
 */
struct _BfPage
{
  /* Immutable. */
  guint64 index; /* key of handle->pages: must stay the first member */
  BfHandle *handle;
  guint64 slot;

  /* Engine lock. */
  BfPageState state;
  guint storing : 1;
  guint orphaned : 1;
  guint in_lru : 1;
  guint in_dirty : 1;
  guint io_refs;           /* loader, writeout snapshot, or API copy in flight */
  guint writers;           /* API copies into the page in flight */
  guint pin_count;         /* bf_vma_pin(hold): not reclaimable, slot kept if dropped */
  guint write_pins;        /* ...of which writable: writeout neither protects nor cleans */
  gconstpointer io_thread; /* who loads or stores it, to catch self-deadlock */
  GList lru_link;          /* in ram->lru */
  GList dirty_link;        /* in handle->dirty */
};

typedef enum
{
  BF_GET_OK,    /* *out is LOADED or DIRTY (DIRTY and not storing if @write) */
  BF_GET_RETRY, /* the lock was released: look everything up again */
  BF_GET_ERROR,
} BfGetResult;

BfGetResult bf_page_get (BfHandle *handle, guint64 index, gboolean write, BfPage **out,
                         GError **error);
void bf_page_update_lru (BfPage *page, gboolean touch);
void bf_page_set_clean (BfPage *page);
void bf_page_write_protect (BfPage *page);
void bf_page_io_unref (BfPage *page);
void bf_page_pin (BfPage *page, gboolean writable);
void bf_page_unpin (BfPage *page, gboolean writable);
/* Drop a page: unmap it everywhere, take it out of every list and free it
 * (or orphan it while I/O or a pin holds it). */
void bf_page_drop (BfPage *page);
/* Reclaim a clean page (ram->evict): bf_page_drop(), after unmapping the
 * LRU pages that follow it in index order in the same system call. */
void bf_page_reclaim (BfPage *page);
void bf_set_generic_error (GError **error, const char *what, guint64 block);

/* How a page may be mapped: writable once dirty, unless a store reads it. */
static inline gboolean
bf_page_map_writable (BfPage *page)
{
  return page->state == BF_PAGE_DIRTY && !page->storing;
}

/* -- VMAs (vma.c) ------------------------------------------------------------
 *
 * A VMA is one range of address space showing pages [page_offset,
 * page_offset + n_pages) of its handle.  Invariants (checked by
 * bf_handle_check()):
 *   - writable[i] => mapped[i]; hidden[i] => i < base_end
 *   - mapped[i] => the page is in the table, LOADED or DIRTY (or, for a
 *     pinned page, orphaned), and its slot shows at page i
 *   - writable[i] => the page is DIRTY and not storing (or has write pins)
 *   - registered <=> in the registry and in handle->vmas
 */
struct _BfVma
{
  /* Immutable. */
  BfHandle *handle; /* a reference */
  guint8 *start;
  gsize length;
  guint64 page_offset;
  guint64 n_pages;

  /* Engine lock. */
  guint64 *mapped;     /* bitmap: page mapped in this VMA */
  guint64 *writable;   /* bitmap: ...and mapped read-write */
  guint64 *hidden;     /* bitmap: below base_end, but PROT_NONE instead of the
                        * base file when not mapped (see flush_mappings) */
  gboolean registered; /* in the registry and in handle->vmas */
  GList handle_link;
  GArray *pins;       /* VmaPin: pins taken through this VMA, undone at unmap */
  guint64 boundaries; /* see "kernel mappings" in vma.c */
  guint64 base_end;   /* pages [0, base_end) show the base file when unmapped */
};

/* -- faults (vma.c, called by fault.c) ------------------------------------- */
typedef enum
{
  BF_FAULT_NOT_OURS,
  BF_FAULT_HANDLED,
  BF_FAULT_ERROR,
} BfFaultResult;

/* @write: 1 write, 0 read, -1 unknown (then a fault on a page mapped
 * read-only is taken as a write).  Lock held; may be released meanwhile. */
BfFaultResult bf_fault_locked (void *addr, int write, GError **error);

G_END_DECLS
