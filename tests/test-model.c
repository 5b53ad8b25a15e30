/* bigfile-glib tests - random operations checked against a model
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One handle over a TestMemFile of N_BLOCKS small blocks, with a RAM budget
 * of a few pages so that reclaim runs all the time, takes a few thousand
 * random operations: mapping and unmapping ranges, reads and writes through
 * raw memory and through the API, writeouts (whole, or store first and mark
 * later), discards, invalidations (some after the file changed underneath),
 * reclaims and budget changes.  Beside it runs a model that is plain memory:
 *
 *   storage   what the file holds
 *   memory    what the handle shows: storage plus the unsaved changes
 *   dirty     the blocks with unsaved changes
 *
 * After every step the page states, dirty counts and RAM accounting are
 * checked against the model, every mapping is checked to map only pages in
 * memory and writable only dirty ones, and samples of every mapped page are
 * compared with the model's memory.  Every CHECK_EVERY steps, whole mapped
 * pages, the whole memory (read through a fresh mapping) and the whole
 * storage are.
 *
 * The run is reproducible from its seed, which the log shows:
 *   BIGFILE_TEST_MODEL_SEED=<seed>    replay one seed (else from --seed)
 *   BIGFILE_TEST_MODEL_STEPS=<n>      steps per run (default DEFAULT_STEPS)
 *
 * The model keeps at most budget - 2 pages dirty: raw memory accesses never
 * meet a full budget (which would end in SIGBUS), and an instruction that
 * touches two pages always finds room for both.  A full budget is tested
 * only through bigfile_vma_write(), which reports it as an error.
 */
#include "config.h"

#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"

#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#define N_BLOCKS 32
#define MAX_VMAS 4
#define DEFAULT_STEPS 3000
#define CHECK_EVERY 50
#define MAX_BUDGET_PAGES 12
#define MIN_BUDGET_PAGES 3

typedef enum
{
  OP_MAP,
  OP_UNMAP,
  OP_RAW_READ,
  OP_RAW_WRITE,
  OP_API_READ,
  OP_API_WRITE,
  OP_WRITEOUT,
  OP_STORE,
  OP_MARK_STORED,
  OP_DISCARD,
  OP_INVALIDATE,
  OP_CHANGE_AND_INVALIDATE,
  OP_RECLAIM,
  OP_SET_BUDGET,
  OP_FILL,
  OP_PIN,
  OP_UNPIN,
  OP_FORK,
  N_OPS
} Op;

typedef struct
{
  guint64 first;
  guint64 n;
  BigfileVma *vma;
} ModelVma;

typedef struct
{
  /* The run */
  gsize ps;
  guint32 seed;
  guint step;
  GRand *rand;
  TestOpLog log; /* the last operations, for failure reports */

  /* The system under test: file, RAM and handle (not mapped: n_pages 0),
   * and the mappings the run made */
  Mapping sut;
  ModelVma vmas[MAX_VMAS];
  guint n_vmas;

  /* The model */
  guint8 *storage;
  guint8 *memory;
  gboolean dirty[N_BLOCKS];
  gboolean stored[N_BLOCKS]; /* dirty, and stored (STORE alone) since last written */
  guint n_dirty;
  /* At most one pin, of one page, through vmas[pin_vma] (-1: none).  A
   * writable pin keeps its page dirty through writeouts; one may be
   * released in the middle of its page's store (pin_release_in_store),
   * with a last write by its holder. */
  gint pin_vma;
  guint64 pin_page;
  gboolean pin_writable;
  gboolean pin_release_in_store;
  gboolean pin_orphaned; /* dropped (discard, invalidate) while pinned: the
                          * pin keeps its old page out of the table */
  guint64 budget;        /* bytes */

  /* What the run did, for its log */
  guint n_ops[N_OPS];
  guint n_loads, n_stores; /* of the file, summed over counter resets */
  guint n_full;            /* writes stopped by a full budget */
} Model;

/* -- failure reports ------------------------------------------------------------ */

static void model_fail (Model *m, const char *file, int line, const char *func, const char *expr,
                        const char *format, ...) G_GNUC_PRINTF (6, 7);

static void
model_fail (Model *m, const char *file, int line, const char *func, const char *expr,
            const char *format, ...)
{
  va_list args;
  char *detail, *message;

  va_start (args, format);
  detail = g_strdup_vprintf (format, args);
  va_end (args);

  test_op_log_dump (&m->log);
  message = g_strdup_printf ("model check failed (%s): %s [page size %" G_GSIZE_FORMAT
                             ", seed %u, step %u; replay with BIGFILE_TEST_MODEL_SEED=%u]",
                             expr, detail, m->ps, m->seed, m->step, m->seed);
  g_assertion_message (G_LOG_DOMAIN, file, line, func, message);
  g_free (message);
  g_free (detail);
  g_abort ();
}

#define model_assert(m, expr, ...)                                                                 \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (G_LIKELY (expr))                                                                           \
      ;                                                                                            \
    else                                                                                           \
      model_fail ((m), __FILE__, __LINE__, G_STRFUNC, #expr, __VA_ARGS__);                         \
  }                                                                                                \
  G_STMT_END

#define model_assert_no_error(m, error, what)                                                      \
  model_assert ((m), (error) == NULL, "%s failed: %s", (what),                                     \
                (error) != NULL ? (error)->message : "")

