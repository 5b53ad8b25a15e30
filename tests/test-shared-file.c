/* bigfile-glib tests - an in-memory storage that several BigfileFiles share,
 * with transactions, snapshots and change notification
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "test-shared-file.h"

/* The store keeps, for each block, the versions that some client's
 * snapshot may still read: a list of (commit, data), oldest first. A load
 * at snapshot S reads the newest entry whose commit is <= S; data NULL
 * means zeros. The size has the same kind of history. A commit C applies
 * the operations of its transaction, in order, as entries of commit C, and
 * logs which blocks it changed, so that refresh can tell a client what
 * other clients changed between two snapshots.
 *
 *   block 7:  (c2, "aa..")  (c5, "bb..")  (c9, NULL)
 *                                ^ a client at snapshot 5..8 reads "bb.."
 *
 * Entries and log records that no client's snapshot can reach any more are
 * pruned after each commit and when a client goes. Invariant: no block
 * holds a byte other than zero at or past the size of its commit, so
 * growing the size shows zeros. */

typedef struct
{
  guint64 commit;
  GBytes *data; /* block_size bytes, or NULL for zeros */
} BlockVersion;

typedef struct
{
  guint64 commit;
  guint64 size;
} SizeVersion;

typedef struct
{
  guint64 commit;
  guint client_id; /* who committed it */
  GArray *blocks;  /* guint64: the blocks it changed */
} LogRecord;

struct _TestSharedStore
{
  gint ref_count;   /* atomic */
  gsize block_size; /* immutable */

  /* The rest, and the mutable fields of every client (see TestSharedFile),
   * under lock. cond is signalled when writer goes back to 0. */
  GMutex lock;
  GCond cond;
  guint64 version;    /* the newest commit; 0 = the empty store */
  GHashTable *blocks; /* guint64 * -> GArray of BlockVersion */
  GArray *sizes;      /* SizeVersion, oldest first, never empty */
  GArray *log;        /* LogRecord, oldest first */
  guint writer;       /* id of the client whose transaction is open, or 0 */
  GList *clients;     /* TestSharedFile *, no references: each leaves in finalize */
  guint next_client_id;
  gint64 busy_timeout; /* usec */
};

typedef enum
{
  OP_STORE,
  OP_SET_SIZE,
} OpKind;

typedef struct
{
  OpKind kind;
  guint64 block; /* OP_STORE */
  GBytes *data;  /* OP_STORE: block_size bytes */
  guint64 size;  /* OP_SET_SIZE */
} Op;

struct _TestSharedFile
{
  GObject parent_instance;

  /* Immutable. */
  TestSharedStore *store;
  GMainContext *context; /* where ::changed is emitted */
  guint id;
  gboolean read_only;

  /* Under store->lock. */
  guint64 snapshot;
  gboolean in_transaction;
  GArray *ops;           /* Op: the open transaction's, in order */
  GArray *unreported;    /* guint64: others' changes this client's snapshot
                          * took in without refresh (at its own commits) */
  GSource *changed_idle; /* the pending ::changed, or NULL */
  int fault_after[TEST_SHARED_N_FAULTS];
};

static void test_shared_file_iface_init (BigfileFileInterface *iface);

G_DEFINE_TYPE_WITH_CODE (TestSharedFile, test_shared_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE, test_shared_file_iface_init))

/* -- the store ---------------------------------------------------------------- */

static void
block_versions_free (gpointer p)
{
  GArray *versions = p;

  for (guint i = 0; i < versions->len; i++)
    g_clear_pointer (&g_array_index (versions, BlockVersion, i).data, g_bytes_unref);
  g_array_unref (versions);
}

static void
log_record_clear (gpointer p)
{
  LogRecord *record = p;

  g_array_unref (record->blocks);
}

TestSharedStore *
test_shared_store_new (gsize block_size)
{
  TestSharedStore *store = g_new0 (TestSharedStore, 1);
  SizeVersion zero = { 0, 0 };

  store->ref_count = 1;
  store->block_size = block_size;
  g_mutex_init (&store->lock);
  g_cond_init (&store->cond);
  store->blocks = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, block_versions_free);
  store->sizes = g_array_new (FALSE, FALSE, sizeof (SizeVersion));
  g_array_append_val (store->sizes, zero);
  store->log = g_array_new (FALSE, FALSE, sizeof (LogRecord));
  g_array_set_clear_func (store->log, log_record_clear);
  store->next_client_id = 1;
  store->busy_timeout = 10 * G_USEC_PER_SEC;
  return store;
}

