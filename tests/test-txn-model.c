/* bigfile-glib tests - random transactions, other clients' commits,
 * refreshes and failures agree with a model of snapshots and conflicts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One handle (client A) of a TestTxnStore, and other clients that commit
 * whole blocks.  The model knows, per block, what the handle's snapshot
 * holds (snap), what the program wrote if the page is dirty (mine), whether
 * it is a conflict, what an open STORE-only transaction stored, and what
 * the storage holds (committed).  After every step: the handle shows mine
 * or snap, its conflicts are the model's, the storage is the model's, and
 * the engine's walker finds every invariant true.  Each page is checked by
 * its first byte, which every write and commit sets.
 */
#include "config.h"

#include <string.h>

#include "test-txn-file.h"
#include "test-util.h"

#define PS 4096
#define N_BLOCKS 12
#define DEFAULT_STEPS 3000
/* Fewer than N_BLOCKS: reads reclaim. */
#define BUDGET_PAGES 6

typedef enum
{
  OP_WRITE,
  OP_READ,
  OP_OTHER_COMMIT,
  OP_REFRESH,
  OP_DRAIN,
  OP_WRITEOUT,
  OP_WRITEOUT_OVERWRITE,
  OP_STORE,
  OP_MARK_STORED,
  OP_ABORT,
  OP_DISCARD,
  OP_RECLAIM,
  OP_FAIL_STORE,
  OP_FAIL_COMMIT,
  OP_FAIL_BEGIN,
  OP_FAIL_REFRESH,
  OP_TOGGLE_AUTO,
  N_OPS
} Op;

static const guint op_weights[N_OPS] = {
  [OP_WRITE] = 20,
  [OP_READ] = 10,
  [OP_OTHER_COMMIT] = 6,
  [OP_REFRESH] = 3,
  [OP_DRAIN] = 4,
  [OP_WRITEOUT] = 5,
  [OP_WRITEOUT_OVERWRITE] = 2,
  [OP_STORE] = 3,
  [OP_MARK_STORED] = 3,
  [OP_ABORT] = 1,
  [OP_DISCARD] = 2,
  [OP_RECLAIM] = 3,
  [OP_FAIL_STORE] = 1,
  [OP_FAIL_COMMIT] = 1,
  [OP_FAIL_BEGIN] = 1,
  [OP_FAIL_REFRESH] = 1,
  [OP_TOGGLE_AUTO] = 1,
};

typedef enum
{
  FAIL_NONE,
  FAIL_STORE,
  FAIL_COMMIT,
  FAIL_BEGIN,
  FAIL_REFRESH,
} Failure;

typedef struct
{
  GRand *rand;
  guint32 seed;
  guint step;
  TestOpLog log;

  TestTxnStore *store;
  TestTxnFile *file;
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma;
  guint8 *data;
  gboolean auto_refresh;

  /* The model. */
  guint8 snap[N_BLOCKS];
  guint8 committed[N_BLOCKS];
  gboolean dirty[N_BLOCKS];
  guint8 mine[N_BLOCKS];
  gboolean conflict[N_BLOCKS];
  gboolean txn_open;
  gboolean stored[N_BLOCKS]; /* stored by the open transaction */
  guint8 stored_value[N_BLOCKS];
  gboolean written_since[N_BLOCKS]; /* since the open transaction stored it */
  /* Other clients' commits the handle has not refreshed over yet. */
  GArray *pending; /* of guint: block << 8 | value */
  Failure armed;   /* injected into the next writeout */
  guint64 fail_block;
  guint n_ops[N_OPS];
} Model;

#define model_assert(m, expr)                                                                      \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (G_UNLIKELY (!(expr)))                                                                      \
      {                                                                                            \
        test_op_log_dump (&(m)->log);                                                              \
        g_error ("seed %u, step %u: %s", (m)->seed, (m)->step, #expr);                             \
      }                                                                                            \
  }                                                                                                \
  G_STMT_END

static void
on_invalidated (BigfileHandle *handle, guint64 page, Model *m)
{
  /* Only pages whose block another client changed, and never a dirty one
   * (its change is kept). */
  model_assert (m, page < N_BLOCKS);
}

