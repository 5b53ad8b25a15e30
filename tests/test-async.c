/* bigfile-glib tests - asynchronous writeout, signals, main contexts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * What event-loop programs rely on: writeout_async completes on the caller's
 * main context (from a worker thread for thread-safe files, from slices on
 * the owner context for the others), reports progress there, stops on
 * cancellation without losing anything; signals and notifications reach
 * handlers on the owner context only, and page-invalidated from other
 * threads comes coalesced, in bounded memory, without keeping the handle
 * alive; files that are not thread-safe are never called from another
 * thread.
 */
#include "config.h"

#include <string.h>

#include "test-util.h"

#define PS ((gsize)4096)

/* A mapping over a TestMemFile that says whether it is thread-safe. */
static void
setup (Mapping *m, guint64 n_blocks, guint64 budget, gboolean thread_safe)
{
  GError *error = NULL;

  memset (m, 0, sizeof *m);
  m->file = test_mem_file_new (PS, n_blocks);
  test_mem_file_set_thread_safe (m->file, thread_safe);
  m->ram = bigfile_ram_new (budget);
  m->handle = bigfile_handle_new (BIGFILE_FILE (m->file), m->ram, &error);
  g_assert_no_error (error);
  m->ps = PS;
  m->n_pages = n_blocks;
  m->vma = bigfile_handle_map (m->handle, 0, n_blocks, &error);
  g_assert_no_error (error);
  m->data = bigfile_vma_get_data (m->vma);
}

static void
iterate_until (gboolean *flag)
{
  while (!*flag)
    g_main_context_iteration (NULL, TRUE);
}

/* Lets pending idles run. */
static void
iterate_pending (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

typedef struct
{
  gboolean finished;
  gboolean ok;
  GError *error;
  GArray *progress; /* guint64 pairs: done, total */
  guint finished_after_n_progress;
  GThread *main_thread;
  gboolean progress_on_other_thread;
  GCancellable *cancel_after_first;
  gboolean progress_data_freed;
} Async;

static void
on_progress (guint64 done, guint64 total, gpointer user_data)
{
  Async *a = user_data;

  g_assert_false (a->finished);
  if (g_thread_self () != a->main_thread)
    a->progress_on_other_thread = TRUE;
  g_array_append_val (a->progress, done);
  g_array_append_val (a->progress, total);
  if (a->cancel_after_first != NULL)
    g_cancellable_cancel (a->cancel_after_first);
}

static void
on_progress_data_free (gpointer user_data)
{
  ((Async *)user_data)->progress_data_freed = TRUE;
}

static void
on_finished (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Async *a = user_data;

  g_assert_true (g_thread_self () == a->main_thread);
  a->ok = bigfile_handle_writeout_finish (BIGFILE_HANDLE (source), result, &a->error);
  a->finished = TRUE;
  a->finished_after_n_progress = a->progress->len / 2;
}

static void
async_init (Async *a)
{
  memset (a, 0, sizeof *a);
  a->progress = g_array_new (FALSE, FALSE, sizeof (guint64));
  a->main_thread = g_thread_self ();
}

static void
async_clear (Async *a)
{
  g_array_unref (a->progress);
  g_clear_error (&a->error);
  g_clear_object (&a->cancel_after_first);
}

static void
start_writeout (Mapping *m, Async *a, GCancellable *cancellable)
{
  bigfile_handle_writeout_async (m->handle, BIGFILE_WRITEOUT_DEFAULT, G_PRIORITY_DEFAULT,
                                 cancellable, on_progress, a, on_progress_data_free, on_finished,
                                 a);
}

static void
record_thread (TestMemFile *file, guint64 block, gpointer user_data)
{
  GThread **where = user_data;
  where[block] = g_thread_self ();
}

/* Progress grows to the total, on the caller's context, before the
 * callback; the right pages are stored and clean. */
static void
check_writeout (gboolean thread_safe)
{
  Mapping m;
  Async a;
  GThread *store_threads[8] = { NULL };
  const guint64 dirty[] = { 1, 3, 4, 6 };

  setup (&m, 8, 8 * PS, thread_safe);
  for (guint i = 0; i < G_N_ELEMENTS (dirty); i++)
    raw_write (m.data + dirty[i] * PS + 5, 0xa0 + i);
  test_mem_file_set_store_hook (m.file, record_thread, store_threads);

  async_init (&a);
  start_writeout (&m, &a, NULL);
  iterate_until (&a.finished);
  g_assert_no_error (a.error);
  g_assert_true (a.ok);

  g_assert_false (a.progress_on_other_thread);
  g_assert_cmpuint (a.progress->len, >=, 2);
  for (guint i = 0; i < a.progress->len; i += 2)
    {
      g_assert_cmpuint (g_array_index (a.progress, guint64, i + 1), ==, 4 * PS);
      if (i > 0)
        g_assert_cmpuint (g_array_index (a.progress, guint64, i), >=,
                          g_array_index (a.progress, guint64, i - 2));
    }
  g_assert_cmpuint (g_array_index (a.progress, guint64, a.progress->len - 2), ==, 4 * PS);
  g_assert_true (a.progress_data_freed); /* right after the callback, on this thread */
  iterate_pending ();
  g_assert_cmpuint (a.finished_after_n_progress, ==, a.progress->len / 2);

  assert_store_log (m.file, dirty, G_N_ELEMENTS (dirty));
  for (guint i = 0; i < G_N_ELEMENTS (dirty); i++)
    {
      g_assert_cmpint (page_state (&m, dirty[i]), ==, BIGFILE_PAGE_STATE_LOADED);
      g_assert_cmpuint (test_mem_file_peek (m.file, dirty[i])[5], ==, 0xa0 + i);
      /* Thread-safe files store in a worker; the others on this thread. */
      if (thread_safe)
        g_assert_true (store_threads[dirty[i]] != g_thread_self ());
      else
        g_assert_true (store_threads[dirty[i]] == g_thread_self ());
    }
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);

  async_clear (&a);
  mapping_teardown (&m);
}

