/* bigfile-glib - the BigfileFile interface: storage of fixed-size blocks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bigfile-private.h"

#include <string.h>

/**
 * SECTION:bigfile-file
 * @title: BigfileFile
 * @short_description: Storage of fixed-size blocks, behind a handle
 * @include: bigfile-glib/bigfile.h
 * @see_also: #BigfileLocalFile, #BigfileHandle
 *
 * #BigfileFile is the interface a #BigfileHandle loads its pages from and
 * stores its dirty pages to: an array of blocks of one size, a power of two
 * from 4 KiB to 2 MiB. #BigfileLocalFile implements it over a regular
 * file; implement it yourself, in C, Python or JavaScript, to map anything
 * else.
 *
 * A C implementation may give the raw-buffer methods, which save a copy,
 * and say that it is thread-safe (`is_thread_safe`): its blocks then load on
 * whichever thread faults, and asynchronous writeouts store them from a
 * worker thread. Implementations in other languages give the #GBytes methods
 * and are called on the thread that opened the handle only. A load runs
 * inside a page fault: see [the threading rules][bigfile-threads] for what
 * it may do there.
 */

/**
 * BigfileFile:
 *
 * Storage of fixed-size blocks: what a #BigfileHandle loads its pages from
 * and stores its dirty pages to.
 *
 * A #BigfileFile is an array of blocks, numbered from 0, all of the same
 * size (bigfile_file_get_block_size(): a power of two from 4 KiB to 2 MiB).
 * One block becomes one page of a handle. A block that was never stored
 * loads as zeros.
 *
 * A file may have a size in bytes, which need not be a multiple of the
 * block size: one that implements `get_size` (bigfile_file_get_size()) and,
 * if it is writable, `set_size` (bigfile_file_set_size()), as
 * #BigfileLocalFile does. A #BigfileHandle of such a file keeps the size: it
 * shows zeros past it whatever the file's loads return there, stores the
 * block that holds the size with only the bytes below it (a shorter #GBytes
 * for `store_block`, a shorter length for `store_block_raw`) and never
 * stores a block wholly past it, and changes the size only when the program
 * asks (bigfile_handle_set_size()) or wrote something other than zeros past
 * it; see #BigfileHandle:size. A file without a size is an endless array of
 * blocks: its handles store whole blocks, and show what its loads return.
 *
 * #BigfileLocalFile implements it over a regular file. Implement it yourself
 * to map anything else: a database, a network store, a computed array.
 *
 * Implementations give either the #GBytes methods (`load_block` and
 * `store_block` of #BigfileFileInterface), which work from every language,
 * or the raw-buffer methods (`load_block_raw` and `store_block_raw`), a C
 * fast path that saves a copy; each pair falls back on the other. A
 * read-only file may leave out both store methods. The #GBytes given to
 * `store_block` is the implementation's own: it may keep it. The buffer
 * given to `load_block_raw` holds zeros on entry, so a load may write only
 * the bytes that are not zero, and whatever it leaves alone reads as zeros,
 * never as another page's data.
 *
 * Loads run when a program touches a page that is not in memory, on the
 * thread that touched it, which may be any thread; stores run in
 * bigfile_handle_writeout(), on its caller's thread. An implementation
 * written in a language that runs only on one thread (JavaScript in gjs)
 * fails from other threads, and the page then cannot be loaded: use such
 * files from that thread only. Loads and stores of the same handle may run
 * concurrently on different threads.
 *
 * On failure a method returns %FALSE (or %NULL) and sets its #GError; a
 * failure without a #GError (an exception in a binding that is not a
 * GLib.Error) becomes %BIGFILE_FILE_ERROR_FAILED.
 *
 * A load or store must not call back into the #BigfileHandle or #BigfileVma
 * it serves for the page it is loading or storing: it would wait for
 * itself.
 *
 * A minimal implementation in C, a file of zeros with one block computed:
 *
 * |[<!-- language="C" -->
 * static gsize
 * my_file_get_block_size (BigfileFile *file)
 * {
 *   return 64 * 1024;
 * }
 *
 * // buffer holds zeros on entry: write only what is not zero.
 * static gboolean
 * my_file_load_block_raw (BigfileFile *file, guint64 block,
 *                         guint8 *buffer, gsize length, GError **error)
 * {
 *   if (block == 7)
 *     buffer[0] = 42;
 *   return TRUE;
 * }
 *
 * static void
 * my_file_iface_init (BigfileFileInterface *iface)
 * {
 *   iface->get_block_size = my_file_get_block_size;
 *   iface->load_block_raw = my_file_load_block_raw;
 * }
 *
 * G_DEFINE_TYPE_WITH_CODE (MyFile, my_file, G_TYPE_OBJECT,
 *                          G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE, my_file_iface_init))
 * ]|
 *
 * Since: 1.0
 */

