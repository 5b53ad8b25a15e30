/* bigfile-glib - engine internals shared by ram.c, virtmem.c and fault.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Everything declared here is protected by the engine lock (bf_lock()),
 * unless a comment says otherwise.
 */
#pragma once

#include "engine.h"
#include "bigfile-error.h"

G_BEGIN_DECLS

typedef struct _BfPool BfPool;
typedef struct _BfPage BfPage;

/* -- the engine lock ------------------------------------------------------
 *
 * One lock for all RAMs, handles and VMAs: the fault handler must find a VMA
 * from a bare address, and every structure it then touches hangs off that
 * VMA.  It is a plain (non-recursive) mutex; bf_lock_held() tells whether the
 * calling thread holds it, which lets the fault handler recognise a fault
 * raised by engine code itself (a bug) and crash instead of deadlocking.
 *
 * bf_wait() sleeps on the one engine condition until some page changes state
 * (load done, store done); every such change calls bf_wake_all().
 */
void bf_lock (void);
void bf_unlock (void);
gboolean bf_lock_held (void);
void bf_wait (void);
void bf_wake_all (void);
gconstpointer bf_thread_self (void);

/* -- RAM: pools of page memory (ram.c) -------------------------------------
 *
 * A pool holds the pages of one size in one memfd (never a named file).  A
 * slot is the memfd range [slot * page_size, +page_size).  VMAs map single
 * slots of the memfd; loads, stores and copies work on the pool's own
 * read-write view of it, its window, at bf_pool_slot_addr().
 *
 * The window is made of segments that are never moved or unmapped while the
 * pool lives (loads, stores and copies use slot addresses with the engine
 * lock released).  It grows a segment at a time, each twice as long as the
 * one before, so it takes address space in proportion to the slots in use
 * (at most about twice) and the pools of a thousand small RAMs fit:
 *
 *   slots    [0, S)   [S, 3S)   [3S, 7S)          [(2^k - 1) S, (2^(k+1) - 1) S)
 *   window   seg 0    seg 1     seg 2      ...    seg k
 *            S slots  2S slots  4S slots          2^k S slots, S = 1 << seg0_shift
 *
 * Slot s lies in segment k = floor (log2 (s / S + 1)), found with one bit
 * scan.  Segments need not be next to each other in the address space: only
 * the engine's window is split, never a VMA's mapping of consecutive slots,
 * which maps the memfd itself and stays one kernel mapping across segments.
 *
 * Each slot is in one of three states:
 *
 *   hole ----alloc----> used ----free----> populated ----alloc----> used
 *     ^                                       |
 *     +-----------------trim (punch)----------+
 *
 * "populated" slots keep their shmem memory, so reusing them costs no page
 * allocation (FACTS.md: allocation dominates the cost of a fault); they count
 * against the budget and are punched out first when room is needed.  Their
 * bytes are whatever their last page left: a load must overwrite all of them
 * (BigfileFile's invoker clears the buffer for loads that may not).
 *
 * Budget invariant (unless the budget was lowered below the pages that cannot
 * be reclaimed: dirty, pinned, loading, or in a copy or store):
 *   ram->resident_bytes == sum (used + populated slots) * page_size <= budget
 */

/* Segments a pool can have: S * (2^48 - 1) slots of at least 4 KiB is far
 * more than any address space, so mmap() fails long before. */
#define BF_POOL_MAX_SEGMENTS 48

struct _BfPool
{
  /* Immutable after pool_new(). */
  BfRam *ram;
  gsize page_size;
  int memfd;
  guint seg0_shift; /* segment 0 has 1 << seg0_shift slots */