static void
test_writeout_thread (void)
{
  check_writeout (TRUE);
}

static void
test_writeout_slices (void)
{
  check_writeout (FALSE);
}

typedef struct
{
  Mapping *m;
  gboolean wrote;
} WriteDuring;

static gboolean
write_between_slices (gpointer user_data)
{
  WriteDuring *w = user_data;

  /* Page 7 was not dirty when the writeout began; page 0 was. */
  raw_write (w->m->data + 7 * PS, 0x77);
  raw_write (w->m->data + 0 * PS + 1, 0x55);
  w->wrote = TRUE;
  return G_SOURCE_REMOVE;
}

static void
slow_store (TestMemFile *file, guint64 block, gpointer user_data)
{
  g_usleep (3000); /* two stores per 5 ms slice: the writeout takes slices */
}

/* Slow, and at block 2 (page 0 is stored by then) schedule the writes for
 * between two slices. */
static void
slow_store_then_write (TestMemFile *file, guint64 block, gpointer user_data)
{
  slow_store (file, block, NULL);
  if (block == 2)
    g_idle_add_full (G_PRIORITY_DEFAULT, write_between_slices, user_data, NULL);
}

/* In the worker: the first store goes through; later ones wait (bounded)
 * until the main thread has cancelled. */
static void
wait_for_cancel (TestMemFile *file, guint64 block, gpointer user_data)
{
  GCancellable *cancellable = user_data;
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  if (block == 0)
    return;
  while (!g_cancellable_is_cancelled (cancellable) && g_get_monotonic_time () < deadline)
    g_usleep (1000);
}

/* Cancelled after the first page: that page stays stored and clean, the
 * others dirty; finish says CANCELLED; a second writeout stores the rest. */
