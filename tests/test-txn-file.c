/* bigfile-glib tests - an in-memory transactional BigfileFile with snapshots
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The storage is a history of commits; a client reads the newest commit at
 * or below its snapshot for each block, so snapshots cost nothing to keep.
 * One writer at a time holds the store's write lock from begin to commit
 * or abort, as the BigfileFile contract asks.
 */
#include "config.h"

#include <string.h>

#include "test-txn-file.h"

typedef struct
{
  guint64 version;
  gconstpointer writer; /* the client, or NULL for test_txn_store_commit_fill() */
  GHashTable *blocks;   /* guint64* -> GBytes* (block_size bytes) */
  gboolean has_size;
  guint64 size;
} Commit;

struct _TestTxnStore
{
  gint refs;
  gsize block_size; /* immutable */

  /* lock protects the rest. */
  GMutex lock;
  GCond cond;
  GPtrArray *commits;  /* Commit*, by version: commits[i]->version == i + 1 */
  guint64 first_size;  /* before any commit */
  gconstpointer owner; /* holder of the write lock, or NULL */
  GList *clients;      /* TestTxnFile*, weak */
};

struct _TestTxnFile
{
  GObject parent_instance;

  /* Immutable. */
  TestTxnStore *store;
  GMainContext *context;

  /* store->lock. */
  guint64 snapshot; /* loads read this version */
  guint64 reported; /* refresh reports other clients' commits after this */
  gboolean in_txn;
  GHashTable *txn_blocks; /* guint64* -> GBytes* */
  gboolean txn_has_size;
  guint64 txn_size;
  gboolean fail_begin, fail_commit, fail_refresh;
  GHashTable *fail_store; /* guint64* set */
  guint n_begins, n_commits, n_aborts, n_durable, n_refreshes;
};

static void test_txn_file_iface_init (BigfileFileInterface *iface);

G_DEFINE_TYPE_WITH_CODE (TestTxnFile, test_txn_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE, test_txn_file_iface_init))

static void
commit_free (gpointer data)
{
  Commit *c = data;

  g_hash_table_unref (c->blocks);
  g_free (c);
}

static GHashTable *
block_table_new (void)
{
  return g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, (GDestroyNotify)g_bytes_unref);
}

TestTxnStore *
test_txn_store_new (gsize block_size, guint64 size)
{
  TestTxnStore *store = g_new0 (TestTxnStore, 1);

  store->refs = 1;
  store->block_size = block_size;
  g_mutex_init (&store->lock);
  g_cond_init (&store->cond);
  store->commits = g_ptr_array_new_with_free_func (commit_free);
  store->first_size = size;
  return store;
}

TestTxnStore *
test_txn_store_ref (TestTxnStore *store)
{
  g_atomic_int_inc (&store->refs);
  return store;
}

void
test_txn_store_unref (TestTxnStore *store)
{
  if (!g_atomic_int_dec_and_test (&store->refs))
    return;
  g_assert (store->clients == NULL);
  g_ptr_array_unref (store->commits);
  g_mutex_clear (&store->lock);
  g_cond_clear (&store->cond);
  g_free (store);
}

/* Lock held.  The block as of @version, or NULL for zeros. */
static GBytes *
store_find (TestTxnStore *store, guint64 version, guint64 block)
{
  for (guint64 v = version; v > 0; v--)
    {
      Commit *c = g_ptr_array_index (store->commits, v - 1);
      GBytes *b = g_hash_table_lookup (c->blocks, &block);

      if (b != NULL)
        return b;
    }
  return NULL;
}

/* Lock held. */
static guint64
store_size_at (TestTxnStore *store, guint64 version)
{
  for (guint64 v = version; v > 0; v--)
    {
      Commit *c = g_ptr_array_index (store->commits, v - 1);

      if (c->has_size)
        return c->size;
    }
  return store->first_size;
}

guint64
test_txn_store_get_version (TestTxnStore *store)
{
  guint64 v;

  g_mutex_lock (&store->lock);
  v = store->commits->len;
  g_mutex_unlock (&store->lock);
  return v;
}

guint64
test_txn_store_get_size (TestTxnStore *store)
{
  guint64 size;

  g_mutex_lock (&store->lock);
  size = store_size_at (store, store->commits->len);
  g_mutex_unlock (&store->lock);
  return size;
}

void
test_txn_store_peek (TestTxnStore *store, guint64 block, guint8 *dest)
{
  GBytes *b;

  g_mutex_lock (&store->lock);
  b = store_find (store, store->commits->len, block);
  if (b != NULL)
    memcpy (dest, g_bytes_get_data (b, NULL), store->block_size);
  else
    memset (dest, 0, store->block_size);
  g_mutex_unlock (&store->lock);
}

