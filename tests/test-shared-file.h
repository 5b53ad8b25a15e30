/* bigfile-glib tests - an in-memory storage that several BigfileFiles share,
 * with transactions, snapshots and change notification
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * TestSharedFile is the model of the contract of BigfileFileInterface's
 * transaction methods, refresh and ::changed, in memory: a TestSharedStore
 * holds the committed versions of every block, and each TestSharedFile
 * opened on it is one client with a snapshot of its own, as two processes
 * or two hosts of a database would be. The conformance suite
 * (test-conformance.c) runs against it as the backend "mem-shared", so that
 * its tests of snapshots, conflicts and invalidation can run, and be seen
 * to fail, without a database; and it injects the failures a real storage
 * cannot be made to have on demand.
 *
 * Isolation: snapshot isolation with serialized writers. A client's loads
 * read the state of the store at its snapshot, the commit it last refreshed
 * to or committed itself; begin_transaction waits while another client's
 * transaction is open.
 */
#pragma once

#include "bigfile-private.h"

G_BEGIN_DECLS

typedef struct _TestSharedStore TestSharedStore;

/* An empty store of blocks of @block_size bytes (any size: the clients
 * check it), size 0. */
TestSharedStore *test_shared_store_new (gsize block_size);
TestSharedStore *test_shared_store_ref (TestSharedStore *store);
void test_shared_store_unref (TestSharedStore *store);
/* How long begin_transaction waits for another client's transaction before
 * it fails with BIGFILE_FILE_ERROR_BUSY (10 s at first). */
void test_shared_store_set_busy_timeout (TestSharedStore *store, gint64 usec);
/* The number of commits so far (what versions count). */
guint64 test_shared_store_get_version (TestSharedStore *store);

#define TEST_TYPE_SHARED_FILE (test_shared_file_get_type ())
G_DECLARE_FINAL_TYPE (TestSharedFile, test_shared_file, TEST, SHARED_FILE, GObject)

/* A new client of @store, with a snapshot of its newest commit. Fails with
 * BIGFILE_FILE_ERROR_INVALID_ARGUMENT if @block_size is not a valid block
 * size or not the store's. Its ::changed is emitted on the thread-default
 * main context of the caller. */
TestSharedFile *test_shared_file_new (TestSharedStore *store, gsize block_size, gboolean read_only,
                                      GError **error);

typedef enum
{
  TEST_SHARED_FAULT_LOAD,
  TEST_SHARED_FAULT_STORE,
  TEST_SHARED_FAULT_SET_SIZE,
  TEST_SHARED_FAULT_BEGIN,
  TEST_SHARED_FAULT_COMMIT,
  TEST_SHARED_FAULT_REFRESH,
  TEST_SHARED_N_FAULTS
} TestSharedFault;

/* Makes calls of one kind fail with G_IO_ERROR_FAILED: after @after more
 * calls that succeed, every call until this is called again with a
 * negative @after (which stops the failures). */
void test_shared_file_set_fault (TestSharedFile *file, TestSharedFault fault, int after);

G_END_DECLS
