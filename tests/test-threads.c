/* bigfile-glib tests - several threads on one handle
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * What these tests pin down (engine.h and the engine's files say it in prose):
 *
 *  - a page is loaded at most once at a time: threads that fault on a page
 *    being loaded wait for that load instead of starting their own;
 *  - loads of different pages run in parallel: the engine lock is released
 *    around the file's load callback;
 *  - a page being stored is read-only, a writer waits until its store has
 *    returned, and its write then makes the page dirty again;
 *  - pages dirtied while a writeout runs stay dirty;
 *  - discard and invalidate may drop pages a writeout holds;
 *  - a failed load wakes the threads waiting for it, which then load the page
 *    themselves;
 *  - reclaim under readers never shows a page's slot with another page's data.
 *
 * Threads are made to overlap with hooks that wait for each other (a
 * GMutex and a GCond, every wait bounded by WAIT_TIMEOUT_US) and, where the
 * thing waited for cannot be observed, with short sleeps.  The sleeps only
 * make an overlap likely; no assertion depends on how long anything took.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "test-util.h"

/* A bound on every wait, so that a broken engine fails a test instead of
 * hanging it. */
#define WAIT_TIMEOUT_US (5 * G_USEC_PER_SEC)

/* -- fixture ------------------------------------------------------------------ */

/* The smallest valid block size on this system: 4 KiB, or the system page
 * size if that is larger. */
static gsize
small_page_size (void)
{
  return MAX ((gsize)4096, (gsize)sysconf (_SC_PAGESIZE));
}

/* The whole file of @n_pages small pages mapped, in a budget of
 * @budget_pages pages. */
static void
mapping_setup_small_pages (Mapping *fx, guint64 n_pages, guint64 budget_pages)
{
  gsize ps = small_page_size ();

  mapping_setup (fx, ps, n_pages, n_pages, budget_pages * ps);
}

static guint8 *
page_addr (Mapping *fx, guint64 page)
{
  return fx->data + page * fx->ps;
}

/* Does @mem hold the file's initial contents of @block? */
static gboolean
has_pattern (const guint8 *mem, guint64 block, gsize ps)
{
  for (gsize i = 0; i < ps; i++)
    if (mem[i] != test_mem_file_pattern (block, i))
      return FALSE;
  return TRUE;
}

static gboolean
is_filled (const guint8 *mem, guint8 value, gsize ps)
{
  for (gsize i = 0; i < ps; i++)
    if (mem[i] != value)
      return FALSE;
  return TRUE;
}

/* Reads page @page through bigfile_vma_read(): no fault, and an error
 * rather than SIGBUS. */
static GBytes *
read_page (Mapping *fx, guint64 page, GError **error)
{
  return bigfile_vma_read (fx->vma, page * fx->ps, fx->ps, error);
}

static void
assert_page_filled (Mapping *fx, guint64 page, guint8 value)
{
  GError *error = NULL;
  GBytes *bytes = read_page (fx, page, &error);

  g_assert_no_error (error);
  g_assert_true (is_filled (g_bytes_get_data (bytes, NULL), value, fx->ps));
  g_bytes_unref (bytes);
}

static void
assert_storage_filled (Mapping *fx, guint64 block, guint8 value)
{
  g_assert_true (is_filled (test_mem_file_peek (fx->file, block), value, fx->ps));
}

/* Waits, with @lock held, until *@flag is TRUE; FALSE on timeout. */
static gboolean
wait_flag (GCond *cond, GMutex *lock, const gboolean *flag)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_US;

  while (!*flag)
    if (!g_cond_wait_until (cond, lock, deadline))
      return *flag;
  return TRUE;
}

static void
set_flag (GCond *cond, GMutex *lock, gboolean *flag)
{
  g_mutex_lock (lock);
  *flag = TRUE;
  g_cond_broadcast (cond);
  g_mutex_unlock (lock);
}

/* -- many threads fault one page ------------------------------------------------ */

#define N_SAME_PAGE_THREADS 4

typedef struct
{
  Mapping *fx;
  guint64 page;
  GMutex lock;
  GCond cond;
  guint n_ready; /* threads at the barrier */
  gboolean go;   /* the barrier opened */
  gboolean right[N_SAME_PAGE_THREADS];
} SamePage;

typedef struct
{
  SamePage *sp;
  guint id;
} SamePageThread;

static void
slow_load_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  /* Long enough that all threads fault while the first one loads. */
  g_usleep (50 * 1000);
}

static gpointer
same_page_thread (gpointer user_data)
{
  SamePageThread *t = user_data;
  SamePage *sp = t->sp;
  Mapping *fx = sp->fx;
  guint8 *copy = g_malloc (fx->ps);

  g_mutex_lock (&sp->lock);
  sp->n_ready++;
  g_cond_broadcast (&sp->cond);
  wait_flag (&sp->cond, &sp->lock, &sp->go);
  g_mutex_unlock (&sp->lock);

  /* A plain memory read: faults, and waits for the one load. */
  memcpy (copy, page_addr (fx, sp->page), fx->ps);
  sp->right[t->id] = has_pattern (copy, sp->page, fx->ps);

  g_free (copy);
  return NULL;
}