static gboolean
emit_changed_cb (gpointer data)
{
  bigfile_file_changed (BIGFILE_FILE (data));
  return G_SOURCE_REMOVE;
}

/* Lock held: a commit made, tell every other client on its context. */
static void
store_notify (TestTxnStore *store, gconstpointer writer)
{
  for (GList *l = store->clients; l != NULL; l = l->next)
    {
      TestTxnFile *client = l->data;
      GSource *source;

      if ((gconstpointer)client == writer)
        continue;
      source = g_idle_source_new ();
      g_source_set_callback (source, emit_changed_cb, g_object_ref (client), g_object_unref);
      g_source_attach (source, client->context);
      g_source_unref (source);
    }
}

/* Lock held: append a commit, made of @blocks (taken). */
static guint64
store_append (TestTxnStore *store, gconstpointer writer, GHashTable *blocks, gboolean has_size,
              guint64 size)
{
  Commit *c = g_new0 (Commit, 1);

  c->version = store->commits->len + 1;
  c->writer = writer;
  c->blocks = blocks;
  c->has_size = has_size;
  c->size = size;
  g_ptr_array_add (store->commits, c);
  store_notify (store, writer);
  return c->version;
}

guint64
test_txn_store_commit_fill (TestTxnStore *store, guint64 first, guint64 n, guint8 byte)
{
  GHashTable *blocks = block_table_new ();
  guint8 *data = g_malloc (store->block_size);
  guint64 v;

  memset (data, byte, store->block_size);
  for (guint64 b = first; b < first + n; b++)
    g_hash_table_insert (blocks, g_memdup2 (&b, sizeof b), g_bytes_new (data, store->block_size));
  g_free (data);

  g_mutex_lock (&store->lock);
  while (store->owner != NULL)
    g_cond_wait (&store->cond, &store->lock);
  v = store_append (store, NULL, blocks, FALSE, 0);
  g_mutex_unlock (&store->lock);
  return v;
}

/* -- the client ------------------------------------------------------------- */

static void
test_txn_file_finalize (GObject *object)
{
  TestTxnFile *self = TEST_TXN_FILE (object);
  TestTxnStore *store = self->store;

  g_mutex_lock (&store->lock);
  store->clients = g_list_remove (store->clients, self);
  if (store->owner == (gconstpointer)self)
    {
      store->owner = NULL;
      g_cond_broadcast (&store->cond);
    }
  g_mutex_unlock (&store->lock);
  g_clear_pointer (&self->txn_blocks, g_hash_table_unref);
  g_hash_table_unref (self->fail_store);
  g_main_context_unref (self->context);
  test_txn_store_unref (store);

  G_OBJECT_CLASS (test_txn_file_parent_class)->finalize (object);
}

static void
test_txn_file_class_init (TestTxnFileClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = test_txn_file_finalize;
}

static void
test_txn_file_init (TestTxnFile *self)
{
  self->fail_store = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
}

TestTxnFile *
test_txn_file_new (TestTxnStore *store)
{
  TestTxnFile *self = g_object_new (TEST_TYPE_TXN_FILE, NULL);

  self->store = test_txn_store_ref (store);
  self->context = g_main_context_ref_thread_default ();
  g_mutex_lock (&store->lock);
  self->snapshot = self->reported = store->commits->len;
  /* Weak: a client that goes leaves the list in finalize.  Notifications
   * queued for it hold a reference. */
  store->clients = g_list_prepend (store->clients, self);
  g_mutex_unlock (&store->lock);
  return self;
}

static gsize
txn_get_block_size (BigfileFile *file)
{
  return TEST_TXN_FILE (file)->store->block_size;
}

static gboolean
txn_is_thread_safe (BigfileFile *file)
{
  return TRUE;
}

static gboolean
txn_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length, GError **error)
{
  TestTxnFile *self = TEST_TXN_FILE (file);
  TestTxnStore *store = self->store;
  GBytes *b;

  g_mutex_lock (&store->lock);
  /* The snapshot only: never the open transaction's stores. */
  b = store_find (store, self->snapshot, block);
  if (b != NULL)
    memcpy (buffer, g_bytes_get_data (b, NULL), MIN (length, store->block_size));
  g_mutex_unlock (&store->lock);
  return TRUE;
}