static void
check_cancel (gboolean thread_safe)
{
  Mapping m;
  Async a;
  guint n_stored;

  setup (&m, 8, 8 * PS, thread_safe);
  for (guint64 p = 0; p < 6; p++)
    raw_write (m.data + p * PS, (guint8)(0x10 + p));

  async_init (&a);
  a.cancel_after_first = g_cancellable_new ();
  /* Make the cancel land between two pages: a worker waits for it before
   * its second store; slices are made short enough to end after one or two
   * pages, and progress (which cancels) runs between slices. */
  if (thread_safe)
    test_mem_file_set_store_hook (m.file, wait_for_cancel, a.cancel_after_first);
  else
    test_mem_file_set_store_hook (m.file, slow_store, NULL);
  start_writeout (&m, &a, a.cancel_after_first);
  iterate_until (&a.finished);
  g_assert_false (a.ok);
  g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  /* The worker may store a page or two more before it sees the cancel;
   * what counts is that stored pages are clean and the rest dirty. */
  n_stored = test_mem_file_get_total_stores (m.file);
  g_assert_cmpuint (n_stored, >=, 1);
  g_assert_cmpuint (n_stored, <, 6);
  for (guint64 p = 0; p < 6; p++)
    g_assert_cmpint (page_state (&m, p), ==,
                     p < n_stored ? BIGFILE_PAGE_STATE_LOADED : BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 6 - n_stored);
  async_clear (&a);
  test_mem_file_set_store_hook (m.file, NULL, NULL);

  async_init (&a);
  start_writeout (&m, &a, NULL);
  iterate_until (&a.finished);
  g_assert_no_error (a.error);
  for (guint64 p = 0; p < 6; p++)
    g_assert_cmpuint (test_mem_file_peek (m.file, p)[0], ==, 0x10 + p);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  async_clear (&a);
  mapping_teardown (&m);
}

static void
test_cancel_thread (void)
{
  check_cancel (TRUE);
}

static void
test_cancel_slices (void)
{
  check_cancel (FALSE);
}

/* A store error ends the writeout with that error; nothing is lost. */
static void
test_store_error (void)
{
  Mapping m;
  Async a;

  setup (&m, 8, 8 * PS, TRUE);
  raw_write (m.data + 1 * PS, 1);
  raw_write (m.data + 2 * PS, 2);
  test_mem_file_set_fail_store (m.file, 2, TRUE, FALSE);

  async_init (&a);
  start_writeout (&m, &a, NULL);
  iterate_until (&a.finished);
  g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (m.data + 2 * PS), ==, 2);
  async_clear (&a);

  bigfile_handle_discard (m.handle);
  mapping_teardown (&m);
}

/* While an async writeout runs, a second one (sync or async) is refused. */
static void
test_busy (void)
{
  Mapping m;
  Async a, b;
  GError *error = NULL;

  setup (&m, 8, 8 * PS, FALSE); /* slices: nothing runs until we iterate */
  raw_write (m.data, 1);

  async_init (&a);
  start_writeout (&m, &a, NULL);
  g_assert_false (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_BUSY);
  g_clear_error (&error);

  async_init (&b);
  start_writeout (&m, &b, NULL);
  iterate_until (&b.finished);
  g_assert_error (b.error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_BUSY);
  iterate_until (&a.finished);
  g_assert_no_error (a.error);

  async_clear (&a);
  async_clear (&b);
  mapping_teardown (&m);
}

/* The program writes to the mapping between slices: what it changed is
 * dirty afterwards. */
static void
test_write_during (void)
{
  Mapping m;
  Async a;
  WriteDuring w = { &m, FALSE };

  setup (&m, 8, 8 * PS, FALSE);
  for (guint64 p = 0; p < 6; p++)
    raw_write (m.data + p * PS, 1);
  test_mem_file_set_store_hook (m.file, slow_store_then_write, &w);

  async_init (&a);
  start_writeout (&m, &a, NULL);
  iterate_until (&a.finished);
  g_assert_no_error (a.error);
  g_assert_true (w.wrote);

  g_assert_cmpint (page_state (&m, 7), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (m.data + 1), ==, 0x55);
  g_assert_cmpuint (test_mem_file_peek (m.file, 0)[1], !=, 0x55);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 2);
  async_clear (&a);
  bigfile_handle_discard (m.handle);
  mapping_teardown (&m);
}

/* -- signals and notifications ------------------------------------------------ */

typedef struct
{
  guint count;
  GThread *thread;
  guint64 last;
} Seen;

static void
on_notify (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  Seen *s = user_data;
  s->count++;
  s->thread = g_thread_self ();
}

static gpointer
write_in_thread (gpointer user_data)
{
  Mapping *m = user_data;
  raw_write (m->data + 3 * PS, 9);
  return NULL;
}

