/* bigfile-glib - a BigfileFile in an SQLite database
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
 * BigfileSqliteFileFlags:
 * @BIGFILE_SQLITE_FILE_FLAGS_NONE: open an existing bigfile of an existing
 *   database for reading and writing.
 * @BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY: open for reading only: stores, size
 *   changes and transactions fail with %BIGFILE_FILE_ERROR_READ_ONLY, and
 *   the database is opened read-only (it must exist, in WAL mode).
 * @BIGFILE_SQLITE_FILE_FLAGS_CREATE: create the database if it does not
 *   exist, and the bigfile in it (empty, with the block size given) if it
 *   has none of that name.
 *
 * How bigfile_sqlite_file_new() opens its bigfile.
 *
 * Since: 1.0
 */
typedef enum /*< flags >*/
{
  BIGFILE_SQLITE_FILE_FLAGS_NONE = 0,
  BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY = 1 << 0,
  BIGFILE_SQLITE_FILE_FLAGS_CREATE = 1 << 1,
} BigfileSqliteFileFlags;

#define BIGFILE_TYPE_SQLITE_FILE (bigfile_sqlite_file_get_type ())
BIGFILE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (BigfileSqliteFile, bigfile_sqlite_file, BIGFILE, SQLITE_FILE, GObject)

BIGFILE_AVAILABLE_IN_ALL
BigfileSqliteFile *bigfile_sqlite_file_new (const char *path, const char *name, gsize block_size,
                                            BigfileSqliteFileFlags flags, GError **error);
BIGFILE_AVAILABLE_IN_ALL
const char *bigfile_sqlite_file_get_path (BigfileSqliteFile *file);
BIGFILE_AVAILABLE_IN_ALL
const char *bigfile_sqlite_file_get_name (BigfileSqliteFile *file);
BIGFILE_AVAILABLE_IN_ALL
gsize bigfile_sqlite_file_get_block_size (BigfileSqliteFile *file);
BIGFILE_AVAILABLE_IN_ALL
BigfileSqliteFileFlags bigfile_sqlite_file_get_flags (BigfileSqliteFile *file);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_sqlite_file_get_durable (BigfileSqliteFile *file);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_sqlite_file_set_durable (BigfileSqliteFile *file, gboolean durable);
BIGFILE_AVAILABLE_IN_ALL
char **bigfile_sqlite_file_list (const char *path, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_sqlite_file_delete (const char *path, const char *name, GError **error);

G_END_DECLS
