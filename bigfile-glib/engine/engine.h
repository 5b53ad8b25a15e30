/* bigfile-glib - the virtual-memory engine (internal API)
 *
 * This is the fault-level core of bigfile-glib: RAM pages, page states, the
 * SIGSEGV handler, VMA lookup, writeout, discard, invalidation and reclaim.
 * It is plain C on top of GLib's data types (GError, GHashTable, GQueue) and
 * knows nothing of GObject: the public classes in bigfile-glib/ are thin
 * wrappers that call in here, and the engine calls back out only through the
 * small BfFileOps table below.
 *
 * Model (after wendelin.core's virtmem):
 *
 *   BfRam     a budget of page memory, kept in memfd pools (one per page size)
 *   BfHandle  a snapshot of one file: a table page index -> BfPage, the list of
 *             dirty pages and the VMAs that map it
 *   BfVma     a range of a handle's pages mapped at a fixed address range
 *   BfPage    one page of a handle, backed by one slot of RAM
 *
 * Locking: one global engine lock protects every structure here.  It is taken
 * by the API functions and by the fault handler, and it is *released* around
 * the file's load, store and set_size callbacks, so those may take their own
 * locks, do I/O, and touch other mappings (nested faults).  A wait that
 * would never end (a callback that needs its own page, or loads that need
 * each other's pages from several threads) fails with
 * BIGFILE_FILE_ERROR_DEADLOCK instead: see bf_page_wait_io().  The lock
 * order, the files of the engine and which calls which are written once, in
 * engine-private.h.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _BfRam BfRam;
typedef struct _BfHandle BfHandle;
typedef struct _BfVma BfVma;
typedef struct _BfWriteout BfWriteout;

/* Page states, as seen by bf_handle_get_page_state().
 *
 *                 fault / read          write fault / write
 *   EMPTY ------------------> LOADING ------> LOADED ----------------> DIRTY
 *     ^   (slot taken,            |  load ok     |  ^                    |
 *     |    lock released          |              |  |  writeout          |
 *     |    during the load)       |              |  +--(MARKSTORED)------+
 *     |                           | load error   |                       |
 *     +---------------------------+              | reclaim, invalidate   | discard,
 *     +------------------------------------------+                       | invalidate
 *     +----------------------------------------------------------------- +
 *
 *   LOADING --invalidate--> LOADING_INVALIDATED: the page leaves the table at
 *   once (the next access starts a fresh load) and its loader frees it when
 *   the load returns, throwing the data away.
 *
 * A DIRTY page may in addition be "storing" (writeout is handing its memory to
 * the store callback): it is then mapped read-only everywhere, and writers wait
 * on the engine condition until the store returns.  EMPTY pages are never
 * kept: a page that is dropped leaves the table.
 */
typedef enum
{
  BF_PAGE_EMPTY = 0,
  BF_PAGE_LOADING,
  BF_PAGE_LOADING_INVALIDATED,
  BF_PAGE_LOADED,
  BF_PAGE_DIRTY,
} BfPageState;

/* Callbacks into the layer above, with the @data given to bf_handle_new().
 *
 * load, store and set_size run with the engine lock released, on whatever
 * thread needed them (the faulting thread for a fault; the thread running
 * the writeout), and must return FALSE with @error set on failure (the
 * engine makes a generic error if they do not).  For load, @buf is exactly
 * the page, @len bytes.  For store, @buf is the page and @len its bytes
 * below the handle's size: the page size, or fewer (never 0) for the page
 * that holds the size; a page wholly past the size is not stored.
 *
 * set_size makes the file @size bytes long (dropping what lies past it, or
 * adding zeros): writeout calls it, before storing, when the handle's size
 * is not the one the file has.  Only handles with a size call it.
 *
 * begin, commit and abort, all three or none, make the handle
 * transactional ("Transactions" in writeout.c): a writeout that stores
 * calls begin first (which may also report the blocks other clients
 * changed, with bf_handle_storage_changed()), and commit before it marks
 * any page clean; commit (durably if asked) makes every store since begin
 * visible at once, and on failure leaves none; abort throws them away.
 * They run with the engine lock released, on the writeout's thread, as
 * store does.
 *
 * dirty_changed and size_changed run with the engine lock HELD, on any
 * thread, possibly inside the fault handler: they may only note the change
 * and wake a main context (no engine call, no waiting, no signal emission).
 * Each may be NULL. */
