/* bigfile-glib - the redo journal of BigfileLocalFile's atomic mode (internal)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Not public API: BigfileLocalFile (bigfile-local-file.c) uses it, and the
 * tests reach it through the static library, to write journals by hand and
 * to make the system calls of a commit or a recovery fail or crash.
 *
 * The format and the commit protocol are described at the top of
 * bigfile-local-journal.c, and for users in the docs of BigfileLocalFile.
 */
#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

/* What follows the path of a file to name its journal. */
#define BF_JOURNAL_SUFFIX ".bigfile-journal"

/* The journal's layout unit: the header and the trailer take the first
 * one (each at the start of its own 512-byte sector), each block's data
 * and the index start on one. */
#define BF_JOURNAL_ALIGN ((guint64)4096)
#define BF_JOURNAL_TRAILER_OFFSET 512
#define BF_JOURNAL_HEADER_LEN 64
#define BF_JOURNAL_ENTRY_LEN 32
#define BF_JOURNAL_TRAILER_LEN 64
#define BF_JOURNAL_VERSION 1

/* The largest block a journal may hold (the largest block size). */
#define BF_JOURNAL_MAX_BLOCK ((gsize)2 * 1024 * 1024)

typedef enum
{
  BF_JOURNAL_ENTRY_BLOCK = 1, /* @length bytes of data for @file_offset */
  BF_JOURNAL_ENTRY_SIZE = 2,  /* the file becomes @file_offset bytes long */
} BfJournalEntryKind;

/* One change of a transaction; they apply in order. */
typedef struct
{
  guint32 kind;
  guint32 length;         /* BLOCK: bytes of data; SIZE: 0 */
  guint64 file_offset;    /* BLOCK: where the data goes; SIZE: the new size */
  guint64 journal_offset; /* BLOCK: where the data is in the journal; SIZE: 0 */
  guint32 crc;            /* BLOCK: CRC-32C of the data; SIZE: 0 */
} BfJournalEntry;

/* What a journal holds, as bf_journal_read() finds it. */
typedef enum
{
  BF_JOURNAL_EMPTY,      /* no bytes, no header, or reset after its transaction */
  BF_JOURNAL_INCOMPLETE, /* a header, no valid commit trailer: a transaction that did not commit */
  BF_JOURNAL_COMMITTED,  /* a valid trailer, header, index and data: to apply */
} BfJournalState;

/* The journal of one open BigfileLocalFile in atomic mode, with the
 * transaction being written into it.  Not thread-safe: its owner
 * serializes the calls (BigfileLocalFile's txn_lock). */
typedef struct
{
  /* Immutable. */
  int fd;
  char *name; /* display name of the journal, for messages */
  gsize block_size;

  /* The transaction being written. */
  gboolean started; /* its header is written */
  guint64 salt;     /* ties the trailer (and the reset record) to the header */
  guint64 end;      /* where the next block's data goes (aligned) */
  GArray *entries;  /* BfJournalEntry, in order */
  guint8 *bounce;   /* a block: stores copy their data here (see add_block) */
  gboolean dirty;   /* may hold a transaction: reset durably before the next one */
} BfJournal;

/* CRC-32C (Castagnoli) of @len bytes, continuing @crc (0 to start). */
guint32 bf_crc32c (guint32 crc, const void *data, gsize len);

/* The table-driven implementation, which bf_crc32c() uses where the CPU
 * has no instruction for it; on the inverted register (~crc in, ~result
 * out), for the tests to check it on every machine. */
guint32 bf_crc32c_soft (guint32 c, const guint8 *p, gsize len);

/* Opens (creating it if missing, with @mode) the journal at @path, for the
 * writer of a file of blocks of @block_size bytes.  *@created tells whether
 * it was made: its directory entry is then not durable yet. */
BfJournal *bf_journal_open (const char *path, gsize block_size, mode_t mode, gboolean *created,
                            GError **error);
