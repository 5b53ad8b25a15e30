/* bigfile-glib - BigfilePgFile internals for the tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Not installed. The tests and the benchmark link the static library and
 * reach these; the shared library does not export them.
 */
#pragma once

#include "bigfile-pg-file.h"

G_BEGIN_DECLS

/* How an injected failure fails. */
typedef enum
{
  /* The server runs a statement that raises an error instead of the real
   * one: an error result, and the transaction of the connection (if any)
   * is aborted, as with any error of the server. */
  BF_PG_FAIL_ERROR,
  /* The socket of the connection is shut down just before the call, which
   * then runs and meets a connection that is gone, as when the server or
   * the network dies. */
  BF_PG_FAIL_DISCONNECT,
} BfPgFailMode;

/* Makes the libpq call that comes after @n more calls fail, in @mode, in
 * every BigfilePgFile of the process (and on every thread: the calls of
 * the LISTEN connections on their main contexts count too). @n < 0 disarms.
 * Only one failure is armed at a time. */
void _bigfile_pg_file_fail_after (gint n, BfPgFailMode mode);

/* Whether the armed failure happened (and disarmed itself) since the last
 * _bigfile_pg_file_fail_after() that armed one (a disarming call leaves
 * the answer as it was). */
gboolean _bigfile_pg_file_failure_happened (void);

/* How many libpq calls that can fail were made so far, in the process. */
guint64 _bigfile_pg_file_get_n_calls (void);

/* Which connection, for _bigfile_pg_file_get_backend_pid(). */
typedef enum
{
  BF_PG_CONN_READ,
  BF_PG_CONN_WRITE,
  BF_PG_CONN_LISTEN,
} BfPgConn;

/* The process id of the server backend of connection @which of @file (for
 * pg_terminate_backend()), or 0 while it is not connected. */
int _bigfile_pg_file_get_backend_pid (BigfilePgFile *file, BfPgConn which);

/* How many queries loads made (round trips to the server for blocks). */
guint64 _bigfile_pg_file_get_n_load_queries (BigfilePgFile *file);

/* The version of the file the snapshot shows (the count of its commits). */
guint64 _bigfile_pg_file_get_snapshot_version (BigfilePgFile *file);

G_END_DECLS
