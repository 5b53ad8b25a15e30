/* bigfile-glib tests - an in-memory BigfileFile with fault injection
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bigfile-private.h"

G_BEGIN_DECLS

#define TEST_TYPE_MEM_FILE (test_mem_file_get_type ())
G_DECLARE_FINAL_TYPE (TestMemFile, test_mem_file, TEST, MEM_FILE, GObject)

/* Called (with no lock held) at the start of every load or store; may block,
 * sleep, or change the file's fault injection. */
typedef void (*TestMemFileHook) (TestMemFile *file, guint64 block, gpointer user_data);

/* A file of @n_blocks blocks of @block_size bytes; block b, byte i holds
 * test_mem_file_pattern (b, i) until stored over.  Blocks past n_blocks read
 * as zeros (as past the end of a file) and can be stored (the file grows). */
TestMemFile *test_mem_file_new (gsize block_size, guint64 n_blocks);

/* A file with a size (get_size and set_size): @size bytes of the pattern,
 * and the pattern also past @size in its last block, as junk a handle must
 * not show.  Its stores assert that nothing is stored past the size; its
 * set_size drops the blocks past the new size and clears the rest of the
 * last block (so it grows with zeros). */
TestMemFile *test_mem_file_new_sized (gsize block_size, guint64 size);
guint64 test_mem_file_get_size (TestMemFile *file);
/* Make loads fill the bytes past the size with 0xa5 (junk), or not. */
void test_mem_file_set_junk_past_size (TestMemFile *file, gboolean junk);
/* The sizes given to set_size, in order (guint64). */
GArray *test_mem_file_get_set_size_log (TestMemFile *file);
/* The lengths given to the stores, in the order of the store log (gsize). */
GArray *test_mem_file_get_store_lengths (TestMemFile *file);
void test_mem_file_set_fail_set_size (TestMemFile *file, gboolean fail);

guint8 test_mem_file_pattern (guint64 block, gsize i);

/* The stored contents of @block (zeros past the end), block_size bytes. */
const guint8 *test_mem_file_peek (TestMemFile *file, guint64 block);
void test_mem_file_poke (TestMemFile *file, guint64 block, const guint8 *data);

guint test_mem_file_get_n_loads (TestMemFile *file, guint64 block); /* of one block */
guint test_mem_file_get_total_loads (TestMemFile *file);
guint test_mem_file_get_total_stores (TestMemFile *file);
/* Blocks stored, in the order they were stored (guint64). */
GArray *test_mem_file_get_store_log (TestMemFile *file);
void test_mem_file_reset_counters (TestMemFile *file);

/* Make loads (or stores) of @block fail with G_IO_ERROR_FAILED, or fail
 * without setting an error when @no_gerror. G_MAXUINT64 = every block. */
void test_mem_file_set_fail_load (TestMemFile *file, guint64 block, gboolean fail,
                                  gboolean no_gerror);
void test_mem_file_set_fail_store (TestMemFile *file, guint64 block, gboolean fail,
                                   gboolean no_gerror);

/* Whether it says it is thread-safe (default TRUE); FALSE makes it behave,
 * for a handle, like a file implemented in a script. */
void test_mem_file_set_thread_safe (TestMemFile *file, gboolean thread_safe);

void test_mem_file_set_load_hook (TestMemFile *file, TestMemFileHook hook, gpointer user_data);
void test_mem_file_set_store_hook (TestMemFile *file, TestMemFileHook hook, gpointer user_data);

G_END_DECLS
