/* bigfile-glib - the redo journal of BigfileLocalFile's atomic mode
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A transaction of an atomic BigfileLocalFile is written to a journal beside
 * the file (its path + ".bigfile-journal"), while the file itself stays as
 * it was, so that loads go on reading the old version.  Commit makes the
 * journal durable with a checksummed trailer (the commit point), then copies
 * the journal's blocks into the file, syncs the file and marks the journal
 * reset.  Whoever opens the file next after a crash finds the journal:
 * committed, it is applied again (every change is a plain overwrite or
 * truncation, so applying a journal twice, or once more after half of it,
 * gives the same file); not committed, it is discarded, and the file never
 * saw any of it.
 *
 * The layout (integers little-endian):
 *
 *     0      512     1024     4096                                 index
 *     +------+-------+--------+--------+---+--------+--- ... ---+---------+
 *     |header|trailer|        | block  |pad| block  |           | n x 32 B|
 *     +------+-------+--------+--------+---+--------+--- ... ---+---------+
 *      sector  sector          each block's data starts on a 4096-byte
 *      0       1               boundary; the index on the next one
 *
 *   header:  "BFJOURNL", u32 version (1), u32 header length (64),
 *            u64 block size, u64 salt, 28 bytes of zeros, u32 CRC-32C of
 *            bytes 0-59.  Written when a transaction stores its first block.
 *   index:   one entry per change, in order: u32 kind (1 block, 2 size),
 *            u32 length, u64 file offset (or new size), u64 journal
 *            offset, u32 CRC-32C of the block's data, u32 zero.
 *   trailer: the commit record: "BFJCOMIT", u64 salt, u64 index offset,
 *            u64 number of entries, u32 CRC-32C of the index, u32 zero,
 *            u64 512 (its own offset), 12 bytes of zeros, u32 CRC-32C of
 *            bytes 0-59.  Or, once the transaction is applied, a reset
 *            record in the same place: "BFJRESET", u64 salt, zeros, and
 *            the CRC-32C of bytes 0-59.
 *
 * The journal is not truncated after a commit, only reset: its blocks stay
 * allocated and in the page cache, so the next transaction overwrites them
 * instead of allocating them again (truncating and regrowing 512 MiB cost
 * more than writing it, here).  The bytes past what the index names are
 * left over and never read.  It goes when the file is closed.
 *
 * Blocks record byte offsets in the file, so a journal applies the same
 * whatever block size the file is opened with next.  Data is aligned so
 * that copy_file_range() can share extents on file systems that can.
 *
 * The commit, and why each sync is there (each is a barrier: what comes
 * after it must not reach the disk before what came before it):
 *
 *   1. header, data, index written (during the stores, then at commit)
 *   2. fdatasync(journal)    they are on disk, so that a trailer on disk
 *                            vouches for them;
 *   3. trailer written
 *   4. fdatasync(journal)    the commit point: from here the transaction
 *                            survives a crash or a power loss;
 *   5. blocks copied into the file, size changes made
 *   6. fdatasync(file)       the file holds the transaction, so that the
 *                            reset cannot reach the disk before the file's
 *                            new data;
 *   7. reset record written over the trailer, fdatasync(journal): a
 *                            committed trailer that showed again after a
 *                            power loss would be applied over later
 *                            changes.
 *
 * What recovery concludes from what it reads:
 *
 *   - no valid commit trailer (none, a reset record, or a torn one: bad
 *     magic, CRC or position): the transaction never reached step 4, the
 *     file is untouched; "empty" if the header is absent or the reset
 *     record matches it, else an uncommitted transaction to discard.
 *   - a valid trailer: steps 1-2 were durable before it was written, so a
 *     header, index or data block that does not match it (or is missing)
 *     is damage, not a torn write: BIGFILE_FILE_ERROR_CORRUPT, nothing
 *     applied (the file may hold part of that save already, from a crash
 *     in step 5; only the user can decide what to do).
 *   - all valid: apply, sync, reset (steps 5-7).
 *
 * Header and trailer are 64 bytes each at the start of their own 512-byte
 * sector, which disks write whole or not at all: a write of the trailer
 * cannot tear the header, nor the other way round.
 */