static void
test_same_page (void)
{
  Mapping fx;
  SamePage sp = { 0 };
  SamePageThread threads[N_SAME_PAGE_THREADS];
  GThread *thread[N_SAME_PAGE_THREADS];
  gint64 deadline;

  g_test_summary ("Threads faulting on one unloaded page at once share a single load");

  mapping_setup_small_pages (&fx, 16, 16);
  sp.fx = &fx;
  sp.page = 7;
  g_mutex_init (&sp.lock);
  g_cond_init (&sp.cond);
  test_mem_file_set_load_hook (fx.file, slow_load_hook, NULL);

  for (guint i = 0; i < N_SAME_PAGE_THREADS; i++)
    {
      threads[i].sp = &sp;
      threads[i].id = i;
      thread[i] = g_thread_new ("same-page", same_page_thread, &threads[i]);
    }

  /* The barrier: open it once every thread waits at it. */
  deadline = g_get_monotonic_time () + WAIT_TIMEOUT_US;
  g_mutex_lock (&sp.lock);
  while (sp.n_ready < N_SAME_PAGE_THREADS)
    if (!g_cond_wait_until (&sp.cond, &sp.lock, deadline))
      break;
  g_assert_cmpuint (sp.n_ready, ==, N_SAME_PAGE_THREADS);
  sp.go = TRUE;
  g_cond_broadcast (&sp.cond);
  g_mutex_unlock (&sp.lock);

  for (guint i = 0; i < N_SAME_PAGE_THREADS; i++)
    g_thread_join (thread[i]);

  for (guint i = 0; i < N_SAME_PAGE_THREADS; i++)
    g_assert_true (sp.right[i]);
  g_assert_cmpuint (test_mem_file_get_n_loads (fx.file, sp.page), ==, 1);
  g_assert_cmpuint (test_mem_file_get_total_loads (fx.file), ==, 1);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, sp.page), ==,
                   BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_ram_get_n_pages (fx.ram), ==, 1);

  mapping_teardown (&fx);
  g_mutex_clear (&sp.lock);
  g_cond_clear (&sp.cond);
}

/* -- loads of different pages run in parallel ---------------------------------- */

typedef struct
{
  Mapping *fx;
  guint64 pages[2];
  GMutex lock;
  GCond cond;
  gboolean started[2];   /* load of pages[i] entered the file */
  gboolean saw_other[2]; /* ...and saw the other load start while it ran */
  gboolean right[2];
} ParallelLoads;

typedef struct
{
  ParallelLoads *pl;
  guint id;
} ParallelThread;

/* Each load waits until the other one has started.  If the engine held its
 * lock across loads, the second load could not start until the first
 * returned: the first would time out and record that it never saw it. */
static void
parallel_load_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  ParallelLoads *pl = user_data;
  guint id = block == pl->pages[0] ? 0 : 1;

  g_assert_true (block == pl->pages[id]);

  g_mutex_lock (&pl->lock);
  pl->started[id] = TRUE;
  g_cond_broadcast (&pl->cond);
  pl->saw_other[id] = wait_flag (&pl->cond, &pl->lock, &pl->started[1 - id]);
  g_mutex_unlock (&pl->lock);
}

static gpointer
parallel_thread (gpointer user_data)
{
  ParallelThread *t = user_data;
  ParallelLoads *pl = t->pl;
  Mapping *fx = pl->fx;
  guint8 *copy = g_malloc (fx->ps);

  memcpy (copy, page_addr (fx, pl->pages[t->id]), fx->ps);
  pl->right[t->id] = has_pattern (copy, pl->pages[t->id], fx->ps);

  g_free (copy);
  return NULL;
}

static void
test_parallel_loads (void)
{
  Mapping fx;
  ParallelLoads pl = { 0 };
  ParallelThread threads[2];
  GThread *thread[2];

  g_test_summary ("Loads of two different pages run at the same time: the engine lock is "
                  "released while the file loads");

  mapping_setup_small_pages (&fx, 16, 16);
  pl.fx = &fx;
  pl.pages[0] = 2;
  pl.pages[1] = 9;
  g_mutex_init (&pl.lock);
  g_cond_init (&pl.cond);
  test_mem_file_set_load_hook (fx.file, parallel_load_hook, &pl);

  for (guint i = 0; i < 2; i++)
    {
      threads[i].pl = &pl;
      threads[i].id = i;
      thread[i] = g_thread_new ("parallel-load", parallel_thread, &threads[i]);
    }
  for (guint i = 0; i < 2; i++)
    g_thread_join (thread[i]);

  for (guint i = 0; i < 2; i++)
    {
      g_assert_true (pl.started[i]);
      g_assert_true (pl.saw_other[i]);
      g_assert_true (pl.right[i]);
      g_assert_cmpuint (test_mem_file_get_n_loads (fx.file, pl.pages[i]), ==, 1);
    }

  mapping_teardown (&fx);
  g_mutex_clear (&pl.lock);
  g_cond_clear (&pl.cond);
}

/* -- writes during writeout ------------------------------------------------------ */

/* A store hook that holds the store of one block until released, so that the
 * test can act while that block is being stored.  The hook may also run an
 * action of its own first. */
typedef struct
{
  Mapping *fx;
  guint64 block; /* the store to hold */
  GMutex lock;
  GCond cond;
  gboolean store_started;
  gboolean released;
  gboolean release_timed_out;
  void (*in_hook) (Mapping *fx, gpointer data); /* run in the hook, before waiting */
  gpointer in_hook_data;
} HeldStore;

static void
held_store_init (HeldStore *hs, Mapping *fx, guint64 block)
{
  memset (hs, 0, sizeof *hs);
  hs->fx = fx;
  hs->block = block;
  g_mutex_init (&hs->lock);
  g_cond_init (&hs->cond);
}

static void
held_store_clear (HeldStore *hs)
{
  g_mutex_clear (&hs->lock);
  g_cond_clear (&hs->cond);
}

static void
held_store_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  HeldStore *hs = user_data;

  if (block != hs->block)
    return;

  if (hs->in_hook != NULL)
    hs->in_hook (hs->fx, hs->in_hook_data);

  g_mutex_lock (&hs->lock);
  hs->store_started = TRUE;
  g_cond_broadcast (&hs->cond);
  hs->release_timed_out = !wait_flag (&hs->cond, &hs->lock, &hs->released);
  g_mutex_unlock (&hs->lock);
}

static gboolean
held_store_wait_started (HeldStore *hs)
{
  gboolean started;

  g_mutex_lock (&hs->lock);
  started = wait_flag (&hs->cond, &hs->lock, &hs->store_started);
  g_mutex_unlock (&hs->lock);
  return started;
}

static void
held_store_release (HeldStore *hs)
{
  set_flag (&hs->cond, &hs->lock, &hs->released);
}

typedef struct
{
  BigfileHandle *handle;
  BigfileWriteoutFlags flags;
  gboolean ok;
  GError *error;
} WriteoutThread;