G_DEFINE_INTERFACE (BigfileFile, bigfile_file, G_TYPE_OBJECT)

/* get_size, set_size and the four transaction methods took slots of the
 * padding: the structure keeps its size, so implementations built against
 * the first layout still fit. */
G_STATIC_ASSERT (sizeof (BigfileFileInterface) == sizeof (GTypeInterface) + 13 * sizeof (gpointer));

enum
{
  SIGNAL_CHANGED,
  N_SIGNALS
};

static guint file_signals[N_SIGNALS];

static void
bigfile_file_default_init (BigfileFileInterface *iface)
{
  /**
   * BigfileFile::changed:
   * @file: the #BigfileFile
   *
   * Another client committed a change of the storage that @file's snapshot
   * does not show yet: bigfile_file_refresh() would report it. A
   * #BigfileHandle of @file refreshes on it (see
   * #BigfileHandle:auto-refresh), which drops its clean pages of the
   * blocks that changed and emits #BigfileHandle::page-invalidated.
   *
   * Implementations that can learn of other clients' commits emit it with
   * bigfile_file_changed(), on the main context that was the thread-default
   * one when the file was made, at least once after each such commit
   * (several commits may share one emission).
   *
   * Since: 1.0
   */
  file_signals[SIGNAL_CHANGED]
      = g_signal_new ("changed", G_TYPE_FROM_INTERFACE (iface), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 0);
}

/* Finishes a call of an implementation's method, which returned @ok and set
 * @local (taken). A failure always comes with an error: one without a
 * GError, common from bindings (see BigfileFile's docs), gets the error the
 * caller is owed. A success never does: a GError set anyway is a bug of the
 * implementation, dropped (with a warning) so that it cannot leak or
 * confuse callers. Returns @ok. */
static gboolean
finish_call (BigfileFile *file, const char *what, guint64 block, gboolean ok, GError *local,
             GError **error)
{
  if (ok)
    {
      if (local != NULL)
        {
          g_warning ("%s block %" G_GUINT64_FORMAT " of %s succeeded but set an error: %s", what,
                     block, G_OBJECT_TYPE_NAME (file), local->message);
          g_error_free (local);
        }
      return TRUE;
    }

  if (local != NULL)
    g_propagate_error (error, local);
  else
    g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                 "%s block %" G_GUINT64_FORMAT " of %s failed without giving a reason", what, block,
                 G_OBJECT_TYPE_NAME (file));
  return FALSE;
}

static void
set_not_supported_error (GError **error, BigfileFile *file, const char *what, guint64 block)
{
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
               "%s block %" G_GUINT64_FORMAT " failed: %s does not implement it", what, block,
               G_OBJECT_TYPE_NAME (file));
}

/* Calls the GBytes load method, making sure that a failure has an error and
 * that a success holds no more than @block_size bytes. It does not ask @file
 * for its block size: bigfile_file_load_block_raw() passes its buffer's. */
static GBytes *
call_load_block (BigfileFile *file, BigfileFileInterface *iface, guint64 block, gsize block_size,
                 GError **error)
{
  GError *local = NULL;
  GBytes *bytes;

  bytes = iface->load_block (file, block, &local);
  if (!finish_call (file, "Loading", block, bytes != NULL, local, error))
    return NULL;

  if (g_bytes_get_size (bytes) > block_size)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_DATA,
                   "Loading block %" G_GUINT64_FORMAT " of %s gave %" G_GSIZE_FORMAT
                   " bytes, but a block holds %" G_GSIZE_FORMAT,
                   block, G_OBJECT_TYPE_NAME (file), g_bytes_get_size (bytes), block_size);
      g_bytes_unref (bytes);
      return NULL;
    }

  return bytes;
}

