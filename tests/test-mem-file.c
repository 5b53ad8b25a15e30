/* bigfile-glib tests - an in-memory BigfileFile with fault injection
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "test-mem-file.h"

struct _TestMemFile
{
  GObject parent_instance;

  GMutex lock; /* loads and stores may run on several threads */
  gsize block_size;
  GPtrArray *blocks;   /* guint8[block_size] or NULL (zeros) */
  GHashTable *n_loads; /* block -> count */
  guint total_loads;
  guint total_stores;
  GArray *store_log;
  GHashTable *fail_load; /* block -> GINT (1 error, 2 no error) */
  GHashTable *fail_store;
  gboolean not_thread_safe;
  gboolean sized; /* implements get_size and set_size */
  guint64 size;   /* when sized */
  gboolean junk_past_size;
  gboolean fail_set_size;
  GArray *set_size_log;  /* guint64 */
  GArray *store_lengths; /* gsize */
  TestMemFileHook load_hook, store_hook;
  gpointer load_hook_data, store_hook_data;
};

static void test_mem_file_iface_init (BigfileFileInterface *iface);

G_DEFINE_TYPE_WITH_CODE (TestMemFile, test_mem_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE, test_mem_file_iface_init))

guint8
test_mem_file_pattern (guint64 block, gsize i)
{
  return (guint8)((block * 131 + i * 7 + (i >> 12) * 3 + 1) & 0xff);
}

static gboolean
check_fail (TestMemFile *self, GHashTable *table, guint64 block, const char *what, GError **error)
{
  gpointer v = g_hash_table_lookup (table, &block);
  guint64 all = G_MAXUINT64;

  if (v == NULL)
    v = g_hash_table_lookup (table, &all);
  if (v == NULL)
    return TRUE;
  if (GPOINTER_TO_INT (v) == 1)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                 "injected %s failure of block %" G_GUINT64_FORMAT, what, block);
  return FALSE;
}

/* Sets the first @length bytes of @block, growing the file if needed (the
 * rest of a new block is zeros); lock held. */
static void
put_block_locked (TestMemFile *self, guint64 block, const guint8 *data, gsize length)
{
  if (block >= self->blocks->len)
    g_ptr_array_set_size (self->blocks, (guint)block + 1);
  if (g_ptr_array_index (self->blocks, block) == NULL)
    g_ptr_array_index (self->blocks, block) = g_malloc0 (self->block_size);
  memcpy (g_ptr_array_index (self->blocks, block), data, length);
}

static gboolean
mem_load (TestMemFile *self, guint64 block, guint8 *buffer, GError **error)
{
  guint64 *key;
  gboolean ok;

  if (self->load_hook != NULL)
    self->load_hook (self, block, self->load_hook_data);

  g_mutex_lock (&self->lock);
  self->total_loads++;
  key = g_new (guint64, 1);
  *key = block;
  g_hash_table_replace (
      self->n_loads, key,
      GUINT_TO_POINTER (GPOINTER_TO_UINT (g_hash_table_lookup (self->n_loads, &block)) + 1));
  ok = check_fail (self, self->fail_load, block, "load", error);
  if (ok)
    {
      if (block < self->blocks->len && g_ptr_array_index (self->blocks, block) != NULL)
        memcpy (buffer, g_ptr_array_index (self->blocks, block), self->block_size);
      else
        memset (buffer, 0, self->block_size);
      if (self->sized && self->junk_past_size)
        for (gsize i = 0; i < self->block_size; i++)
          if (block * self->block_size + i >= self->size)
            buffer[i] = 0xa5;
    }
  g_mutex_unlock (&self->lock);
  return ok;
}

static gboolean
mem_store (TestMemFile *self, guint64 block, const guint8 *data, gsize length, GError **error)
{
  gboolean ok;

  if (self->store_hook != NULL)
    self->store_hook (self, block, self->store_hook_data);

  g_mutex_lock (&self->lock);
  /* What a handle promises: whole blocks without a size, never a byte
   * past the size with one. */
  g_assert_cmpuint (length, >, 0);
  g_assert_cmpuint (length, <=, self->block_size);
  if (self->sized)
    g_assert_cmpuint (block * self->block_size + length, <=, self->size);
  else
    g_assert_cmpuint (length, ==, self->block_size);
  ok = check_fail (self, self->fail_store, block, "store", error);
  if (ok)
    {
      self->total_stores++;
      g_array_append_val (self->store_log, block);
      g_array_append_val (self->store_lengths, length);
      put_block_locked (self, block, data, length);
    }
  g_mutex_unlock (&self->lock);
  return ok;
}