static gpointer
writeout_thread (gpointer user_data)
{
  WriteoutThread *wt = user_data;

  wt->ok = bigfile_handle_writeout (wt->handle, wt->flags, &wt->error);
  return NULL;
}

static GThread *
start_writeout (WriteoutThread *wt, Mapping *fx, BigfileWriteoutFlags flags)
{
  memset (wt, 0, sizeof *wt);
  wt->handle = fx->handle;
  wt->flags = flags;
  return g_thread_new ("writeout", writeout_thread, wt);
}

static void
join_writeout (GThread *thread, WriteoutThread *wt)
{
  g_thread_join (thread);
  g_assert_no_error (wt->error);
  g_assert_true (wt->ok);
}

/* Writes @len bytes of @value at @addr, or, with @vma set, at @offset of
 * @vma through bigfile_vma_write(). */
typedef struct
{
  guint8 *addr;
  BigfileVma *vma;
  gsize offset;
  gsize len;
  guint8 value;
  GMutex *lock;
  GCond *cond;
  gboolean started; /* under lock */
  gint done;        /* atomic: set once the write returned */
  gboolean ok;
  GError *error;
} Writer;

static gpointer
writer_thread (gpointer user_data)
{
  Writer *w = user_data;

  set_flag (w->cond, w->lock, &w->started);
  if (w->vma != NULL)
    {
      guint8 *buf = g_malloc (w->len);
      GBytes *bytes;

      memset (buf, w->value, w->len);
      bytes = g_bytes_new_take (buf, w->len);
      w->ok = bigfile_vma_write (w->vma, w->offset, bytes, &w->error);
      g_bytes_unref (bytes);
    }
  else
    {
      memset (w->addr, w->value, w->len);
      w->ok = TRUE;
    }
  g_atomic_int_set (&w->done, TRUE);
  return NULL;
}

static void
check_write_waits_for_store (BigfileWriteoutFlags flags, gboolean api)
{
  Mapping fx;
  HeldStore hs;
  WriteoutThread wt;
  Writer w = { 0 };
  GThread *wo, *writer;
  const guint64 p = 3;
  gboolean writable = TRUE;

  mapping_setup_small_pages (&fx, 16, 16);

  /* Page P dirty with content A. */
  memset (page_addr (&fx, p), 'A', fx.ps);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, p), ==, BIGFILE_PAGE_STATE_DIRTY);

  held_store_init (&hs, &fx, p);
  test_mem_file_set_store_hook (fx.file, held_store_hook, &hs);
  wo = start_writeout (&wt, &fx, flags);
  g_assert_true (held_store_wait_started (&hs));

  /* While it is stored, P stays dirty but is mapped read-only. */
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, p), ==, BIGFILE_PAGE_STATE_DIRTY);
  _bigfile_vma_page_is_mapped (fx.vma, p, &writable);
  g_assert_false (writable);

  if (api)
    {
      w.vma = fx.vma;
      w.offset = p * fx.ps;
    }
  else
    w.addr = page_addr (&fx, p);
  w.len = fx.ps;
  w.value = 'B';
  w.lock = &hs.lock;
  w.cond = &hs.cond;
  writer = g_thread_new ("writer", writer_thread, &w);
  g_mutex_lock (&hs.lock);
  g_assert_true (wait_flag (&hs.cond, &hs.lock, &w.started));
  g_mutex_unlock (&hs.lock);

  /* Give the writer time to reach the page; it must wait there until the
   * store returns.  (Had it not got there yet, the check still holds.) */
  g_usleep (100 * 1000);
  g_assert_false (g_atomic_int_get (&w.done));
  g_assert_cmpint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 1);

  held_store_release (&hs);
  join_writeout (wo, &wt);
  g_thread_join (writer);
  g_assert_false (hs.release_timed_out);
  g_assert_true (g_atomic_int_get (&w.done));
  g_assert_no_error (w.error);
  g_assert_true (w.ok);

  /* The store saw a stable page: A.  The write landed after it: memory holds
   * B and P is dirty again. */
  {
    const guint64 stored[] = { p };
    assert_store_log (fx.file, stored, G_N_ELEMENTS (stored));
  }
  assert_storage_filled (&fx, p, 'A');
  assert_page_filled (&fx, p, 'B');
  g_assert_true (is_filled (page_addr (&fx, p), 'B', fx.ps));
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, p), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 1);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (fx.ram), ==, 1);

  /* The next writeout stores B. */
  test_mem_file_set_store_hook (fx.file, NULL, NULL);
  test_mem_file_reset_counters (fx.file);
  {
    GError *error = NULL;
    const guint64 stored[] = { p };

    g_assert_true (bigfile_handle_writeout (fx.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
    g_assert_no_error (error);
    assert_store_log (fx.file, stored, G_N_ELEMENTS (stored));
  }
  assert_storage_filled (&fx, p, 'B');
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, p), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 0);

  mapping_teardown (&fx);
  held_store_clear (&hs);
}

static void
test_write_during_store (void)
{
  g_test_summary ("A write to a page being stored waits until the store returns; the store "
                  "keeps the old content and the page is dirty again after the writeout");
  check_write_waits_for_store (BIGFILE_WRITEOUT_DEFAULT, FALSE);
}

static void
test_write_during_store_only (void)
{
  g_test_summary ("Same as /threads/writeout/write-waits, with BIGFILE_WRITEOUT_STORE alone");
  check_write_waits_for_store (BIGFILE_WRITEOUT_STORE, FALSE);
}

static void
test_api_write_during_store (void)
{
  g_test_summary ("A write through bigfile_vma_write() to a page being stored waits until the "
                  "store returns, as a write to the memory does");
  check_write_waits_for_store (BIGFILE_WRITEOUT_DEFAULT, TRUE);
}

/* -- pages dirtied during writeout -------------------------------------------------- */

typedef struct
{
  Mapping *fx;
  gboolean api_ok;
  GError *api_error;
} DirtyDuring;

