/* bigfile-glib tests - an in-memory transactional BigfileFile with snapshots
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bigfile-private.h"

G_BEGIN_DECLS

/* Storage that several clients share: a history of commits, each a set of
 * blocks (and maybe a size) stored by one client.  Thread-safe. */
typedef struct _TestTxnStore TestTxnStore;

TestTxnStore *test_txn_store_new (gsize block_size, guint64 size);
TestTxnStore *test_txn_store_ref (TestTxnStore *store);
void test_txn_store_unref (TestTxnStore *store);
/* The newest committed version (0: nothing committed yet). */
guint64 test_txn_store_get_version (TestTxnStore *store);
/* Block @block as of the newest commit (block_size bytes, zeros if never
 * stored), into @dest. */
void test_txn_store_peek (TestTxnStore *store, guint64 block, guint8 *dest);
guint64 test_txn_store_get_size (TestTxnStore *store);

#define TEST_TYPE_TXN_FILE (test_txn_file_get_type ())
G_DECLARE_FINAL_TYPE (TestTxnFile, test_txn_file, TEST, TXN_FILE, GObject)

/* One client of @store: its snapshot is the newest commit now.  It emits
 * ::changed on the thread-default context of this call when another client
 * commits. */
TestTxnFile *test_txn_file_new (TestTxnStore *store);

/* Fault injection: the next call of that kind fails (once each). */
void test_txn_file_fail_next_begin (TestTxnFile *file);
void test_txn_file_fail_next_commit (TestTxnFile *file);
void test_txn_file_fail_next_refresh (TestTxnFile *file);
/* The next store of @block fails (once). */
void test_txn_file_fail_next_store (TestTxnFile *file, guint64 block);

/* Drops the failures injected and not yet used. */
void test_txn_file_clear_failures (TestTxnFile *file);

/* Counters: transactions begun, committed, aborted; commits asked to be
 * durable; refreshes. */
guint test_txn_file_get_n_begins (TestTxnFile *file);
guint test_txn_file_get_n_commits (TestTxnFile *file);
guint test_txn_file_get_n_aborts (TestTxnFile *file);
guint test_txn_file_get_n_durable (TestTxnFile *file);
guint test_txn_file_get_n_refreshes (TestTxnFile *file);
gboolean test_txn_file_in_transaction (TestTxnFile *file);

/* A commit of blocks [@first, @first + @n) filled with @byte, by a client
 * of its own (as another process would): returns the new version. */
guint64 test_txn_store_commit_fill (TestTxnStore *store, guint64 first, guint64 n, guint8 byte);

G_END_DECLS
