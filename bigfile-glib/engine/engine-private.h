/* bigfile-glib - engine internals shared by the engine's files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The engine, file by file, each calling only the ones below it:
 *
 *   fault.c     the SIGSEGV handler: serves a fault through vma.c
 *      |
 *   vma.c       VMAs: the registry, mapping      writeout.c  storing dirty
 *      |        pages into address ranges,          |        pages, stepwise,
 *      |        kernel-map accounting, the base     |        in a transaction;
 *      |        file, fault service, copies, pins   |        conflicts
 *      |
 *      +-------------------+------------------------+
 *                          |
 *   page.c      handles and their pages: the page table of one file, page
 *      |        states and lists, loading, dropping, discard, invalidate,
 *      |        sizes, other clients' changes, aborting a transaction
 *   ram.c       page memory: memfd pools, slots, the budget, the LRU
 *      |
 *   lock.c      the engine lock and condition, fork() handling
 *
 *   check.c     the invariant walker: reads all of the above, and nothing
 *               in the engine calls it (the tests do)
 *
 * Three arrows point up, each through a small table of callbacks that the
 * upper file fills in, so that no file calls a function of a file above it:
 *   - page.c reaches the mappings of a page through handle->rmap
 *     (BfRmapOps, set by vma.c when a handle gets its first VMA): unmap,
 *     write-protect, show over the base file, unmap ahead for reclaim,
 *     follow the base file's size;
 *   - ram.c reclaims a page of its LRU through ram->evict (set by page.c's
 *     bf_handle_new());
 *   - lock.c's fork() child handler runs the child hooks that ram.c and
 *     vma.c register (see "fork()").
 *
 * Lock order
 * ----------
 * There is one engine lock for every RAM, handle, page and VMA (lock.c): the
 * fault handler must find a VMA from a bare address, and everything it
 * touches then hangs off that VMA.  Locks outside the engine nest around it,
 * never inside it:
 *
 *   BigfileHandle's refresh_lock (a refresh, from the file's report of
 *   changed blocks to the engine's update; taken in the begin op, which
 *   runs with the engine lock RELEASED)
 *     -> a file's own locks (taken in load/store/set_size/begin/commit/
 *        abort callbacks and refresh, which run with the engine lock
 *        RELEASED)
 *     -> the engine lock (bf_lock)
 *          -> GLib's GMainContext lock (g_main_context_wakeup, g_source_attach
 *             from dirty_changed, size_changed and the reclaim hook, which
 *             run with the engine lock held: BigfileHandle's wake source)
 *
 * Nothing takes the engine lock while holding a GMainContext lock, and no
 * callback that runs with the engine lock held (dirty_changed, size_changed,
 * reclaimed) may take a lock that is held anywhere around an engine call.
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

/* What the engine knows of each thread, to find waits that would never end.
 * Each thread has one (thread-local); a page's io_thread points to the one
 * of the thread loading or storing it. */
typedef struct _BfThread BfThread;
struct _BfThread
{
  /* Engine lock.  The page this thread sleeps in bf_wait() for (holding an
   * io reference on it, so that it stays valid), or NULL. */
  BfPage *waiting_for;
};

BfThread *bf_thread_self (void);

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
  /* Immutable (after pool_new(); but in a child after fork(),
   * pool_forget() unmaps the segments and sets memfd to -1: see "fork()"). */
  BfRam *ram;
  gsize page_size;
  int memfd;
  guint seg0_shift; /* segment 0 has 1 << seg0_shift slots */

  /* Engine lock.  Segments only ever get added; an element of seg_bias is
   * written once, before any slot of its segment is handed out, so
   * bf_pool_slot_addr() may read it for a slot it holds without the lock. */
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
  /* Immutable. */
  guint fork_gen; /* bf_fork_generation () when made: see "fork()" */
  pid_t pid;      /* the process that made it, for messages */

  /* Engine lock. */
  GList all_link; /* in ram.c's list of every RAM, for the child hook */
  gint refs;
  guint64 budget; /* >= bf_ram_min_budget () */
  guint64 resident_bytes;
  guint64 used_bytes;
  guint64 n_pages;
  guint64 n_dirty;
  guint64 n_reclaimed;
  GPtrArray *pools; /* BfPool*, one per page size in use */
  GQueue lru;       /* clean reclaimable pages (via lru_link), least recently used first */
  /* Reclaims one page of the LRU (page.c's bf_page_reclaim, set by
   * bf_handle_new() in page.c): RAM knows pages only as entries of its LRU. */
  gboolean (*evict) (BfPage *page);
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

/* BIGFILE_HANDLE_ERROR_FORKED: "@what: ... belongs to the parent ...". */
void bf_set_forked_error (GError **error, BfRam *ram, const char *what);

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