static gboolean
txn_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data, gsize length,
                     GError **error)
{
  TestTxnFile *self = TEST_TXN_FILE (file);
  TestTxnStore *store = self->store;
  guint8 *copy;

  g_mutex_lock (&store->lock);
  if (!self->in_txn)
    {
      g_mutex_unlock (&store->lock);
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   "store of block %" G_GUINT64_FORMAT " outside of a transaction", block);
      return FALSE;
    }
  if (g_hash_table_remove (self->fail_store, &block))
    {
      g_mutex_unlock (&store->lock);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "injected store failure of block %" G_GUINT64_FORMAT, block);
      return FALSE;
    }
  copy = g_malloc0 (store->block_size);
  memcpy (copy, data, length);
  g_hash_table_insert (self->txn_blocks, g_memdup2 (&block, sizeof block),
                       g_bytes_new_take (copy, store->block_size));
  g_mutex_unlock (&store->lock);
  return TRUE;
}

static gboolean
txn_get_size (BigfileFile *file, guint64 *size, GError **error)
{
  TestTxnFile *self = TEST_TXN_FILE (file);

  g_mutex_lock (&self->store->lock);
  *size = store_size_at (self->store, self->snapshot);
  g_mutex_unlock (&self->store->lock);
  return TRUE;
}

static gboolean
txn_set_size (BigfileFile *file, guint64 size, GError **error)
{
  TestTxnFile *self = TEST_TXN_FILE (file);

  TestTxnStore *store = self->store;
  gsize bs = store->block_size;
  guint64 current;

  g_mutex_lock (&store->lock);
  if (!self->in_txn)
    {
      g_mutex_unlock (&store->lock);
      g_set_error_literal (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                           "size change outside of a transaction");
      return FALSE;
    }
  /* As ftruncate: what lies past a smaller size is gone, and reads as
   * zeros if the file grows again.  The transaction holds the store, so
   * the newest commit is what it changes. */
  current = self->txn_has_size ? self->txn_size : store_size_at (store, store->commits->len);
  for (guint64 b = size / bs; size < current && b < (current + bs - 1) / bs; b++)
    {
      GBytes *base = g_hash_table_lookup (self->txn_blocks, &b);
      gsize from = b == size / bs ? size % bs : 0;
      guint8 *copy;

      if (base == NULL)
        base = store_find (store, store->commits->len, b);
      if (base == NULL)
        continue;
      copy = g_memdup2 (g_bytes_get_data (base, NULL), bs);
      memset (copy + from, 0, bs - from);
      g_hash_table_insert (self->txn_blocks, g_memdup2 (&b, sizeof b), g_bytes_new_take (copy, bs));
    }
  self->txn_has_size = TRUE;
  self->txn_size = size;
  g_mutex_unlock (&store->lock);
  return TRUE;
}

static gboolean
txn_begin (BigfileFile *file, GError **error)
{
  TestTxnFile *self = TEST_TXN_FILE (file);
  TestTxnStore *store = self->store;
  gint64 deadline = g_get_monotonic_time () + 5 * G_TIME_SPAN_SECOND;

  g_mutex_lock (&store->lock);
  g_assert (!self->in_txn);
  if (self->fail_begin)
    {
      self->fail_begin = FALSE;
      g_mutex_unlock (&store->lock);
      g_set_error_literal (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY,
                           "injected begin failure");
      return FALSE;
    }
  while (store->owner != NULL)
    if (!g_cond_wait_until (&store->cond, &store->lock, deadline))
      {
        g_mutex_unlock (&store->lock);
        g_set_error_literal (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY,
                             "another client holds the store");
        return FALSE;
      }
  store->owner = self;
  self->in_txn = TRUE;
  self->txn_blocks = block_table_new ();
  self->txn_has_size = FALSE;
  self->n_begins++;
  g_mutex_unlock (&store->lock);
  return TRUE;
}

/* Lock held. */
static void
txn_end (TestTxnFile *self)
{
  g_clear_pointer (&self->txn_blocks, g_hash_table_unref);
  self->in_txn = FALSE;
  self->store->owner = NULL;
  g_cond_broadcast (&self->store->cond);
}

static gboolean
txn_commit (BigfileFile *file, BigfileCommitFlags flags, GError **error)
{
  TestTxnFile *self = TEST_TXN_FILE (file);
  TestTxnStore *store = self->store;

  g_mutex_lock (&store->lock);
  g_assert (self->in_txn);
  if (self->fail_commit)
    {
      self->fail_commit = FALSE;
      txn_end (self);
      self->n_aborts++;
      g_mutex_unlock (&store->lock);
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "injected commit failure");
      return FALSE;
    }
  self->snapshot = store_append (store, self, g_steal_pointer (&self->txn_blocks),
                                 self->txn_has_size, self->txn_size);
  self->n_commits++;
  if (flags & BIGFILE_COMMIT_FLAGS_DURABLE)
    self->n_durable++;
  txn_end (self);
  g_mutex_unlock (&store->lock);
  return TRUE;
}