/* notify::n-dirty-pages comes on the owner context, also for a write made
 * by another thread, and not from inside the fault. */
static void
test_notify_dirty (void)
{
  Mapping m;
  Seen s = { 0 };

  setup (&m, 8, 8 * PS, TRUE);
  g_signal_connect (m.handle, "notify::n-dirty-pages", G_CALLBACK (on_notify), &s);

  raw_write (m.data + PS, 1);
  g_assert_cmpuint (s.count, ==, 0); /* not from the fault handler */
  iterate_pending ();
  g_assert_cmpuint (s.count, ==, 1);
  g_assert_true (s.thread == g_thread_self ());

  g_thread_join (g_thread_new ("writer", write_in_thread, &m));
  iterate_pending ();
  g_assert_cmpuint (s.count, ==, 2);
  g_assert_true (s.thread == g_thread_self ());

  bigfile_handle_discard (m.handle);
  iterate_pending ();
  g_assert_cmpuint (s.count, ==, 3);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  mapping_teardown (&m);
}

static void
on_invalidated (BigfileHandle *handle, guint64 page, gpointer user_data)
{
  Seen *s = user_data;
  s->count++;
  s->last = page;
  s->thread = g_thread_self ();
}

static gpointer
invalidate_in_thread (gpointer user_data)
{
  Mapping *m = user_data;
  bigfile_handle_invalidate_page (m->handle, 5);
  return NULL;
}

static void
test_page_invalidated (void)
{
  Mapping m;
  Seen s = { 0 };

  setup (&m, 8, 8 * PS, TRUE);
  g_signal_connect (m.handle, "page-invalidated", G_CALLBACK (on_invalidated), &s);

  bigfile_handle_invalidate_page (m.handle, 2);
  g_assert_cmpuint (s.count, ==, 1); /* on the owner thread: at once */
  g_assert_cmpuint (s.last, ==, 2);

  g_thread_join (g_thread_new ("invalidator", invalidate_in_thread, &m));
  g_assert_cmpuint (s.count, ==, 1);
  iterate_pending ();
  g_assert_cmpuint (s.count, ==, 2);
  g_assert_cmpuint (s.last, ==, 5);
  g_assert_true (s.thread == g_thread_self ());
  mapping_teardown (&m);
}

static void
invalidate_from_load (TestMemFile *file, guint64 block, gpointer user_data)
{
  Mapping *m = user_data;

  if (block == 3)
    bigfile_handle_invalidate_page (m->handle, 7);
}

/* A load callback runs inside the SIGSEGV handler, even on the owner
 * thread: an invalidation made from there is signalled later, from the main
 * context, not from inside the fault. */
static void
test_not_in_fault (void)
{
  Mapping m;
  Seen s = { 0 };

  setup (&m, 8, 8 * PS, TRUE);
  g_signal_connect (m.handle, "page-invalidated", G_CALLBACK (on_invalidated), &s);
  test_mem_file_set_load_hook (m.file, invalidate_from_load, &m);

  g_assert_cmpuint (raw_read (m.data + 3 * PS), ==, test_mem_file_pattern (3, 0));
  g_assert_cmpuint (s.count, ==, 0);
  iterate_pending ();
  g_assert_cmpuint (s.count, ==, 1);
  g_assert_cmpuint (s.last, ==, 7);
  mapping_teardown (&m);
}

/* -- page-invalidated from other threads: coalesced --------------------------- */

/* A handle of its own, with no mapping, so that its last unref finalizes it;
 * the file and RAM go with it. */
static BigfileHandle *
bare_handle_new (void)
{
  g_autoptr (TestMemFile) file = test_mem_file_new (PS, 8);
  g_autoptr (BigfileRam) ram = bigfile_ram_new (8 * PS);
  GError *error = NULL;
  BigfileHandle *handle;

  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  g_assert_no_error (error);
  return handle;
}

/* The pages of every page-invalidated, in the order emitted. */
typedef struct
{
  GArray *pages; /* guint64 */
  GThread *owner;
  gboolean on_other_thread;
} Emitted;

static void
record_invalidated (BigfileHandle *handle, guint64 page, gpointer user_data)
{
  Emitted *e = user_data;

  g_array_append_val (e->pages, page);
  if (g_thread_self () != e->owner)
    e->on_other_thread = TRUE;
}

