/* bigfile-glib - a changeable snapshot of a BigfileFile
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(BIGFILE_INSIDE) && !defined(BIGFILE_COMPILATION)
#error "Only <bigfile-glib/bigfile.h> can be included directly."
#endif

#include <gio/gio.h>
#include "bigfile-macros.h"
#include "bigfile-file.h"
#include "bigfile-ram.h"

G_BEGIN_DECLS

/**
 * BigfileWriteoutFlags:
 * @BIGFILE_WRITEOUT_STORE: store each dirty page through the file. The
 *   pages stay dirty unless %BIGFILE_WRITEOUT_MARK_STORED is given too.
 * @BIGFILE_WRITEOUT_MARK_STORED: mark clean each dirty page whose memory is
 *   exactly what was stored: stored by this writeout (with
 *   %BIGFILE_WRITEOUT_STORE) or by the last one that stored it, and not
 *   written since.
 * @BIGFILE_WRITEOUT_DEFAULT: both: store, then mark clean. What a save is.
 * @BIGFILE_WRITEOUT_OVERWRITE: store pages even where another client changed
 *   their blocks in the storage since this handle read them (see
 *   [Conflicts][bigfile-conflicts]): this handle's data replaces theirs.
 *   Without it such a writeout fails with %BIGFILE_HANDLE_ERROR_CONFLICT.
 * @BIGFILE_WRITEOUT_DURABLE: make the commit durable before the writeout
 *   returns (%BIGFILE_COMMIT_FLAGS_DURABLE), even if the file does not
 *   commit durably by default.
 *
 * What bigfile_handle_writeout() does with dirty pages. %BIGFILE_WRITEOUT_STORE
 * alone lets a transaction store first and mark later, when all its parts
 * have stored; %BIGFILE_WRITEOUT_MARK_STORED alone is that later step.
 *
 * A page is only ever marked clean if its memory is what its last store
 * wrote, so the two steps never lose a write: a page written between them
 * (through its memory, bigfile_vma_write(), or a writable pin), a page
 * first changed after the %BIGFILE_WRITEOUT_STORE step, a page whose store
 * failed, and a page stored while it was pinned writable (its holder may
 * have written it during the store) all stay dirty, with what was written,
 * for the next writeout. %BIGFILE_WRITEOUT_MARK_STORED alone, without a
 * %BIGFILE_WRITEOUT_STORE before it, marks nothing.
 *
 * Since: 1.0
 */
typedef enum /*< flags >*/
{
  BIGFILE_WRITEOUT_STORE = 1 << 0,
  BIGFILE_WRITEOUT_MARK_STORED = 1 << 1,
  BIGFILE_WRITEOUT_DEFAULT = BIGFILE_WRITEOUT_STORE | BIGFILE_WRITEOUT_MARK_STORED,
  BIGFILE_WRITEOUT_OVERWRITE = 1 << 2,
  BIGFILE_WRITEOUT_DURABLE = 1 << 3,
} BigfileWriteoutFlags;

/**
 * BigfilePageState:
 * @BIGFILE_PAGE_STATE_EMPTY: not in memory.
 * @BIGFILE_PAGE_STATE_LOADING: a thread is loading it.
 * @BIGFILE_PAGE_STATE_LOADED: in memory, same as the file.
 * @BIGFILE_PAGE_STATE_DIRTY: in memory and changed: will be stored by the
 *   next writeout, or dropped by a discard.
 *
 * The state of one page of a #BigfileHandle, as bigfile_handle_get_page_state()
 * tells it.
 *
 * Since: 1.0
 */
typedef enum
{
  BIGFILE_PAGE_STATE_EMPTY,
  BIGFILE_PAGE_STATE_LOADING,
  BIGFILE_PAGE_STATE_LOADED,
  BIGFILE_PAGE_STATE_DIRTY,
} BigfilePageState;

typedef struct _BigfileVma BigfileVma;

/**
 * BigfileProgressCallback:
 * @bytes_done: the bytes written out so far
 * @bytes_total: the bytes this writeout has to write
 * @user_data: the data given with the callback
 *
 * Tells how far an asynchronous writeout has come. Called on the main
 * context of the caller of bigfile_handle_writeout_async().
 *
 * Since: 1.0
 */
typedef void (*BigfileProgressCallback) (guint64 bytes_done, guint64 bytes_total,
                                         gpointer user_data);

#define BIGFILE_TYPE_HANDLE (bigfile_handle_get_type ())
BIGFILE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (BigfileHandle, bigfile_handle, BIGFILE, HANDLE, GObject)

BIGFILE_AVAILABLE_IN_ALL
BigfileHandle *bigfile_handle_new (BigfileFile *file, BigfileRam *ram, GError **error);
BIGFILE_AVAILABLE_IN_ALL
BigfileFile *bigfile_handle_get_file (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
BigfileRam *bigfile_handle_get_ram (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
gsize bigfile_handle_get_page_size (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
guint64 bigfile_handle_get_n_dirty_pages (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_handle_has_size (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
guint64 bigfile_handle_get_size (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_handle_set_size (BigfileHandle *handle, guint64 size, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_handle_is_closed (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
BigfilePageState bigfile_handle_get_page_state (BigfileHandle *handle, guint64 page);

BIGFILE_AVAILABLE_IN_ALL
BigfileVma *bigfile_handle_map (BigfileHandle *handle, guint64 first_page, guint64 n_pages,
                                GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_handle_writeout (BigfileHandle *handle, BigfileWriteoutFlags flags,
                                  GError **error);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_handle_writeout_async (BigfileHandle *handle, BigfileWriteoutFlags flags,
                                    int io_priority, GCancellable *cancellable,
                                    BigfileProgressCallback progress_callback,
                                    gpointer progress_data, GDestroyNotify progress_data_destroy,
                                    GAsyncReadyCallback callback, gpointer user_data);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_handle_writeout_finish (BigfileHandle *handle, GAsyncResult *result,
                                         GError **error);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_handle_abort_writeout (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_handle_refresh (BigfileHandle *handle, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_handle_get_auto_refresh (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_handle_set_auto_refresh (BigfileHandle *handle, gboolean auto_refresh);
BIGFILE_AVAILABLE_IN_ALL
guint64 *bigfile_handle_get_conflicts (BigfileHandle *handle, gsize *n_pages);
BIGFILE_AVAILABLE_IN_ALL
guint bigfile_handle_discard (BigfileHandle *handle);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_handle_invalidate_page (BigfileHandle *handle, guint64 page);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_handle_close (BigfileHandle *handle);

G_END_DECLS