/* Whether the raw load of @file is known to write every byte of its buffer,
 * so that call_load_block_raw() need not clear it first. BigfileLocalFile
 * (a final type) reads the block and zeroes what lies past the end of the
 * file. */
static gboolean
raw_load_fills_buffer (BigfileFile *file)
{
  return BIGFILE_IS_LOCAL_FILE (file);
}

/* Calls the raw load method, making sure that a failure has an error, and
 * that the buffer holds zeros on entry (the contract of load_block_raw in
 * BigfileFileInterface): a handle's buffer is page memory that another
 * page, maybe of another file, used last, and bytes a load leaves alone
 * must not show that page. Clearing a buffer that the load then fills costs
 * about 0.1 us for 4 KiB and 65 us for 2 MiB (it warms the cache for the
 * load's writes), next to faults of about 15 us and 400 us; the
 * implementations known to fill are spared it. */
static gboolean
call_load_block_raw (BigfileFile *file, BigfileFileInterface *iface, guint64 block, guint8 *buffer,
                     gsize length, GError **error)
{
  GError *local = NULL;
  gboolean ok;

  if (!raw_load_fills_buffer (file))
    memset (buffer, 0, length);
  ok = iface->load_block_raw (file, block, buffer, length, &local);
  return finish_call (file, "Loading", block, ok, local, error);
}

/**
 * bigfile_file_is_thread_safe:
 * @file: a #BigfileFile
 *
 * Tells whether the load and store methods of @file may be called from any
 * thread, also several at once. A file whose implementation does not say
 * (every file implemented in JavaScript or Python) is not: a #BigfileHandle
 * then calls its methods only on the thread that opened the handle, and
 * fails with %BIGFILE_FILE_ERROR_WRONG_THREAD where a block is needed on
 * another thread, and bigfile_handle_writeout_async() stores its blocks in
 * slices on the handle's main context instead of in a worker thread.
 *
 * Returns: %TRUE if @file may be used from any thread
 *
 * Since: 1.0
 */
gboolean
bigfile_file_is_thread_safe (BigfileFile *file)
{
  BigfileFileInterface *iface;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), FALSE);

  iface = BIGFILE_FILE_GET_IFACE (file);
  return iface->is_thread_safe != NULL && iface->is_thread_safe (file);
}

/**
 * bigfile_file_get_block_size:
 * @file: a #BigfileFile
 *
 * Gets the size of the blocks of @file: a power of two from 4 KiB to 2 MiB,
 * the same over the file's whole life. It is the page size of the handles
 * of @file.
 *
 * Returns: the block size in bytes
 *
 * Since: 1.0
 */
gsize
bigfile_file_get_block_size (BigfileFile *file)
{
  BigfileFileInterface *iface;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), 0);

  iface = BIGFILE_FILE_GET_IFACE (file);
  g_return_val_if_fail (iface->get_block_size != NULL, 0);

  return iface->get_block_size (file);
}

/**
 * bigfile_file_load_block:
 * @file: a #BigfileFile
 * @block: the number of the block, from 0
 * @error: return location for a #GError
 *
 * Loads one block of @file.
 *
 * The data may be shorter than the block size (for example past the end of
 * a file): whoever maps it treats the rest as zeros. It is never longer: an
 * implementation that returns more gives %BIGFILE_FILE_ERROR_INVALID_DATA.
 *
 * When @file implements only the raw method, this allocates a block and
 * calls it.
 *
 * Returns: (transfer full): the contents of the block, or %NULL on error
 *
 * Since: 1.0
 */
GBytes *
bigfile_file_load_block (BigfileFile *file, guint64 block, GError **error)
{
  BigfileFileInterface *iface;
  gsize block_size;
  guint8 *buffer;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  iface = BIGFILE_FILE_GET_IFACE (file);
  block_size = bigfile_file_get_block_size (file);
  g_return_val_if_fail (block_size > 0, NULL);

  if (iface->load_block != NULL)
    return call_load_block (file, iface, block, block_size, error);

  if (iface->load_block_raw == NULL)
    {
      set_not_supported_error (error, file, "Loading", block);
      return NULL;
    }

  buffer = g_malloc (block_size);
  if (!call_load_block_raw (file, iface, block, buffer, block_size, error))
    {
      g_free (buffer);
      return NULL;
    }

  return g_bytes_new_take (buffer, block_size);
}