static void
emitted_init (Emitted *e, BigfileHandle *handle)
{
  e->pages = g_array_new (FALSE, FALSE, sizeof (guint64));
  e->owner = g_thread_self ();
  e->on_other_thread = FALSE;
  g_signal_connect (handle, "page-invalidated", G_CALLBACK (record_invalidated), e);
}

static guint64
emitted_page (Emitted *e, guint i)
{
  return g_array_index (e->pages, guint64, i);
}

#define N_FLOOD ((guint64)100000)
#define FAR_PAGE ((guint64)1000000)

/* A worker's calls, and what it saw of the pending set as it went. */
typedef struct
{
  BigfileHandle *handle;
  guint max_runs;
  guint n_runs;
  gboolean many;
  gboolean finalized;
  GThread *finalized_on;
} Flood;

static void
flood_note (Flood *f)
{
  f->n_runs = _bigfile_handle_get_n_pending_runs (f->handle, &f->many);
  f->max_runs = MAX (f->max_runs, f->n_runs);
}

/* N_FLOOD consecutive pages, twice; then pages that merge from either side
 * and from both into one run; then the highest page a handle can map. */
static gpointer
flood_consecutive (gpointer user_data)
{
  static const guint64 merging[] = { 7, 3, 3, 5, 4, 6 };
  Flood *f = user_data;

  for (guint round = 0; round < 2; round++)
    for (guint64 page = 0; page < N_FLOOD; page++)
      {
        bigfile_handle_invalidate_page (f->handle, page);
        if (page % 1000 == 0)
          flood_note (f);
      }
  flood_note (f);
  g_assert_cmpuint (f->n_runs, ==, 1);
  for (guint i = 0; i < G_N_ELEMENTS (merging); i++)
    bigfile_handle_invalidate_page (f->handle, FAR_PAGE + merging[i]);
  bigfile_handle_invalidate_page (f->handle, G_MAXUINT64 - 1);
  f->n_runs = _bigfile_handle_get_n_pending_runs (f->handle, &f->many);
  return NULL;
}

/* Runs @func (@f) on a worker and waits for it: nothing may be emitted
 * before the owner context runs, and nothing pending may hold a reference
 * (no source or closure per call). */
static void
flood_in_thread (GThreadFunc func, Flood *f, Emitted *e)
{
  g_thread_join (g_thread_new ("invalidator", func, f));
  g_assert_cmpuint (e->pages->len, ==, 0);
  g_assert_cmpuint (G_OBJECT (f->handle)->ref_count, ==, 1);
}

static gpointer
invalidate_page_5 (gpointer user_data)
{
  bigfile_handle_invalidate_page (user_data, 5);
  return NULL;
}

static void
test_invalidated_coalesced (void)
{
  g_autoptr (BigfileHandle) handle = bare_handle_new ();
  Flood f = { handle };
  Emitted e;
  guint i;

  g_test_summary ("page-invalidated for 200000 calls on another thread: the pending set stays "
                  "one run and holds no reference; then each page is emitted once, in "
                  "increasing order, 1024 per main loop iteration, on the owner thread");
  emitted_init (&e, handle);

  flood_in_thread (flood_consecutive, &f, &e);
  g_assert_cmpuint (f.max_runs, ==, 1);
  g_assert_false (f.many);
  g_assert_cmpuint (f.n_runs, ==, 3); /* 0..N_FLOOD-1, FAR_PAGE+3..7, the last page */
  g_assert_cmpuint (_bigfile_handle_get_n_pending_runs (handle, NULL), ==, 3);

  /* One batch per iteration. */
  g_assert_true (g_main_context_iteration (NULL, FALSE));
  g_assert_cmpuint (e.pages->len, ==, 1024);

  iterate_pending ();
  g_assert_false (e.on_other_thread);
  g_assert_cmpuint (e.pages->len, ==, N_FLOOD + 5 + 1);
  for (i = 0; i < N_FLOOD; i++)
    if (emitted_page (&e, i) != i)
      g_assert_cmpuint (emitted_page (&e, i), ==, i);
  for (i = 0; i < 5; i++)
    g_assert_cmpuint (emitted_page (&e, N_FLOOD + i), ==, FAR_PAGE + 3 + i);
  g_assert_cmpuint (emitted_page (&e, N_FLOOD + 5), ==, G_MAXUINT64 - 1);
  g_assert_cmpuint (_bigfile_handle_get_n_pending_runs (handle, NULL), ==, 0);

  /* Emitted pages are no longer pending: invalidated again, emitted again. */
  g_array_set_size (e.pages, 0);
  g_thread_join (g_thread_new ("invalidator", invalidate_page_5, handle));
  g_thread_join (g_thread_new ("invalidator", invalidate_page_5, handle));
  iterate_pending ();
  g_assert_cmpuint (e.pages->len, ==, 1);
  g_assert_cmpuint (emitted_page (&e, 0), ==, 5);

  g_array_unref (e.pages);
}

