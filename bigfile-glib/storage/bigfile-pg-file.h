/* bigfile-glib - a BigfileFile in a PostgreSQL database
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
 * BigfilePgFileFlags:
 * @BIGFILE_PG_FILE_FLAGS_NONE: open an existing file for reading and writing.
 * @BIGFILE_PG_FILE_FLAGS_CREATE: create the file (empty, of the block size
 *   given) if the database has none of that name.
 * @BIGFILE_PG_FILE_FLAGS_READ_ONLY: open for reading only: stores, size
 *   changes and transactions fail with %BIGFILE_FILE_ERROR_READ_ONLY.
 *
 * How bigfile_pg_file_new() opens its file.
 *
 * Since: 1.0
 */
typedef enum /*< flags >*/
{
  BIGFILE_PG_FILE_FLAGS_NONE = 0,
  BIGFILE_PG_FILE_FLAGS_CREATE = 1 << 0,
  BIGFILE_PG_FILE_FLAGS_READ_ONLY = 1 << 1,
} BigfilePgFileFlags;

#define BIGFILE_TYPE_PG_FILE (bigfile_pg_file_get_type ())
BIGFILE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (BigfilePgFile, bigfile_pg_file, BIGFILE, PG_FILE, GObject)

BIGFILE_AVAILABLE_IN_ALL
BigfilePgFile *bigfile_pg_file_new (const char *conninfo, const char *name, gsize block_size,
                                    BigfilePgFileFlags flags, GError **error);
BIGFILE_AVAILABLE_IN_ALL
const char *bigfile_pg_file_get_name (BigfilePgFile *file);
BIGFILE_AVAILABLE_IN_ALL
BigfilePgFileFlags bigfile_pg_file_get_flags (BigfilePgFile *file);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_pg_file_get_durable (BigfilePgFile *file);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_pg_file_set_durable (BigfilePgFile *file, gboolean durable);

G_END_DECLS