static void model_log (Model *m, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
model_log (Model *m, const char *format, ...)
{
  va_list args;
  char *op;

  va_start (args, format);
  op = g_strdup_vprintf (format, args);
  va_end (args);
  test_op_log_add (&m->log, "step %u: %s", m->step, op);
  g_free (op);
}

/* Reports where two buffers first differ. */
static void
model_assert_same (Model *m, const guint8 *got, const guint8 *want, gsize len, gsize base,
                   const char *what)
{
  if (memcmp (got, want, len) == 0)
    return;
  for (gsize i = 0; i < len; i++)
    model_assert (m, got[i] == want[i],
                  "%s: byte %" G_GSIZE_FORMAT " (page %" G_GSIZE_FORMAT ") is 0x%02x, want 0x%02x",
                  what, base + i, (base + i) / m->ps, got[i], want[i]);
}

/* -- random numbers ----------------------------------------------------------------- */

/* In [begin, end). */
static guint64
rand_range (Model *m, guint64 begin, guint64 end)
{
  g_assert (begin < end && end - begin <= G_MAXINT32);
  return begin + (guint64)g_rand_int_range (m->rand, 0, (gint32)(end - begin));
}

static gboolean
rand_chance (Model *m, guint percent)
{
  return rand_range (m, 0, 100) < percent;
}

static void
rand_fill (Model *m, guint8 *buf, gsize len)
{
  /* Ascending bytes from a random start, now and then a random one: cheap,
   * and no two writes look alike. */
  guint8 value = (guint8)g_rand_int (m->rand);
  for (gsize i = 0; i < len; i++)
    buf[i] = (i % 61 == 0 && rand_chance (m, 50)) ? (guint8)g_rand_int (m->rand) : value++;
}

/* A random byte range [*offset, *offset + *len) inside @vma, of one of a few
 * shapes: small, across a page boundary, or several pages long. */
static void
rand_range_in (Model *m, ModelVma *mv, gsize *offset, gsize *len)
{
  gsize vlen = mv->n * m->ps;
  gsize max_len;

  switch (rand_range (m, 0, 4))
    {
      case 0: /* small, anywhere */
        *offset = rand_range (m, 0, vlen);
        max_len = 64;
        break;
      case 1: /* around a page boundary */
        *offset = rand_range (m, 0, mv->n) * m->ps;
        *offset = *offset >= 16 ? *offset - rand_range (m, 1, 17) : *offset;
        max_len = 64;
        break;
      case 2: /* whole pages */
        *offset = rand_range (m, 0, mv->n) * m->ps;
        max_len = rand_range (m, 1, 3) * m->ps;
        break;
      default: /* up to three pages, anywhere */
        *offset = rand_range (m, 0, vlen);
        max_len = 3 * m->ps;
        break;
    }
  max_len = MIN (max_len, vlen - *offset);
  *len = rand_range (m, 1, max_len + 1);
}

/* -- the model's bookkeeping ------------------------------------------------------------ */

static guint64
budget_pages (Model *m)
{
  return m->budget / m->ps;
}

static guint64
max_dirty (Model *m)
{
  /* A pinned page takes a page of the budget that reclaim cannot free. */
  return budget_pages (m) - 2 - (m->pin_vma >= 0);
}

static guint64
model_pinned_block (Model *m)
{
  return m->pin_vma >= 0 ? m->vmas[m->pin_vma].first + m->pin_page : G_MAXUINT64;
}

/* Pages in RAM that the handle does not show: a pinned page dropped from
 * the table. */
static guint
model_orphans (Model *m)
{
  return m->pin_vma >= 0 && m->pin_orphaned;
}

/* Pages in RAM that are neither dirty nor reclaimable: a pinned page that
 * is clean, or an orphan. */
static guint
model_pinned_clean (Model *m)
{
  return m->pin_vma >= 0 && (m->pin_orphaned || !m->dirty[model_pinned_block (m)]);
}

static void
model_set_dirty (Model *m, guint64 block)
{
  if (!m->dirty[block])
    {
      m->dirty[block] = TRUE;
      m->n_dirty++;
    }
  m->stored[block] = FALSE;
}

static void
model_set_clean (Model *m, guint64 block)
{
  if (m->dirty[block])
    {
      m->dirty[block] = FALSE;
      m->n_dirty--;
    }
  m->stored[block] = FALSE;
}

/* A write of [offset, offset + len) of the handle: memory changes, pages dirty. */
static void
model_write (Model *m, gsize offset, const guint8 *data, gsize len)
{
  memcpy (m->memory + offset, data, len);
  for (guint64 b = offset / m->ps; b <= (offset + len - 1) / m->ps; b++)
    model_set_dirty (m, b);
}

/* Unsaved changes of @block are lost: it shows the file again. */
static void
model_drop (Model *m, guint64 block)
{
  /* Dropped from the table (discard, invalidate): a pin of it keeps an
   * orphan. */
  if (block == model_pinned_block (m))
    m->pin_orphaned = TRUE;
  memcpy (m->memory + block * m->ps, m->storage + block * m->ps, m->ps);
  model_set_clean (m, block);
}

/* How many pages of [offset, offset + len) a write would newly dirty. */
static guint
new_dirty_pages (Model *m, gsize offset, gsize len)
{
  guint n = 0;

  for (guint64 b = offset / m->ps; b <= (offset + len - 1) / m->ps; b++)
    n += !m->dirty[b];
  return n;
}

/* -- checks ----------------------------------------------------------------------------- */

static const char *
state_name (BigfilePageState state)
{
  switch (state)
    {
      case BIGFILE_PAGE_STATE_EMPTY:
        return "EMPTY";
      case BIGFILE_PAGE_STATE_LOADING:
        return "LOADING";
      case BIGFILE_PAGE_STATE_LOADED:
        return "LOADED";
      case BIGFILE_PAGE_STATE_DIRTY:
        return "DIRTY";
      default:
        return "?";
    }
}

/* After every step: states, counts, accounting, and what mapped pages show
 * (all of each page if @full, else samples). */
static void
model_check_state (Model *m, gboolean full)
{
  BigfilePageState states[N_BLOCKS];
  BfRamStats stats;
  guint n_present = 0;
  g_autofree char *broken = _bigfile_handle_check (m->sut.handle, TRUE);

  model_assert (m, broken == NULL, "engine invariants: %s", broken);

  for (guint64 b = 0; b < N_BLOCKS; b++)
    {
      states[b] = bigfile_handle_get_page_state (m->sut.handle, b);
      if (m->dirty[b])
        model_assert (m, states[b] == BIGFILE_PAGE_STATE_DIRTY,
                      "page %" G_GUINT64_FORMAT " has unsaved changes but is %s", b,
                      state_name (states[b]));
      else
        model_assert (
            m, states[b] == BIGFILE_PAGE_STATE_EMPTY || states[b] == BIGFILE_PAGE_STATE_LOADED,
            "page %" G_GUINT64_FORMAT " is clean but is %s", b, state_name (states[b]));
      n_present += states[b] != BIGFILE_PAGE_STATE_EMPTY;
    }

  model_assert (m, bigfile_handle_get_n_dirty_pages (m->sut.handle) == m->n_dirty,
                "handle counts %" G_GUINT64_FORMAT " dirty pages, want %u",
                bigfile_handle_get_n_dirty_pages (m->sut.handle), m->n_dirty);

  bf_ram_get_stats (_bigfile_ram_get_engine (m->sut.ram), &stats);
  model_assert (m, stats.n_dirty == m->n_dirty,
                "RAM counts %" G_GUINT64_FORMAT " dirty pages, want %u", stats.n_dirty, m->n_dirty);
  model_assert (m, stats.n_pages == n_present + model_orphans (m),
                "RAM counts %" G_GUINT64_FORMAT " pages, the handle shows %u (and %u orphans)",
                stats.n_pages, n_present, model_orphans (m));
  model_assert (m, stats.used_bytes == (n_present + model_orphans (m)) * m->ps,
                "RAM uses %" G_GUINT64_FORMAT " bytes for %u pages", stats.used_bytes, n_present);
  model_assert (m, stats.budget == m->budget, "budget is %" G_GUINT64_FORMAT, stats.budget);
  model_assert (m, stats.used_bytes <= m->budget,
                "%" G_GUINT64_FORMAT " bytes used, over the budget of %" G_GUINT64_FORMAT,
                stats.used_bytes, m->budget);
  model_assert (m, stats.resident_bytes <= m->budget,
                "%" G_GUINT64_FORMAT " bytes resident, over the budget of %" G_GUINT64_FORMAT,
                stats.resident_bytes, m->budget);
  model_assert (m, bigfile_ram_get_used_bytes (m->sut.ram) == stats.used_bytes,
                "bigfile_ram_get_used_bytes() disagrees with the engine");

  /* A page mapped writable must be dirty, or a write to it would go
   * unnoticed; a mapped page must show the model's memory. */
  for (guint v = 0; v < m->n_vmas; v++)
    {
      ModelVma *mv = &m->vmas[v];
      const guint8 *data = bigfile_vma_get_data (mv->vma);

      for (guint64 i = 0; i < mv->n; i++)
        {
          guint64 b = mv->first + i;
          gboolean writable;

          if (!_bigfile_vma_page_is_mapped (mv->vma, b, &writable))
            continue;
          model_assert (m, states[b] != BIGFILE_PAGE_STATE_EMPTY,
                        "page %" G_GUINT64_FORMAT " is mapped in VMA %u but not in memory", b, v);
          model_assert (m, !writable || states[b] == BIGFILE_PAGE_STATE_DIRTY,
                        "page %" G_GUINT64_FORMAT " is mapped writable in VMA %u but is %s", b, v,
                        state_name (states[b]));
          /* Reading a mapped page does not fault: this changes nothing.
           * Samples here; the whole page every CHECK_EVERY steps. */
          if (full)
            model_assert_same (m, data + i * m->ps, m->memory + b * m->ps, m->ps, b * m->ps,
                               "mapped page");
          else
            for (guint k = 0; k < 3; k++)
              {
                gsize at = k == 0   ? 0
                           : k == 1 ? (m->step * 977 + b * 61) % (m->ps - 64)
                                    : m->ps - 64;
                model_assert_same (m, data + i * m->ps + at, m->memory + b * m->ps + at, 64,
                                   b * m->ps + at, "mapped page");
              }
        }
    }
}

/* Every CHECK_EVERY steps: all of memory, through a fresh mapping, and all of
 * storage. */
static void
model_check_contents (Model *m)
{
  GError *error = NULL;
  BigfileVma *vma;
  guint8 *buf = g_malloc (N_BLOCKS * m->ps);

  vma = bigfile_handle_map (m->sut.handle, 0, N_BLOCKS, &error);
  model_assert_no_error (m, error, "mapping everything");
  bigfile_vma_read_into (vma, 0, buf, N_BLOCKS * m->ps, &error);
  model_assert_no_error (m, error, "reading everything");
  model_assert_same (m, buf, m->memory, N_BLOCKS * m->ps, 0, "memory");
  bigfile_vma_unmap (vma);
  g_object_unref (vma);

  for (guint64 b = 0; b < N_BLOCKS; b++)
    model_assert_same (m, test_mem_file_peek (m->sut.file, b), m->storage + b * m->ps, m->ps,
                       b * m->ps, "storage");
  g_free (buf);
}

static void
model_check_store_log (Model *m, const gboolean *expected)
{
  GArray *log = test_mem_file_get_store_log (m->sut.file);
  guint i = 0;

  for (guint64 b = 0; b < N_BLOCKS; b++)
    {
      if (!expected[b])
        continue;
      model_assert (m, i < log->len, "block %" G_GUINT64_FORMAT " was not stored", b);
      model_assert (m, g_array_index (log, guint64, i) == b,
                    "stored block %" G_GUINT64_FORMAT " where block %" G_GUINT64_FORMAT " was due",
                    g_array_index (log, guint64, i), b);
      i++;
    }
  model_assert (m, i == log->len, "%u blocks stored, want %u", log->len, i);
}

/* -- operations --------------------------------------------------------------------------- */

/* Before a writeout, whose store log is then checked. */
static void
model_reset_file_counters (Model *m)
{
  m->n_loads += test_mem_file_get_total_loads (m->sut.file);
  m->n_stores += test_mem_file_get_total_stores (m->sut.file);
  test_mem_file_reset_counters (m->sut.file);
}

static ModelVma *
pick_vma (Model *m)
{
  return &m->vmas[rand_range (m, 0, m->n_vmas)];
}

/* Logs an access (@what: "raw read", "API write"...) of @len bytes at
 * @offset of @mv. */
static void
log_access (Model *m, const char *what, ModelVma *mv, gsize offset, gsize len)
{
  model_log (m,
             "%s %" G_GSIZE_FORMAT " bytes at %" G_GSIZE_FORMAT " of pages %" G_GUINT64_FORMAT
             "+%" G_GUINT64_FORMAT,
             what, len, offset, mv->first, mv->n);
}

static void
op_map (Model *m)
{
  GError *error = NULL;
  ModelVma *mv = &m->vmas[m->n_vmas];

  mv->first = rand_range (m, 0, N_BLOCKS);
  mv->n = rand_chance (m, 25) ? rand_range (m, 1, N_BLOCKS - mv->first + 1)
                              : rand_range (m, 1, MIN (N_BLOCKS - mv->first, 6) + 1);
  model_log (m, "map pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT, mv->first, mv->n);
  mv->vma = bigfile_handle_map (m->sut.handle, mv->first, mv->n, &error);
  model_assert_no_error (m, error, "map");
  m->n_vmas++;
}

static void
op_unmap (Model *m)
{
  guint v = rand_range (m, 0, m->n_vmas);
  ModelVma *mv = &m->vmas[v];

  model_log (m, "unmap VMA %u (pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT ")", v, mv->first,
             mv->n);
  /* Either way: unmap first, or let the last reference do it. */
  if (rand_chance (m, 50))
    bigfile_vma_unmap (mv->vma);
  g_object_unref (mv->vma);
  /* Unmapping drops the mapping's pins. */
  if (m->pin_vma == (gint)v)
    m->pin_vma = -1;
  else if (m->pin_vma == (gint)m->n_vmas - 1)
    m->pin_vma = (gint)v;
  m->vmas[v] = m->vmas[--m->n_vmas];
}

/* Pin one page through a mapping, read-only or writable (which dirties it,
 * as a write would). */
static void
op_pin (Model *m)
{
  GError *error = NULL;
  guint v = rand_range (m, 0, m->n_vmas);
  ModelVma *mv = &m->vmas[v];
  guint64 i = rand_range (m, 0, mv->n);
  guint64 b = mv->first + i;
  gboolean writable = rand_chance (m, 50);

  /* Room for the pinned page beside max_dirty() pages and the two spare. */
  if (m->pin_vma >= 0 || budget_pages (m) < 5
      || (writable && !m->dirty[b] && m->n_dirty + 1 > max_dirty (m) - 1))
    return;
  model_log (m, "pin page %" G_GUINT64_FORMAT " %s through VMA %u", b,
             writable ? "writable" : "read-only", v);
  model_assert (m, bigfile_vma_pin (mv->vma, i * m->ps, m->ps, writable, &error),
                "pin page %" G_GUINT64_FORMAT ": %s", b, error != NULL ? error->message : "");
  if (writable)
    model_set_dirty (m, b);
  m->pin_vma = (gint)v;
  m->pin_page = i;
  m->pin_writable = writable;
  m->pin_orphaned = FALSE;
}

static void
model_unpin (Model *m)
{
  ModelVma *mv = &m->vmas[m->pin_vma];

  bigfile_vma_unpin (mv->vma, m->pin_page * m->ps, m->ps);
  m->pin_vma = -1;
}

static void
op_unpin (Model *m)
{
  if (m->pin_vma < 0)
    return;
  model_log (m, "unpin page %" G_GUINT64_FORMAT, m->vmas[m->pin_vma].first + m->pin_page);
  model_unpin (m);
}

/* In a forked child, a touch of the parent's mapping ends in SIGBUS: the
 * child says so by its exit status. */
#define FORK_CHILD_SIGBUS 42

static void
fork_child_on_sigbus (int sig)
{
  GError *error = bigfile_vma_take_fault_error ();

  _exit (g_error_matches (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_FORKED)
             ? FORK_CHILD_SIGBUS
             : 1);
}

/* fork(): the child tries to use the parent's objects (API copies,
 * writeout, discard, reclaim, then raw memory) and must get errors for all
 * of it; the checks after this step make sure the parent's memory, states,
 * counts and file did not change. */
static void
op_fork (Model *m)
{
  ModelVma *mv = pick_vma (m);
  guint64 i = rand_range (m, 0, mv->n);
  guint8 *data = bigfile_vma_get_data (mv->vma);
  pid_t pid;
  int status = 0;

  /* Valgrind goes on in the child, and at its _exit() counts what the
   * parent's threads held as leaked: a failure of its own. */
  if (RUNNING_ON_VALGRIND)
    {
      model_log (m, "fork: not under valgrind");
      return;
    }
  model_log (m, "fork: the child uses page %" G_GUINT64_FORMAT, mv->first + i);
  pid = fork ();
  model_assert (m, pid >= 0, "fork failed");
  if (pid == 0)
    {
      GError *error = NULL;
      guint8 byte = 0x5a;
      GBytes *bytes = g_bytes_new_static (&byte, 1);

      if (bigfile_vma_read_into (mv->vma, i * m->ps, &byte, 1, &error)
          || bigfile_vma_write (mv->vma, i * m->ps, bytes, NULL)
          || !g_error_matches (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_FORKED))
        _exit (2);
      if (bigfile_handle_writeout (m->sut.handle, BIGFILE_WRITEOUT_DEFAULT, NULL))
        _exit (3);
      bigfile_handle_discard (m->sut.handle);
      bigfile_ram_reclaim (m->sut.ram);
      signal (SIGBUS, fork_child_on_sigbus);
      raw_write (data + i * m->ps, 0x5a);
      _exit (4);
    }
  model_assert (m, waitpid (pid, &status, 0) == pid, "waitpid failed");
  model_assert (m, WIFEXITED (status) && WEXITSTATUS (status) == FORK_CHILD_SIGBUS,
                "the forked child ended with status 0x%x", status);
}

/* The store hook of a writeout that releases a writable pin in the middle
 * of its page's store: the holder writes a last byte, as a pin allows, and
 * lets go.  The store copies the page after this, so it stores the byte;
 * the page must stay dirty all the same (a write during the store). */
static void
unpin_in_store_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  Model *m = user_data;
  ModelVma *mv;
  guint8 value;

  if (m->pin_vma < 0 || !m->pin_release_in_store)
    return;
  mv = &m->vmas[m->pin_vma];
  if (block != mv->first + m->pin_page)
    return;
  value = (guint8)g_rand_int (m->rand);
  raw_write (bigfile_vma_get_data (mv->vma) + m->pin_page * m->ps + 7, value);
  m->memory[block * m->ps + 7] = value;
  model_unpin (m);
  m->pin_release_in_store = FALSE;
}

