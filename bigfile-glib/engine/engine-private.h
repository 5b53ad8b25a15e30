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
  BfRam *ram;
  gsize page_size;
  int memfd;
  guint8 *window;    /* RW view of the memfd, reserved for capacity slots */
  guint64 capacity;  /* slots the reservation can hold */
  guint64 n_slots;   /* slots the memfd is long and the window maps */
  GArray *populated; /* free slots with memory, guint64, next to use last */
  GArray *holes;     /* free slots without memory, guint64, next to use last */
};

struct _BfRam
{
  gint refs;
  guint64 budget;
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

BfPool *bf_ram_get_pool (BfRam *ram, gsize page_size, GError **error);
gboolean bf_ram_alloc_slot (BfRam *ram, BfPool *pool, guint64 *slot, GError **error);
void bf_ram_free_slot (BfRam *ram, BfPool *pool, guint64 slot);
void bf_ram_ref (BfRam *ram);
void bf_ram_unref_locked (BfRam *ram);

static inline guint8 *
bf_pool_slot_addr (BfPool *pool, guint64 slot)
{
  return pool->window + slot * pool->page_size;
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