/**
 * bigfile_file_store_block:
 * @file: a #BigfileFile
 * @block: the number of the block, from 0
 * @data: (transfer none): the new contents of the block:
 *   bigfile_file_get_block_size() bytes, or fewer (not 0) for the block
 *   that holds the size of a file that has one
 * @error: return location for a #GError
 *
 * Stores one block of @file: the whole block, or for a file with a size
 * (bigfile_file_get_size()), the bytes of the block that lie below the
 * size, which may be fewer. A #BigfileHandle never stores past the size
 * of a file that has one.
 *
 * When @file implements only the raw method, this calls it with the data
 * of @data. A read-only file fails with %BIGFILE_FILE_ERROR_READ_ONLY, or
 * %BIGFILE_FILE_ERROR_NOT_SUPPORTED when it has no store method at all.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_file_store_block (BigfileFile *file, guint64 block, GBytes *data, GError **error)
{
  BigfileFileInterface *iface;
  GError *local = NULL;
  gboolean ok;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), FALSE);
  g_return_val_if_fail (data != NULL, FALSE);
  g_return_val_if_fail (g_bytes_get_size (data) > 0
                            && g_bytes_get_size (data) <= bigfile_file_get_block_size (file),
                        FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  iface = BIGFILE_FILE_GET_IFACE (file);

  if (iface->store_block != NULL)
    ok = iface->store_block (file, block, data, &local);
  else if (iface->store_block_raw != NULL)
    ok = iface->store_block_raw (file, block, g_bytes_get_data (data, NULL),
                                 g_bytes_get_size (data), &local);
  else
    {
      set_not_supported_error (error, file, "Storing", block);
      return FALSE;
    }

  return finish_call (file, "Storing", block, ok, local, error);
}

/**
 * bigfile_file_get_size:
 * @file: a #BigfileFile
 * @size: (out) (optional): where to put the size of @file in bytes
 * @error: return location for a #GError
 *
 * Gets the size of @file, for a file that has one: a #BigfileHandle asks
 * once, when it opens the file (bigfile_handle_new()), and keeps the size
 * from then on (see #BigfileHandle:size).
 *
 * A file that does not implement `get_size` has no size: this returns
 * %FALSE without setting @error, as does an implementation that returns
 * %FALSE without an error. So a Python method that raises an exception
 * other than `GLib.Error` (PyGObject prints it and returns no error) makes
 * a file without a size, as files were before sizes existed: its handles
 * store whole blocks and lose nothing. (gjs turns every exception into a
 * #GError: the open fails.)
 *
 * An implementation in Python returns a tuple, `(True, size)` or
 * `(False, 0)`; in JavaScript an array, `[true, size]` or `[false, 0]`.
 * Sizes from 0 to %G_MAXINT64 are valid; a larger one fails with
 * %BIGFILE_FILE_ERROR_INVALID_DATA.
 *
 * Returns: %TRUE with @size set if @file has a size; %FALSE if it has none
 *   (@error not set) or on error (@error set)
 *
 * Since: 1.0
 */
gboolean
bigfile_file_get_size (BigfileFile *file, guint64 *size, GError **error)
{
  BigfileFileInterface *iface;
  GError *local = NULL;
  guint64 value = 0;
  gboolean ok;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  iface = BIGFILE_FILE_GET_IFACE (file);
  if (iface->get_size == NULL)
    return FALSE;

  ok = iface->get_size (file, &value, &local);
  if (!ok)
    {
      /* Unlike the other methods, FALSE without an error has a meaning
       * here: no size. */
      if (local != NULL)
        g_propagate_error (error, local);
      return FALSE;
    }
  if (local != NULL)
    {
      g_warning ("Getting the size of %s succeeded but set an error: %s", G_OBJECT_TYPE_NAME (file),
                 local->message);
      g_error_free (local);
    }
  if (value > (guint64)G_MAXINT64)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_DATA,
                   "The size of %s, %" G_GUINT64_FORMAT " bytes, is larger than any file offset",
                   G_OBJECT_TYPE_NAME (file), value);
      return FALSE;
    }

  if (size != NULL)
    *size = value;
  return TRUE;
}

