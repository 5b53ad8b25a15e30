/* bigfile-glib tests - helpers shared by the test programs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "test-mem-file.h"

G_BEGIN_DECLS

/* -- a mapped handle ---------------------------------------------------------- */

/* What most tests start from: a file, a RAM, a handle of the file in the
 * RAM, and a mapping of the handle's first pages. */
typedef struct
{
  TestMemFile *file; /* the file, if it is a TestMemFile (else NULL) */
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma; /* maps pages 0 to n_pages - 1; NULL if n_pages is 0 */
  guint8 *data;    /* the memory of vma */
  gsize ps;        /* the page size: the file's block size */
  guint64 n_pages;
  gboolean shared_ram; /* ram came from the caller and may serve other handles */
} Mapping;

/* A TestMemFile of @n_blocks blocks of @block_size bytes, a RAM of its own
 * with a budget of @budget bytes, and its first @n_pages pages mapped (none,
 * and no vma, if @n_pages is 0). */
void mapping_setup (Mapping *m, gsize block_size, guint64 n_blocks, guint64 n_pages,
                    guint64 budget);

/* The same over a TestMemFile with a size of @size bytes
 * (test_mem_file_new_sized()). */
void mapping_setup_sized (Mapping *m, gsize block_size, guint64 size, guint64 n_pages,
                          guint64 budget);

/* The same in @ram, which other handles may share: mapping_teardown() then
 * leaves it as it is, and does not check that its pages are gone. */
void mapping_setup_in_ram (Mapping *m, BigfileRam *ram, gsize block_size, guint64 n_blocks,
                           guint64 n_pages);

/* The same over a BigfileLocalFile opened at @path with @flags (m->file is
 * NULL then), with a RAM of its own. */
void mapping_setup_local_file (Mapping *m, const char *path, gsize block_size,
                               BigfileLocalFileFlags flags, guint64 n_pages, guint64 budget);

/* Fails the test with what is wrong unless every invariant of the engine
 * holds for @handle (bf_handle_check()); @kernel also compares with what
 * the kernel maps, which needs every other thread to keep still. */
void assert_engine_invariants (BigfileHandle *handle, gboolean kernel);

/* Checks the engine's invariants, clears the TestMemFile's hooks, unmaps, closes the handle (which must
 * succeed) and drops everything. With a RAM of its own, checks that closing
 * gave back every page. */
void mapping_teardown (Mapping *m);

BigfilePageState page_state (Mapping *m, guint64 page);

/* Asserts how @page is mapped in @vma: not at all, read-only, or
 * read-write. */
#define assert_mapping(vma, page, want_mapped, want_writable)                                      \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gboolean writable_ = -1;                                                                       \
    gboolean mapped_ = _bigfile_vma_page_is_mapped ((vma), (page), &writable_);                    \
    g_assert_cmpint (mapped_, ==, (want_mapped));                                                  \
    g_assert_cmpint (writable_, ==, (want_writable));                                              \
  }                                                                                                \
  G_STMT_END

/* Plain accesses the compiler must emit as written, once each: the access
 * that faults is the one the test means. */
G_NO_INLINE guint8 raw_read (const guint8 *p);
G_NO_INLINE void raw_write (guint8 *p, guint8 value);

/* Asserts that @file stored exactly @blocks, in that order, since its
 * counters were last reset. */
void assert_store_log (TestMemFile *file, const guint64 *blocks, guint n_blocks);

/* -- an operation log for failure reports ------------------------------------ */

#define TEST_OP_LOG_SIZE 16

/* The last TEST_OP_LOG_SIZE operations of a random test, a ring: shown when
 * a check fails. Zero-initialize it; test_op_log_clear() frees it. */
typedef struct
{
  char *entries[TEST_OP_LOG_SIZE];
  guint n_logged;
} TestOpLog;

/* Logs an operation, dropping the oldest if the ring is full. */
void test_op_log_add (TestOpLog *log, const char *format, ...) G_GNUC_PRINTF (2, 3);

/* g_test_message()s the logged operations, oldest first, under a heading. */
void test_op_log_dump (TestOpLog *log);

/* Frees the logged operations and empties @log. */
void test_op_log_clear (TestOpLog *log);

/* -- temporary files ---------------------------------------------------------- */

/* A new empty directory, named after the test program. */
char *temp_dir_new (void);

/* Removes @dir and the files in it, asserting that each removal works. */
void temp_dir_remove (const char *dir);

/* Creates or replaces the file at @path with @len bytes of @data. */
void write_file (const char *path, const guint8 *data, gsize len);

/* The contents of the file at @path (g_free() them), their length in @len. */
guint8 *read_file (const char *path, gsize *len);

G_END_DECLS
