/* bigfile-glib - test hooks of BigfileSqliteFile
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Not installed, not exported from the shared library: the tests and the
 * benchmark link the static copy of the library and reach these.
 */
#pragma once

#include "bigfile-sqlite-file.h"

G_BEGIN_DECLS

/* Fault injection.  Every call into SQLite that can fail (open, prepare,
 * bind, step, exec, the WAL sync of a durable commit) goes through one
 * wrapper, process-wide: after this, the @n-th such call from now on (1:
 * the next one) does not reach SQLite and returns @sqlite_error_code
 * instead, once.  @n 0 turns injection off.  Calls from every
 * BigfileSqliteFile and every thread count. */
void _bigfile_sqlite_file_fail_after (guint n, int sqlite_error_code);

/* How many calls went through the wrapper since the process started: a
 * test counts the calls an operation makes, then fails each in turn. */
guint _bigfile_sqlite_file_get_n_calls (void);

/* TRUE once the call chosen by _bigfile_sqlite_file_fail_after() was made
 * to fail (and injection is then off). */
gboolean _bigfile_sqlite_file_fault_fired (void);

/* How many commits of each bigfile the change log keeps (1000 by default),
 * for the commits that @file makes from now on. */
void _bigfile_sqlite_file_set_log_keep (BigfileSqliteFile *file, guint n_commits);

/* TRUE: files made from now on watch the database by polling (as when
 * inotify is not available) instead of with inotify. */
void _bigfile_sqlite_file_set_force_polling (gboolean force);

/* Faults by operation, for the conformance suite's backend table: the
 * calls of @fault's kind on @file fail with an injected GError after @after
 * more that succeed (each failing before it reaches SQLite, the way a
 * first SQLite call that fails does), until called with @after < 0. */
typedef enum
{
  BF_SQLITE_FAULT_LOAD,
  BF_SQLITE_FAULT_STORE,
  BF_SQLITE_FAULT_SET_SIZE,
  BF_SQLITE_FAULT_BEGIN,
  BF_SQLITE_FAULT_COMMIT,
  BF_SQLITE_FAULT_REFRESH,
  BF_SQLITE_N_FAULTS
} BfSqliteFault;

void _bigfile_sqlite_file_set_fault (BigfileSqliteFile *file, BfSqliteFault fault, int after);

/* The commit version of @file's snapshot. */
gint64 _bigfile_sqlite_file_get_snapshot_version (BigfileSqliteFile *file);

G_END_DECLS