/**
 * bigfile_file_set_size:
 * @file: a #BigfileFile
 * @size: the new size in bytes, at most %G_MAXINT64
 * @error: return location for a #GError
 *
 * Makes @file @size bytes long, like `ftruncate()`: the bytes past @size
 * are dropped, and a file that grows reads as zeros from its old size on.
 * Only files that have a size (bigfile_file_get_size()) implement it.
 *
 * A #BigfileHandle calls it at writeout (%BIGFILE_WRITEOUT_STORE), before
 * storing pages, when the handle's size is not the one it last knew the
 * file to have: after bigfile_handle_set_size(), or when the program wrote
 * past the size.
 *
 * Fails with %BIGFILE_FILE_ERROR_NOT_SUPPORTED if @file does not implement
 * it, and with the implementation's error otherwise (a failure without
 * one gives %BIGFILE_FILE_ERROR_FAILED).
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_file_set_size (BigfileFile *file, guint64 size, GError **error)
{
  BigfileFileInterface *iface;
  GError *local = NULL;
  gboolean ok;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), FALSE);
  g_return_val_if_fail (size <= (guint64)G_MAXINT64, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  iface = BIGFILE_FILE_GET_IFACE (file);
  if (iface->set_size == NULL)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
                   "Setting the size of %s to %" G_GUINT64_FORMAT
                   " bytes failed: it does not implement set_size",
                   G_OBJECT_TYPE_NAME (file), size);
      return FALSE;
    }

  ok = iface->set_size (file, size, &local);
  if (ok && local != NULL)
    {
      g_warning ("Setting the size of %s succeeded but set an error: %s", G_OBJECT_TYPE_NAME (file),
                 local->message);
      g_clear_error (&local);
    }
  else if (!ok && local != NULL)
    g_propagate_error (error, local);
  else if (!ok)
    g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                 "Setting the size of %s to %" G_GUINT64_FORMAT
                 " bytes failed without giving a reason",
                 G_OBJECT_TYPE_NAME (file), size);
  return ok;
}

/**
 * bigfile_file_load_block_raw: (skip)
 * @file: a #BigfileFile
 * @block: the number of the block, from 0
 * @buffer: (array length=length) (out caller-allocates): where to put the block
 * @length: (in): the size of @buffer: the block size of @file
 * @error: return location for a #GError
 *
 * Loads one block of @file into @buffer, without the copy that
 * bigfile_file_load_block() may cost. This is what a #BigfileHandle calls
 * to fill a page: C only.
 *
 * @buffer is filled whole, whatever it held before: the raw method of @file
 * gets it cleared (see #BigfileFileInterface), so bytes it does not write
 * are zeros; when @file implements only the #GBytes method and gives less
 * data, the rest is zeros; when it gives more than @length bytes, this
 * fails with %BIGFILE_FILE_ERROR_INVALID_DATA. On error the contents of
 * @buffer are undefined.
 *
 * This does not ask @file for its block size, so it may run on any thread
 * for a file whose raw method may.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                             GError **error)
{
  BigfileFileInterface *iface;
  GBytes *bytes;
  gsize size;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), FALSE);
  g_return_val_if_fail (buffer != NULL, FALSE);
  g_return_val_if_fail (length > 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  iface = BIGFILE_FILE_GET_IFACE (file);

  if (iface->load_block_raw != NULL)
    return call_load_block_raw (file, iface, block, buffer, length, error);

  if (iface->load_block == NULL)
    {
      set_not_supported_error (error, file, "Loading", block);
      return FALSE;
    }

  /* call_load_block() checks the size of the data against @length, not
   * against the block size, so that this path needs no call to
   * get_block_size (which a binding might not be able to run on this
   * thread). */
  bytes = call_load_block (file, iface, block, length, error);
  if (bytes == NULL)
    return FALSE;

  size = g_bytes_get_size (bytes);
  if (size > 0)
    memcpy (buffer, g_bytes_get_data (bytes, NULL), size);
  memset (buffer + size, 0, length - size);
  g_bytes_unref (bytes);

  return TRUE;
}