/* -- handles (page.c) -------------------------------------------------------
 *
 * How page.c reaches the mappings of a page (its reverse map), without
 * calling up into vma.c.  All run with the engine lock held. */
typedef struct
{
  /* Unmap @page from every VMA (the base file shows through again where
   * there is one). */
  gboolean (*unmap) (BfPage *page);
  /* Map @page read-only wherever it is mapped writable. */
  gboolean (*write_protect) (BfPage *page);
  /* @page just became dirty: show it over the base file in every VMA. */
  gboolean (*show_dirty) (BfPage *page);
  /* @page is about to be reclaimed: unmap it, and the LRU pages that
   * follow it in index order, in as few system calls as possible. */
  gboolean (*unmap_for_reclaim) (BfPage *page);
  /* Each returns FALSE if the kernel refused a change for @page (at
   * vm.max_map_count, see vma_unmap_range_full): its mappings are then as
   * they were where the change failed, and the caller must keep the page
   * (never reuse its slot while a mapping may show it). */

  /* The base file may have changed size (a writeout stored pages, a page
   * was invalidated): look at its size again and show what it has now. */
  void (*base_changed) (BfHandle *handle);

  /* Pages from @first_page on no longer show the base file where they are
   * not in memory (their bytes past the handle's size read as zeros, the
   * file may still have others there): they fault and load instead. */
  void (*clip_base) (BfHandle *handle, guint64 first_page);
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
  /* With a base file: its size in bytes when vma.c last looked (at map,
   * writeout, invalidate, and accesses past it); every VMA's base_end
   * follows from it (vma_set_base_size). */
  guint64 base_size;
  /* Pages dropped (discard, invalidate) while their store runs, by index:
   * a new load of the index waits for that store, or it could read the
   * block half written. */
  GHashTable *dropped_storing;

  /* The size, in bytes ("Sizes" in page.c).  All BF_NO_SIZE, for good, in
   * a handle without one; otherwise zero_from <= MIN (size, stored_size).
   *   size        the handle's: what the program sees and writeout makes
   *               the file; changed by bf_handle_set_size(), discard, and
   *               writeout when the program wrote past it
   *   stored_size what the file has: known at open, then what writeout
   *               last set it to
   *   zero_from   bytes from here on show zeros, not the file (the lowest
   *               size since the file was last resized): loads clear them
   *               and do not read pages wholly past it
   *   size_syncing  the thread of a writeout calling ops->set_size, or
   *               NULL: bf_handle_set_size() and discard wait for it */
  guint64 size;
  guint64 stored_size;
  guint64 zero_from;
  gconstpointer size_syncing;

  /* Transactions ("Transactions" in writeout.c): a transaction is open,
   * begun by a writeout and not yet committed or aborted; the sizes the
   * file had when it began, for an abort to go back to. */
  gboolean txn_open;
  guint64 txn_stored_size;
  guint64 txn_zero_from;
};

static inline gboolean
bf_handle_is_transactional (BfHandle *handle)
{
  return handle->ops->begin != NULL;
}

/* Aborts the open transaction (lock held, released around ops->abort;
 * writeout_running set by the caller). */
void bf_handle_abort_transaction_locked (BfHandle *handle);
/* What an aborted or failed transaction leaves: nothing stored is intact,
 * and the file's size is what it was at begin. */
void bf_handle_txn_forget (BfHandle *handle);

void bf_handle_unref_locked (BfHandle *handle);
void bf_handle_follow_file_size (BfHandle *handle, guint64 length);

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

static inline void
bf_handle_size_changed (BfHandle *handle)
{
  if (handle->ops->size_changed != NULL)
    handle->ops->size_changed (handle->data);
}

/* The offset in page @index of its first byte at or past byte @bytes of
 * the file: 0 if the whole page lies past @bytes, the page size if none of
 * it does.  (No shift of @index: it may be too large to shift.) */