TestSharedStore *
test_shared_store_ref (TestSharedStore *store)
{
  g_atomic_int_inc (&store->ref_count);
  return store;
}

void
test_shared_store_unref (TestSharedStore *store)
{
  if (!g_atomic_int_dec_and_test (&store->ref_count))
    return;
  /* Each client holds a reference. */
  g_assert (store->clients == NULL);
  g_hash_table_unref (store->blocks);
  g_array_unref (store->sizes);
  g_array_unref (store->log);
  g_cond_clear (&store->cond);
  g_mutex_clear (&store->lock);
  g_free (store);
}

void
test_shared_store_set_busy_timeout (TestSharedStore *store, gint64 usec)
{
  g_mutex_lock (&store->lock);
  store->busy_timeout = usec;
  g_mutex_unlock (&store->lock);
}

guint64
test_shared_store_get_version (TestSharedStore *store)
{
  guint64 version;

  g_mutex_lock (&store->lock);
  version = store->version;
  g_mutex_unlock (&store->lock);
  return version;
}

/* The data of @block at @commit (NULL: zeros); lock held. */
static GBytes *
block_at (TestSharedStore *store, guint64 block, guint64 commit)
{
  GArray *versions = g_hash_table_lookup (store->blocks, &block);

  if (versions == NULL)
    return NULL;
  for (guint i = versions->len; i-- > 0;)
    if (g_array_index (versions, BlockVersion, i).commit <= commit)
      return g_array_index (versions, BlockVersion, i).data;
  return NULL;
}

static guint64
size_at (TestSharedStore *store, guint64 commit)
{
  for (guint i = store->sizes->len; i-- > 0;)
    if (g_array_index (store->sizes, SizeVersion, i).commit <= commit)
      return g_array_index (store->sizes, SizeVersion, i).size;
  g_assert_not_reached ();
}

/* Makes @data (taken; NULL for zeros) the contents of @block as of commit
 * @commit, which is the newest; lock held. */
static void
put_block (TestSharedStore *store, guint64 block, guint64 commit, GBytes *data)
{
  GArray *versions = g_hash_table_lookup (store->blocks, &block);
  BlockVersion *last;
  BlockVersion entry = { commit, data };

  if (versions == NULL)
    {
      guint64 *key = g_new (guint64, 1);

      *key = block;
      versions = g_array_new (FALSE, FALSE, sizeof (BlockVersion));
      g_hash_table_insert (store->blocks, key, versions);
    }
  last = versions->len > 0 ? &g_array_index (versions, BlockVersion, versions->len - 1) : NULL;
  if (last != NULL && last->commit == commit)
    {
      g_clear_pointer (&last->data, g_bytes_unref);
      last->data = data;
    }
  else
    g_array_append_val (versions, entry);
}

static void
put_size (TestSharedStore *store, guint64 commit, guint64 size)
{
  SizeVersion *last = &g_array_index (store->sizes, SizeVersion, store->sizes->len - 1);
  SizeVersion entry = { commit, size };

  if (last->commit == commit)
    last->size = size;
  else
    g_array_append_val (store->sizes, entry);
}

/* Applies one operation of a transaction as part of commit @commit,
 * noting the blocks whose contents change in @changed; lock held. */
