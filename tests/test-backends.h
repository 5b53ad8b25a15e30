/* bigfile-glib tests - the table of BigfileFile implementations that the
 * conformance suite and the crash tests run against
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One entry per backend: how to make a fresh storage, open clients of it
 * and throw it away, and what the backend can do, so that a test skips
 * (g_test_skip, with the reason) what a backend does not claim instead of
 * passing without checking. A backend is added here once, and every test of
 * test-conformance.c and test-crash.c then runs against it.
 */
#pragma once

#include "bigfile-private.h"

G_BEGIN_DECLS

/* The failures a test can make a client have on demand: see
 * TestBackend.set_fault. */
typedef enum
{
  TEST_FAULT_LOAD,
  TEST_FAULT_STORE,
  TEST_FAULT_SET_SIZE,
  TEST_FAULT_BEGIN,
  TEST_FAULT_COMMIT,
  TEST_FAULT_REFRESH,
} TestFault;

typedef struct
{
  const char *name; /* "mem", "mem-shared", "txn", "local", "local-atomic", "sqlite", "pg" */

  /* What the backend claims; test-conformance checks each claim against
   * the objects it opens (/conformance/NAME/capabilities). */
  gboolean transactional;     /* writeouts are atomic (so bigfile_file_is_transactional();
                               * not the other way round: a plain BigfileLocalFile
                               * implements transactions, for durable commits, but
                               * stores straight to the file) */
  gboolean shared;            /* other clients' commits are reported: refresh and ::changed */
  gboolean has_size;          /* bigfile_file_get_size() gives a size */
  gboolean persistent;        /* the storage outlives the process: another process can open it */
  gboolean checks_block_size; /* opening a storage with a block size other
                               * than its own fails with
                               * BIGFILE_FILE_ERROR_INVALID_ARGUMENT */
  gboolean one_object;        /* every open of a location gives the same object
                               * (TestMemFile, which is its own storage): there
                               * is no second client */

  /* A fresh, empty storage of blocks of @block_size bytes; returns its
   * location (g_free() it), or NULL with @error set (a bad block size
   * must fail here or in open, with a GError). */
  char *(*create) (gsize block_size, GError **error);
  /* A new client of the storage at @location (unless one_object). */
  BigfileFile *(*open) (const char *location, gsize block_size, GError **error);
  /* The same, read-only: stores fail with BIGFILE_FILE_ERROR_READ_ONLY.
   * NULL if the backend has no read-only mode. */
  BigfileFile *(*open_read_only) (const char *location, gsize block_size, GError **error);
  /* Throws the storage away, with everything it holds. */
  void (*destroy) (const char *location);
  /* Fault injection, NULL if the backend has none: makes @file's calls of
   * kind @fault fail with a GError after @after more calls that succeed,
   * until called again with @after < 0. Returns FALSE if @file cannot be
   * made to fail that way. Only for failures a real component cannot be
   * made to have on demand. */
  gboolean (*set_fault) (BigfileFile *file, TestFault fault, int after);
} TestBackend;

/* What the conformance and crash tests fill a block with: one 64-bit word,
 * repeated, that names a version and a block, so that a load shows at once
 * which version of which block it got, and whether it got it whole (a torn
 * block is not one word repeated). Zeros, a block never stored, read as
 * version 0. The top byte is never zero, so that a page of a handle ends
 * in a byte that is not zero and a writeout that grows a file makes it
 * whole pages long. Versions and blocks below 2^28 fit. */
#define TEST_VAL(version, block)                                                                   \
  (((guint64)0x5a << 56) | ((guint64)(version) << 28) | ((guint64)(block) + 1))
#define TEST_VERSION_OF(value) ((guint)(((value) >> 28) & 0x0fffffff))
#define TEST_BLOCK_OF(value) ((((value)&0x0fffffff)) - 1)

/* The backend called @name, or NULL if there is none (or it was not built
 * into this program). */
const TestBackend *test_backends_lookup (const char *name);

/* Every backend built into this program, NULL-terminated. */
const TestBackend *const *test_backends_list (void);

/* The backend named by the program's arguments or environment: a first
 * argument "--backend=NAME" (removed from @argv), else
 * $BIGFILE_TEST_BACKEND. Exits with a message listing the backends if
 * there is none or it is unknown. */
const TestBackend *test_backends_from_args (int *argc, char ***argv);

G_END_DECLS