#include "config.h"

#include "bigfile-local-journal.h"
#include "bigfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

static const char header_magic[8] = { 'B', 'F', 'J', 'O', 'U', 'R', 'N', 'L' };
static const char trailer_magic[8] = { 'B', 'F', 'J', 'C', 'O', 'M', 'I', 'T' };
static const char reset_magic[8] = { 'B', 'F', 'J', 'R', 'E', 'S', 'E', 'T' };

/* -- CRC-32C ---------------------------------------------------------------------
 *
 * Castagnoli's polynomial (reflected 0x82F63B78), which x86 has an
 * instruction for (SSE 4.2): about 8 bytes per 3 cycles, next to ~1 GB/s
 * for the table below.  The journal checksums every byte it holds, so it
 * matters for large saves. */

static guint32 crc_table[8][256];

static gpointer
crc_table_init (gpointer data)
{
  for (guint i = 0; i < 256; i++)
    {
      guint32 c = i;

      for (int k = 0; k < 8; k++)
        c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      crc_table[0][i] = c;
    }
  for (guint i = 0; i < 256; i++)
    for (guint t = 1; t < 8; t++)
      crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
  return NULL;
}

guint32
bf_crc32c_soft (guint32 c, const guint8 *p, gsize len)
{
  static GOnce once = G_ONCE_INIT;

  g_once (&once, crc_table_init, NULL);
  while (len >= 8)
    {
      guint32 lo, hi;

      memcpy (&lo, p, 4);
      memcpy (&hi, p + 4, 4);
      lo = GUINT32_FROM_LE (lo) ^ c;
      hi = GUINT32_FROM_LE (hi);
      c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff]
          ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff]
          ^ crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
      p += 8;
      len -= 8;
    }
  while (len-- > 0)
    c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
  return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_CRC32C_SSE42 1

__attribute__ ((target ("sse4.2"))) static guint32
crc32c_sse42 (guint32 c, const guint8 *p, gsize len)
{
  guint64 c64 = c;

  while (len > 0 && ((guintptr)p & 7) != 0)
    {
      c64 = __builtin_ia32_crc32qi ((guint32)c64, *p++);
      len--;
    }
  while (len >= 8)
    {
      guint64 word;

      memcpy (&word, p, 8);
      c64 = __builtin_ia32_crc32di (c64, word);
      p += 8;
      len -= 8;
    }
  while (len-- > 0)
    c64 = __builtin_ia32_crc32qi ((guint32)c64, *p++);
  return (guint32)c64;
}
#endif

guint32
bf_crc32c (guint32 crc, const void *data, gsize len)
{
  guint32 c = ~crc;

#ifdef HAVE_CRC32C_SSE42
  static int have_sse42 = -1;

  if (G_UNLIKELY (have_sse42 < 0))
    g_atomic_int_set (&have_sse42, __builtin_cpu_supports ("sse4.2") ? 1 : 0);
  if (g_atomic_int_get (&have_sse42))
    return ~crc32c_sse42 (c, data, len);
#endif
  return ~bf_crc32c_soft (c, data, len);
}

/* -- the fault hook ------------------------------------------------------------ */

static BfJournalFaultHook fault_hook;
static gpointer fault_hook_data;

void
bf_journal_set_fault_hook (BfJournalFaultHook hook, gpointer user_data)
{
  fault_hook_data = user_data;
  g_atomic_pointer_set (&fault_hook, hook);
}

int
bf_journal_fault (const char *point)
{
  BfJournalFaultHook hook = g_atomic_pointer_get (&fault_hook);

  return hook != NULL ? hook (point, fault_hook_data) : 0;
}

/* -- system calls with GErrors -------------------------------------------------- */