static gsize
test_mem_file_get_block_size (BigfileFile *file)
{
  return TEST_MEM_FILE (file)->block_size;
}

static gboolean
test_mem_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                              GError **error)
{
  TestMemFile *self = TEST_MEM_FILE (file);

  g_assert_cmpuint (length, ==, self->block_size);
  return mem_load (self, block, buffer, error);
}

static gboolean
test_mem_file_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data, gsize length,
                               GError **error)
{
  return mem_store (TEST_MEM_FILE (file), block, data, length, error);
}

static gboolean
test_mem_file_get_size_vfunc (BigfileFile *file, guint64 *size, GError **error)
{
  TestMemFile *self = TEST_MEM_FILE (file);

  if (!self->sized)
    return FALSE;
  *size = test_mem_file_get_size (self);
  return TRUE;
}

/* Like ftruncate(): blocks past the size go, the rest of the last one is
 * cleared, so that the file grows with zeros. */
static gboolean
test_mem_file_set_size_vfunc (BigfileFile *file, guint64 size, GError **error)
{
  TestMemFile *self = TEST_MEM_FILE (file);
  guint64 n_blocks = (size + self->block_size - 1) / self->block_size;

  if (!self->sized)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
                   "this TestMemFile has no size");
      return FALSE;
    }
  g_mutex_lock (&self->lock);
  g_array_append_val (self->set_size_log, size);
  if (self->fail_set_size)
    {
      g_mutex_unlock (&self->lock);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                   "injected failure to make the file %" G_GUINT64_FORMAT " bytes long", size);
      return FALSE;
    }
  if (n_blocks < self->blocks->len)
    g_ptr_array_set_size (self->blocks, (guint)n_blocks);
  /* From the lower of the two sizes on, the file reads as zeros. */
  for (guint64 b = MIN (self->size, size) / self->block_size; b < self->blocks->len; b++)
    {
      guint8 *data = g_ptr_array_index (self->blocks, b);
      guint64 start = b * self->block_size;
      guint64 from = MIN (self->size, size);

      if (data != NULL)
        memset (data + (from > start ? from - start : 0), 0,
                self->block_size - (from > start ? from - start : 0));
    }
  self->size = size;
  g_mutex_unlock (&self->lock);
  return TRUE;
}

/* Its state is under its own mutex, and hooks decide the rest. */
static gboolean
test_mem_file_is_thread_safe (BigfileFile *file)
{
  return !TEST_MEM_FILE (file)->not_thread_safe;
}

static void
test_mem_file_iface_init (BigfileFileInterface *iface)
{
  iface->get_block_size = test_mem_file_get_block_size;
  iface->load_block_raw = test_mem_file_load_block_raw;
  iface->store_block_raw = test_mem_file_store_block_raw;
  iface->is_thread_safe = test_mem_file_is_thread_safe;
  iface->get_size = test_mem_file_get_size_vfunc;
  iface->set_size = test_mem_file_set_size_vfunc;
}

static void
test_mem_file_finalize (GObject *object)
{
  TestMemFile *self = TEST_MEM_FILE (object);

  g_ptr_array_unref (self->blocks);
  g_hash_table_unref (self->n_loads);
  g_hash_table_unref (self->fail_load);
  g_hash_table_unref (self->fail_store);
  g_array_unref (self->store_log);
  g_array_unref (self->set_size_log);
  g_array_unref (self->store_lengths);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (test_mem_file_parent_class)->finalize (object);
}

static void
test_mem_file_class_init (TestMemFileClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = test_mem_file_finalize;
}

static void
test_mem_file_init (TestMemFile *self)
{
  g_mutex_init (&self->lock);
  self->blocks = g_ptr_array_new_with_free_func (g_free);
  self->n_loads = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  self->fail_load = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  self->fail_store = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  self->store_log = g_array_new (FALSE, FALSE, sizeof (guint64));
  self->set_size_log = g_array_new (FALSE, FALSE, sizeof (guint64));
  self->store_lengths = g_array_new (FALSE, FALSE, sizeof (gsize));
}