static void
dirty_others_in_hook (Mapping *fx, gpointer data)
{
  DirtyDuring *dd = data;
  GBytes *bytes;
  guint8 *fives = g_malloc (fx->ps);
  Writer w = { 0 };
  GMutex lock;
  GCond cond;
  GThread *writer;

  /* Page 5 (loaded, clean) through the API, from the writeout's own thread. */
  memset (fives, 0x55, fx->ps);
  bytes = g_bytes_new_take (fives, fx->ps);
  dd->api_ok = bigfile_vma_write (fx->vma, 5 * fx->ps, bytes, &dd->api_error);
  g_bytes_unref (bytes);

  /* Page 6 (not in memory) through raw memory, from another thread. */
  g_mutex_init (&lock);
  g_cond_init (&cond);
  w.addr = page_addr (fx, 6);
  w.len = fx->ps;
  w.value = 0x66;
  w.lock = &lock;
  w.cond = &cond;
  writer = g_thread_new ("writer", writer_thread, &w);
  g_thread_join (writer);
  g_mutex_clear (&lock);
  g_cond_clear (&cond);
}

static void
test_dirtied_during_writeout (void)
{
  Mapping fx;
  HeldStore hs;
  DirtyDuring dd = { 0 };
  GError *error = NULL;
  volatile guint8 sink;

  g_test_summary ("Pages dirtied while a writeout runs, other than those it stores, stay "
                  "dirty and are not stored");

  mapping_setup_small_pages (&fx, 16, 16);
  dd.fx = &fx;

  memset (page_addr (&fx, 0), 0xAA, fx.ps); /* dirty */
  sink = page_addr (&fx, 5)[0];             /* loaded, clean */
  (void)sink;
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 5), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 6), ==, BIGFILE_PAGE_STATE_EMPTY);

  /* No one releases this hold: the hook just runs its action and goes on. */
  held_store_init (&hs, &fx, 0);
  hs.released = TRUE;
  hs.in_hook = dirty_others_in_hook;
  hs.in_hook_data = &dd;
  test_mem_file_set_store_hook (fx.file, held_store_hook, &hs);

  g_assert_true (bigfile_handle_writeout (fx.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_no_error (dd.api_error);
  g_assert_true (dd.api_ok);

  {
    const guint64 stored[] = { 0 };
    assert_store_log (fx.file, stored, G_N_ELEMENTS (stored));
  }
  assert_storage_filled (&fx, 0, 0xAA);
  g_assert_true (has_pattern (test_mem_file_peek (fx.file, 5), 5, fx.ps));
  g_assert_true (has_pattern (test_mem_file_peek (fx.file, 6), 6, fx.ps));
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 0), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 5), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 6), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 2);
  assert_page_filled (&fx, 5, 0x55);
  assert_page_filled (&fx, 6, 0x66);

  /* They go with the next writeout. */
  test_mem_file_set_store_hook (fx.file, NULL, NULL);
  test_mem_file_reset_counters (fx.file);
  g_assert_true (bigfile_handle_writeout (fx.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  {
    const guint64 stored[] = { 5, 6 };
    assert_store_log (fx.file, stored, G_N_ELEMENTS (stored));
  }
  assert_storage_filled (&fx, 5, 0x55);
  assert_storage_filled (&fx, 6, 0x66);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 0);

  mapping_teardown (&fx);
  held_store_clear (&hs);
}

/* -- discard and invalidate during writeout ---------------------------------------- */

/* Pages 1, 3 and 7 dirty (filled with 0x11, 0x33, 0x77), page 9 loaded and
 * clean; the store of page 1 is held. */
static void
dirty_three (Mapping *fx)
{
  volatile guint8 sink;

  memset (page_addr (fx, 1), 0x11, fx->ps);
  memset (page_addr (fx, 3), 0x33, fx->ps);
  memset (page_addr (fx, 7), 0x77, fx->ps);
  sink = page_addr (fx, 9)[0];
  (void)sink;
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx->handle), ==, 3);
}

/* Common end checks: the RAM counts exactly the pages the handle shows. */
static void
assert_ram_consistent (Mapping *fx)
{
  guint64 n_present = 0, n_dirty = 0;

  for (guint64 p = 0; p < fx->n_pages; p++)
    {
      BigfilePageState state = bigfile_handle_get_page_state (fx->handle, p);

      g_assert_cmpint (state, !=, BIGFILE_PAGE_STATE_LOADING);
      if (state != BIGFILE_PAGE_STATE_EMPTY)
        n_present++;
      if (state == BIGFILE_PAGE_STATE_DIRTY)
        n_dirty++;
    }
  g_assert_cmpuint (bigfile_ram_get_n_pages (fx->ram), ==, n_present);
  g_assert_cmpuint (bigfile_ram_get_used_bytes (fx->ram), ==, n_present * fx->ps);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (fx->ram), ==, n_dirty);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx->handle), ==, n_dirty);
}

static void
test_invalidate_storing (void)
{
  Mapping fx;
  HeldStore hs;
  WriteoutThread wt;
  GThread *wo;

  g_test_summary ("Invalidating the page a writeout is storing drops it; the store completes "
                  "with the page's contents and the writeout goes on");

  mapping_setup_small_pages (&fx, 16, 16);
  dirty_three (&fx);
  held_store_init (&hs, &fx, 1);
  test_mem_file_set_store_hook (fx.file, held_store_hook, &hs);

  wo = start_writeout (&wt, &fx, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_true (held_store_wait_started (&hs));
  bigfile_handle_invalidate_page (fx.handle, 1);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 1), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 2);
  held_store_release (&hs);
  join_writeout (wo, &wt);

  /* The store in flight wrote a whole, untorn page; 3 and 7 went as usual. */
  {
    const guint64 stored[] = { 1, 3, 7 };
    assert_store_log (fx.file, stored, G_N_ELEMENTS (stored));
  }
  assert_storage_filled (&fx, 1, 0x11);
  assert_storage_filled (&fx, 3, 0x33);
  assert_storage_filled (&fx, 7, 0x77);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 1), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 3), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 7), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 9), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_ram_consistent (&fx);

  /* Page 1 loads again, from what was stored. */
  assert_page_filled (&fx, 1, 0x11);
  g_assert_true (is_filled (page_addr (&fx, 1), 0x11, fx.ps));
  g_assert_cmpuint (test_mem_file_get_n_loads (fx.file, 1), ==, 2);
  assert_ram_consistent (&fx);

  mapping_teardown (&fx);
  held_store_clear (&hs);
}