static void set_errno_error (GError **error, int saved_errno, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

static void
set_errno_error (GError **error, int saved_errno, const char *format, ...)
{
  va_list args;
  char *what;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno), "%s: %s", what,
               g_strerror (saved_errno));
  g_free (what);
}

/* pwrite() of all of @len bytes, failing at once with the hook's errno. */
static gboolean
write_all (int fd, const void *data, gsize len, guint64 offset, const char *point, const char *name,
           const char *what, GError **error)
{
  const guint8 *p = data;
  gsize done = 0;
  int injected = bf_journal_fault (point);

  if (injected != 0)
    {
      set_errno_error (error, injected, "Could not write %s to “%s” at offset %" G_GUINT64_FORMAT,
                       what, name, offset);
      return FALSE;
    }

  while (done < len)
    {
      ssize_t n = pwrite (fd, p + done, len - done, (off_t)(offset + done));

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          /* 0 from a regular file means nothing could be written, as ENOSPC. */
          set_errno_error (error, n < 0 ? errno : ENOSPC,
                           "Could not write %s to “%s” at offset %" G_GUINT64_FORMAT, what, name,
                           offset + done);
          return FALSE;
        }
      done += (gsize)n;
    }
  return TRUE;
}

/* pread() of exactly @len bytes; a short file is corruption (@what names
 * the part of the journal that is missing). */
static gboolean
read_exact (int fd, void *data, gsize len, guint64 offset, const char *name, const char *what,
            GError **error)
{
  guint8 *p = data;
  gsize done = 0;

  while (done < len)
    {
      ssize_t n = pread (fd, p + done, len - done, (off_t)(offset + done));

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          set_errno_error (error, errno, "Could not read %s of “%s” at offset %" G_GUINT64_FORMAT,
                           what, name, offset + done);
          return FALSE;
        }
      if (n == 0)
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
                       "The journal “%s” ends inside %s, at offset %" G_GUINT64_FORMAT, name, what,
                       offset + done);
          return FALSE;
        }
      done += (gsize)n;
    }
  return TRUE;
}

gboolean
bf_journal_sync_fd (int fd, gboolean full, const char *point, const char *name, GError **error)
{
  int injected = bf_journal_fault (point);
  int r;

  if (injected != 0)
    {
      set_errno_error (error, injected, "Could not flush “%s” to disk: %s() failed", name,
                       full ? "fsync" : "fdatasync");
      return FALSE;
    }

  do
    r = full ? fsync (fd) : fdatasync (fd);
  while (r != 0 && errno == EINTR);
  if (r != 0)
    {
      set_errno_error (error, errno, "Could not flush “%s” to disk: %s() failed", name,
                       full ? "fsync" : "fdatasync");
      return FALSE;
    }
  return TRUE;
}

/* -- encoding ------------------------------------------------------------------ */

static void
put32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, 4);
}

static void
put64 (guint8 *p, guint64 v)
{
  v = GUINT64_TO_LE (v);
  memcpy (p, &v, 8);
}