static void
apply_op (TestSharedStore *store, const Op *op, guint64 commit, GArray *changed)
{
  gsize bs = store->block_size;
  guint64 size = size_at (store, commit);

  if (op->kind == OP_STORE)
    {
      /* As pwrite() past the end of a file: the size grows to cover what
       * was stored (the length of a store is kept in op->size). */
      put_block (store, op->block, commit, g_bytes_ref (op->data));
      if (op->block * bs + op->size > size)
        put_size (store, commit, op->block * bs + op->size);
      g_array_append_val (changed, op->block);
      return;
    }

  if (op->size < size)
    {
      /* Shrinking: the blocks with data from the new size on lose it. */
      GHashTableIter iter;
      gpointer key, value;
      GArray *cut = g_array_new (FALSE, FALSE, sizeof (guint64));

      g_hash_table_iter_init (&iter, store->blocks);
      while (g_hash_table_iter_next (&iter, &key, &value))
        {
          guint64 block = *(guint64 *)key;

          if ((block + 1) * bs > op->size && block_at (store, block, commit) != NULL)
            g_array_append_val (cut, block);
        }
      for (guint i = 0; i < cut->len; i++)
        {
          guint64 block = g_array_index (cut, guint64, i);
          GBytes *old = block_at (store, block, commit);

          if (block * bs >= op->size)
            put_block (store, block, commit, NULL);
          else
            {
              gsize keep = (gsize)(op->size - block * bs);
              guint8 *data = g_malloc0 (bs);

              memcpy (data, g_bytes_get_data (old, NULL), keep);
              put_block (store, block, commit, g_bytes_new_take (data, bs));
            }
          g_array_append_val (changed, block);
        }
      g_array_unref (cut);
    }
  else if (op->size > size && size % bs != 0)
    {
      /* Growing: the block that held the old size now shows more of itself
       * (zeros), which a reader should load again. */
      guint64 block = size / bs;

      g_array_append_val (changed, block);
    }
  put_size (store, commit, op->size);
}

/* Appends to @out the blocks that clients other than @self committed after
 * @from up to @to; lock held. */
static void
collect_changes (TestSharedStore *store, TestSharedFile *self, guint64 from, guint64 to,
                 GArray *out)
{
  for (guint i = 0; i < store->log->len; i++)
    {
      LogRecord *record = &g_array_index (store->log, LogRecord, i);

      if (record->commit > from && record->commit <= to && record->client_id != self->id)
        g_array_append_vals (out, record->blocks->data, record->blocks->len);
    }
}

/* Drops the versions, sizes and log records that no client can read or be
 * told of any more: those older than the oldest snapshot; lock held. */
static void
prune (TestSharedStore *store)
{
  guint64 oldest = store->version;
  GHashTableIter iter;
  gpointer value;
  guint n_log = 0;

  for (GList *l = store->clients; l != NULL; l = l->next)
    oldest = MIN (oldest, ((TestSharedFile *)l->data)->snapshot);

  g_hash_table_iter_init (&iter, store->blocks);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      GArray *versions = value;
      guint keep = 0; /* the first entry to keep: the newest at or before oldest */

      for (guint i = 0; i < versions->len; i++)
        if (g_array_index (versions, BlockVersion, i).commit <= oldest)
          keep = i;
      for (guint i = 0; i < keep; i++)
        g_clear_pointer (&g_array_index (versions, BlockVersion, i).data, g_bytes_unref);
      g_array_remove_range (versions, 0, keep);
      if (versions->len == 1 && g_array_index (versions, BlockVersion, 0).data == NULL)
        g_hash_table_iter_remove (&iter);
    }

  {
    guint keep = 0;

    for (guint i = 0; i < store->sizes->len; i++)
      if (g_array_index (store->sizes, SizeVersion, i).commit <= oldest)
        keep = i;
    g_array_remove_range (store->sizes, 0, keep);
  }

  while (n_log < store->log->len && g_array_index (store->log, LogRecord, n_log).commit <= oldest)
    n_log++;
  g_array_remove_range (store->log, 0, n_log);
}

/* -- ::changed ---------------------------------------------------------------- */

typedef struct
{
  GWeakRef file;
} ChangedData;

static void
changed_data_free (gpointer p)
{
  ChangedData *data = p;

  g_weak_ref_clear (&data->file);
  g_free (data);
}