typedef struct
{
  Mapping *fx;
  gint done;
  guint8 *data;
} LateReader;

static gpointer
late_reader (gpointer user_data)
{
  LateReader *r = user_data;
  GError *error = NULL;
  GBytes *bytes = bigfile_vma_read (r->fx->vma, 1 * r->fx->ps, r->fx->ps, &error);
  gsize size;

  g_assert_no_error (error);
  r->data = g_bytes_unref_to_data (bytes, &size);
  g_assert_cmpuint (size, ==, r->fx->ps);
  g_atomic_int_set (&r->done, 1);
  return NULL;
}

static void
test_invalidate_storing_then_read (void)
{
  Mapping fx;
  HeldStore hs;
  WriteoutThread wt;
  LateReader r = { &fx, 0, NULL };
  GThread *wo, *reader;

  g_test_summary ("A page invalidated while its store runs is not loaded again before the "
                  "store is over: the load would read a half-written block");

  mapping_setup_small_pages (&fx, 16, 16);
  dirty_three (&fx);
  held_store_init (&hs, &fx, 1);
  test_mem_file_set_store_hook (fx.file, held_store_hook, &hs);

  wo = start_writeout (&wt, &fx, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_true (held_store_wait_started (&hs));
  bigfile_handle_invalidate_page (fx.handle, 1);
  reader = g_thread_new ("late reader", late_reader, &r);
  g_usleep (100 * 1000);
  g_assert_cmpint (g_atomic_int_get (&r.done), ==, 0); /* waits for the store */
  g_assert_cmpuint (test_mem_file_get_n_loads (fx.file, 1), ==, 1);
  held_store_release (&hs);
  g_thread_join (reader);
  join_writeout (wo, &wt);

  g_assert_true (is_filled (r.data, 0x11, fx.ps));
  g_assert_cmpuint (test_mem_file_get_n_loads (fx.file, 1), ==, 2);
  g_free (r.data);
  mapping_teardown (&fx);
  held_store_clear (&hs);
}

static void
invalidate_seven_in_hook (Mapping *fx, gpointer data)
{
  bigfile_handle_invalidate_page (fx->handle, 7);
}

static void
test_invalidate_later (void)
{
  Mapping fx;
  HeldStore hs;
  GError *error = NULL;

  g_test_summary ("A page invalidated while a writeout runs, before its turn, is not stored: "
                  "its changes are gone");

  mapping_setup_small_pages (&fx, 16, 16);
  dirty_three (&fx);
  held_store_init (&hs, &fx, 1);
  hs.released = TRUE;
  hs.in_hook = invalidate_seven_in_hook;
  test_mem_file_set_store_hook (fx.file, held_store_hook, &hs);

  g_assert_true (bigfile_handle_writeout (fx.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);

  {
    const guint64 stored[] = { 1, 3 };
    assert_store_log (fx.file, stored, G_N_ELEMENTS (stored));
  }
  assert_storage_filled (&fx, 1, 0x11);
  assert_storage_filled (&fx, 3, 0x33);
  g_assert_true (has_pattern (test_mem_file_peek (fx.file, 7), 7, fx.ps));
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, 7), ==, BIGFILE_PAGE_STATE_EMPTY);
  assert_ram_consistent (&fx);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 0);

  /* Page 7 shows the file again. */
  g_assert_true (has_pattern (page_addr (&fx, 7), 7, fx.ps));

  mapping_teardown (&fx);
  held_store_clear (&hs);
}

static void
test_discard_during_writeout (void)
{
  Mapping fx;
  HeldStore hs;
  WriteoutThread wt;
  GThread *wo;

  g_test_summary ("Discarding while a writeout stores drops every dirty page: the store in "
                  "flight completes, the pages after it are not stored");

  mapping_setup_small_pages (&fx, 16, 16);
  dirty_three (&fx);
  held_store_init (&hs, &fx, 1);
  test_mem_file_set_store_hook (fx.file, held_store_hook, &hs);

  wo = start_writeout (&wt, &fx, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_true (held_store_wait_started (&hs));
  g_assert_cmpuint (bigfile_handle_discard (fx.handle), ==, 3);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 0);
  held_store_release (&hs);
  join_writeout (wo, &wt);

  {
    const guint64 stored[] = { 1 };
    assert_store_log (fx.file, stored, G_N_ELEMENTS (stored));
  }
  assert_storage_filled (&fx, 1, 0x11);
  g_assert_true (has_pattern (test_mem_file_peek (fx.file, 3), 3, fx.ps));
  g_assert_true (has_pattern (test_mem_file_peek (fx.file, 7), 7, fx.ps));
  for (guint64 p = 0; p < fx.n_pages; p++)
    g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, p), ==,
                     p == 9 ? BIGFILE_PAGE_STATE_LOADED : BIGFILE_PAGE_STATE_EMPTY);
  assert_ram_consistent (&fx);

  /* What the file holds now shows through. */
  assert_page_filled (&fx, 1, 0x11);
  g_assert_true (has_pattern (page_addr (&fx, 3), 3, fx.ps));
  g_assert_true (has_pattern (page_addr (&fx, 7), 7, fx.ps));

  mapping_teardown (&fx);
  held_store_clear (&hs);
}

/* -- a load fails while others wait for it ------------------------------------------ */

typedef struct
{
  Mapping *fx;
  guint64 page;
  gboolean keep_failing; /* FALSE: the second load clears the injected failure */
  GMutex lock;
  GCond cond;
  guint n_hook_calls;
  gboolean first_load_started;
  gboolean waiters_started;
} FailedLoad;