void bf_journal_free (BfJournal *journal);

/* Adds a block (@length bytes of @data, for @file_offset) or a size change
 * to the transaction.  The data is written to the journal at once, from a
 * copy, so that its checksum is that of what was written even if @data
 * changes meanwhile. */
gboolean bf_journal_add_block (BfJournal *journal, guint64 file_offset, const guint8 *data,
                               gsize length, GError **error);
void bf_journal_add_size (BfJournal *journal, guint64 size);

/* The commit point: writes the index, makes it and the data durable, then
 * writes the trailer and makes it durable.  Once this returns TRUE the
 * transaction is committed, whatever happens to the process. */
gboolean bf_journal_commit (BfJournal *journal, GError **error);

/* Marks the journal empty with a reset record over its trailer (and
 * forgets the transaction), durably if @sync.  The journal keeps its size:
 * the next transaction overwrites its blocks. */
gboolean bf_journal_reset (BfJournal *journal, gboolean sync, GError **error);

/* The same for a journal found by recovery, open on @fd, whose header has
 * @salt. */
gboolean bf_journal_reset_fd (int fd, guint64 salt, gboolean sync, const char *name,
                              GError **error);

/* Reads the journal on @fd (which may be read-only) and says what it holds
 * in *@state; for a committed one, *@salt its salt and *@entries its
 * changes (a new array), every check passed, every block's data checksum
 * included.  Fails
 * with BIGFILE_FILE_ERROR_CORRUPT for a journal whose trailer says it
 * committed but whose header, index or data do not match it, and
 * BIGFILE_FILE_ERROR_NOT_SUPPORTED for a committed journal of a newer
 * format version: never discard those, they hold a save. */
gboolean bf_journal_read (int fd, const char *name, BfJournalState *state, guint64 *salt,
                          GArray **entries, GError **error);

/* Applies @entries, read from the journal on @journal_fd, to the file on
 * @file_fd (named @file_name in messages), in order.  Not durable: the
 * caller syncs the file. */
gboolean bf_journal_apply (int journal_fd, const char *journal_name, int file_fd,
                           const char *file_name, const BfJournalEntry *entries, guint n_entries,
                           GError **error);

/* fdatasync() of @fd, as the step @point (for the fault hook), with a
 * GError naming @name.  fsync() instead if @full (a directory). */
gboolean bf_journal_sync_fd (int fd, gboolean full, const char *point, const char *name,
                             GError **error);

/* -- fault injection, for tests -------------------------------------------------
 *
 * The hook is called before each system call of a commit or a recovery that
 * changes a journal, a file or a directory entry, with the name of the step:
 *
 *   "journal-header"   writing the header of a transaction
 *   "journal-block"    writing a block's data into the journal
 *   "journal-index"    writing the index
 *   "journal-sync"     fdatasync of the journal (index and data)
 *   "journal-trailer"  writing the trailer: the commit record
 *   "trailer-sync"     fdatasync of the journal (trailer): the commit point
 *   "dir-sync"         fsync of the directory (a new file or journal)
 *   "apply-size"       ftruncate of the file for a size change
 *   "apply-block"      writing a block into the file
 *   "file-sync"        fdatasync of the file
 *   "preflight"        fallocate() of the file's new blocks, before the commit point
 *   "journal-reset"    writing the reset record over the trailer
 *   "reset-sync"       fdatasync of the reset journal
 *
 * Returning an errno makes that call fail with it, as if the system had;
 * 0 lets it run.  The crash test's helper raises SIGKILL from it instead,
 * to die at an exact step.  Set it before any file is opened. */
typedef int (*BfJournalFaultHook) (const char *point, gpointer user_data);
void bf_journal_set_fault_hook (BfJournalFaultHook hook, gpointer user_data);

/* The hook's verdict for @point: 0, or the errno to fail with. */
int bf_journal_fault (const char *point);

G_END_DECLS
