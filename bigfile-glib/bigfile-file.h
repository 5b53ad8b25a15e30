/* bigfile-glib - the BigfileFile interface: storage of fixed-size blocks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(BIGFILE_INSIDE) && !defined(BIGFILE_COMPILATION)
#error "Only <bigfile-glib/bigfile.h> can be included directly."
#endif

#include <glib-object.h>
#include "bigfile-macros.h"

G_BEGIN_DECLS

/**
 * BigfileCommitFlags:
 * @BIGFILE_COMMIT_FLAGS_NONE: commit; durably only if the file always does
 *   (as the database files do unless told otherwise).
 * @BIGFILE_COMMIT_FLAGS_DURABLE: the commit is durable when
 *   bigfile_file_commit_transaction() returns: it survives a crash of the
 *   program and of the machine (a power loss), as far as the storage
 *   underneath keeps what it was told to flush.
 *
 * How bigfile_file_commit_transaction() commits.
 *
 * Since: 1.0
 */
typedef enum /*< flags >*/
{
  BIGFILE_COMMIT_FLAGS_NONE = 0,
  BIGFILE_COMMIT_FLAGS_DURABLE = 1 << 0,
} BigfileCommitFlags;

#define BIGFILE_TYPE_FILE (bigfile_file_get_type ())
BIGFILE_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (BigfileFile, bigfile_file, BIGFILE, FILE, GObject)

/**
 * BigfileFileInterface:
 * @g_iface: the parent interface
 * @get_block_size: returns the size of a block in bytes; a power of two
 *   from 4 KiB to 2 MiB. It must not change over the file's life.
 * @load_block: returns the contents of a block as #GBytes (shorter data is
 *   padded with zeros, as past the end of a file). The method for bindings.
 * @store_block: stores a whole block given as #GBytes. The method for bindings.
 * @load_block_raw: C fast path of @load_block: puts the block's @length
 *   bytes in @buffer, which holds zeros on entry, so bytes it leaves alone
 *   read as zeros (a sparse block may write only its data). It must not
 *   keep @buffer past the call: it is page memory that serves other pages,
 *   maybe of other files, afterwards.
 * @store_block_raw: C fast path of @store_block: stores @length bytes from @data.
 * @is_thread_safe: returns %TRUE if the load and store methods may be called
 *   from any thread, at once. Not implementing it means %FALSE: the methods
 *   are then only called on the thread that opened the handle (as gjs and
 *   PyGObject implementations require).
 * @get_size: optional: gives the size of the file in bytes in @size and
 *   returns %TRUE; returns %FALSE with @error set if it cannot tell, or
 *   %FALSE without an error if the file has no size (as when not
 *   implemented). See bigfile_file_get_size().
 * @set_size: optional, for a writable file that has a size: makes the file
 *   @size bytes long, dropping the bytes past @size or adding zeros. See
 *   bigfile_file_set_size().
 * @begin_transaction: optional: starts a write transaction. The stores and
 *   size changes that follow, until the transaction is committed or
 *   aborted, belong to it: other clients do not see them, and no
 *   other client commits a change of this file before it ends (writers of
 *   one file are serialized), so that @refresh, inside the transaction,
 *   shows every commit there is. May block, waiting for another client's
 *   transaction. Loads go on reading the snapshot, without the
 *   transaction's stores, until it commits. Called at most once before its
 *   commit or abort.
 * @commit_transaction: makes every store and size change of the transaction
 *   visible at once, all or none; durable before it returns if @flags has
 *   %BIGFILE_COMMIT_FLAGS_DURABLE (or the file always commits durably).
 *   From then on the file's snapshot includes this commit (loads read what
 *   was stored), and @refresh does not report it as a change. On failure
 *   the storage holds nothing of the transaction, which is over.
 * @abort_transaction: throws the transaction away: the storage is as it was
 *   before @begin_transaction. Cannot fail (a lost connection loses the
 *   transaction with it).
 * @refresh: optional: moves the file's snapshot to the newest committed
 *   state of the storage and returns the blocks that other clients changed
 *   between the old snapshot and the new one (in any order; a block may be
 *   there more than once; %G_MAXUINT64 for "any block": the file cannot
 *   tell which). Loads that start afterwards read the new snapshot. Inside
 *   a transaction it shows every commit before it. Returns %NULL with
 *   @error set on failure, and then keeps the old snapshot.
 *
 * The virtual methods of #BigfileFile. Implement @get_block_size and at
 * least one of @load_block and @load_block_raw (and of the store pair, unless
 * the file is read-only): each pair falls back on the other.
 *
 * A file that implements @get_size has a size: a #BigfileHandle then shows
 * zeros past it, and the last block (the one that holds the size) is
 * stored with only the bytes below the size: @store_block gets shorter
 * #GBytes and @store_block_raw a shorter @length. Blocks wholly past the
 * size are never stored. Such a file, if writable, implements @set_size
 * too: writeout calls it when the handle's size changed (see
 * bigfile_handle_set_size()) before storing, and when the program wrote
 * past the size (the file grows to cover what was written).
 *
 * A transactional file implements @begin_transaction, @commit_transaction
 * and @abort_transaction (all three, or none): a writeout then opens a
 * transaction, sets the size and stores its pages inside it, and commits it
 * before any page is marked clean. An atomic implementation (one whose
 * stores nobody sees before the commit, and whose commit takes all of them
 * or none) makes the storage hold all of the writeout's pages or none. See
 * [Transactions][bigfile-transactions].
 *
 * A file that other clients may change (another process, another host)
 * implements @refresh, and emits #BigfileFile::changed when it learns of a
 * commit of theirs, so that its handle drops what changed: see "Snapshots".
 *
 * Since: 1.0
 */