static void
txn_abort (BigfileFile *file)
{
  TestTxnFile *self = TEST_TXN_FILE (file);

  g_mutex_lock (&self->store->lock);
  g_assert (self->in_txn);
  txn_end (self);
  self->n_aborts++;
  g_mutex_unlock (&self->store->lock);
}

static GArray *
txn_refresh (BigfileFile *file, GError **error)
{
  TestTxnFile *self = TEST_TXN_FILE (file);
  TestTxnStore *store = self->store;
  GArray *changed;
  guint64 head;

  g_mutex_lock (&store->lock);
  if (self->fail_refresh)
    {
      self->fail_refresh = FALSE;
      g_mutex_unlock (&store->lock);
      g_set_error_literal (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED,
                           "injected refresh failure");
      return NULL;
    }
  changed = g_array_new (FALSE, FALSE, sizeof (guint64));
  head = store->commits->len;
  for (guint64 v = self->reported + 1; v <= head; v++)
    {
      Commit *c = g_ptr_array_index (store->commits, v - 1);
      GHashTableIter iter;
      gpointer key;

      if (c->writer == (gconstpointer)self)
        continue;
      g_hash_table_iter_init (&iter, c->blocks);
      while (g_hash_table_iter_next (&iter, &key, NULL))
        g_array_append_val (changed, *(guint64 *)key);
    }
  self->snapshot = self->reported = head;
  self->n_refreshes++;
  g_mutex_unlock (&store->lock);
  return changed;
}

static void
test_txn_file_iface_init (BigfileFileInterface *iface)
{
  iface->get_block_size = txn_get_block_size;
  iface->is_thread_safe = txn_is_thread_safe;
  iface->load_block_raw = txn_load_block_raw;
  iface->store_block_raw = txn_store_block_raw;
  iface->get_size = txn_get_size;
  iface->set_size = txn_set_size;
  iface->begin_transaction = txn_begin;
  iface->commit_transaction = txn_commit;
  iface->abort_transaction = txn_abort;
  iface->refresh = txn_refresh;
}

#define SET_UNDER_LOCK(file, stmt)                                                                 \
  G_STMT_START                                                                                     \
  {                                                                                                \
    g_mutex_lock (&(file)->store->lock);                                                           \
    stmt;                                                                                          \
    g_mutex_unlock (&(file)->store->lock);                                                         \
  }                                                                                                \
  G_STMT_END

void
test_txn_file_fail_next_begin (TestTxnFile *file)
{
  SET_UNDER_LOCK (file, file->fail_begin = TRUE);
}

void
test_txn_file_fail_next_commit (TestTxnFile *file)
{
  SET_UNDER_LOCK (file, file->fail_commit = TRUE);
}

void
test_txn_file_fail_next_refresh (TestTxnFile *file)
{
  SET_UNDER_LOCK (file, file->fail_refresh = TRUE);
}

void
test_txn_file_fail_next_store (TestTxnFile *file, guint64 block)
{
  SET_UNDER_LOCK (file, g_hash_table_add (file->fail_store, g_memdup2 (&block, sizeof block)));
}

void
test_txn_file_clear_failures (TestTxnFile *file)
{
  g_mutex_lock (&file->store->lock);
  file->fail_begin = file->fail_commit = file->fail_refresh = FALSE;
  g_hash_table_remove_all (file->fail_store);
  g_mutex_unlock (&file->store->lock);
}

static guint
get_counter (TestTxnFile *file, const guint *counter)
{
  guint n;

  g_mutex_lock (&file->store->lock);
  n = *counter;
  g_mutex_unlock (&file->store->lock);
  return n;
}

guint
test_txn_file_get_n_begins (TestTxnFile *file)
{
  return get_counter (file, &file->n_begins);
}

guint
test_txn_file_get_n_commits (TestTxnFile *file)
{
  return get_counter (file, &file->n_commits);
}

guint
test_txn_file_get_n_aborts (TestTxnFile *file)
{
  return get_counter (file, &file->n_aborts);
}

guint
test_txn_file_get_n_durable (TestTxnFile *file)
{
  return get_counter (file, &file->n_durable);
}

guint
test_txn_file_get_n_refreshes (TestTxnFile *file)
{
  return get_counter (file, &file->n_refreshes);
}

gboolean
test_txn_file_in_transaction (TestTxnFile *file)
{
  gboolean in;

  g_mutex_lock (&file->store->lock);
  in = file->in_txn;
  g_mutex_unlock (&file->store->lock);
  return in;
}