static guint32
get32 (const guint8 *p)
{
  guint32 v;

  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

static guint64
get64 (const guint8 *p)
{
  guint64 v;

  memcpy (&v, p, 8);
  return GUINT64_FROM_LE (v);
}

static guint64
align_up (guint64 v)
{
  return (v + BF_JOURNAL_ALIGN - 1) & ~(BF_JOURNAL_ALIGN - 1);
}

static void
encode_header (guint8 *h, gsize block_size, guint64 salt)
{
  memset (h, 0, BF_JOURNAL_HEADER_LEN);
  memcpy (h, header_magic, 8);
  put32 (h + 8, BF_JOURNAL_VERSION);
  put32 (h + 12, BF_JOURNAL_HEADER_LEN);
  put64 (h + 16, block_size);
  put64 (h + 24, salt);
  put32 (h + 60, bf_crc32c (0, h, 60));
}

static void
encode_entry (guint8 *e, const BfJournalEntry *entry)
{
  memset (e, 0, BF_JOURNAL_ENTRY_LEN);
  put32 (e, entry->kind);
  put32 (e + 4, entry->length);
  put64 (e + 8, entry->file_offset);
  put64 (e + 16, entry->journal_offset);
  put32 (e + 24, entry->crc);
}

static void
encode_trailer (guint8 *t, guint64 salt, guint64 index_offset, guint64 n_entries, guint32 index_crc)
{
  memset (t, 0, BF_JOURNAL_TRAILER_LEN);
  memcpy (t, trailer_magic, 8);
  put64 (t + 8, salt);
  put64 (t + 16, index_offset);
  put64 (t + 24, n_entries);
  put32 (t + 32, index_crc);
  put64 (t + 40, BF_JOURNAL_TRAILER_OFFSET);
  put32 (t + 60, bf_crc32c (0, t, 60));
}

static void
encode_reset (guint8 *t, guint64 salt)
{
  memset (t, 0, BF_JOURNAL_TRAILER_LEN);
  memcpy (t, reset_magic, 8);
  put64 (t + 8, salt);
  put32 (t + 60, bf_crc32c (0, t, 60));
}

/* Whether the 64 bytes at @t are a record with @magic and a good CRC. */
static gboolean
record_is (const guint8 *t, const char *magic)
{
  return memcmp (t, magic, 8) == 0 && get32 (t + 60) == bf_crc32c (0, t, 60);
}

/* -- writing ------------------------------------------------------------------- */

BfJournal *
bf_journal_open (const char *path, gsize block_size, mode_t mode, gboolean *created, GError **error)
{
  g_autofree char *name = g_filename_display_name (path);
  BfJournal *journal;
  struct stat st;
  int fd;

  *created = FALSE;
  for (;;)
    {
      fd = open (path, O_RDWR | O_CLOEXEC);
      if (fd >= 0 || errno != ENOENT)
        break;
      /* O_EXCL: tells whether this call made it (its entry needs a sync). */
      fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
      if (fd >= 0)
        {
          *created = TRUE;
          break;
        }
      if (errno != EEXIST && errno != EINTR)
        break;
    }
  if (fd < 0)
    {
      set_errno_error (error, errno, "Could not open the journal “%s”", name);
      return NULL;
    }
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode))
    {
      int saved_errno = errno;

      g_close (fd, NULL);
      if (S_ISREG (st.st_mode))
        set_errno_error (error, saved_errno, "Could not open the journal “%s”", name);
      else
        g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                     "Could not open the journal “%s”: it is not a regular file", name);
      return NULL;
    }

  journal = g_new0 (BfJournal, 1);
  journal->fd = fd;
  journal->name = g_steal_pointer (&name);
  journal->block_size = block_size;
  journal->end = BF_JOURNAL_ALIGN;
  journal->entries = g_array_new (FALSE, FALSE, sizeof (BfJournalEntry));
  journal->bounce = g_malloc (block_size);
  /* Its owner recovered it, so it holds nothing that counts; but bytes are
   * bytes: reset it (durably) before writing. */
  journal->dirty = st.st_size > 0;
  return journal;
}

void
bf_journal_free (BfJournal *journal)
{
  if (journal == NULL)
    return;
  g_close (journal->fd, NULL);
  g_free (journal->name);
  g_array_unref (journal->entries);
  g_free (journal->bounce);
  g_free (journal);
}

gboolean
bf_journal_reset_fd (int fd, guint64 salt, gboolean sync, const char *name, GError **error)
{
  guint8 record[BF_JOURNAL_TRAILER_LEN];

  encode_reset (record, salt);
  if (!write_all (fd, record, sizeof record, BF_JOURNAL_TRAILER_OFFSET, "journal-reset", name,
                  "the reset record", error))
    return FALSE;
  return !sync || bf_journal_sync_fd (fd, FALSE, "reset-sync", name, error);
}