static void
failed_load_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  FailedLoad *fl = user_data;
  guint call;

  if (block != fl->page)
    return;

  g_mutex_lock (&fl->lock);
  call = ++fl->n_hook_calls;
  if (call == 1)
    {
      /* The first load (thread A): let the waiters come and queue up behind
       * it, then fail (the failure is injected already). */
      fl->first_load_started = TRUE;
      g_cond_broadcast (&fl->cond);
      wait_flag (&fl->cond, &fl->lock, &fl->waiters_started);
      g_mutex_unlock (&fl->lock);
      g_usleep (50 * 1000);
      return;
    }
  g_mutex_unlock (&fl->lock);

  /* A waiter's own load, after A's failed. */
  if (!fl->keep_failing)
    test_mem_file_set_fail_load (file, block, FALSE, FALSE);
}

typedef struct
{
  FailedLoad *fl;
  gboolean raw; /* read through raw memory rather than bigfile_vma_read() */
  gboolean right;
  GError *error;
} FailedLoadReader;

static gpointer
failed_load_reader (gpointer user_data)
{
  FailedLoadReader *r = user_data;
  Mapping *fx = r->fl->fx;
  guint8 *copy = g_malloc (fx->ps);

  if (r->raw)
    {
      memcpy (copy, page_addr (fx, r->fl->page), fx->ps);
      r->right = has_pattern (copy, r->fl->page, fx->ps);
    }
  else
    {
      GBytes *bytes = read_page (fx, r->fl->page, &r->error);

      if (bytes != NULL)
        {
          r->right = has_pattern (g_bytes_get_data (bytes, NULL), r->fl->page, fx->ps);
          g_bytes_unref (bytes);
        }
    }
  g_free (copy);
  return NULL;
}

static void
check_failed_load (gboolean keep_failing)
{
  Mapping fx;
  FailedLoad fl = { 0 };
  FailedLoadReader a = { 0 }, b[2] = { { 0 } };
  GThread *ta, *tb[2];
  guint n_b;

  mapping_setup_small_pages (&fx, 16, 16);
  fl.fx = &fx;
  fl.page = 4;
  fl.keep_failing = keep_failing;
  g_mutex_init (&fl.lock);
  g_cond_init (&fl.cond);
  test_mem_file_set_fail_load (fx.file, fl.page, TRUE, FALSE);
  test_mem_file_set_load_hook (fx.file, failed_load_hook, &fl);

  /* A starts the load; the waiters come while it runs.  With the failure
   * kept, only API readers: a raw reader would get SIGBUS. */
  a.fl = &fl;
  ta = g_thread_new ("loader", failed_load_reader, &a);
  g_mutex_lock (&fl.lock);
  g_assert_true (wait_flag (&fl.cond, &fl.lock, &fl.first_load_started));
  g_mutex_unlock (&fl.lock);

  n_b = keep_failing ? 1 : 2;
  for (guint i = 0; i < n_b; i++)
    {
      b[i].fl = &fl;
      b[i].raw = i == 1;
      tb[i] = g_thread_new ("waiter", failed_load_reader, &b[i]);
    }
  set_flag (&fl.cond, &fl.lock, &fl.waiters_started);

  g_thread_join (ta);
  for (guint i = 0; i < n_b; i++)
    g_thread_join (tb[i]);

  /* A's load failed, and A got its error. */
  g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_false (a.right);
  g_clear_error (&a.error);

  if (keep_failing)
    {
      /* The waiter loaded again by itself and failed too: never wrong data. */
      g_assert_error (b[0].error, G_IO_ERROR, G_IO_ERROR_FAILED);
      g_assert_false (b[0].right);
      g_clear_error (&b[0].error);
      g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, fl.page), ==,
                       BIGFILE_PAGE_STATE_EMPTY);
    }
  else
    {
      /* One waiter loaded again, the other waited for it: both have the
       * right data. */
      for (guint i = 0; i < n_b; i++)
        {
          g_assert_no_error (b[i].error);
          g_assert_true (b[i].right);
        }
      g_assert_cmpint (bigfile_handle_get_page_state (fx.handle, fl.page), ==,
                       BIGFILE_PAGE_STATE_LOADED);
    }
  g_assert_cmpuint (test_mem_file_get_n_loads (fx.file, fl.page), ==, 2);
  g_assert_cmpuint (fl.n_hook_calls, ==, 2);
  assert_ram_consistent (&fx);

  test_mem_file_set_fail_load (fx.file, fl.page, FALSE, FALSE);
  mapping_teardown (&fx);
  g_mutex_clear (&fl.lock);
  g_cond_clear (&fl.cond);
}

static void
test_failed_load_retry (void)
{
  g_test_summary ("When a load fails, the threads waiting for it load the page again and get "
                  "its data");
  check_failed_load (FALSE);
}

static void
test_failed_load_error (void)
{
  g_test_summary ("When a load fails and keeps failing, a waiting thread gets an error, not "
                  "wrong data, and does not hang");
  check_failed_load (TRUE);
}

/* -- readers under reclaim ------------------------------------------------------------ */

#define RECLAIM_N_PAGES 64
#define RECLAIM_BUDGET_PAGES 4
#define RECLAIM_N_READERS 4
#define RECLAIM_N_READS 2000

typedef struct
{
  Mapping *fx;
  guint32 seed;
  guint n_wrong;
  guint64 first_wrong_page;
  gsize first_wrong_offset;
} Reader;

static gpointer
reader_thread (gpointer user_data)
{
  Reader *r = user_data;
  Mapping *fx = r->fx;
  GRand *rand = g_rand_new_with_seed (r->seed);

  for (guint i = 0; i < RECLAIM_N_READS; i++)
    {
      guint64 page = g_rand_int_range (rand, 0, RECLAIM_N_PAGES);
      gsize len = g_rand_int_range (rand, 1, 65);
      gsize offset = g_rand_int_range (rand, 0, (gint32)(fx->ps - len + 1));
      guint8 buf[64];

      memcpy (buf, page_addr (fx, page) + offset, len);
      for (gsize j = 0; j < len; j++)
        if (buf[j] != test_mem_file_pattern (page, offset + j))
          {
            if (r->n_wrong++ == 0)
              {
                r->first_wrong_page = page;
                r->first_wrong_offset = offset + j;
              }
            break;
          }
    }

  g_rand_free (rand);
  return NULL;
}

typedef struct
{
  BigfileRam *ram;
  BigfileHandle *handle;
  gint stop;
} Reclaimer;