struct _BigfileFileInterface
{
  GTypeInterface g_iface;

  gsize (*get_block_size) (BigfileFile *file);
  GBytes *(*load_block) (BigfileFile *file, guint64 block, GError **error);
  gboolean (*store_block) (BigfileFile *file, guint64 block, GBytes *data, GError **error);
  gboolean (*load_block_raw) (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                              GError **error);
  gboolean (*store_block_raw) (BigfileFile *file, guint64 block, const guint8 *data, gsize length,
                               GError **error);
  gboolean (*is_thread_safe) (BigfileFile *file);
  gboolean (*get_size) (BigfileFile *file, guint64 *size, GError **error);
  gboolean (*set_size) (BigfileFile *file, guint64 size, GError **error);
  gboolean (*begin_transaction) (BigfileFile *file, GError **error);
  gboolean (*commit_transaction) (BigfileFile *file, BigfileCommitFlags flags, GError **error);
  void (*abort_transaction) (BigfileFile *file);
  GArray *(*refresh) (BigfileFile *file, GError **error);

  /*< private >*/
  gpointer padding[1];
};

BIGFILE_AVAILABLE_IN_ALL
gsize bigfile_file_get_block_size (BigfileFile *file);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_file_is_thread_safe (BigfileFile *file);
BIGFILE_AVAILABLE_IN_ALL
GBytes *bigfile_file_load_block (BigfileFile *file, guint64 block, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_file_store_block (BigfileFile *file, guint64 block, GBytes *data, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer,
                                      gsize length, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_file_get_size (BigfileFile *file, guint64 *size, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_file_set_size (BigfileFile *file, guint64 size, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_file_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data,
                                       gsize length, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_file_is_transactional (BigfileFile *file);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_file_begin_transaction (BigfileFile *file, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_file_commit_transaction (BigfileFile *file, BigfileCommitFlags flags,
                                          GError **error);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_file_abort_transaction (BigfileFile *file);
BIGFILE_AVAILABLE_IN_ALL
GArray *bigfile_file_refresh (BigfileFile *file, GError **error);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_file_changed (BigfileFile *file);

G_END_DECLS