gboolean
bf_journal_reset (BfJournal *journal, gboolean sync, GError **error)
{
  guint64 salt = journal->salt;

  g_array_set_size (journal->entries, 0);
  journal->started = FALSE;
  journal->end = BF_JOURNAL_ALIGN;
  journal->dirty = TRUE;

  if (!bf_journal_reset_fd (journal->fd, salt, sync, journal->name, error))
    return FALSE;
  journal->dirty = FALSE;
  return TRUE;
}

/* Writes the header of a new transaction, after emptying what a failed
 * reset left. */
static gboolean
start (BfJournal *journal, GError **error)
{
  guint8 header[BF_JOURNAL_HEADER_LEN];

  if (journal->started)
    return TRUE;
  /* Durably: what a failed reset left may be a committed transaction,
   * already applied, that must not come back over this one's file. */
  if (journal->dirty && !bf_journal_reset (journal, TRUE, error))
    return FALSE;

  journal->salt = ((guint64)g_random_int () << 32) | g_random_int ();
  encode_header (header, journal->block_size, journal->salt);
  if (!write_all (journal->fd, header, sizeof header, 0, "journal-header", journal->name,
                  "the header", error))
    return FALSE;
  journal->started = TRUE;
  journal->dirty = TRUE;
  return TRUE;
}

gboolean
bf_journal_add_block (BfJournal *journal, guint64 file_offset, const guint8 *data, gsize length,
                      GError **error)
{
  BfJournalEntry entry = { 0 };

  g_return_val_if_fail (length > 0 && length <= journal->block_size, FALSE);

  if (!start (journal, error))
    return FALSE;

  /* The data is page memory that a write pin may change while it is
   * stored: checksum and write one copy, or the checksum could describe
   * other bytes than the journal holds, and recovery would call a good
   * journal corrupt. */
  memcpy (journal->bounce, data, length);
  entry.kind = BF_JOURNAL_ENTRY_BLOCK;
  entry.length = (guint32)length;
  entry.file_offset = file_offset;
  entry.journal_offset = journal->end;
  entry.crc = bf_crc32c (0, journal->bounce, length);
  if (!write_all (journal->fd, journal->bounce, length, journal->end, "journal-block",
                  journal->name, "a block", error))
    return FALSE;
  journal->end = align_up (journal->end + length);
  g_array_append_val (journal->entries, entry);
  return TRUE;
}

void
bf_journal_add_size (BfJournal *journal, guint64 size)
{
  BfJournalEntry entry = { 0 };

  entry.kind = BF_JOURNAL_ENTRY_SIZE;
  entry.file_offset = size;
  g_array_append_val (journal->entries, entry);
}

gboolean
bf_journal_commit (BfJournal *journal, GError **error)
{
  guint n = journal->entries->len;
  gsize index_len = (gsize)n * BF_JOURNAL_ENTRY_LEN;
  guint64 index_offset = journal->end;
  g_autofree guint8 *index = g_malloc (MAX (index_len, 1));
  guint8 trailer[BF_JOURNAL_TRAILER_LEN];

  if (!start (journal, error))
    return FALSE;

  for (guint i = 0; i < n; i++)
    encode_entry (index + (gsize)i * BF_JOURNAL_ENTRY_LEN,
                  &g_array_index (journal->entries, BfJournalEntry, i));
  if (index_len > 0
      && !write_all (journal->fd, index, index_len, index_offset, "journal-index", journal->name,
                     "the index", error))
    return FALSE;
  if (!bf_journal_sync_fd (journal->fd, FALSE, "journal-sync", journal->name, error))
    return FALSE;

  encode_trailer (trailer, journal->salt, index_offset, n, bf_crc32c (0, index, index_len));
  if (!write_all (journal->fd, trailer, sizeof trailer, BF_JOURNAL_TRAILER_OFFSET,
                  "journal-trailer", journal->name, "the commit trailer", error))
    return FALSE;
  return bf_journal_sync_fd (journal->fd, FALSE, "trailer-sync", journal->name, error);
}