static gpointer
reclaimer_thread (gpointer user_data)
{
  Reclaimer *rc = user_data;

  while (!g_atomic_int_get (&rc->stop))
    {
      bigfile_ram_reclaim (rc->ram);
      /* While the readers fault pages in and out. */
      assert_engine_invariants (rc->handle, FALSE);
      g_usleep (200);
    }
  return NULL;
}

static void
check_readers_under_reclaim (gboolean with_reclaimer)
{
  Mapping fx;
  Reader readers[RECLAIM_N_READERS];
  GThread *threads[RECLAIM_N_READERS], *reclaimer = NULL;
  Reclaimer rc = { 0 };

  mapping_setup_small_pages (&fx, RECLAIM_N_PAGES, RECLAIM_BUDGET_PAGES);

  if (with_reclaimer)
    {
      rc.ram = fx.ram;
      rc.handle = fx.handle;
      reclaimer = g_thread_new ("reclaimer", reclaimer_thread, &rc);
    }
  for (guint i = 0; i < RECLAIM_N_READERS; i++)
    {
      readers[i] = (Reader){ .fx = &fx, .seed = g_test_rand_int () };
      threads[i] = g_thread_new ("reader", reader_thread, &readers[i]);
    }
  for (guint i = 0; i < RECLAIM_N_READERS; i++)
    g_thread_join (threads[i]);
  if (reclaimer != NULL)
    {
      g_atomic_int_set (&rc.stop, TRUE);
      g_thread_join (reclaimer);
    }

  for (guint i = 0; i < RECLAIM_N_READERS; i++)
    {
      if (readers[i].n_wrong > 0)
        g_test_message (
            "reader %u (seed %u) read wrong data %u times, first in page %" G_GUINT64_FORMAT
            " at offset %" G_GSIZE_FORMAT,
            i, readers[i].seed, readers[i].n_wrong, readers[i].first_wrong_page,
            readers[i].first_wrong_offset);
      g_assert_cmpuint (readers[i].n_wrong, ==, 0);
    }

  /* Pages were reclaimed and loaded again, within the budget. */
  g_assert_cmpuint (test_mem_file_get_total_loads (fx.file), >, RECLAIM_N_PAGES);
  g_assert_cmpuint (bigfile_ram_get_n_pages (fx.ram), <=, RECLAIM_BUDGET_PAGES);
  g_assert_cmpuint (bigfile_ram_get_used_bytes (fx.ram), <=, bigfile_ram_get_budget (fx.ram));
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 0);
  assert_ram_consistent (&fx);

  /* Every page still reads right. */
  for (guint64 p = 0; p < RECLAIM_N_PAGES; p++)
    g_assert_true (has_pattern (page_addr (&fx, p), p, fx.ps));

  mapping_teardown (&fx);
}

static void
test_readers_under_reclaim (void)
{
  g_test_summary ("Threads reading random pages through a budget of 4 pages always see the "
                  "right data, while pages are reclaimed under them");
  check_readers_under_reclaim (FALSE);
}

static void
test_readers_and_reclaimer (void)
{
  g_test_summary ("As /threads/reclaim/readers, with a thread calling bigfile_ram_reclaim() "
                  "all along");
  check_readers_under_reclaim (TRUE);
}

/* -- writers racing with writeouts --------------------------------------------------- */

#define RACE_N_WRITERS 2
#define RACE_PAGES_PER_WRITER 8
#define RACE_N_WRITES 1500

typedef struct
{
  Mapping *fx;
  guint id;
  guint32 seed;
  guint8 last[RACE_PAGES_PER_WRITER]; /* last value written to each page, 0 none */
  gint done;
} RaceWriter;

static gpointer
race_writer_thread (gpointer user_data)
{
  RaceWriter *w = user_data;
  Mapping *fx = w->fx;
  GRand *rand = g_rand_new_with_seed (w->seed);

  for (guint i = 0; i < RACE_N_WRITES; i++)
    {
      guint k = g_rand_int_range (rand, 0, RACE_PAGES_PER_WRITER);
      guint64 page = w->id * RACE_PAGES_PER_WRITER + k;
      guint8 value = (guint8)(i % 251 + 1);

      memset (page_addr (fx, page), value, fx->ps);
      w->last[k] = value;
    }
  g_rand_free (rand);
  g_atomic_int_set (&w->done, TRUE);
  return NULL;
}

static void
test_writers_and_writeouts (void)
{
  Mapping fx;
  RaceWriter writers[RACE_N_WRITERS];
  GThread *threads[RACE_N_WRITERS];
  GError *error = NULL;
  guint n_writeouts = 0;
  gboolean all_done;

  g_test_summary ("Writers that write pages through raw memory while writeouts run in a loop "
                  "lose no write: after a final writeout the file holds every last write");

  mapping_setup_small_pages (&fx, RACE_N_WRITERS * RACE_PAGES_PER_WRITER, 64);

  for (guint i = 0; i < RACE_N_WRITERS; i++)
    {
      writers[i] = (RaceWriter){ .fx = &fx, .id = i, .seed = g_test_rand_int () };
      threads[i] = g_thread_new ("writer", race_writer_thread, &writers[i]);
    }

  do
    {
      all_done = TRUE;
      for (guint i = 0; i < RACE_N_WRITERS; i++)
        all_done = all_done && g_atomic_int_get (&writers[i].done);
      g_assert_true (bigfile_handle_writeout (fx.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
      g_assert_no_error (error);
      n_writeouts++;
      /* Between writeouts, with the writers still at work. */
      assert_engine_invariants (fx.handle, FALSE);
    }
  while (!all_done);

  for (guint i = 0; i < RACE_N_WRITERS; i++)
    g_thread_join (threads[i]);
  g_test_message ("%u writeouts ran alongside the writers", n_writeouts);

  /* The loop's last writeout started after every write returned. */
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx.handle), ==, 0);
  for (guint i = 0; i < RACE_N_WRITERS; i++)
    for (guint k = 0; k < RACE_PAGES_PER_WRITER; k++)
      {
        guint64 page = i * RACE_PAGES_PER_WRITER + k;

        if (writers[i].last[k] == 0)
          {
            g_assert_true (has_pattern (test_mem_file_peek (fx.file, page), page, fx.ps));
            continue;
          }
        assert_storage_filled (&fx, page, writers[i].last[k]);
        assert_page_filled (&fx, page, writers[i].last[k]);
      }
  assert_ram_consistent (&fx);

  mapping_teardown (&fx);
}