typedef struct
{
  gboolean (*load) (gpointer data, guint64 block, void *buf, gsize len, GError **error);
  gboolean (*store) (gpointer data, guint64 block, const void *buf, gsize len, GError **error);
  void (*dirty_changed) (gpointer data);
  gboolean (*set_size) (gpointer data, guint64 size, GError **error);
  void (*size_changed) (gpointer data);
  gboolean (*begin) (gpointer data, GError **error);
  gboolean (*commit) (gpointer data, gboolean durable, GError **error);
  void (*abort) (gpointer data);
} BfFileOps;

/* The size of a handle without one: its file is an endless array of
 * blocks, loaded as they are and stored whole. */
#define BF_NO_SIZE G_MAXUINT64

typedef enum
{
  BF_WRITEOUT_STORE = 1 << 0,
  BF_WRITEOUT_MARKSTORED = 1 << 1,
  /* Store pages in conflict too (bf_handle_storage_changed()). */
  BF_WRITEOUT_OVERWRITE = 1 << 2,
  /* Commit durably. */
  BF_WRITEOUT_DURABLE = 1 << 3,
} BfWriteoutFlags;

typedef struct
{
  guint64 budget;         /* bytes */
  guint64 resident_bytes; /* pages in use plus recycled slots kept populated */
  guint64 used_bytes;     /* pages in use (loading, loaded, dirty) */
  guint64 n_pages;        /* pages in use */
  guint64 n_dirty;        /* dirty pages */
  guint64 n_reclaimed;    /* pages reclaimed since creation */
} BfRamStats;

/* RAM.  A budget is at least bf_ram_min_budget(), the smallest page size
 * there is: bf_ram_new() fails below it, bf_ram_set_budget() refuses it. */
guint64 bf_ram_min_budget (void);
BfRam *bf_ram_new (guint64 budget, GError **error);
void bf_ram_unref (BfRam *ram);
void bf_ram_set_budget (BfRam *ram, guint64 budget);
void bf_ram_get_stats (BfRam *ram, BfRamStats *stats);
/* Was @ram made by the parent of this process, before fork()?  Then it,
 * its handles and their VMAs cannot be used here: engine-private.h,
 * "fork()".  Needs no lock. */
gboolean bf_ram_is_forked (BfRam *ram);
guint bf_ram_reclaim (BfRam *ram);
/* @reclaimed runs with the engine lock HELD, on any thread, possibly inside
 * the fault handler, after pages were reclaimed (by budget or explicitly):
 * like BfFileOps.dirty_changed it may only note and wake.  NULL to unset. */
void bf_ram_set_reclaim_hook (BfRam *ram, void (*reclaimed) (gpointer data, guint n_pages),
                              gpointer data);

/* Handles */
gboolean bf_page_size_is_valid (gsize page_size);
/* @base_fd, if >= 0, is a file (kept open by the caller for the handle's
 * life) whose complete pages every VMA shows while they are clean: see
 * "Clean pages from the page cache" in vma.c.  @size is the size of the
 * file in bytes (at most G_MAXINT64), or BF_NO_SIZE: see "Sizes" in
 * page.c. */
BfHandle *bf_handle_new (BfRam *ram, gsize page_size, const BfFileOps *ops, gpointer data,
                         int base_fd, guint64 size, GError **error);
gboolean bf_handle_close (BfHandle *handle);
guint64 bf_handle_get_n_dirty (BfHandle *handle);
BfPageState bf_handle_get_page_state (BfHandle *handle, guint64 index);
gboolean bf_handle_get_page_mapped (BfHandle *handle, BfVma *vma, guint64 index,
                                    gboolean *writable);
guint bf_handle_discard (BfHandle *handle);
guint64 bf_handle_get_size (BfHandle *handle);
gboolean bf_handle_set_size (BfHandle *handle, guint64 size, GError **error);
void bf_handle_invalidate_page (BfHandle *handle, guint64 index);
/* Other clients changed these blocks of the storage (BF_ALL_BLOCKS: any
 * block), and the file's snapshot shows their change now: clean pages of
 * them are dropped (loads in flight are thrown away), and a dirty page
 * becomes a conflict, kept as it is, which a writeout stores only with
 * BF_WRITEOUT_OVERWRITE.  Appends to @invalidated (if not NULL) the blocks
 * whose data the handle now shows anew (all but conflicts; BF_ALL_BLOCKS
 * for all).  Any thread, also from the begin op. */