/* Every other page, one more than the pending set keeps apart, then many
 * more: the set collapses and stays collapsed. */
static gpointer
flood_scattered (gpointer user_data)
{
  Flood *f = user_data;
  guint64 page;

  for (page = 0; page < 2 * BIGFILE_HANDLE_MAX_PENDING_RUNS; page += 2)
    bigfile_handle_invalidate_page (f->handle, page);
  flood_note (f);
  g_assert_false (f->many);
  g_assert_cmpuint (f->n_runs, ==, BIGFILE_HANDLE_MAX_PENDING_RUNS);

  bigfile_handle_invalidate_page (f->handle, page);
  for (page = 0; page < N_FLOOD; page++)
    {
      bigfile_handle_invalidate_page (f->handle, FAR_PAGE + 3 * page);
      if (page % 1000 == 0)
        flood_note (f);
    }
  flood_note (f);
  return NULL;
}

static void
test_invalidated_collapsed (void)
{
  g_autoptr (BigfileHandle) handle = bare_handle_new ();
  Flood f = { handle };
  Emitted e;

  g_test_summary ("More separate runs of invalidated pages pending than the set keeps collapse "
                  "into a single page-invalidated for G_MAXUINT64, any page; the memory is "
                  "given back and later calls add nothing");
  emitted_init (&e, handle);

  flood_in_thread (flood_scattered, &f, &e);
  g_assert_cmpuint (f.max_runs, ==, BIGFILE_HANDLE_MAX_PENDING_RUNS);
  g_assert_true (f.many);
  g_assert_cmpuint (f.n_runs, ==, 0);

  iterate_pending ();
  g_assert_false (e.on_other_thread);
  g_assert_cmpuint (e.pages->len, ==, 1);
  g_assert_cmpuint (emitted_page (&e, 0), ==, G_MAXUINT64);
  g_assert_cmpuint (_bigfile_handle_get_n_pending_runs (handle, &f.many), ==, 0);
  g_assert_false (f.many);

  /* Then single pages again. */
  g_thread_join (g_thread_new ("invalidator", invalidate_page_5, handle));
  iterate_pending ();
  g_assert_cmpuint (e.pages->len, ==, 2);
  g_assert_cmpuint (emitted_page (&e, 1), ==, 5);

  g_array_unref (e.pages);
}

static void
note_finalized (gpointer user_data, GObject *where_the_object_was)
{
  Flood *f = user_data;

  f->finalized = TRUE;
  f->finalized_on = g_thread_self ();
}

/* Pending invalidations, collapsed and not, then the handle's last unref. */
static gpointer
flood_then_unref (gpointer user_data)
{
  Flood *f = user_data;

  flood_scattered (f);
  g_object_unref (f->handle);
  return NULL;
}

static void
test_invalidated_last_unref (void)
{
  Flood f = { bare_handle_new () };
  Emitted e;
  GThread *worker;

  g_test_summary ("Pending page-invalidated emissions do not keep a handle alive: its last unref "
                  "on another thread finalizes it there, without the owner context running, "
                  "and nothing is emitted afterwards");
  emitted_init (&e, f.handle);
  g_object_weak_ref (G_OBJECT (f.handle), note_finalized, &f);

  worker = g_thread_new ("invalidator", flood_then_unref, &f);
  g_thread_join (worker);
  g_assert_true (f.finalized);
  g_assert_true (f.finalized_on == worker);

  iterate_pending ();
  g_assert_cmpuint (e.pages->len, ==, 0);
  g_array_unref (e.pages);
}