  /* The lock protects the rest.  Segments only ever get added. */
  guint n_segments;
  /* Segment k's address minus (first slot of k) * page_size, modulo 2^64:
   * slot s of segment k is at seg_bias[k] + s * page_size. */
  guintptr seg_bias[BF_POOL_MAX_SEGMENTS];
  guint64 capacity;  /* slots the segments map (and the memfd is long) */
  guint64 n_slots;   /* slots made holes so far: [0, n_slots) exist */
  GArray *populated; /* free slots with memory, guint64, next to use last */
  GArray *holes;     /* free slots without memory, guint64, next to use last */
};

struct _BfRam
{
  gint refs;
  guint64 budget; /* >= bf_ram_min_budget () */
  guint64 resident_bytes;
  guint64 used_bytes;
  guint64 n_pages;
  guint64 n_dirty;
  guint64 n_reclaimed;
  GPtrArray *pools; /* BfPool*, one per page size in use */
  GQueue lru;       /* clean reclaimable pages, least recently used first */
  void (*reclaimed) (gpointer data, guint n_pages);
  gpointer reclaimed_data;
};

/* The pool of @page_size pages for a new handle.  Fails if the budget cannot
 * hold one such page (every load would fail) or the pool cannot be made. */
BfPool *bf_ram_get_pool (BfRam *ram, gsize page_size, GError **error);
gboolean bf_ram_alloc_slot (BfRam *ram, BfPool *pool, guint64 *slot, GError **error);
void bf_ram_free_slot (BfRam *ram, BfPool *pool, guint64 slot);
void bf_ram_ref (BfRam *ram);
void bf_ram_unref_locked (BfRam *ram);

/* The segment slot @slot lies in (see the diagram above). */
static inline guint
bf_pool_slot_segment (const BfPool *pool, guint64 slot)
{
  /* floor (log2 (x)) of x >= 1; a GCC/Clang builtin, as the engine is
   * Linux-only (g_bit_storage() loops in unoptimized builds). */
  return 63 - (guint)__builtin_clzll ((slot >> pool->seg0_shift) + 1);
}

/* The window address of @slot, which must be below pool->n_slots.  On the
 * fault path: a shift, a bit scan, a load and a multiply-add.  The address
 * stays valid while the pool lives, also with the lock released. */
static inline guint8 *
bf_pool_slot_addr (const BfPool *pool, guint64 slot)
{
  return (guint8 *)(pool->seg_bias[bf_pool_slot_segment (pool, slot)]
                    + (guintptr)(slot * pool->page_size));
}

/* -- pages (virtmem.c) ------------------------------------------------------
 *
 * A page is in its handle's table from the moment its load starts until it is
 * dropped.  Invariants:
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
  guint64 index; /* key of handle->pages: must stay the first member */
  BfHandle *handle;
  guint64 slot;
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

/* Drop a page: unmap it everywhere, take it out of every list and free it
 * (or orphan it while I/O holds it).  Used by reclaim. */
void bf_page_drop (BfPage *page);
/* Reclaim a clean page: bf_page_drop(), unmapping the LRU pages that follow
 * it in index order in the same system call. */
void bf_page_reclaim (BfPage *page);

/* -- faults (virtmem.c, called by fault.c) --------------------------------- */
typedef enum
{
  BF_FAULT_NOT_OURS,
  BF_FAULT_HANDLED,
  BF_FAULT_ERROR,
} BfFaultResult;

/* @write: 1 write, 0 read, -1 unknown (then a fault on a page mapped
 * read-only is taken as a write).  Lock held; may be released meanwhile. */
BfFaultResult bf_fault_locked (void *addr, int write, GError **error);

/* -- the VMA registry (fault.c) ---------------------------------------------
 * Sorted by start address, searched by bisection. */
void bf_registry_add (BfVma *vma);
void bf_registry_remove (BfVma *vma);
BfVma *bf_registry_lookup (const void *addr);
GPtrArray *bf_registry_get_all (void); /* NULL when nothing was ever mapped */
void bf_fault_install (void);

/* Accessors the registry needs. */
guint8 *bf_vma_start_locked (BfVma *vma);
gsize bf_vma_length_locked (BfVma *vma);

G_END_DECLS