/* -- loads that wait for each other ----------------------------------------------- */

/* Two files whose loads read each other's mappings, faulted from two threads
 * at once: each thread loads page 0 of its file, and that load reads page 0
 * of the other file, which the other thread is loading.  Each waits for the
 * other: the engine must see the cycle and fail one of the two reads (the
 * other then goes on), never hang. */
typedef struct
{
  Mapping *self, *other;
  GMutex *lock;
  GCond *cond;
  guint *n_in_load;
  GError *error; /* what the read of the other mapping gave */
  gboolean read_done;
} CrossLoad;

static void
cross_load_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  CrossLoad *cl = user_data;
  guint8 byte;
  gint64 deadline = g_get_monotonic_time () + WAIT_TIMEOUT_US;

  if (block != 0 || cl->read_done)
    return;
  /* Both loads must be running before either reads the other's page. */
  g_mutex_lock (cl->lock);
  (*cl->n_in_load)++;
  g_cond_broadcast (cl->cond);
  while (*cl->n_in_load < 2)
    g_assert_true (g_cond_wait_until (cl->cond, cl->lock, deadline));
  g_mutex_unlock (cl->lock);

  cl->read_done = TRUE;
  bigfile_vma_read_into (cl->other->vma, 0, &byte, 1, &cl->error);
}

static gpointer
cross_load_thread (gpointer user_data)
{
  CrossLoad *cl = user_data;
  guint8 byte;
  GError *error = NULL;

  g_assert_true (bigfile_vma_read_into (cl->self->vma, 0, &byte, 1, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (byte, ==, test_mem_file_pattern (0, 0));
  return NULL;
}

static void
test_cross_loads (void)
{
  Mapping x, y;
  GMutex lock;
  GCond cond;
  guint n_in_load = 0;
  CrossLoad cx = { &x, &y, &lock, &cond, &n_in_load, NULL, FALSE };
  CrossLoad cy = { &y, &x, &lock, &cond, &n_in_load, NULL, FALSE };
  GThread *tx, *ty;
  GError *failed;

  g_test_summary ("Loads that read each other's mappings from two threads fail one side with "
                  "BIGFILE_FILE_ERROR_DEADLOCK instead of hanging");
  g_mutex_init (&lock);
  g_cond_init (&cond);
  mapping_setup_small_pages (&x, 4, 16);
  mapping_setup_small_pages (&y, 4, 16);
  test_mem_file_set_load_hook (x.file, cross_load_hook, &cx);
  test_mem_file_set_load_hook (y.file, cross_load_hook, &cy);

  tx = g_thread_new ("x", cross_load_thread, &cx);
  ty = g_thread_new ("y", cross_load_thread, &cy);
  g_thread_join (tx);
  g_thread_join (ty);

  /* Exactly one read of the other mapping gave up; the other waited for
   * the first load, which then went on, and read it. */
  g_assert_true ((cx.error == NULL) != (cy.error == NULL));
  failed = cx.error != NULL ? cx.error : cy.error;
  g_assert_error (failed, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DEADLOCK);
  g_test_message ("%s", failed->message);
  g_clear_error (&cx.error);
  g_clear_error (&cy.error);

  mapping_teardown (&x);
  mapping_teardown (&y);
  g_cond_clear (&cond);
  g_mutex_clear (&lock);
}

/* A load that reads its own page: the shortest cycle. */
static void
self_load_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  CrossLoad *cl = user_data;
  guint8 byte;

  if (cl->read_done)
    return;
  cl->read_done = TRUE;
  bigfile_vma_read_into (cl->self->vma, block * cl->self->ps, &byte, 1, &cl->error);
}

static void
test_self_load (void)
{
  Mapping x;
  CrossLoad cx = { &x, NULL, NULL, NULL, NULL, NULL, FALSE };
  guint8 byte;
  GError *error = NULL;

  mapping_setup_small_pages (&x, 4, 16);
  test_mem_file_set_load_hook (x.file, self_load_hook, &cx);
  g_assert_true (bigfile_vma_read_into (x.vma, 2 * x.ps, &byte, 1, &error));
  g_assert_no_error (error);
  g_assert_error (cx.error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DEADLOCK);
  g_clear_error (&cx.error);
  mapping_teardown (&x);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/threads/fault/same-page", test_same_page);
  g_test_add_func ("/threads/fault/cross-loads", test_cross_loads);
  g_test_add_func ("/threads/fault/self-load", test_self_load);
  g_test_add_func ("/threads/fault/parallel-loads", test_parallel_loads);
  g_test_add_func ("/threads/fault/failed-load-retry", test_failed_load_retry);
  g_test_add_func ("/threads/fault/failed-load-error", test_failed_load_error);
  g_test_add_func ("/threads/writeout/write-waits", test_write_during_store);
  g_test_add_func ("/threads/writeout/write-waits-store-only", test_write_during_store_only);
  g_test_add_func ("/threads/writeout/api-write-waits", test_api_write_during_store);
  g_test_add_func ("/threads/writeout/dirtied-meanwhile", test_dirtied_during_writeout);
  g_test_add_func ("/threads/writeout/invalidate-storing", test_invalidate_storing);
  g_test_add_func ("/threads/writeout/invalidate-storing-then-read",
                   test_invalidate_storing_then_read);
  g_test_add_func ("/threads/writeout/invalidate-later", test_invalidate_later);
  g_test_add_func ("/threads/writeout/discard", test_discard_during_writeout);
  g_test_add_func ("/threads/writeout/racing-writers", test_writers_and_writeouts);
  g_test_add_func ("/threads/reclaim/readers", test_readers_under_reclaim);
  g_test_add_func ("/threads/reclaim/readers-and-reclaimer", test_readers_and_reclaimer);

  return g_test_run ();
}
