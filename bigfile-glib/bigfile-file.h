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

  /*< private >*/
  gpointer padding[5];
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

G_END_DECLS