/* Before a writeout: maybe release the writable pin during its store.
 * Returns the page that must stay dirty after it (a writable pin held
 * at the store's start), or G_MAXUINT64. */
static guint64
model_prepare_pinned_store (Model *m)
{
  guint64 b;

  /* An orphan's store is over: the page of its index now is not pinned. */
  if (m->pin_vma < 0 || !m->pin_writable || m->pin_orphaned)
    return G_MAXUINT64;
  b = m->vmas[m->pin_vma].first + m->pin_page;
  m->pin_release_in_store = rand_chance (m, 50);
  if (m->pin_release_in_store)
    model_log (m, "  (the writable pin of page %" G_GUINT64_FORMAT " goes during its store)", b);
  return b;
}

static void
op_raw_read (Model *m)
{
  ModelVma *mv = pick_vma (m);
  gsize offset, len;
  guint8 *buf;

  rand_range_in (m, mv, &offset, &len);
  log_access (m, "raw read", mv, offset, len);
  buf = g_malloc (len);
  memcpy (buf, bigfile_vma_get_data (mv->vma) + offset, len);
  model_assert_same (m, buf, m->memory + mv->first * m->ps + offset, len,
                     mv->first * m->ps + offset, "raw read");
  g_free (buf);
}

static void
op_api_read (Model *m)
{
  GError *error = NULL;
  ModelVma *mv = pick_vma (m);
  gsize offset, len;
  GBytes *bytes;

  rand_range_in (m, mv, &offset, &len);
  log_access (m, "API read", mv, offset, len);
  bytes = bigfile_vma_read (mv->vma, offset, len, &error);
  model_assert_no_error (m, error, "bigfile_vma_read");
  model_assert (m, g_bytes_get_size (bytes) == len, "read %" G_GSIZE_FORMAT " bytes",
                g_bytes_get_size (bytes));
  model_assert_same (m, g_bytes_get_data (bytes, NULL), m->memory + mv->first * m->ps + offset, len,
                     mv->first * m->ps + offset, "API read");
  g_bytes_unref (bytes);
}

