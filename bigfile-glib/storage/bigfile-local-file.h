/* bigfile-glib - a BigfileFile over a regular local file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(BIGFILE_INSIDE) && !defined(BIGFILE_COMPILATION)
#error "Only <bigfile-glib/bigfile.h> can be included directly."
#endif

#include <gio/gio.h>
#include "bigfile-macros.h"

G_BEGIN_DECLS

/**
 * BigfileLocalFileFlags:
 * @BIGFILE_LOCAL_FILE_FLAGS_NONE: open an existing file for reading and writing.
 * @BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY: open for reading only; stores fail with
 *   %BIGFILE_FILE_ERROR_READ_ONLY.
 * @BIGFILE_LOCAL_FILE_FLAGS_CREATE: create the file (empty) if it does not exist.
 * @BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES: let handles show clean pages
 *   straight from the kernel's page cache of the file (a shared read-only
 *   mapping) instead of copies in their #BigfileRam: reading costs no page
 *   fault, no copy and no budget. Only changed pages take RAM. Clean pages
 *   then always show the file as it is now, changes by other writers
 *   included (in raw memory, bigfile_vma_read() and new mappings alike), a
 *   change to a page starts from the file as it is at that moment, and
 *   reading, populating or pinning them for reading takes no copy. Pages
 *   that read as empty in bigfile_handle_get_page_state() may still be
 *   read. The partial last page of the file and the pages past it are
 *   copies: when the file grows, by a writeout or another writer, they show
 *   it from the handle's next look at its size (a new mapping, a writeout
 *   that stored pages, bigfile_handle_invalidate_page(), or a page fault or
 *   API call on a page past the end it knew). See the description of
 *   #BigfileLocalFile.
 * @BIGFILE_LOCAL_FILE_FLAGS_DURABLE: make every commit durable, as if each
 *   had %BIGFILE_COMMIT_FLAGS_DURABLE: it calls `fdatasync()` on the file
 *   (and `fsync()` on its directory, the first time, if this open created
 *   it) before it returns. Without it, only commits given
 *   %BIGFILE_COMMIT_FLAGS_DURABLE are. See "Durability" in the description
 *   of #BigfileLocalFile.
 * @BIGFILE_LOCAL_FILE_FLAGS_ATOMIC: save atomically, through a journal
 *   beside the file (see #BigfileLocalFile:journal-path): a commit (a
 *   writeout) reaches the file whole or not at all, whenever the program or
 *   the machine stops, and the file shows its old version until the commit
 *   is complete. An open for writing in this mode excludes every other
 *   open of the file; an open that finds the journal of a save that did
 *   not finish completes or discards it first (any mode does). See "Atomic
 *   saves" in the description of #BigfileLocalFile.
 *
 * How bigfile_local_file_new() opens its file.
 *
 * Since: 1.0
 */
typedef enum /*< flags >*/
{
  BIGFILE_LOCAL_FILE_FLAGS_NONE = 0,
  BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY = 1 << 0,
  BIGFILE_LOCAL_FILE_FLAGS_CREATE = 1 << 1,
  BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES = 1 << 2,
  BIGFILE_LOCAL_FILE_FLAGS_DURABLE = 1 << 3,
  BIGFILE_LOCAL_FILE_FLAGS_ATOMIC = 1 << 4,
} BigfileLocalFileFlags;

/**
 * BigfileLocalFileRecovery:
 * @BIGFILE_LOCAL_FILE_RECOVERY_NONE: there was no journal to recover, or an
 *   empty one.
 * @BIGFILE_LOCAL_FILE_RECOVERY_APPLIED: the journal held a committed save
 *   that had not reached the file (the program that made it stopped
 *   while applying it): the open applied it, and the file shows that save.
 * @BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED: the journal held a save that did
 *   not commit: the file never had any of it, and the open threw the
 *   journal away (or, without write access to it, left it for the next
 *   writer).
 *
 * What bigfile_local_file_new() found in the file's journal and did with
 * it; see #BigfileLocalFile:recovery.
 *
 * Since: 1.0
 */
typedef enum
{
  BIGFILE_LOCAL_FILE_RECOVERY_NONE,
  BIGFILE_LOCAL_FILE_RECOVERY_APPLIED,
  BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED,
} BigfileLocalFileRecovery;

#define BIGFILE_TYPE_LOCAL_FILE (bigfile_local_file_get_type ())
BIGFILE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (BigfileLocalFile, bigfile_local_file, BIGFILE, LOCAL_FILE, GObject)

BIGFILE_AVAILABLE_IN_ALL
BigfileLocalFile *bigfile_local_file_new (const char *path, gsize block_size,
                                          BigfileLocalFileFlags flags, GError **error);
BIGFILE_AVAILABLE_IN_ALL
const char *bigfile_local_file_get_path (BigfileLocalFile *file);
BIGFILE_AVAILABLE_IN_ALL
BigfileLocalFileFlags bigfile_local_file_get_flags (BigfileLocalFile *file);
BIGFILE_AVAILABLE_IN_ALL
const char *bigfile_local_file_get_journal_path (BigfileLocalFile *file);
BIGFILE_AVAILABLE_IN_ALL
BigfileLocalFileRecovery bigfile_local_file_get_recovery (BigfileLocalFile *file);

G_END_DECLS