static gpointer
invalidate_page_4 (gpointer user_data)
{
  bigfile_handle_invalidate_page (user_data, 4);
  return NULL;
}

static void
test_invalidated_not_in_memory (void)
{
  g_autoptr (BigfileHandle) closed = bare_handle_new ();
  Mapping m;
  Emitted e, e_closed;

  g_test_summary ("page-invalidated is emitted for every invalidation of an open handle, also "
                  "of a page that is not in memory or past the file, and never once closed");
  setup (&m, 8, 8 * PS, TRUE);
  emitted_init (&e, m.handle);

  /* Never loaded: still EMPTY and not loaded, but signalled, at once. */
  bigfile_handle_invalidate_page (m.handle, 3);
  g_assert_cmpuint (e.pages->len, ==, 1);
  g_assert_cmpuint (emitted_page (&e, 0), ==, 3);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);

  /* Past the mapping and the file. */
  bigfile_handle_invalidate_page (m.handle, 1000);
  g_assert_cmpuint (e.pages->len, ==, 2);
  g_assert_cmpuint (emitted_page (&e, 1), ==, 1000);

  /* In memory: dropped, and signalled alike. */
  g_assert_cmpuint (raw_read (m.data + 2 * PS), ==, test_mem_file_pattern (2, 0));
  bigfile_handle_invalidate_page (m.handle, 2);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (e.pages->len, ==, 3);
  g_assert_cmpuint (emitted_page (&e, 2), ==, 2);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 1);

  /* Not in memory, from another thread: signalled on the owner context. */
  g_thread_join (g_thread_new ("invalidator", invalidate_page_4, m.handle));
  g_assert_cmpuint (e.pages->len, ==, 3);
  iterate_pending ();
  g_assert_cmpuint (e.pages->len, ==, 4);
  g_assert_cmpuint (emitted_page (&e, 3), ==, 4);
  g_assert_false (e.on_other_thread);
  g_assert_cmpint (page_state (&m, 4), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 1);

  /* A closed handle does nothing, and says nothing. */
  emitted_init (&e_closed, closed);
  g_assert_true (bigfile_handle_close (closed));
  bigfile_handle_invalidate_page (closed, 3);
  g_thread_join (g_thread_new ("invalidator", invalidate_page_4, closed));
  iterate_pending ();
  g_assert_cmpuint (e_closed.pages->len, ==, 0);

  g_array_unref (e_closed.pages);
  g_array_unref (e.pages);
  mapping_teardown (&m);
}

static void
on_reclaimed (BigfileRam *ram, guint n_pages, gpointer user_data)
{
  Seen *s = user_data;
  s->count++;
  s->last += n_pages;
  s->thread = g_thread_self ();
}

/* Reclaims by the budget, in faults, are reported from an idle; an explicit
 * reclaim on the owner thread reports before it returns. */
static void
test_reclaimed (void)
{
  Mapping m;
  Seen s = { 0 };

  setup (&m, 16, 4 * PS, TRUE);
  g_signal_connect (m.ram, "reclaimed", G_CALLBACK (on_reclaimed), &s);

  for (guint64 p = 0; p < 10; p++)
    g_assert_cmpuint (raw_read (m.data + p * PS), ==, test_mem_file_pattern (p, 0));
  g_assert_cmpuint (s.count, ==, 0);
  iterate_pending ();
  g_assert_cmpuint (s.last, ==, 6); /* 10 pages through a budget of 4 */
  g_assert_true (s.thread == g_thread_self ());

  s.last = 0;
  g_assert_cmpuint (bigfile_ram_reclaim (m.ram), ==, 4);
  g_assert_cmpuint (s.last, ==, 4);
  iterate_pending ();
  g_assert_cmpuint (s.last, ==, 4); /* not twice */
  mapping_teardown (&m);
}