/**
 * bigfile_file_store_block_raw: (skip)
 * @file: a #BigfileFile
 * @block: the number of the block, from 0
 * @data: (array length=length): the new contents of the block
 * @length: (in): the size of @data: the block size of @file, or fewer
 *   bytes (not 0) for the block that holds the size of a file that has one
 * @error: return location for a #GError
 *
 * Stores one block of @file from @data, without the copy or allocation
 * that bigfile_file_store_block() may cost. This is what
 * bigfile_handle_writeout() calls for each dirty page: C only. As with
 * bigfile_file_store_block(), a file with a size gets only the bytes below
 * its size for the block that holds it.
 *
 * When @file implements only the #GBytes method, it is given a copy of
 * @data, so that it may keep it: bindings can hold on to the memory of a
 * #GBytes (gjs's `toArray()` does not copy), and @data is page memory that
 * changes and is reused after this returns.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_file_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data, gsize length,
                              GError **error)
{
  BigfileFileInterface *iface;
  GError *local = NULL;
  gboolean ok;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), FALSE);
  g_return_val_if_fail (data != NULL, FALSE);
  g_return_val_if_fail (length > 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  iface = BIGFILE_FILE_GET_IFACE (file);

  if (iface->store_block_raw != NULL)
    ok = iface->store_block_raw (file, block, data, length, &local);
  else if (iface->store_block != NULL)
    {
      /* A copy, not g_bytes_new_static(): see the comment above. This path
       * serves implementations in other languages, for which a memcpy of a
       * block is small next to the call itself. */
      GBytes *bytes = g_bytes_new (data, length);

      ok = iface->store_block (file, block, bytes, &local);
      g_bytes_unref (bytes);
    }
  else
    {
      set_not_supported_error (error, file, "Storing", block);
      return FALSE;
    }

  return finish_call (file, "Storing", block, ok, local, error);
}

/**
 * bigfile_file_is_transactional:
 * @file: a #BigfileFile
 *
 * Tells whether @file implements transactions (`begin_transaction`,
 * `commit_transaction` and `abort_transaction` of #BigfileFileInterface):
 * a writeout of a #BigfileHandle of such a file then stores inside a
 * transaction and marks pages clean only once it committed (see
 * [Transactions][bigfile-transactions]). Whether the commit is atomic,
 * all of the writeout's pages or none, is the implementation's promise:
 * #BigfileSqliteFile, #BigfilePgFile and a #BigfileLocalFile opened with
 * %BIGFILE_LOCAL_FILE_FLAGS_ATOMIC keep it; a plain #BigfileLocalFile
 * implements the methods to make commits durable, and its stores go
 * straight to the file.
 *
 * Returns: %TRUE if @file is transactional
 *
 * Since: 1.0
 */
gboolean
bigfile_file_is_transactional (BigfileFile *file)
{
  BigfileFileInterface *iface;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), FALSE);

  iface = BIGFILE_FILE_GET_IFACE (file);
  return iface->begin_transaction != NULL && iface->commit_transaction != NULL
         && iface->abort_transaction != NULL;
}

/* A success or a failure with its error, as finish_call() does, for the
 * methods that are not about one block. */
static gboolean
finish_file_call (BigfileFile *file, const char *what, gboolean ok, GError *local, GError **error)
{
  if (ok)
    {
      if (local != NULL)
        {
          g_warning ("%s of %s succeeded but set an error: %s", what, G_OBJECT_TYPE_NAME (file),
                     local->message);
          g_error_free (local);
        }
      return TRUE;
    }

  if (local != NULL)
    g_propagate_error (error, local);
  else
    g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                 "%s of %s failed without giving a reason", what, G_OBJECT_TYPE_NAME (file));
  return FALSE;
}