static void op_writeout (Model *m);

/* Writes: a range that keeps the dirty pages within max_dirty().  If it
 * would go over, a writeout makes room first, and the range is cut short
 * at the first page still over. */
static void
pick_write_range (Model *m, ModelVma *mv, gsize *offset, gsize *len)
{
  gsize base;
  guint n_new = 0;

  rand_range_in (m, mv, offset, len);
  base = mv->first * m->ps + *offset;
  if (m->n_dirty + new_dirty_pages (m, base, *len) <= max_dirty (m))
    return;

  op_writeout (m);
  for (guint64 b = base / m->ps; b <= (base + *len - 1) / m->ps; b++)
    {
      n_new += !m->dirty[b];
      if (m->n_dirty + n_new > max_dirty (m))
        {
          /* max_dirty() >= 1, so the first page always fits. */
          *len = b * m->ps - base;
          break;
        }
    }
  g_assert (*len > 0);
}

static void
op_raw_write (Model *m)
{
  ModelVma *mv = pick_vma (m);
  gsize offset, len;
  guint8 *buf;

  pick_write_range (m, mv, &offset, &len);
  log_access (m, "raw write", mv, offset, len);
  buf = g_malloc (len);
  rand_fill (m, buf, len);
  memcpy (bigfile_vma_get_data (mv->vma) + offset, buf, len);
  model_write (m, mv->first * m->ps + offset, buf, len);
  g_free (buf);
}