static inline gsize
bf_handle_offset_in_page (BfHandle *handle, guint64 index, guint64 bytes)
{
  guint64 first = bytes >> handle->page_shift;

  if (index < first)
    return handle->page_size;
  if (index > first)
    return 0;
  return (gsize)(bytes & (handle->page_size - 1));
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
 *   - store_intact => state == DIRTY, write_pins == 0, writers == 0, and no
 *                   VMA maps the page writable
 *   - state == LOADED => its bytes at or past handle->size are zeros (only
 *                   the program writes anything else there, which makes the
 *                   page dirty; "Sizes" in page.c)
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
  /* Its memory is what its last store wrote: the page was write-protected
   * for the store, and nothing has been able to write it since (every path
   * that lets a write in asks bf_page_get() for a write, which clears
   * this; until then the page is mapped read-only, even though it is
   * dirty).  Only such a page may be marked clean (MARKSTORED). */
  guint store_intact : 1;
  /* Dirty, and another client changed its block in the storage since the
   * page was read (bf_handle_storage_changed()): a writeout stores it only
   * with BF_WRITEOUT_OVERWRITE.  Only DIRTY pages have it; it goes when
   * the page is clean or dropped. */
  guint conflict : 1;
  guint io_refs;       /* loader, writeout snapshot, or API copy in flight */
  guint writers;       /* API copies into the page in flight */
  guint pin_count;     /* bf_vma_pin(hold): not reclaimable, slot kept if dropped */
  guint write_pins;    /* ...of which writable: writeout neither protects nor cleans */
  BfThread *io_thread; /* who loads or stores it: see bf_page_wait_io() */
  GList lru_link;      /* in ram->lru */
  GList dirty_link;    /* in handle->dirty */
};

typedef enum
{
  BF_GET_OK,    /* *out is LOADED or DIRTY (DIRTY and not storing if @write) */
  BF_GET_RETRY, /* the lock was released: look everything up again */
  BF_GET_ERROR,
} BfGetResult;

gboolean bf_page_wait_io (BfPage *page, GError **error);
BfGetResult bf_page_get (BfHandle *handle, guint64 index, gboolean write, BfPage **out,
                         GError **error);
void bf_page_update_lru (BfPage *page, gboolean touch);
void bf_page_set_clean (BfPage *page);
gboolean bf_page_write_protect (BfPage *page);
void bf_page_io_unref (BfPage *page);
void bf_page_pin (BfPage *page, gboolean writable);
void bf_page_unpin (BfPage *page, gboolean writable);
/* Drop a page: unmap it everywhere, take it out of every list and free it
 * (or orphan it while I/O or a pin holds it).  FALSE if it could not be
 * unmapped (at vm.max_map_count): then it stays as it was. */
gboolean bf_page_drop (BfPage *page);
/* Reclaim a clean page (ram->evict): bf_page_drop(), after unmapping the
 * LRU pages that follow it in index order in the same system call. */
gboolean bf_page_reclaim (BfPage *page);
void bf_set_generic_error (GError **error, const char *what, guint64 block);

/* How a page may be mapped: writable once dirty, unless a store reads it
 * or a write must be seen to keep it dirty after its store. */
static inline gboolean
bf_page_map_writable (BfPage *page)
{
  return page->state == BF_PAGE_DIRTY && !page->storing && !page->store_intact;
}

/* -- VMAs (vma.c) ------------------------------------------------------------
 *
 * A VMA is one range of address space showing pages [page_offset,
 * page_offset + n_pages) of its handle.  Invariants (checked by
 * bf_handle_check()):
 *   - writable[i] => mapped[i]; hidden[i] => i < base_end
 *   - base_end == the complete pages of handle->base_size that the VMA
 *     covers (0 without a base file)
 *   - over a base, where i < base_end and not hidden[i], only DIRTY pages
 *     are mapped: clean pages show the file itself (vma_replace() says
 *     when a page of the base may end up PROT_NONE instead)
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

static inline gboolean
bit_get (const guint64 *map, guint64 i)
{
  return (map[i / 64] >> (i % 64)) & 1;
}

static inline void
bit_set (guint64 *map, guint64 i, gboolean v)
{
  if (v)
    map[i / 64] |= (guint64)1 << (i % 64);
  else
    map[i / 64] &= ~((guint64)1 << (i % 64));
}

/* Does page i of @vma (relative) show the base file when not mapped? */
static inline gboolean
vma_shows_base (BfVma *vma, guint64 i)
{
  return i < vma->base_end && !bit_get (vma->hidden, i);
}

/* For the checker (check.c): the kernel mappings @vma costs beyond its
 * first, recounted from its bitmaps; the engine's running total; all
 * registered VMAs (NULL before the first map). */
guint64 bf_vma_count_boundaries (BfVma *vma);
guint64 bf_kernel_maps_locked (void);
GPtrArray *bf_vma_registry_locked (void);

/* -- faults (vma.c, called by fault.c) ------------------------------------- */
typedef enum
{
  BF_FAULT_NOT_OURS,
  BF_FAULT_HANDLED,
  BF_FAULT_ERROR,
} BfFaultResult;

/* The registered VMA that @addr lies in, or NULL (lock held). */
BfVma *bf_vma_lookup_locked (const void *addr);

/* @write: 1 write, 0 read, -1 unknown (then a fault on a page mapped
 * read-only is taken as a write).  Lock held; may be released meanwhile. */
BfFaultResult bf_fault_locked (void *addr, int write, GError **error);

G_END_DECLS