static gboolean
changed_idle_cb (gpointer user_data)
{
  ChangedData *data = user_data;
  TestSharedFile *self = g_weak_ref_get (&data->file);

  if (self == NULL)
    return G_SOURCE_REMOVE;

  g_mutex_lock (&self->store->lock);
  if (self->changed_idle == g_main_current_source ())
    g_clear_pointer (&self->changed_idle, g_source_unref);
  g_mutex_unlock (&self->store->lock);

  bigfile_file_changed (BIGFILE_FILE (self));
  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

/* Schedules ::changed on every client but @committer, once however many
 * commits come before it runs; lock held. */
static void
notify_clients (TestSharedStore *store, TestSharedFile *committer)
{
  for (GList *l = store->clients; l != NULL; l = l->next)
    {
      TestSharedFile *client = l->data;
      ChangedData *data;

      if (client == committer || client->changed_idle != NULL)
        continue;
      data = g_new0 (ChangedData, 1);
      g_weak_ref_init (&data->file, client);
      client->changed_idle = g_idle_source_new ();
      g_source_set_name (client->changed_idle, "TestSharedFile ::changed");
      g_source_set_callback (client->changed_idle, changed_idle_cb, data, changed_data_free);
      g_source_attach (client->changed_idle, client->context);
    }
}

static void
cancel_changed_locked (TestSharedFile *self)
{
  if (self->changed_idle != NULL)
    {
      g_source_destroy (self->changed_idle);
      g_clear_pointer (&self->changed_idle, g_source_unref);
    }
}

/* -- transactions --------------------------------------------------------------- */

static const char *const fault_names[TEST_SHARED_N_FAULTS] = {
  [TEST_SHARED_FAULT_LOAD] = "load",
  [TEST_SHARED_FAULT_STORE] = "store",
  [TEST_SHARED_FAULT_SET_SIZE] = "set_size",
  [TEST_SHARED_FAULT_BEGIN] = "begin_transaction",
  [TEST_SHARED_FAULT_COMMIT] = "commit_transaction",
  [TEST_SHARED_FAULT_REFRESH] = "refresh",
};

/* Whether a call of kind @fault may go on; lock held. */
static gboolean
check_fault (TestSharedFile *self, TestSharedFault fault, GError **error)
{
  int *after = &self->fault_after[fault];

  if (*after < 0)
    return TRUE;
  if (*after > 0)
    {
      (*after)--;
      return TRUE;
    }
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "injected failure of %s (client %u)",
               fault_names[fault], self->id);
  return FALSE;
}

static void
op_clear (gpointer p)
{
  Op *op = p;

  g_clear_pointer (&op->data, g_bytes_unref);
}

/* Waits until no other client's transaction is open, and opens one for
 * @self; lock held. */
static gboolean
begin_locked (TestSharedFile *self, GError **error)
{
  TestSharedStore *store = self->store;
  gint64 deadline = g_get_monotonic_time () + store->busy_timeout;

  g_assert (!self->in_transaction);
  if (self->read_only)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY,
                   "Cannot write to client %u of the shared test store: it was opened read-only",
                   self->id);
      return FALSE;
    }
  while (store->writer != 0)
    if (!g_cond_wait_until (&store->cond, &store->lock, deadline) && store->writer != 0)
      {
        g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY,
                     "Client %u of the shared test store waited %" G_GINT64_FORMAT
                     " ms for client %u's transaction to end",
                     self->id, store->busy_timeout / 1000, store->writer);
        return FALSE;
      }
  store->writer = self->id;
  self->in_transaction = TRUE;
  return TRUE;
}

static void
end_locked (TestSharedFile *self)
{
  g_array_set_size (self->ops, 0);
  self->in_transaction = FALSE;
  self->store->writer = 0;
  g_cond_broadcast (&self->store->cond);
}

static void
commit_locked (TestSharedFile *self)
{
  TestSharedStore *store = self->store;
  guint64 commit = store->version + 1;
  LogRecord record = { commit, self->id, g_array_new (FALSE, FALSE, sizeof (guint64)) };

  for (guint i = 0; i < self->ops->len; i++)
    apply_op (store, &g_array_index (self->ops, Op, i), commit, record.blocks);
  g_array_append_val (store->log, record);
  /* The snapshot jumps to this commit, over the commits of others since
   * the last refresh: those are owed to the next refresh. */
  collect_changes (store, self, self->snapshot, store->version, self->unreported);
  store->version = commit;
  self->snapshot = commit;
  end_locked (self);
  notify_clients (store, self);
  prune (store);
}

/* Runs one operation on its own, as a transaction of its own, when no
 * transaction of @self is open; lock held. */
static gboolean
run_op_locked (TestSharedFile *self, Op *op, GError **error)
{
  if (self->in_transaction)
    {
      g_array_append_val (self->ops, *op);
      return TRUE;
    }
  if (!begin_locked (self, error))
    {
      op_clear (op);
      return FALSE;
    }
  g_array_append_val (self->ops, *op);
  commit_locked (self);
  return TRUE;
}