/* -- reading ------------------------------------------------------------------- */

static gboolean corrupt (GError **error, const char *name, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

static gboolean
corrupt (GError **error, const char *name, const char *format, ...)
{
  va_list args;
  char *what;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
               "The journal “%s” holds a committed save but is damaged (%s), so none of it was "
               "applied; the file may hold part of that save already. Move the journal away to "
               "open the file as it is (the save in the journal is then lost)",
               name, what);
  g_free (what);
  return FALSE;
}

/* Checks one entry of a committed journal against the journal's layout. */
static gboolean
check_entry (const BfJournalEntry *e, guint i, guint64 index_offset, gsize block_size,
             const char *name, GError **error)
{
  switch (e->kind)
    {
      case BF_JOURNAL_ENTRY_BLOCK:
        if (e->length == 0 || e->length > block_size || e->journal_offset < BF_JOURNAL_ALIGN
            || e->journal_offset % BF_JOURNAL_ALIGN != 0 || e->journal_offset > index_offset
            || e->length > index_offset - e->journal_offset
            || e->file_offset > (guint64)G_MAXINT64 - e->length)
          return corrupt (error, name,
                          "entry %u: %u bytes at offset %" G_GUINT64_FORMAT
                          " of the journal for offset %" G_GUINT64_FORMAT
                          " of the file do not fit the journal or the file",
                          i, e->length, e->journal_offset, e->file_offset);
        return TRUE;

      case BF_JOURNAL_ENTRY_SIZE:
        if (e->file_offset > (guint64)G_MAXINT64 || e->length != 0)
          return corrupt (error, name, "entry %u: a size of %" G_GUINT64_FORMAT " bytes", i,
                          e->file_offset);
        return TRUE;

      default:
        return corrupt (error, name, "entry %u has the unknown kind %u", i, e->kind);
    }
}

/* read_exact() of a part of a journal whose trailer says it committed: a
 * part that is missing is damage. */
static gboolean
read_committed (int fd, void *data, gsize len, guint64 offset, const char *name, const char *what,
                GError **error)
{
  GError *local = NULL;

  if (read_exact (fd, data, len, offset, name, what, &local))
    return TRUE;
  if (!g_error_matches (local, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT))
    {
      g_propagate_error (error, local);
      return FALSE;
    }
  g_error_free (local);
  return corrupt (error, name, "it ends inside %s, at offset %" G_GUINT64_FORMAT, what, offset);
}