/**
 * bigfile_file_begin_transaction:
 * @file: a #BigfileFile
 * @error: return location for a #GError
 *
 * Starts a write transaction of @file: the stores and size changes until
 * bigfile_file_commit_transaction() or bigfile_file_abort_transaction()
 * belong to it, invisible to other clients, and no other client commits a
 * change of @file meanwhile. May block while another client's transaction
 * of @file runs; fails with %BIGFILE_FILE_ERROR_BUSY if that lasts longer
 * than the file waits.
 *
 * A #BigfileHandle calls it at the start of a writeout that stores. For a
 * file that is not transactional (bigfile_file_is_transactional()) it does
 * nothing and succeeds.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_file_begin_transaction (BigfileFile *file, GError **error)
{
  GError *local = NULL;
  gboolean ok;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!bigfile_file_is_transactional (file))
    return TRUE;
  ok = BIGFILE_FILE_GET_IFACE (file)->begin_transaction (file, &local);
  return finish_file_call (file, "Beginning a transaction", ok, local, error);
}

/**
 * bigfile_file_commit_transaction:
 * @file: a #BigfileFile
 * @flags: how to commit
 * @error: return location for a #GError
 *
 * Commits the transaction begun by bigfile_file_begin_transaction(): its
 * stores and size changes become visible to every client at once, all of
 * them or none, and durable before this returns if @flags has
 * %BIGFILE_COMMIT_FLAGS_DURABLE. On failure the storage holds nothing of
 * the transaction, which is over.
 *
 * For a file that is not transactional it does nothing and succeeds.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_file_commit_transaction (BigfileFile *file, BigfileCommitFlags flags, GError **error)
{
  GError *local = NULL;
  gboolean ok;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), FALSE);
  g_return_val_if_fail ((flags & ~BIGFILE_COMMIT_FLAGS_DURABLE) == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!bigfile_file_is_transactional (file))
    return TRUE;
  ok = BIGFILE_FILE_GET_IFACE (file)->commit_transaction (file, flags, &local);
  return finish_file_call (file, "Committing a transaction", ok, local, error);
}

/**
 * bigfile_file_abort_transaction:
 * @file: a #BigfileFile
 *
 * Throws away the transaction begun by bigfile_file_begin_transaction():
 * the storage is as it was before it. For a file that is not transactional
 * it does nothing.
 *
 * Since: 1.0
 */
void
bigfile_file_abort_transaction (BigfileFile *file)
{
  g_return_if_fail (BIGFILE_IS_FILE (file));

  if (bigfile_file_is_transactional (file))
    BIGFILE_FILE_GET_IFACE (file)->abort_transaction (file);
}

/**
 * bigfile_file_refresh:
 * @file: a #BigfileFile
 * @error: return location for a #GError
 *
 * Moves the snapshot of @file to the newest committed state of its storage,
 * and tells which blocks other clients changed between the old snapshot and
 * the new one: loads that start afterwards read the new snapshot. The
 * array may hold a block more than once, in any order, and
 * %G_MAXUINT64 stands for "any block" (the file cannot tell which). A file
 * that does not implement `refresh` has no other clients it knows of: it
 * returns an empty array.
 *
 * A #BigfileHandle calls it in bigfile_handle_refresh() and at the start of
 * each writeout, inside the transaction.
 *
 * Returns: (transfer full) (element-type guint64): the blocks that
 *   changed, or %NULL with @error set on error (the snapshot is then the
 *   old one)
 *
 * Since: 1.0
 */
GArray *
bigfile_file_refresh (BigfileFile *file, GError **error)
{
  BigfileFileInterface *iface;
  GError *local = NULL;
  GArray *changed;

  g_return_val_if_fail (BIGFILE_IS_FILE (file), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  iface = BIGFILE_FILE_GET_IFACE (file);
  if (iface->refresh == NULL)
    return g_array_new (FALSE, FALSE, sizeof (guint64));

  changed = iface->refresh (file, &local);
  if (!finish_file_call (file, "Refreshing", changed != NULL, local, error))
    return NULL;
  if (g_array_get_element_size (changed) != sizeof (guint64))
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_DATA,
                   "Refreshing %s gave an array of elements of %u bytes, not of guint64",
                   G_OBJECT_TYPE_NAME (file), g_array_get_element_size (changed));
      g_array_unref (changed);
      return NULL;
    }
  return changed;
}

/**
 * bigfile_file_changed:
 * @file: a #BigfileFile
 *
 * Emits #BigfileFile::changed: for implementations, when they learn that
 * another client committed a change of the storage. Call it on the main
 * context that was the thread-default one when @file was made.
 *
 * Since: 1.0
 */
void
bigfile_file_changed (BigfileFile *file)
{
  g_return_if_fail (BIGFILE_IS_FILE (file));

  g_signal_emit (file, file_signals[SIGNAL_CHANGED], 0);
}