static void
op_api_write (Model *m)
{
  GError *error = NULL;
  ModelVma *mv = pick_vma (m);
  gsize offset, len;
  guint8 *buf;
  GBytes *bytes;

  pick_write_range (m, mv, &offset, &len);
  log_access (m, "API write", mv, offset, len);
  buf = g_malloc (len);
  rand_fill (m, buf, len);
  bytes = g_bytes_new_take (buf, len);
  bigfile_vma_write (mv->vma, offset, bytes, &error);
  model_assert_no_error (m, error, "bigfile_vma_write");
  model_write (m, mv->first * m->ps + offset, g_bytes_get_data (bytes, NULL), len);
  g_bytes_unref (bytes);
}

/* Writes through the API until the budget is full of dirty pages: the
 * write stops at the first page it cannot get, with RAM_ERROR_FULL, and the
 * pages before it were written (bigfile_vma_write() says so). */
static void
op_fill (Model *m)
{
  GError *error = NULL;
  ModelVma tmp, *mv;
  guint64 want = budget_pages (m) - m->n_dirty + 1; /* clean pages to write to overflow */
  gsize offset, len, base;
  guint8 *buf;
  GBytes *bytes;
  gboolean ok;

  /* Its own mapping of every page: more clean pages than any budget here. */
  tmp.first = 0;
  tmp.n = N_BLOCKS;
  tmp.vma = bigfile_handle_map (m->sut.handle, 0, N_BLOCKS, &error);
  model_assert_no_error (m, error, "map for fill");
  mv = &tmp;

  /* From a random place on, if enough clean pages follow it. */
  offset = rand_range (m, 0, N_BLOCKS) * m->ps;
  if (new_dirty_pages (m, offset, N_BLOCKS * m->ps - offset) < want)
    offset = 0;
  offset += rand_range (m, 0, m->ps);
  len = mv->n * m->ps - offset;
  base = mv->first * m->ps + offset;
  model_log (m,
             "fill: API write %" G_GSIZE_FORMAT " bytes at %" G_GSIZE_FORMAT
             " of pages %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
             " (%u dirty, budget %" G_GUINT64_FORMAT " pages)",
             len, offset, mv->first, mv->n, m->n_dirty, budget_pages (m));
  buf = g_malloc (len);
  rand_fill (m, buf, len);
  bytes = g_bytes_new_take (buf, len);
  ok = bigfile_vma_write (mv->vma, offset, bytes, &error);

  /* Every clean page it writes must be in memory and dirty at once: more of
   * them than the budget holds cannot all fit. */
  model_assert (m, !ok,
                "wrote %" G_GUINT64_FORMAT " clean pages with %u dirty, in a budget of "
                "%" G_GUINT64_FORMAT " pages",
                want, m->n_dirty, budget_pages (m));
  {
    guint64 b, first = base / m->ps, end = (base + len - 1) / m->ps + 1;
    BfRamStats stats;

    model_assert (m, g_error_matches (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL),
                  "fill failed with %s", error->message);
    m->n_full++;
    g_clear_error (&error);

    /* The page it stopped at is the first one not dirty; the ones before
     * it were written in full (the first one from @offset on). */
    for (b = first; b < end; b++)
      if (bigfile_handle_get_page_state (m->sut.handle, b) != BIGFILE_PAGE_STATE_DIRTY)
        break;
    model_assert (m, b < end, "a failed write left every page dirty");
    model_assert (m, bigfile_handle_get_page_state (m->sut.handle, b) == BIGFILE_PAGE_STATE_EMPTY,
                  "the write stopped at page %" G_GUINT64_FORMAT ", which is %s", b,
                  state_name (bigfile_handle_get_page_state (m->sut.handle, b)));
    if (b > first)
      model_write (m, base, buf, b * m->ps - base);

    bf_ram_get_stats (_bigfile_ram_get_engine (m->sut.ram), &stats);
    model_assert (m, stats.n_pages == stats.n_dirty + model_pinned_clean (m),
                  "the budget was full with %" G_GUINT64_FORMAT " pages, %" G_GUINT64_FORMAT
                  " of them dirty",
                  stats.n_pages, stats.n_dirty);
    model_assert (m, (stats.n_dirty + model_pinned_clean (m) + 1) * m->ps > m->budget,
                  "RAM full with room for another page (%" G_GUINT64_FORMAT " dirty)",
                  stats.n_dirty);
  }
  g_bytes_unref (bytes);
  bigfile_vma_unmap (tmp.vma);
  g_object_unref (tmp.vma);
}