gboolean
bf_journal_read (int fd, const char *name, BfJournalState *state, guint64 *salt_out,
                 GArray **entries, GError **error)
{
  guint8 page[BF_JOURNAL_TRAILER_OFFSET + BF_JOURNAL_TRAILER_LEN] = { 0 };
  const guint8 *header = page, *trailer = page + BF_JOURNAL_TRAILER_OFFSET;
  guint64 size, salt, index_offset, n_entries, block_size, index_end;
  guint32 version;
  g_autofree guint8 *index = NULL;
  g_autofree guint8 *buffer = NULL;
  g_autoptr (GArray) list = NULL;
  struct stat st;
  gsize have;

  *entries = NULL;
  *salt_out = 0;
  if (fstat (fd, &st) != 0)
    {
      set_errno_error (error, errno, "Could not read the journal “%s”: fstat() failed", name);
      return FALSE;
    }
  size = (guint64)st.st_size;
  have = (gsize)MIN (size, sizeof page);
  if (!read_exact (fd, page, have, 0, name, "the header", error))
    return FALSE;

  /* The trailer first: it is the commit point, and without it (or torn)
   * nothing else matters. */
  if (!record_is (trailer, trailer_magic) || get64 (trailer + 40) != BF_JOURNAL_TRAILER_OFFSET)
    {
      static const guint8 zeros[BF_JOURNAL_HEADER_LEN] = { 0 };
      gboolean no_header = memcmp (header, zeros, sizeof zeros) == 0;
      gboolean reset = record_is (header, header_magic) && record_is (trailer, reset_magic)
                       && get64 (trailer + 8) == get64 (header + 24);

      *state = no_header || reset ? BF_JOURNAL_EMPTY : BF_JOURNAL_INCOMPLETE;
      return TRUE;
    }

  /* Committed, says the trailer: from here on, what does not match is
   * damage. */
  salt = get64 (trailer + 8);
  index_offset = get64 (trailer + 16);
  n_entries = get64 (trailer + 24);
  *salt_out = salt;

  if (!record_is (header, header_magic))
    return corrupt (error, name, "its header is not that of a journal");
  version = get32 (header + 8);
  if (version != BF_JOURNAL_VERSION)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
                   "The journal “%s” holds a committed save in format version %u, which this "
                   "version of bigfile-glib cannot read (it reads version %u): open the file with "
                   "the version that wrote it",
                   name, version, BF_JOURNAL_VERSION);
      return FALSE;
    }
  if (get32 (header + 12) != BF_JOURNAL_HEADER_LEN)
    return corrupt (error, name, "a header of %u bytes", get32 (header + 12));
  if (get64 (header + 24) != salt)
    return corrupt (error, name, "its header and its trailer are of different transactions");
  block_size = get64 (header + 16);
  if (block_size == 0 || block_size > BF_JOURNAL_MAX_BLOCK || (block_size & (block_size - 1)) != 0)
    return corrupt (error, name, "a block size of %" G_GUINT64_FORMAT " bytes", block_size);

  if (index_offset < BF_JOURNAL_ALIGN || index_offset % BF_JOURNAL_ALIGN != 0
      || n_entries > (G_MAXUINT64 - index_offset) / BF_JOURNAL_ENTRY_LEN || n_entries > G_MAXUINT)
    return corrupt (error, name,
                    "an index of %" G_GUINT64_FORMAT " entries at offset %" G_GUINT64_FORMAT,
                    n_entries, index_offset);
  index_end = index_offset + n_entries * BF_JOURNAL_ENTRY_LEN;
  if (index_end > size)
    return corrupt (error, name,
                    "it ends at offset %" G_GUINT64_FORMAT
                    ", inside its index (offset %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT ")",
                    size, index_offset, index_end);
  /* n_entries is what a valid trailer says, and the file is that big. */
  index = g_try_malloc (MAX (n_entries * BF_JOURNAL_ENTRY_LEN, 1));
  if (index == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                   "Could not read the journal “%s”: no memory for its index of %" G_GUINT64_FORMAT
                   " entries",
                   name, n_entries);
      return FALSE;
    }
  if (!read_committed (fd, index, n_entries * BF_JOURNAL_ENTRY_LEN, index_offset, name, "the index",
                       error))
    return FALSE;
  if (bf_crc32c (0, index, n_entries * BF_JOURNAL_ENTRY_LEN) != get32 (trailer + 32))
    return corrupt (error, name, "its index does not match its checksum");

  list = g_array_sized_new (FALSE, FALSE, sizeof (BfJournalEntry), (guint)n_entries);
  buffer = g_malloc (block_size);
  for (guint64 i = 0; i < n_entries; i++)
    {
      const guint8 *e = index + i * BF_JOURNAL_ENTRY_LEN;
      BfJournalEntry entry;

      entry.kind = get32 (e);
      entry.length = get32 (e + 4);
      entry.file_offset = get64 (e + 8);
      entry.journal_offset = get64 (e + 16);
      entry.crc = get32 (e + 24);
      if (!check_entry (&entry, (guint)i, index_offset, block_size, name, error))
        return FALSE;

      /* Every block is checked before any is applied: a damaged one must
       * not leave the file half-way. */
      if (entry.kind == BF_JOURNAL_ENTRY_BLOCK)
        {
          if (!read_committed (fd, buffer, entry.length, entry.journal_offset, name, "a block",
                               error))
            return FALSE;
          if (bf_crc32c (0, buffer, entry.length) != entry.crc)
            return corrupt (error, name,
                            "the block for offset %" G_GUINT64_FORMAT
                            " of the file does not match its checksum",
                            entry.file_offset);
        }
      g_array_append_val (list, entry);
    }

  *state = BF_JOURNAL_COMMITTED;
  *entries = g_steal_pointer (&list);
  return TRUE;
}