/* GMemoryMonitor's low-memory warning reclaims clean pages, unless turned off. */
static void
test_low_memory (void)
{
  Mapping m;
  g_autoptr (GMemoryMonitor) monitor = g_memory_monitor_dup_default ();
  Seen s = { 0 };

  setup (&m, 8, 8 * PS, TRUE);
  g_assert_true (bigfile_ram_get_reclaim_on_low_memory (m.ram));
  g_signal_connect (m.ram, "reclaimed", G_CALLBACK (on_reclaimed), &s);
  for (guint64 p = 0; p < 4; p++)
    (void)raw_read (m.data + p * PS);
  raw_write (m.data + 5 * PS, 1);

  bigfile_ram_set_reclaim_on_low_memory (m.ram, FALSE);
  g_signal_emit_by_name (monitor, "low-memory-warning", G_MEMORY_MONITOR_WARNING_LEVEL_LOW);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 5);

  bigfile_ram_set_reclaim_on_low_memory (m.ram, TRUE);
  g_signal_emit_by_name (monitor, "low-memory-warning", G_MEMORY_MONITOR_WARNING_LEVEL_LOW);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 1); /* the dirty one stays */
  g_assert_cmpint (page_state (&m, 5), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (s.last, ==, 4);

  bigfile_handle_discard (m.handle);
  mapping_teardown (&m);
}

/* -- threads -------------------------------------------------------------------- */

typedef struct
{
  Mapping *m;
  GError *error;
  GThread *load_thread;
} ForeignRead;

static gpointer
read_in_thread (gpointer user_data)
{
  ForeignRead *f = user_data;
  GBytes *bytes = bigfile_vma_read (f->m->vma, 6 * PS, 16, &f->error);

  g_assert_null (bytes);
  return NULL;
}

static void
record_load_thread (TestMemFile *file, guint64 block, gpointer user_data)
{
  ((ForeignRead *)user_data)->load_thread = g_thread_self ();
}

/* A file that is not thread-safe is never called from another thread: the
 * access fails there with WRONG_THREAD, and works on the owner thread. */
static void
test_wrong_thread (void)
{
  Mapping m;
  ForeignRead f = { &m, NULL, NULL };
  g_autoptr (GBytes) bytes = NULL;

  setup (&m, 8, 8 * PS, FALSE);
  test_mem_file_set_load_hook (m.file, record_load_thread, &f);
  g_thread_join (g_thread_new ("reader", read_in_thread, &f));
  g_assert_error (f.error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_WRONG_THREAD);
  g_assert_null (f.load_thread);
  g_clear_error (&f.error);

  bytes = bigfile_vma_read (m.vma, 6 * PS, 16, &f.error);
  g_assert_no_error (f.error);
  g_assert_true (f.load_thread == g_thread_self ());
  g_assert_cmpuint (((const guint8 *)g_bytes_get_data (bytes, NULL))[0], ==,
                    test_mem_file_pattern (6, 0));
  mapping_teardown (&m);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/async/writeout/thread", test_writeout_thread);
  g_test_add_func ("/async/writeout/slices", test_writeout_slices);
  g_test_add_func ("/async/writeout/cancel-thread", test_cancel_thread);
  g_test_add_func ("/async/writeout/cancel-slices", test_cancel_slices);
  g_test_add_func ("/async/writeout/store-error", test_store_error);
  g_test_add_func ("/async/writeout/busy", test_busy);
  g_test_add_func ("/async/writeout/write-during", test_write_during);
  g_test_add_func ("/async/signals/notify-dirty", test_notify_dirty);
  g_test_add_func ("/async/signals/page-invalidated", test_page_invalidated);
  g_test_add_func ("/async/signals/reclaimed", test_reclaimed);
  g_test_add_func ("/async/signals/not-in-fault", test_not_in_fault);
  g_test_add_func ("/async/signals/invalidated/coalesced", test_invalidated_coalesced);
  g_test_add_func ("/async/signals/invalidated/collapsed", test_invalidated_collapsed);
  g_test_add_func ("/async/signals/invalidated/last-unref", test_invalidated_last_unref);
  g_test_add_func ("/async/signals/invalidated/not-in-memory", test_invalidated_not_in_memory);
  g_test_add_func ("/async/low-memory", test_low_memory);
  g_test_add_func ("/async/wrong-thread", test_wrong_thread);

  return g_test_run ();
}