static void
op_writeout (Model *m)
{
  GError *error = NULL;
  gboolean expected[N_BLOCKS];

  guint64 pinned;

  model_log (m, "writeout (%u dirty)", m->n_dirty);
  pinned = model_prepare_pinned_store (m);
  model_reset_file_counters (m);
  bigfile_handle_writeout (m->sut.handle, BIGFILE_WRITEOUT_DEFAULT, &error);
  m->pin_release_in_store = FALSE;
  model_assert_no_error (m, error, "writeout");

  memcpy (expected, m->dirty, sizeof expected);
  for (guint64 b = 0; b < N_BLOCKS; b++)
    if (m->dirty[b])
      {
        memcpy (m->storage + b * m->ps, m->memory + b * m->ps, m->ps);
        /* A page pinned writable as its store began may have changed. */
        if (b != pinned)
          model_set_clean (m, b);
        else
          m->stored[b] = FALSE;
      }
  model_check_store_log (m, expected);
}

/* The first half of a two-step save: store, the pages stay dirty. */
static void
op_store (Model *m)
{
  GError *error = NULL;

  guint64 pinned;

  model_log (m, "writeout STORE (%u dirty)", m->n_dirty);
  pinned = model_prepare_pinned_store (m);
  model_reset_file_counters (m);
  bigfile_handle_writeout (m->sut.handle, BIGFILE_WRITEOUT_STORE, &error);
  m->pin_release_in_store = FALSE;
  model_assert_no_error (m, error, "writeout STORE");

  model_check_store_log (m, m->dirty);
  for (guint64 b = 0; b < N_BLOCKS; b++)
    if (m->dirty[b])
      {
        memcpy (m->storage + b * m->ps, m->memory + b * m->ps, m->ps);
        /* Stored while pinned writable: not known to be what was stored. */
        m->stored[b] = b != pinned;
      }
}

/* The second half: mark stored.  Exactly the pages stored (by the last
 * STORE) and not written since become clean; a page written since its store,
 * or never stored, stays dirty with what was written (nothing is lost). */