/* -- BigfileFile ------------------------------------------------------------------ */

static gsize
test_shared_file_get_block_size (BigfileFile *file)
{
  return TEST_SHARED_FILE (file)->store->block_size;
}

static gboolean
test_shared_file_is_thread_safe (BigfileFile *file)
{
  return TRUE;
}

static gboolean
test_shared_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                                 GError **error)
{
  TestSharedFile *self = TEST_SHARED_FILE (file);
  TestSharedStore *store = self->store;
  GBytes *data;

  g_mutex_lock (&store->lock);
  if (!check_fault (self, TEST_SHARED_FAULT_LOAD, error))
    {
      g_mutex_unlock (&store->lock);
      return FALSE;
    }
  data = block_at (store, block, self->snapshot);
  /* The buffer holds zeros on entry: a block of zeros writes nothing. */
  if (data != NULL)
    memcpy (buffer, g_bytes_get_data (data, NULL), MIN (length, store->block_size));
  g_mutex_unlock (&store->lock);
  return TRUE;
}

static gboolean
test_shared_file_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data,
                                  gsize length, GError **error)
{
  TestSharedFile *self = TEST_SHARED_FILE (file);
  TestSharedStore *store = self->store;
  guint8 *copy = g_malloc0 (store->block_size);
  Op op = { OP_STORE, block, NULL, length };
  gboolean ok;

  memcpy (copy, data, length);
  op.data = g_bytes_new_take (copy, store->block_size);

  g_mutex_lock (&store->lock);
  if (self->read_only)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY,
                   "Cannot store block %" G_GUINT64_FORMAT
                   " of client %u of the shared test store: it was opened read-only",
                   block, self->id);
      ok = FALSE;
    }
  else
    ok = check_fault (self, TEST_SHARED_FAULT_STORE, error);
  if (ok)
    ok = run_op_locked (self, &op, error);
  else
    op_clear (&op);
  g_mutex_unlock (&store->lock);
  return ok;
}

static gboolean
test_shared_file_get_size (BigfileFile *file, guint64 *size, GError **error)
{
  TestSharedFile *self = TEST_SHARED_FILE (file);

  g_mutex_lock (&self->store->lock);
  *size = size_at (self->store, self->snapshot);
  g_mutex_unlock (&self->store->lock);
  return TRUE;
}

static gboolean
test_shared_file_set_size (BigfileFile *file, guint64 size, GError **error)
{
  TestSharedFile *self = TEST_SHARED_FILE (file);
  Op op = { OP_SET_SIZE, 0, NULL, size };
  gboolean ok;

  g_mutex_lock (&self->store->lock);
  if (self->read_only)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY,
                   "Cannot resize client %u of the shared test store: it was opened read-only",
                   self->id);
      ok = FALSE;
    }
  else
    ok = check_fault (self, TEST_SHARED_FAULT_SET_SIZE, error) && run_op_locked (self, &op, error);
  g_mutex_unlock (&self->store->lock);
  return ok;
}

static gboolean
test_shared_file_begin_transaction (BigfileFile *file, GError **error)
{
  TestSharedFile *self = TEST_SHARED_FILE (file);
  gboolean ok;

  g_mutex_lock (&self->store->lock);
  ok = check_fault (self, TEST_SHARED_FAULT_BEGIN, error) && begin_locked (self, error);
  g_mutex_unlock (&self->store->lock);
  return ok;
}

static gboolean
test_shared_file_commit_transaction (BigfileFile *file, BigfileCommitFlags flags, GError **error)
{
  TestSharedFile *self = TEST_SHARED_FILE (file);
  gboolean ok;

  g_mutex_lock (&self->store->lock);
  g_assert (self->in_transaction);
  ok = check_fault (self, TEST_SHARED_FAULT_COMMIT, error);
  if (ok)
    commit_locked (self);
  else
    end_locked (self); /* a failed commit ends the transaction, storing nothing */
  g_mutex_unlock (&self->store->lock);
  return ok;
}

static void
test_shared_file_abort_transaction (BigfileFile *file)
{
  TestSharedFile *self = TEST_SHARED_FILE (file);

  g_mutex_lock (&self->store->lock);
  g_assert (self->in_transaction);
  end_locked (self);
  g_mutex_unlock (&self->store->lock);
}