#define BF_ALL_BLOCKS G_MAXUINT64
void bf_handle_storage_changed (BfHandle *handle, const guint64 *blocks, guint n_blocks,
                                GArray *invalidated);
/* Another client made the file @size bytes long: clean pages between the
 * old size and @size are dropped (appended to @invalidated), dirty ones
 * become conflicts, and the handle's size follows unless it has a change
 * of its own pending.  Only for handles with a size. */
void bf_handle_storage_resized (BfHandle *handle, guint64 size, GArray *invalidated);
/* The pages in conflict, by index (free with g_free); NULL if none. */
guint64 *bf_handle_get_conflicts (BfHandle *handle, gsize *n_pages);
/* Is a transaction of @handle open: begun by a writeout with only
 * BF_WRITEOUT_STORE, not yet committed or aborted? */
gboolean bf_handle_in_transaction (BfHandle *handle);
/* Aborts the open transaction, if any: the pages it stored stay dirty.
 * FALSE (BIGFILE_HANDLE_ERROR_BUSY) while a writeout runs. */
gboolean bf_handle_abort_transaction (BfHandle *handle, GError **error);
gboolean bf_handle_writeout (BfHandle *handle, BfWriteoutFlags flags, GError **error);

/* Writeout in steps, for callers that interleave it with other work.
 * begin() snapshots the dirty pages (sorted by index); each step() stores and/or
 * marks one of them; end() must be called once, also after an error. */
BfWriteout *bf_writeout_begin (BfHandle *handle, BfWriteoutFlags flags, GError **error);
gboolean bf_writeout_step (BfWriteout *wo, gboolean *done, GError **error);
void bf_writeout_get_progress (BfWriteout *wo, guint64 *pages_done, guint64 *pages_total);
void bf_writeout_end (BfWriteout *wo);

/* VMAs */
BfVma *bf_vma_map (BfHandle *handle, guint64 page_offset, guint64 n_pages, GError **error);
void bf_vma_unmap (BfVma *vma);
void bf_vma_free (BfVma *vma);
gboolean bf_vma_is_mapped (BfVma *vma);
void *bf_vma_get_start (BfVma *vma);
gsize bf_vma_get_length (BfVma *vma);
guint64 bf_vma_get_page_offset (BfVma *vma);
gboolean bf_vma_read (BfVma *vma, gsize offset, void *dest, gsize len, GError **error);
gboolean bf_vma_write (BfVma *vma, gsize offset, const void *src, gsize len, GError **error);
gboolean bf_vma_pin (BfVma *vma, gsize offset, gsize len, gboolean write, gboolean hold,
                     GError **error);
/* Undoes one bf_vma_pin (hold) of exactly this range; FALSE if there is none.
 * Unmapping undoes all pins of the VMA. */
gboolean bf_vma_unpin (BfVma *vma, gsize offset, gsize len);

/* bf_fault_install_handler(), with a warning instead of an error: for
 * tests and benchmarks that map through the engine directly. */
void bf_fault_install (void);

/* Faults on raw memory whose load failed end in SIGBUS to the faulting thread;
 * the reason is kept per thread until taken. */
GError *bf_fault_take_error (void);
/* Is this thread serving a page fault (so inside a signal handler, maybe in
 * a load callback)?  Signals must not be emitted from there. */
gboolean bf_fault_in_handler (void);
/* Installs the SIGSEGV handler, or puts it in front again if another was
 * installed over it (which then gets the signals that are not ours):
 * bigfile_handle_map() does it before every map.
 * BIGFILE_VMA_ERROR_FAULT_HANDLER if it cannot. */
gboolean bf_fault_install_handler (GError **error);

/* For tests: checks every invariant of @handle, its RAM, its VMAs and the
 * engine's kernel-map accounting (engine-private.h lists them); with
 * @kernel, also what the kernel maps at each page of each VMA (reads
 * /proc/self/maps: only where no other thread changes mappings meanwhile).
 * Returns NULL if all hold, else a description of what does not (free it). */
char *bf_handle_check (BfHandle *handle, gboolean kernel);

/* For tests: the number of kernel mappings the engine counts for its VMAs,
 * and the cap past which it drops mappings of unpinned pages (0: half of
 * vm.max_map_count). */
guint64 bf_get_kernel_maps (void);
void bf_set_kernel_maps_cap (guint64 cap);
/* For tests: the same count made afresh from every VMA's bitmaps; it
 * differs from bf_get_kernel_maps() only if the accounting is wrong. */
guint64 bf_count_kernel_maps (void);

G_END_DECLS