/* -- applying ------------------------------------------------------------------ */

/* Copies a block from the journal into the file: in the kernel, sharing the
 * extents where the file system can (XFS, Btrfs), or through @buffer where
 * copy_file_range() is not to be had. */
static gboolean
apply_block (int journal_fd, const char *journal_name, int file_fd, const char *file_name,
             const BfJournalEntry *e, guint8 **buffer, gboolean *use_copy, GError **error)
{
  guint64 done = 0;

  while (*use_copy && done < e->length)
    {
      loff_t in = (loff_t)(e->journal_offset + done);
      loff_t out = (loff_t)(e->file_offset + done);
      ssize_t n = copy_file_range (journal_fd, &in, file_fd, &out, e->length - done, 0);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0
          && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP
              || errno == EBADF || errno == ETXTBSY))
        {
          /* Not for these two files: write the rest through memory, and
           * the next blocks too. */
          *use_copy = FALSE;
          break;
        }
      if (n < 0)
        {
          set_errno_error (error, errno,
                           "Could not copy a block of the journal “%s” into “%s” at offset "
                           "%" G_GUINT64_FORMAT,
                           journal_name, file_name, e->file_offset + done);
          return FALSE;
        }
      if (n == 0)
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
                       "The journal “%s” ends inside a block it is applying, at offset "
                       "%" G_GUINT64_FORMAT,
                       journal_name, e->journal_offset + done);
          return FALSE;
        }
      done += (guint64)n;
    }
  if (done == e->length)
    return TRUE;

  if (*buffer == NULL)
    *buffer = g_malloc (BF_JOURNAL_MAX_BLOCK);
  if (!read_exact (journal_fd, *buffer + done, e->length - done, e->journal_offset + done,
                   journal_name, "a block", error))
    return FALSE;
  return write_all (file_fd, *buffer + done, e->length - done, e->file_offset + done,
                    "apply-block-fallback", file_name, "a block", error);
}

gboolean
bf_journal_apply (int journal_fd, const char *journal_name, int file_fd, const char *file_name,
                  const BfJournalEntry *entries, guint n_entries, GError **error)
{
  g_autofree guint8 *buffer = NULL;
  gboolean use_copy = TRUE;

  for (guint i = 0; i < n_entries; i++)
    {
      const BfJournalEntry *e = &entries[i];
      int injected;

      if (e->kind == BF_JOURNAL_ENTRY_SIZE)
        {
          injected = bf_journal_fault ("apply-size");
          if (injected != 0)
            {
              set_errno_error (error, injected,
                               "Could not make “%s” %" G_GUINT64_FORMAT
                               " bytes long: ftruncate() failed",
                               file_name, e->file_offset);
              return FALSE;
            }
          while (ftruncate (file_fd, (off_t)e->file_offset) != 0)
            {
              if (errno == EINTR)
                continue;
              set_errno_error (error, errno,
                               "Could not make “%s” %" G_GUINT64_FORMAT
                               " bytes long: ftruncate() failed",
                               file_name, e->file_offset);
              return FALSE;
            }
          continue;
        }

      injected = bf_journal_fault ("apply-block");
      if (injected != 0)
        {
          set_errno_error (error, injected,
                           "Could not copy a block of the journal “%s” into “%s” at offset "
                           "%" G_GUINT64_FORMAT,
                           journal_name, file_name, e->file_offset);
          return FALSE;
        }
      if (!apply_block (journal_fd, journal_name, file_fd, file_name, e, &buffer, &use_copy, error))
        return FALSE;
    }
  return TRUE;
}