static GArray *
test_shared_file_refresh (BigfileFile *file, GError **error)
{
  TestSharedFile *self = TEST_SHARED_FILE (file);
  TestSharedStore *store = self->store;
  GArray *changed;

  g_mutex_lock (&store->lock);
  if (!check_fault (self, TEST_SHARED_FAULT_REFRESH, error))
    {
      g_mutex_unlock (&store->lock);
      return NULL;
    }
  changed = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_array_append_vals (changed, self->unreported->data, self->unreported->len);
  g_array_set_size (self->unreported, 0);
  collect_changes (store, self, self->snapshot, store->version, changed);
  self->snapshot = store->version;
  /* This refresh told all there is: a pending ::changed would be about
   * nothing. */
  cancel_changed_locked (self);
  prune (store);
  g_mutex_unlock (&store->lock);
  return changed;
}

static void
test_shared_file_iface_init (BigfileFileInterface *iface)
{
  iface->get_block_size = test_shared_file_get_block_size;
  iface->is_thread_safe = test_shared_file_is_thread_safe;
  iface->load_block_raw = test_shared_file_load_block_raw;
  iface->store_block_raw = test_shared_file_store_block_raw;
  iface->get_size = test_shared_file_get_size;
  iface->set_size = test_shared_file_set_size;
  iface->begin_transaction = test_shared_file_begin_transaction;
  iface->commit_transaction = test_shared_file_commit_transaction;
  iface->abort_transaction = test_shared_file_abort_transaction;
  iface->refresh = test_shared_file_refresh;
}

static void
test_shared_file_finalize (GObject *object)
{
  TestSharedFile *self = TEST_SHARED_FILE (object);
  TestSharedStore *store = self->store;

  g_mutex_lock (&store->lock);
  if (self->in_transaction)
    end_locked (self); /* as a lost connection: the transaction goes */
  cancel_changed_locked (self);
  store->clients = g_list_remove (store->clients, self);
  prune (store);
  g_mutex_unlock (&store->lock);

  g_array_unref (self->ops);
  g_array_unref (self->unreported);
  g_main_context_unref (self->context);
  test_shared_store_unref (store);
  G_OBJECT_CLASS (test_shared_file_parent_class)->finalize (object);
}

static void
test_shared_file_class_init (TestSharedFileClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = test_shared_file_finalize;
}

static void
test_shared_file_init (TestSharedFile *self)
{
  self->ops = g_array_new (FALSE, FALSE, sizeof (Op));
  g_array_set_clear_func (self->ops, op_clear);
  self->unreported = g_array_new (FALSE, FALSE, sizeof (guint64));
  for (guint i = 0; i < TEST_SHARED_N_FAULTS; i++)
    self->fault_after[i] = -1;
}

TestSharedFile *
test_shared_file_new (TestSharedStore *store, gsize block_size, gboolean read_only, GError **error)
{
  TestSharedFile *self;

  if (!bf_page_size_is_valid (block_size))
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "%" G_GSIZE_FORMAT
                   " bytes is not a valid block size: use a power of two from 4 KiB to 2 MiB",
                   block_size);
      return NULL;
    }
  if (block_size != store->block_size)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "The shared test store has blocks of %" G_GSIZE_FORMAT
                   " bytes, not %" G_GSIZE_FORMAT,
                   store->block_size, block_size);
      return NULL;
    }

  self = g_object_new (TEST_TYPE_SHARED_FILE, NULL);
  self->store = test_shared_store_ref (store);
  self->context = g_main_context_ref_thread_default ();
  self->read_only = read_only;
  g_mutex_lock (&store->lock);
  self->id = store->next_client_id++;
  self->snapshot = store->version;
  store->clients = g_list_prepend (store->clients, self);
  g_mutex_unlock (&store->lock);
  return self;
}

void
test_shared_file_set_fault (TestSharedFile *self, TestSharedFault fault, int after)
{
  g_return_if_fail (fault < TEST_SHARED_N_FAULTS);

  g_mutex_lock (&self->store->lock);
  self->fault_after[fault] = after < 0 ? -1 : after;
  g_mutex_unlock (&self->store->lock);
}