TestMemFile *
test_mem_file_new (gsize block_size, guint64 n_blocks)
{
  TestMemFile *self = g_object_new (TEST_TYPE_MEM_FILE, NULL);

  self->block_size = block_size;
  g_ptr_array_set_size (self->blocks, (guint)n_blocks);
  for (guint64 b = 0; b < n_blocks; b++)
    {
      guint8 *data = g_malloc (block_size);
      for (gsize i = 0; i < block_size; i++)
        data[i] = test_mem_file_pattern (b, i);
      g_ptr_array_index (self->blocks, b) = data;
    }
  return self;
}

TestMemFile *
test_mem_file_new_sized (gsize block_size, guint64 size)
{
  TestMemFile *self = test_mem_file_new (block_size, (size + block_size - 1) / block_size);

  self->sized = TRUE;
  self->size = size;
  return self;
}

guint64
test_mem_file_get_size (TestMemFile *self)
{
  guint64 size;

  g_mutex_lock (&self->lock);
  size = self->size;
  g_mutex_unlock (&self->lock);
  return size;
}

void
test_mem_file_set_junk_past_size (TestMemFile *self, gboolean junk)
{
  self->junk_past_size = junk;
}

GArray *
test_mem_file_get_set_size_log (TestMemFile *self)
{
  return self->set_size_log;
}

GArray *
test_mem_file_get_store_lengths (TestMemFile *self)
{
  return self->store_lengths;
}

void
test_mem_file_set_fail_set_size (TestMemFile *self, gboolean fail)
{
  self->fail_set_size = fail;
}

const guint8 *
test_mem_file_peek (TestMemFile *self, guint64 block)
{
  static guint8 *zeros;
  static gsize zeros_len;

  if (block < self->blocks->len && g_ptr_array_index (self->blocks, block) != NULL)
    return g_ptr_array_index (self->blocks, block);
  if (zeros_len < self->block_size)
    {
      g_free (zeros);
      zeros = g_malloc0 (self->block_size);
      zeros_len = self->block_size;
    }
  return zeros;
}

void
test_mem_file_poke (TestMemFile *self, guint64 block, const guint8 *data)
{
  g_mutex_lock (&self->lock);
  put_block_locked (self, block, data, self->block_size);
  g_mutex_unlock (&self->lock);
}

guint
test_mem_file_get_n_loads (TestMemFile *self, guint64 block)
{
  guint n;

  g_mutex_lock (&self->lock);
  n = GPOINTER_TO_UINT (g_hash_table_lookup (self->n_loads, &block));
  g_mutex_unlock (&self->lock);
  return n;
}

guint
test_mem_file_get_total_loads (TestMemFile *self)
{
  return self->total_loads;
}

guint
test_mem_file_get_total_stores (TestMemFile *self)
{
  return self->total_stores;
}

GArray *
test_mem_file_get_store_log (TestMemFile *self)
{
  return self->store_log;
}

void
test_mem_file_reset_counters (TestMemFile *self)
{
  g_mutex_lock (&self->lock);
  g_hash_table_remove_all (self->n_loads);
  self->total_loads = 0;
  self->total_stores = 0;
  g_array_set_size (self->store_log, 0);
  g_array_set_size (self->store_lengths, 0);
  g_array_set_size (self->set_size_log, 0);
  g_mutex_unlock (&self->lock);
}

static void
set_fail (TestMemFile *self, GHashTable *table, guint64 block, gboolean fail, gboolean no_gerror)
{
  g_mutex_lock (&self->lock);
  if (fail)
    {
      guint64 *key = g_new (guint64, 1);
      *key = block;
      g_hash_table_replace (table, key, GINT_TO_POINTER (no_gerror ? 2 : 1));
    }
  else
    g_hash_table_remove (table, &block);
  g_mutex_unlock (&self->lock);
}

void
test_mem_file_set_fail_load (TestMemFile *self, guint64 block, gboolean fail, gboolean no_gerror)
{
  set_fail (self, self->fail_load, block, fail, no_gerror);
}

void
test_mem_file_set_fail_store (TestMemFile *self, guint64 block, gboolean fail, gboolean no_gerror)
{
  set_fail (self, self->fail_store, block, fail, no_gerror);
}

void
test_mem_file_set_thread_safe (TestMemFile *self, gboolean thread_safe)
{
  self->not_thread_safe = !thread_safe;
}

void
test_mem_file_set_load_hook (TestMemFile *self, TestMemFileHook hook, gpointer user_data)
{
  self->load_hook = hook;
  self->load_hook_data = user_data;
}

void
test_mem_file_set_store_hook (TestMemFile *self, TestMemFileHook hook, gpointer user_data)
{
  self->store_hook = hook;
  self->store_hook_data = user_data;
}