static void
op_mark_stored (Model *m)
{
  GError *error = NULL;
  const gboolean none[N_BLOCKS] = { FALSE };
  guint n_intact = 0;

  for (guint64 b = 0; b < N_BLOCKS; b++)
    n_intact += m->dirty[b] && m->stored[b];
  model_log (m, "writeout MARK_STORED (%u dirty, %u of them stored and unchanged since)",
             m->n_dirty, n_intact);
  model_reset_file_counters (m);
  bigfile_handle_writeout (m->sut.handle, BIGFILE_WRITEOUT_MARK_STORED, &error);
  model_assert_no_error (m, error, "writeout MARK_STORED");
  model_check_store_log (m, none);
  for (guint64 b = 0; b < N_BLOCKS; b++)
    if (m->dirty[b] && m->stored[b])
      model_set_clean (m, b);
}

static void
op_discard (Model *m)
{
  guint n;

  model_log (m, "discard (%u dirty)", m->n_dirty);
  n = bigfile_handle_discard (m->sut.handle);
  model_assert (m, n == m->n_dirty, "discarded %u pages, want %u", n, m->n_dirty);
  for (guint64 b = 0; b < N_BLOCKS; b++)
    if (m->dirty[b])
      model_drop (m, b);
}

static void
op_invalidate (Model *m, gboolean change_storage)
{
  guint64 b = rand_range (m, 0, N_BLOCKS);

  model_log (m, "invalidate page %" G_GUINT64_FORMAT " (%s)%s", b, m->dirty[b] ? "dirty" : "clean",
             change_storage ? " after changing the file" : "");
  if (change_storage)
    {
      rand_fill (m, m->storage + b * m->ps, m->ps);
      test_mem_file_poke (m->sut.file, b, m->storage + b * m->ps);
    }
  bigfile_handle_invalidate_page (m->sut.handle, b);
  model_drop (m, b);
  model_assert (m, bigfile_handle_get_page_state (m->sut.handle, b) == BIGFILE_PAGE_STATE_EMPTY,
                "page %" G_GUINT64_FORMAT " is in memory after it was invalidated", b);
}

static void
op_reclaim (Model *m)
{
  BfRamStats stats;

  model_log (m, "reclaim");
  bigfile_ram_reclaim (m->sut.ram);

  /* Every clean page is reclaimable here but a pinned one: nothing is in
   * I/O. */
  bf_ram_get_stats (_bigfile_ram_get_engine (m->sut.ram), &stats);
  model_assert (m, stats.n_pages == m->n_dirty + model_pinned_clean (m),
                "%" G_GUINT64_FORMAT " pages in memory after reclaim, %u of them dirty",
                stats.n_pages, m->n_dirty);
  model_assert (m, stats.resident_bytes == stats.used_bytes,
                "%" G_GUINT64_FORMAT " bytes stay resident after reclaim, %" G_GUINT64_FORMAT
                " in use",
                stats.resident_bytes, stats.used_bytes);
}

static void
op_set_budget (Model *m)
{
  guint64 lo
      = MAX (MAX (m->n_dirty + 2 + (m->pin_vma >= 0), MIN_BUDGET_PAGES), m->pin_vma >= 0 ? 5 : 0);
  guint64 pages = rand_range (m, lo, MAX (lo, MAX_BUDGET_PAGES) + 1);

  /* Sometimes not a whole number of pages. */
  m->budget = pages * m->ps + (rand_chance (m, 25) ? rand_range (m, 1, m->ps) : 0);
  model_log (m, "set budget to %" G_GUINT64_FORMAT " bytes (%" G_GUINT64_FORMAT " pages, %u dirty)",
             m->budget, budget_pages (m), m->n_dirty);
  bigfile_ram_set_budget (m->sut.ram, m->budget);
}

static const guint op_weights[N_OPS] = {
  [OP_MAP] = 6,         [OP_UNMAP] = 4,      [OP_RAW_READ] = 20,  [OP_RAW_WRITE] = 18,
  [OP_API_READ] = 10,   [OP_API_WRITE] = 10, [OP_WRITEOUT] = 4,   [OP_STORE] = 3,
  [OP_MARK_STORED] = 3, [OP_DISCARD] = 3,    [OP_INVALIDATE] = 6, [OP_CHANGE_AND_INVALIDATE] = 3,
  [OP_RECLAIM] = 3,     [OP_SET_BUDGET] = 4, [OP_FILL] = 2,       [OP_PIN] = 3,
  [OP_UNPIN] = 2,       [OP_FORK] = 1,
};

static Op
pick_op (Model *m)
{
  guint total = 0, r;
  Op op;

  for (op = 0; op < N_OPS; op++)
    total += op_weights[op];
  r = rand_range (m, 0, total);
  for (op = 0; r >= op_weights[op]; op++)
    r -= op_weights[op];

  /* Accesses need a mapping; mapping needs a free place. */
  if (m->n_vmas == 0
      && (op == OP_UNMAP || op == OP_RAW_READ || op == OP_RAW_WRITE || op == OP_API_READ
          || op == OP_API_WRITE || op == OP_FILL || op == OP_PIN || op == OP_FORK))
    return OP_MAP;
  if (op == OP_MAP && m->n_vmas == MAX_VMAS)
    return OP_UNMAP;
  return op;
}