static void
drain (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* The handle took the pending commits in (a refresh, its own or a
 * writeout's). */
static void
model_apply_pending (Model *m)
{
  for (guint i = 0; i < m->pending->len; i++)
    {
      guint e = g_array_index (m->pending, guint, i);
      guint b = e >> 8;

      m->snap[b] = e & 0xff;
      if (m->dirty[b])
        m->conflict[b] = TRUE;
    }
  g_array_set_size (m->pending, 0);
}

static void
arm_failure (Model *m)
{
  switch (m->armed)
    {
      case FAIL_NONE:
        break;
      case FAIL_STORE:
        test_txn_file_fail_next_store (m->file, m->fail_block);
        break;
      case FAIL_COMMIT:
        test_txn_file_fail_next_commit (m->file);
        break;
      case FAIL_BEGIN:
        test_txn_file_fail_next_begin (m->file);
        break;
      case FAIL_REFRESH:
        test_txn_file_fail_next_refresh (m->file);
        break;
    }
}

static gboolean
any_dirty_conflict (Model *m)
{
  for (guint b = 0; b < N_BLOCKS; b++)
    if (m->dirty[b] && m->conflict[b])
      return TRUE;
  return FALSE;
}

/* After a transaction that stored failed or was aborted. */
static void
model_forget_stores (Model *m)
{
  m->txn_open = FALSE;
  memset (m->stored, 0, sizeof m->stored);
  memset (m->written_since, 0, sizeof m->written_since);
}

/* The commit of what the open transaction stored: marks clean what was
 * not written since. */
static void
model_commit (Model *m)
{
  for (guint b = 0; b < N_BLOCKS; b++)
    if (m->stored[b])
      {
        m->committed[b] = m->snap[b] = m->stored_value[b];
        if (m->dirty[b] && !m->written_since[b])
          {
            m->dirty[b] = FALSE;
            m->conflict[b] = FALSE;
          }
      }
  model_forget_stores (m);
}

/* A writeout with @flags: what the handle must do, in the model, and
 * whether it must succeed. */
static void
op_writeout (Model *m, BigfileWriteoutFlags flags)
{
  GError *error = NULL;
  gboolean ok, want_ok = TRUE, will_store = (flags & BIGFILE_WRITEOUT_STORE) != 0;
  Failure failure = m->armed;
  gboolean any_dirty = FALSE;

  for (guint b = 0; b < N_BLOCKS; b++)
    any_dirty |= m->dirty[b];

  /* A store failure fires only if the block is stored. */
  if (failure == FAIL_STORE && !(will_store && m->dirty[m->fail_block]))
    failure = FAIL_NONE;
  /* Begin and its refresh run only if no transaction is open. */
  if ((failure == FAIL_BEGIN || failure == FAIL_REFRESH) && (!will_store || m->txn_open))
    failure = FAIL_NONE;
  if (failure == FAIL_COMMIT
      && !((flags & BIGFILE_WRITEOUT_MARK_STORED) && (m->txn_open || will_store)))
    failure = FAIL_NONE;
  if (failure != FAIL_NONE)
    arm_failure (m);
  test_op_log_add (&m->log, "writeout flags %x, failure %d (block %" G_GUINT64_FORMAT ")", flags,
                   failure, m->fail_block);
  m->armed = FAIL_NONE;
  (void)any_dirty;

  ok = bigfile_handle_writeout (m->handle, flags, &error);
  /* One that did not fire (the writeout stopped before) is not for the
   * next writeout. */
  test_txn_file_clear_failures (m->file);

  if (will_store)
    {
      gboolean began = !m->txn_open;

      if (began && (failure == FAIL_BEGIN || failure == FAIL_REFRESH))
        want_ok = FALSE;
      else
        {
          if (began)
            model_apply_pending (m);
          if (any_dirty_conflict (m) && !(flags & BIGFILE_WRITEOUT_OVERWRITE))
            want_ok = FALSE;
          else if (failure == FAIL_STORE)
            want_ok = FALSE;
          else
            {
              m->txn_open = TRUE;
              for (guint b = 0; b < N_BLOCKS; b++)
                if (m->dirty[b])
                  {
                    m->stored[b] = TRUE;
                    m->stored_value[b] = m->mine[b];
                    m->written_since[b] = FALSE;
                  }
            }
        }
      if (!want_ok)
        model_forget_stores (m);
    }
  if (want_ok && (flags & BIGFILE_WRITEOUT_MARK_STORED) && m->txn_open)
    {
      if (failure == FAIL_COMMIT)
        {
          want_ok = FALSE;
          model_forget_stores (m);
        }
      else
        model_commit (m);
    }

  if (want_ok != ok)
    {
      test_op_log_dump (&m->log);
      g_error ("seed %u, step %u: the writeout %s (%s), the model says it %s", m->seed, m->step,
               ok ? "succeeded" : "failed", error != NULL ? error->message : "no error",
               want_ok ? "succeeds" : "fails");
    }
  if (!ok)
    {
      model_assert (m, error != NULL);
      g_clear_error (&error);
    }
}

static void
model_step (Model *m)
{
  guint total = 0, r;
  Op op;
  guint b = g_rand_int_range (m->rand, 0, N_BLOCKS);
  guint8 v = (guint8)g_rand_int_range (m->rand, 1, 256);
  GError *error = NULL;

  for (op = 0; op < N_OPS; op++)
    total += op_weights[op];
  r = g_rand_int_range (m->rand, 0, total);
  for (op = 0; r >= op_weights[op]; op++)
    r -= op_weights[op];
  /* Another client waits for the write lock an open transaction holds:
   * in this one thread, it would wait forever. */
  if (op == OP_OTHER_COMMIT && m->txn_open)
    op = OP_MARK_STORED;
  /* Dirty pages must leave room in the budget for a page to read. */
  if (op == OP_WRITE && !m->dirty[b])
    {
      guint n_dirty = 0;

      for (guint i = 0; i < N_BLOCKS; i++)
        n_dirty += m->dirty[i];
      if (n_dirty + 1 >= BUDGET_PAGES)
        op = OP_READ;
    }
  m->n_ops[op]++;

  switch (op)
    {
      case OP_WRITE:
        test_op_log_add (&m->log, "write %u = %u", b, v);
        raw_write (m->data + (gsize)b * PS, v);
        m->dirty[b] = TRUE;
        m->mine[b] = v;
        m->written_since[b] = TRUE;
        break;

      case OP_READ:
        test_op_log_add (&m->log, "read %u", b);
        (void)raw_read (m->data + (gsize)b * PS + 1);
        break;

      case OP_OTHER_COMMIT:
        {
          guint n = g_rand_int_range (m->rand, 1, 4);

          test_op_log_add (&m->log, "other commits %u..%u = %u", b, MIN (b + n, N_BLOCKS) - 1, v);
          for (guint i = b; i < MIN (b + n, N_BLOCKS); i++)
            {
              guint e = i << 8 | v;

              m->committed[i] = v;
              g_array_append_val (m->pending, e);
            }
          test_txn_store_commit_fill (m->store, b, MIN (b + n, N_BLOCKS) - b, v);
        }
        break;

      case OP_REFRESH:
        {
          gboolean fail = g_rand_boolean (m->rand);

          test_op_log_add (&m->log, "refresh%s", fail ? " (failing)" : "");
          if (fail)
            test_txn_file_fail_next_refresh (m->file);
          if (bigfile_handle_refresh (m->handle, &error))
            {
              model_assert (m, !fail);
              model_apply_pending (m);
            }
          else
            {
              model_assert (m, fail);
              g_clear_error (&error);
            }
        }
        break;

      case OP_DRAIN:
        test_op_log_add (&m->log, "main loop (auto-refresh %d)", m->auto_refresh);
        drain ();
        if (m->auto_refresh)
          model_apply_pending (m);
        break;

      case OP_WRITEOUT:
        op_writeout (m, BIGFILE_WRITEOUT_DEFAULT);
        break;

      case OP_WRITEOUT_OVERWRITE:
        op_writeout (m, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_OVERWRITE);
        break;

      case OP_STORE:
        op_writeout (m, BIGFILE_WRITEOUT_STORE);
        break;

      case OP_MARK_STORED:
        op_writeout (m, BIGFILE_WRITEOUT_MARK_STORED);
        break;

      case OP_ABORT:
        test_op_log_add (&m->log, "abort");
        bigfile_handle_abort_writeout (m->handle);
        model_forget_stores (m);
        break;

      case OP_DISCARD:
        test_op_log_add (&m->log, "discard");
        bigfile_handle_discard (m->handle);
        model_forget_stores (m);
        for (guint i = 0; i < N_BLOCKS; i++)
          m->dirty[i] = m->conflict[i] = FALSE;
        break;

      case OP_RECLAIM:
        test_op_log_add (&m->log, "reclaim");
        bigfile_ram_reclaim (m->ram);
        break;

      case OP_FAIL_STORE:
        m->armed = FAIL_STORE;
        m->fail_block = b;
        break;

      case OP_FAIL_COMMIT:
        m->armed = FAIL_COMMIT;
        break;

      case OP_FAIL_BEGIN:
        m->armed = FAIL_BEGIN;
        break;

      case OP_FAIL_REFRESH:
        m->armed = FAIL_REFRESH;
        break;

      case OP_TOGGLE_AUTO:
        m->auto_refresh = !m->auto_refresh;
        test_op_log_add (&m->log, "auto-refresh %d", m->auto_refresh);
        bigfile_handle_set_auto_refresh (m->handle, m->auto_refresh);
        break;

      case N_OPS:
        g_assert_not_reached ();
    }
}

static void
model_check (Model *m)
{
  g_autofree guint64 *conflicts = NULL;
  gsize n_conflicts = 0, want_conflicts = 0;
  g_autofree char *broken = _bigfile_handle_check (m->handle, TRUE);
  /* On the heap: under valgrind, a page fault (SIGSEGV) taken with the
   * stack pointer a page below what the main stack has grown to kills the
   * program ("Can't extend stack ... during signal delivery"). */
  g_autofree guint8 *block = g_malloc (PS);

  if (broken != NULL)
    {
      test_op_log_dump (&m->log);
      g_error ("seed %u, step %u: engine invariants: %s", m->seed, m->step, broken);
    }

  conflicts = bigfile_handle_get_conflicts (m->handle, &n_conflicts);
  for (guint b = 0; b < N_BLOCKS; b++)
    {
      guint8 shown = raw_read (m->data + (gsize)b * PS);

      if (shown != (m->dirty[b] ? m->mine[b] : m->snap[b]))
        {
          test_op_log_dump (&m->log);
          g_error ("seed %u, step %u: page %u shows %u, the model %u (%s)", m->seed, m->step, b,
                   shown, m->dirty[b] ? m->mine[b] : m->snap[b], m->dirty[b] ? "dirty" : "clean");
        }
      model_assert (m, (bigfile_handle_get_page_state (m->handle, b) == BIGFILE_PAGE_STATE_DIRTY)
                           == m->dirty[b]);
      if (m->dirty[b] && m->conflict[b])
        {
          model_assert (m, want_conflicts < n_conflicts && conflicts[want_conflicts] == b);
          want_conflicts++;
        }
      test_txn_store_peek (m->store, b, block);
      model_assert (m, block[0] == m->committed[b]);
    }
  model_assert (m, want_conflicts == n_conflicts);
  model_assert (m, test_txn_file_in_transaction (m->file) == m->txn_open);
}

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
test_txn_model (void)
{
  Model m = { 0 };
  GError *error = NULL;
  guint n_steps = env_uint ("BIGFILE_TEST_MODEL_STEPS", DEFAULT_STEPS);

  g_test_summary ("Random writeouts, two-phase commits, other clients' commits, refreshes "
                  "and injected failures agree with a model of snapshots and conflicts");
  m.seed = g_getenv ("BIGFILE_TEST_MODEL_SEED") != NULL ? env_uint ("BIGFILE_TEST_MODEL_SEED", 0)
                                                        : (guint32)g_test_rand_int ();
  g_test_message ("%u steps, seed %u (replay with BIGFILE_TEST_MODEL_SEED=%u)", n_steps, m.seed,
                  m.seed);
  m.rand = g_rand_new_with_seed (m.seed);
  m.pending = g_array_new (FALSE, FALSE, sizeof (guint));
  m.store = test_txn_store_new (PS, N_BLOCKS * PS);
  m.file = test_txn_file_new (m.store);
  /* Small: reclaim and reloads happen all the time. */
  m.ram = bigfile_ram_new (BUDGET_PAGES * PS);
  m.handle = bigfile_handle_new (BIGFILE_FILE (m.file), m.ram, &error);
  g_assert_no_error (error);
  m.vma = bigfile_handle_map (m.handle, 0, N_BLOCKS, &error);
  g_assert_no_error (error);
  m.data = bigfile_vma_get_data (m.vma);
  m.auto_refresh = TRUE;
  g_signal_connect (m.handle, "page-invalidated", G_CALLBACK (on_invalidated), &m);

  for (m.step = 0; m.step < n_steps; m.step++)
    {
      model_step (&m);
      model_check (&m);
    }
  g_test_message ("operations: write %u, other commit %u, refresh %u, main loop %u, "
                  "writeout %u (+%u overwrite), store %u, mark stored %u, abort %u, discard %u",
                  m.n_ops[OP_WRITE], m.n_ops[OP_OTHER_COMMIT], m.n_ops[OP_REFRESH],
                  m.n_ops[OP_DRAIN], m.n_ops[OP_WRITEOUT], m.n_ops[OP_WRITEOUT_OVERWRITE],
                  m.n_ops[OP_STORE], m.n_ops[OP_MARK_STORED], m.n_ops[OP_ABORT],
                  m.n_ops[OP_DISCARD]);

  /* Whatever happened, nothing the program wrote is lost: overwrite it
   * all, and the storage has every dirty page. */
  m.armed = FAIL_NONE;
  op_writeout (&m, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_OVERWRITE);
  model_check (&m);
  for (guint b = 0; b < N_BLOCKS; b++)
    g_assert_false (m.dirty[b]);

  bigfile_vma_unmap (m.vma);
  g_object_unref (m.vma);
  g_assert_true (bigfile_handle_close (m.handle));
  g_object_unref (m.handle);
  drain ();
  g_object_unref (m.file);
  g_object_unref (m.ram);
  test_txn_store_unref (m.store);
  g_array_unref (m.pending);
  g_rand_free (m.rand);
  test_op_log_clear (&m.log);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/txn-model/random", test_txn_model);
  return g_test_run ();
}