static void
model_step (Model *m)
{
  Op op = pick_op (m);

  m->n_ops[op]++;
  switch (op)
    {
      case OP_MAP:
        op_map (m);
        break;
      case OP_UNMAP:
        op_unmap (m);
        break;
      case OP_RAW_READ:
        op_raw_read (m);
        break;
      case OP_RAW_WRITE:
        op_raw_write (m);
        break;
      case OP_API_READ:
        op_api_read (m);
        break;
      case OP_API_WRITE:
        op_api_write (m);
        break;
      case OP_WRITEOUT:
        op_writeout (m);
        break;
      case OP_STORE:
        op_store (m);
        break;
      case OP_MARK_STORED:
        op_mark_stored (m);
        break;
      case OP_DISCARD:
        op_discard (m);
        break;
      case OP_INVALIDATE:
        op_invalidate (m, FALSE);
        break;
      case OP_CHANGE_AND_INVALIDATE:
        op_invalidate (m, TRUE);
        break;
      case OP_RECLAIM:
        op_reclaim (m);
        break;
      case OP_SET_BUDGET:
        op_set_budget (m);
        break;
      case OP_PIN:
        op_pin (m);
        break;
      case OP_UNPIN:
        op_unpin (m);
        break;
      case OP_FORK:
        op_fork (m);
        break;
      case OP_FILL:
        op_fill (m);
        /* Back under max_dirty(), where raw accesses are safe. */
        if (m->n_dirty > max_dirty (m))
          {
            if (rand_chance (m, 50))
              op_writeout (m);
            else
              op_discard (m);
          }
        break;
      case N_OPS:
      default:
        g_assert_not_reached ();
    }
}

/* -- the run -------------------------------------------------------------------------------- */

static guint
env_uint (const char *name, guint fallback)
{
  const char *value = g_getenv (name);
  guint64 n;

  if (value == NULL || *value == '\0')
    return fallback;
  if (!g_ascii_string_to_unsigned (value, 10, 0, G_MAXUINT32, &n, NULL))
    g_error ("%s=%s is not a number", name, value);
  return (guint)n;
}

static void
run_model (gsize requested_page_size)
{
  Model m = { 0 };
  guint n_steps = env_uint ("BIGFILE_TEST_MODEL_STEPS", DEFAULT_STEPS);

  m.ps = MAX (requested_page_size, (gsize)sysconf (_SC_PAGESIZE));
  m.seed = g_getenv ("BIGFILE_TEST_MODEL_SEED") != NULL ? env_uint ("BIGFILE_TEST_MODEL_SEED", 0)
                                                        : (guint32)g_test_rand_int ();
  g_test_message ("page size %" G_GSIZE_FORMAT ", %u steps, seed %u "
                  "(replay with BIGFILE_TEST_MODEL_SEED=%u)",
                  m.ps, n_steps, m.seed, m.seed);
  m.rand = g_rand_new_with_seed (m.seed);

  m.budget = 8 * m.ps;
  mapping_setup (&m.sut, m.ps, N_BLOCKS, 0, m.budget);
  m.pin_vma = -1;
  test_mem_file_set_store_hook (m.sut.file, unpin_in_store_hook, &m);

  m.storage = g_malloc (N_BLOCKS * m.ps);
  for (guint64 b = 0; b < N_BLOCKS; b++)
    for (gsize i = 0; i < m.ps; i++)
      m.storage[b * m.ps + i] = test_mem_file_pattern (b, i);
  m.memory = g_memdup2 (m.storage, N_BLOCKS * m.ps);

  for (m.step = 0; m.step < n_steps; m.step++)
    {
      gboolean full = m.step % CHECK_EVERY == CHECK_EVERY - 1;

      model_step (&m);
      model_check_state (&m, full);
      if (full)
        model_check_contents (&m);
    }

  {
    BfRamStats stats;

    bf_ram_get_stats (_bigfile_ram_get_engine (m.sut.ram), &stats);
    g_test_message ("%u loads, %u stores, %" G_GUINT64_FORMAT " pages reclaimed, %u writes "
                    "stopped by a full budget",
                    m.n_loads + test_mem_file_get_total_loads (m.sut.file),
                    m.n_stores + test_mem_file_get_total_stores (m.sut.file), stats.n_reclaimed,
                    m.n_full);
    g_test_message ("operations: map %u, unmap %u, raw read %u, raw write %u, API read %u, "
                    "API write %u, writeout %u, store %u, mark stored %u, discard %u, "
                    "invalidate %u, change+invalidate %u, reclaim %u, set budget %u, fill %u, "
                    "pin %u, unpin %u, fork %u",
                    m.n_ops[OP_MAP], m.n_ops[OP_UNMAP], m.n_ops[OP_RAW_READ], m.n_ops[OP_RAW_WRITE],
                    m.n_ops[OP_API_READ], m.n_ops[OP_API_WRITE], m.n_ops[OP_WRITEOUT],
                    m.n_ops[OP_STORE], m.n_ops[OP_MARK_STORED], m.n_ops[OP_DISCARD],
                    m.n_ops[OP_INVALIDATE], m.n_ops[OP_CHANGE_AND_INVALIDATE], m.n_ops[OP_RECLAIM],
                    m.n_ops[OP_SET_BUDGET], m.n_ops[OP_FILL], m.n_ops[OP_PIN], m.n_ops[OP_UNPIN],
                    m.n_ops[OP_FORK]);
  }

  /* Save everything, and check the file took it. */
  if (m.pin_vma >= 0)
    model_unpin (&m);
  op_writeout (&m);
  model_check_state (&m, TRUE);
  model_check_contents (&m);

  while (m.n_vmas > 0)
    op_unmap (&m);
  mapping_teardown (&m.sut);

  g_rand_free (m.rand);
  g_free (m.storage);
  g_free (m.memory);
  test_op_log_clear (&m.log);
}

static void
test_model_small_pages (void)
{
  g_test_summary ("Random operations on 4 KiB pages agree with a plain-memory model");
  run_model (4096);
}

static void
test_model_large_pages (void)
{
  g_test_summary ("Random operations on 64 KiB pages agree with a plain-memory model");
  run_model (64 * 1024);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/model/random/4k", test_model_small_pages);
  g_test_add_func ("/model/random/64k", test_model_large_pages);

  return g_test_run ();
}
