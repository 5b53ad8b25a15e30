/* bigfile-glib - a BigfileFile over a regular local file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bigfile-private.h"

#include "bigfile-local-journal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

/**
 * SECTION:bigfile-local-file
 * @title: BigfileLocalFile
 * @short_description: A #BigfileFile over a regular local file
 * @include: bigfile-glib/bigfile.h
 * @see_also: #BigfileFile, #BigfileHandle
 *
 * #BigfileLocalFile reads and writes the blocks of a regular file with
 * `pread()` and `pwrite()`: the #BigfileFile to use when the data is a file
 * on a local disk. It is thread-safe, so its pages load on the thread that
 * touches them, and bigfile_handle_writeout_async() stores them from a
 * worker thread. Its saves are durable on request
 * (%BIGFILE_LOCAL_FILE_FLAGS_DURABLE, %BIGFILE_WRITEOUT_DURABLE), and
 * atomic through a journal with %BIGFILE_LOCAL_FILE_FLAGS_ATOMIC.
 */

/**
 * BigfileLocalFile:
 *
 * A #BigfileFile over a regular file of the local file system.
 *
 * Block N of a #BigfileLocalFile is the bytes of its file from N times the
 * block size on. The file needs no particular length: blocks past its end
 * load as zeros.
 *
 * Its size is the file's length (`fstat()`), which a #BigfileHandle keeps
 * (#BigfileHandle:size): saving a 5000-byte file with 4 KiB blocks leaves a
 * 5000-byte file, whatever was changed below byte 5000. Writing past the
 * end makes the file as long as what was written, up to the last byte that
 * is not zero (the file grows with `ftruncate()`, with a hole on file
 * systems that have them for what lies between, then the block is
 * stored); bigfile_handle_set_size() truncates or extends it at the next
 * writeout, with `ftruncate()`. A read-only file fails those with
 * %BIGFILE_FILE_ERROR_READ_ONLY.
 *
 * Loads and stores use `pread()` and `pwrite()` on one file descriptor, so
 * they may run on any thread, concurrently: #BigfileLocalFile is
 * thread-safe.
 *
 * ## Transactions and durability
 *
 * #BigfileLocalFile implements the transaction methods of #BigfileFile
 * (bigfile_file_is_transactional() is %TRUE in both of its modes), so a
 * #BigfileHandle's writeout begins a transaction, stores, and commits
 * before it marks any page clean. Transactions of one #BigfileLocalFile
 * are serialized: a begin on another thread waits for the open one to
 * end (a second begin on the thread that has one open fails with
 * %BIGFILE_FILE_ERROR_BUSY, as it would wait for itself). A store or
 * size change made outside a transaction is a transaction of its own.
 *
 * Without %BIGFILE_LOCAL_FILE_FLAGS_ATOMIC (plain mode, the default) a
 * store writes to the file with `pwrite()` at once, as before: the
 * transaction is not atomic. A crash in the middle of a writeout leaves
 * some blocks old and some new, loads (and other programs) see each
 * block as soon as it is stored, and an abort cannot take back what was
 * stored (the handle keeps those pages dirty, with the program's data,
 * so nothing is lost). Commit makes the stores durable only when asked:
 * with %BIGFILE_COMMIT_FLAGS_DURABLE (what %BIGFILE_WRITEOUT_DURABLE
 * gives), or for every commit and every store outside a transaction when
 * the file was opened with %BIGFILE_LOCAL_FILE_FLAGS_DURABLE. A durable
 * commit calls `fdatasync()` on the file, and the first time `fsync()` on
 * its directory too if this open created the file, before it returns;
 * otherwise the data reaches the disk when the kernel writes it back. A
 * failed sync fails the commit, and the handle keeps the pages dirty: a
 * retry stores them again, so a sync error that the kernel reports only
 * once does not lose them.
 *
 * ## Atomic saves
 *
 * With %BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, a transaction's stores and size
 * changes go to a journal beside the file (#BigfileLocalFile:journal-path,
 * `PATH.bigfile-journal`), and the file is untouched until the commit: loads
 * on any thread, and clean pages mapped from the file with
 * %BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, go on showing the old version
 * (bigfile_file_get_size() too). The commit makes the journal durable with
 * a checksummed commit record, then copies its blocks into the file, makes
 * the file durable and resets the journal; loads wait while the blocks are
 * copied, so that each reads a block of one version, whole (clean pages
 * mapped from the file show the copy as it goes, as they show any write to
 * the file, and the commit's own pages are dirty until it is done). After a crash
 * or a power loss at any moment, the next open of the file, in any mode,
 * applies a journal that holds a committed save (again, if it was applied
 * in part: applying it twice gives the same file) and discards one that
 * did not commit, which the file never saw: the file holds every block and
 * the size of a writeout, or none of them. A crash of that recovery is
 * recovered the same way at the open after. #BigfileLocalFile:recovery
 * tells what an open did.
 *
 * Atomic commits are always durable: the order that makes them atomic (the
 * journal on disk before the file changes, the file on disk before the
 * journal is reset) takes the syncs that durability asks for, so
 * %BIGFILE_COMMIT_FLAGS_DURABLE and %BIGFILE_LOCAL_FILE_FLAGS_DURABLE
 * change nothing there.
 *
 * Failures. A failure before the commit record is durable (a write or sync
 * of the journal, %G_IO_ERROR_NO_SPACE, `EFBIG` past `RLIMIT_FSIZE`) fails
 * the writeout with the system's error, leaves the file as it was and
 * the pages dirty, and a retry works once the cause is gone. Before the
 * commit point, the commit also reserves the blocks the file will need
 * (`fallocate()`, keeping the file's size) and checks `RLIMIT_FSIZE`, so
 * that running out of room shows there, with nothing saved. A failure
 * after it (an I/O error while copying into the file, or its sync) fails
 * the commit with a message that says so: the save is committed in the
 * journal but the file is half-way, so loads fail until the next writeout
 * (its begin applies the journal again) or the next open does.
 *
 * Locks. An open for writing in atomic mode is alone with the file: it
 * holds an exclusive OFD lock (`fcntl (F_OFD_SETLK)`) on the whole file for
 * as long as it is open, and every other #BigfileLocalFile open (any mode,
 * read-only too) holds a shared one. So a second open fails with
 * %BIGFILE_FILE_ERROR_BUSY, at once, when an atomic writer has the file,
 * and an atomic writer cannot open a file that others have open. The locks
 * are advisory (a program that writes the file without this library is not
 * kept out), belong to the open file description (two opens in one process
 * exclude each other; a descriptor inherited through `fork()` shares its
 * lock), and are released when the file is finalized. Plain opens of a
 * file system without locks go on without them; atomic ones fail with
 * %BIGFILE_FILE_ERROR_NOT_SUPPORTED.
 *
 * Read-only opens recover a journal too, when the file can be opened for
 * writing there (the save was committed by its writer; applying it is not
 * a change of this open's). Where it cannot (a read-only mount, no
 * permission), a committed journal fails the open with
 * %G_IO_ERROR_PERMISSION_DENIED, saying so, rather than show a file that
 * lacks a committed save; one that did not commit is left for the next
 * writer, and the file opens as it is.
 *
 * ## The journal
 *
 * The journal is a file of its own (integers little-endian; the layout is
 * documented in full in bigfile-local-journal.c):
 *
 * |[
 *   0       512      1024   4096
 *   +-------+--------+------+--------+---+--------+-----+--------------+
 *   | header| trailer|      | block  |pad| block  | ... | index        |
 *   +-------+--------+------+--------+---+--------+-----+--------------+
 *    "BFJOURNL" "BFJCOMIT"   each block's data on a 4 KiB boundary,
 *    version,   or           the index of the changes after them:
 *    block size "BFJRESET"   per block its offset in the file, length,
 *    salt, CRC  salt, CRC    place in the journal and CRC-32C; and the
 *                            size changes, in order
 * ]|
 *
 * The trailer is the commit record: the transaction's salt, the place,
 * length and CRC-32C of the index, and its own CRC. A commit writes the
 * header, the blocks (as the stores come) and the index, syncs, writes the
 * trailer, syncs (the commit point), copies the blocks into the file and
 * makes the size changes, syncs the file, and writes a reset record over
 * the trailer, synced. On an open, a journal with no valid trailer (none, a
 * torn one, or a reset record) is not a commit: it is discarded. One with a
 * valid trailer is checked whole before anything is applied (header, salt,
 * index, every block's CRC): what does not match cannot be a torn write,
 * since the trailer is written only once the rest is on disk, so it is
 * damage, and the open fails with %BIGFILE_FILE_ERROR_CORRUPT, changing
 * nothing; the message says to move the journal away to open the file as
 * it is (losing that save, and keeping whatever part of it a crash while
 * applying had copied). A journal of a newer format version is neither
 * applied nor discarded (%BIGFILE_FILE_ERROR_NOT_SUPPORTED). Blocks are
 * recorded by byte offset, so a journal applies whatever block size the
 * file is opened with.
 *
 * The journal is made at the first save and removed when the file is
 * finalized; between saves it is reset, not truncated, so that the next
 * save overwrites blocks that are allocated and cached already. It takes
 * as much disk space as the largest save (plus 4 KiB, and 32 bytes a
 * block for the index) as long as the file is open.
 *
 * ## What atomicity costs
 *
 * Each block is written twice (to the journal, then into the file with
 * `copy_file_range()`, in the kernel, sharing the blocks on file systems
 * that can), and a commit takes four syncs. Measured with bigfile-bench
 * (512 MiB of dirty 2 MiB pages, files on ext4 over virtio, medians of
 * three runs, two runs of the program): a plain writeout 7.1-7.4 GB/s (to
 * the page cache), a durable one 2.7-3.3 GB/s, an atomic one 1.0-1.1 GB/s,
 * next to `pwrite()` + `fdatasync()` of 512 MiB at 3.3-3.5 GB/s. An atomic
 * save of that size costs about 3 times a durable one (0.3 of the kernel's
 * durable write), 7 times a plain one; the first one after an open costs
 * more, as it allocates the journal. A commit of one 4 KiB block takes
 * about 1.5 us plain, 0.1 ms durable and 0.5 ms atomic (its syncs). Stores
 * outside a transaction pay a commit each: write out through a handle, or
 * group stores in a transaction.
 *
 * ## Limits
 *
 * One atomic writer per file (and no other reader meanwhile); within it,
 * any number of threads. The journal must stay beside the file: rename or
 * copy them together (a rename of the file while a journal holds a
 * committed save, after a crash, loses that save for the renamed file).
 * Durability is as good as the disk's flush: a disk that lies about
 * flushes can lose the last commits and, with them, atomicity. The file
 * system must keep the order that syncs give (ext4, XFS, Btrfs and tmpfs
 * do); network file systems are as good as their locks and syncs.
 *
 * ## Clean pages straight from the page cache
 *
 * Opened with %BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, the file lets its
 * handles show the complete pages it has (those wholly below its size)
 * straight from the kernel's page cache, through a shared read-only
 * mapping of the file: reading them is as fast as reading a plain mmap() of
 * the file, and takes nothing from the #BigfileRam. The first write to a
 * page copies it into the #BigfileRam, from the file as it is at that
 * moment (it is dirty from then on, in every mapping of the handle), and
 * writeout stores it back; once stored, the file shows there again.
 *
 * What changes: clean pages always show the file as it is now, so another
 * writer's changes show at once, in raw memory, in bigfile_vma_read() and
 * in new mappings alike (the handle is no longer a snapshot of them);
 * bigfile_handle_get_page_state() reports such pages as empty; and a read
 * error of the disk comes to the program as the kernel's `SIGBUS`, without
 * a reason for bigfile_vma_take_fault_error() (bigfile_vma_populate()
 * reports it as a #GError). Populating or pinning such pages for reading
 * loads no copy: the kernel reads them into its page cache, and a read pin
 * keeps them mapped and readable from the file (showing its current data)
 * without taking anything from the budget.
 *
 * The end of the file: a mapping of a file cannot show past the file's end,
 * so the last page of a file whose size is not a multiple of the block size,
 * and the pages past it, are copies in the #BigfileRam, as without this
 * flag. When the file grows (a writeout that stores pages past its end, or
 * another writer), the pages that became complete show the file, and the
 * copies of the pages whose data changed are dropped, at the handle's next
 * look at the file's size: when a mapping is made, after a writeout that
 * stored pages, at bigfile_handle_invalidate_page(), and at a page fault or
 * an API call (read, write, populate, pin) on a page past the end it knew.
 * Until then, pages of an existing mapping past that end show what they
 * showed. The copy of the partial last page is also dropped when its last
 * pin goes, and before a write changes it; a change another writer makes
 * within it, leaving the size alone, shows once the copy goes (invalidate
 * the page to make it go). Truncating the file under a mapping makes reads
 * past its new end fail with `SIGBUS`, as with any mmap() of a file, until
 * the handle next looks at the size (bigfile_handle_invalidate_page() makes
 * it look): then they read zeros. bigfile_handle_set_size() does not: the
 * handle's mappings stop showing the file from the page that holds the new
 * size at once, before writeout truncates the file.
 *
 * Scattered changes cost the kernel two mappings each: past half of
 * `vm.max_map_count` of them, a mapping goes back to loading copies of clean
 * pages, as without this flag (pages pinned for reading apart), though a
 * write still starts from the file as it is.
 *
 * It implements #GInitable: bindings create it with bigfile_local_file_new()
 * or, through its properties, with g_initable_new().
 *
 * |[<!-- language="C" -->
 * g_autoptr(GError) error = NULL;
 * g_autoptr(BigfileLocalFile) file =
 *     bigfile_local_file_new ("/var/lib/app/matrix.bin", 2 * 1024 * 1024,
 *                             BIGFILE_LOCAL_FILE_FLAGS_CREATE, &error);
 *
 * if (file == NULL)
 *   g_error ("%s", error->message);
 * ]|
 *
 * Since: 1.0
 */

/* Lock order: txn_lock, then apply_lock.  Loads take only apply_lock;
 * transactions take txn_lock for their whole length (waiting on txn_cond for
 * another one to end), and apply_lock only while a commit writes into the
 * file.
 *
 * The journal's life (atomic mode, open for writing):
 *
 *   none --begin--> open, empty --store/size--> holding the transaction
 *     ^                 ^                             |
 *     |                 +---- abort, or commit -------+
 *     |                       applied and synced      | commit passed its
 *   finalize (removes it                              | commit point, apply
 *   if empty)                 apply_pending <---------+ failed
 *                              (begin applies it again; loads fail)
 */
struct _BigfileLocalFile
{
  GObject parent_instance;

  /* Set by the construct properties and init(), never changed afterwards:
   * no lock. */
  char *path;
  char *name;         /* display name of path, for messages */
  char *journal_path; /* absolute: the working directory may change */
  char *dir_path;     /* the absolute directory of the file, to sync its entries */
  gsize block_size;
  BigfileLocalFileFlags flags;
  int fd;           /* -1 until initialized */
  gboolean created; /* init() made the file */
  BigfileLocalFileRecovery recovery;

  /* Atomic mode: loads and get_size() hold it for reading, a commit for
   * writing while it changes the file, so that a load reads each block as
   * it was before a commit or after it, never half-way. */
  GRWLock apply_lock;

  /* (atomic) TRUE once a commit passed its commit point but could not be
   * applied to the file (which is then half-way): loads fail until begin
   * applies the journal again.  Set and cleared under txn_lock. */
  gint apply_pending;

  /* txn_lock protects these. */
  GMutex txn_lock;
  GCond txn_cond; /* a transaction ended */
  gboolean txn_open;
  GThread *txn_thread; /* that began it: a second begin there would wait for itself */
  gboolean txn_failed; /* one of its stores or size changes failed: commit must fail */
  BfJournal *journal;  /* atomic, writable: opened by the first transaction */
  gboolean dir_synced; /* the directory entries made (file, journal) are durable */
};

enum
{
  PROP_0,
  PROP_PATH,
  PROP_BLOCK_SIZE,
  PROP_FLAGS,
  PROP_JOURNAL_PATH,
  PROP_RECOVERY,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

#define DEFAULT_BLOCK_SIZE ((gsize)2 * 1024 * 1024)

static void bigfile_local_file_file_iface_init (BigfileFileInterface *iface);
static void bigfile_local_file_initable_iface_init (GInitableIface *iface);

G_DEFINE_TYPE_WITH_CODE (BigfileLocalFile, bigfile_local_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE,
                                                bigfile_local_file_file_iface_init)
                             G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                    bigfile_local_file_initable_iface_init))

static gboolean
is_atomic_writer (BigfileLocalFile *self)
{
  return (self->flags & (BIGFILE_LOCAL_FILE_FLAGS_ATOMIC | BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY))
         == BIGFILE_LOCAL_FILE_FLAGS_ATOMIC;
}

static void
bigfile_local_file_finalize (GObject *object)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (object);

  /* Handles hold a reference on their file, so no load, store or
   * transaction runs. */
  if (self->journal != NULL)
    {
      /* Removed only when empty on disk: a journal that holds a commit not
       * applied yet (apply_pending) stays, for the next open to apply. */
      if (!self->apply_pending && self->journal->dirty)
        bf_journal_reset (self->journal, TRUE, NULL);
      if (!self->apply_pending && !self->journal->dirty)
        g_unlink (self->journal_path);
      g_clear_pointer (&self->journal, bf_journal_free);
    }
  /* Closing it releases the lock: after the journal is gone. */
  if (self->fd >= 0)
    {
      g_close (self->fd, NULL);
      self->fd = -1;
    }
  g_clear_pointer (&self->path, g_free);
  g_clear_pointer (&self->name, g_free);
  g_clear_pointer (&self->journal_path, g_free);
  g_clear_pointer (&self->dir_path, g_free);
  g_rw_lock_clear (&self->apply_lock);
  g_mutex_clear (&self->txn_lock);
  g_cond_clear (&self->txn_cond);

  G_OBJECT_CLASS (bigfile_local_file_parent_class)->finalize (object);
}

static void
bigfile_local_file_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (object);

  switch (prop_id)
    {
      case PROP_PATH:
        g_value_set_string (value, self->path);
        break;

      case PROP_BLOCK_SIZE:
        g_value_set_uint64 (value, self->block_size);
        break;

      case PROP_FLAGS:
        g_value_set_flags (value, self->flags);
        break;

      case PROP_JOURNAL_PATH:
        g_value_set_string (value, self->journal_path);
        break;

      case PROP_RECOVERY:
        g_value_set_enum (value, self->recovery);
        break;

      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_local_file_set_property (GObject *object, guint prop_id, const GValue *value,
                                 GParamSpec *pspec)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (object);

  switch (prop_id)
    {
      case PROP_PATH:
        g_free (self->path);
        self->path = g_value_dup_string (value);
        break;

      case PROP_BLOCK_SIZE:
        {
          guint64 block_size = g_value_get_uint64 (value);

          /* An oversized value (on a 32-bit system) must not wrap into a valid
           * size: make it one that init() rejects. */
          self->block_size = block_size <= G_MAXSIZE ? (gsize)block_size : 0;
        }
        break;

      case PROP_FLAGS:
        self->flags = g_value_get_flags (value);
        break;

      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_local_file_class_init (BigfileLocalFileClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = bigfile_local_file_finalize;
  object_class->get_property = bigfile_local_file_get_property;
  object_class->set_property = bigfile_local_file_set_property;

  /**
   * BigfileLocalFile:path:
   *
   * The path of the file, in the GLib file name encoding.
   *
   * Since: 1.0
   */
  props[PROP_PATH] = g_param_spec_string ("path", NULL, NULL, NULL,
                                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY
                                              | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileLocalFile:block-size:
   *
   * The size of a block in bytes: a power of two from 4 KiB to 2 MiB. It is
   * the page size of the handles of the file. Larger blocks mean fewer page
   * faults and larger I/O; smaller ones, less memory and I/O per change.
   *
   * Since: 1.0
   */
  props[PROP_BLOCK_SIZE]
      = g_param_spec_uint64 ("block-size", NULL, NULL, 0, G_MAXUINT64, DEFAULT_BLOCK_SIZE,
                             G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS
                                 | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileLocalFile:flags:
   *
   * How the file is opened.
   *
   * Since: 1.0
   */
  props[PROP_FLAGS] = g_param_spec_flags ("flags", NULL, NULL, BIGFILE_TYPE_LOCAL_FILE_FLAGS,
                                          BIGFILE_LOCAL_FILE_FLAGS_NONE,
                                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY
                                              | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileLocalFile:journal-path:
   *
   * The path of the file's journal, in the GLib file name encoding: the
   * file's absolute path followed by `.bigfile-journal`. It exists while
   * the file is open for writing with %BIGFILE_LOCAL_FILE_FLAGS_ATOMIC
   * (from the first save on), and after a crash of such a program, until
   * the next open of the file recovers it; opens in every mode recover it.
   * Keep it with the file: moving or deleting it after a crash loses or
   * breaks the save in it. %NULL until the file is initialized.
   *
   * Since: 1.0
   */
  props[PROP_JOURNAL_PATH]
      = g_param_spec_string ("journal-path", NULL, NULL, NULL,
                             G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileLocalFile:recovery:
   *
   * What opening the file found in its journal, left by a program that
   * stopped in the middle of a save, and did with it: nothing, applied a
   * committed save, or discarded one that had not committed.
   *
   * Since: 1.0
   */
  props[PROP_RECOVERY] = g_param_spec_enum (
      "recovery", NULL, NULL, BIGFILE_TYPE_LOCAL_FILE_RECOVERY, BIGFILE_LOCAL_FILE_RECOVERY_NONE,
      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
bigfile_local_file_init (BigfileLocalFile *self)
{
  self->fd = -1;
  self->block_size = DEFAULT_BLOCK_SIZE;
  g_rw_lock_init (&self->apply_lock);
  g_mutex_init (&self->txn_lock);
  g_cond_init (&self->txn_cond);
}

/* -- opening: locks and recovery --------------------------------------------------
 *
 * Every open takes an OFD lock (fcntl F_OFD_SETLK) on the whole file, held
 * as long as it is open: exclusive for an atomic open for writing, shared
 * for any other.  So an atomic writer is alone with the file (no other
 * process can change it under its journal, nor read it half-applied), and
 * other opens go on sharing it as before.  OFD locks belong to the open
 * file description: two opens in one process exclude each other too, and
 * a descriptor inherited through fork() shares its lock.
 *
 * An open that finds bytes in the journal takes the lock exclusively for a
 * moment to recover it: a committed save is applied, an incomplete one
 * discarded.  Nobody else can hold the file then, so the journal is that of
 * a program that stopped.  Plain opens must do it too: a plain writer
 * that ignored a committed journal would have its changes overwritten by
 * the next atomic open's recovery. */

typedef enum
{
  LOCK_TAKEN,
  LOCK_CONFLICT,
  LOCK_UNSUPPORTED,
  LOCK_FAILED,
} LockResult;

static LockResult
take_lock (int fd, short type, int *saved_errno)
{
  struct flock fl;

  memset (&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0; /* to the end, however far it goes */
  while (fcntl (fd, F_OFD_SETLK, &fl) != 0)
    {
      *saved_errno = errno;
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EACCES)
        return LOCK_CONFLICT;
      /* Old kernels (before 3.15) and file systems without locks. */
      if (errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP)
        return LOCK_UNSUPPORTED;
      return LOCK_FAILED;
    }
  return LOCK_TAKEN;
}

static gboolean
set_lock_error (BigfileLocalFile *self, LockResult r, int saved_errno, gboolean exclusive,
                GError **error)
{
  switch (r)
    {
      case LOCK_TAKEN:
        return TRUE;

      case LOCK_CONFLICT:
        if (exclusive)
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY,
                       "Could not open “%s” for atomic saves: another BigfileLocalFile (in this "
                       "process or another) has it open, and an atomic writer must be alone with "
                       "it; close the other one and try again",
                       self->name);
        else
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY,
                       "Could not open “%s”: a BigfileLocalFile (in this process or another) has "
                       "it open for atomic saves, alone; close that one and try again",
                       self->name);
        return FALSE;

      case LOCK_UNSUPPORTED:
        if (!(self->flags & BIGFILE_LOCAL_FILE_FLAGS_ATOMIC))
          return TRUE; /* plain opens went without locks before: so be it */
        g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
                     "Could not open “%s” for atomic saves: its file system cannot lock it "
                     "(fcntl F_OFD_SETLK: %s), and atomic saves need the lock",
                     self->name, g_strerror (saved_errno));
        return FALSE;

      case LOCK_FAILED:
      default:
        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                     "Could not lock “%s”: fcntl F_OFD_SETLK failed: %s", self->name,
                     g_strerror (saved_errno));
        return FALSE;
    }
}

static gboolean
lock_shared (BigfileLocalFile *self, GError **error)
{
  int saved_errno = 0;
  LockResult r = take_lock (self->fd, F_RDLCK, &saved_errno);

  return set_lock_error (self, r, saved_errno, FALSE, error);
}

/* fsync() of the directory of the file: makes the entries of a new file
 * and of a new journal durable. */
static gboolean
sync_dir (BigfileLocalFile *self, GError **error)
{
  g_autofree char *name = g_filename_display_name (self->dir_path);
  gboolean ok;
  int fd;

  do
    fd = open (self->dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not open the directory “%s” to flush it: %s", name,
                   g_strerror (saved_errno));
      return FALSE;
    }
  ok = bf_journal_sync_fd (fd, TRUE, "dir-sync", name, error);
  g_close (fd, NULL);
  return ok;
}

/* Recovers the journal, if there is one, the lock being held (exclusively
 * if @write_fd is a descriptor of the file open for writing, else shared).
 * Without @write_fd, a committed journal cannot be applied: the error says
 * so, with @why_not. */
static gboolean
recover (BigfileLocalFile *self, int write_fd, const char *why_not, GError **error)
{
  g_autofree char *jname = g_filename_display_name (self->journal_path);
  g_autoptr (GArray) entries = NULL;
  gboolean journal_writable = write_fd >= 0;
  BfJournalState state;
  guint64 salt;
  gboolean ok = TRUE;
  int jfd = -1;

  if (write_fd >= 0)
    {
      do
        jfd = open (self->journal_path, O_RDWR | O_CLOEXEC);
      while (jfd < 0 && errno == EINTR);
      if (jfd < 0 && errno != ENOENT)
        journal_writable = FALSE;
    }
  if (jfd < 0 && (write_fd < 0 || errno != ENOENT))
    {
      do
        jfd = open (self->journal_path, O_RDONLY | O_CLOEXEC);
      while (jfd < 0 && errno == EINTR);
    }
  if (jfd < 0)
    {
      int saved_errno = errno;

      if (saved_errno == ENOENT)
        return TRUE;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not open “%s”: its journal “%s” is there but cannot be read: %s",
                   self->name, jname, g_strerror (saved_errno));
      return FALSE;
    }

  if (!bf_journal_read (jfd, jname, &state, &salt, &entries, error))
    {
      g_close (jfd, NULL);
      g_prefix_error (error, "Could not open “%s”: ", self->name);
      return FALSE;
    }

  switch (state)
    {
      case BF_JOURNAL_EMPTY:
        break;

      case BF_JOURNAL_INCOMPLETE:
        /* The file never saw any of it: removed below.  Should it come back
         * after a power loss, it is discarded again; without write access
         * it stays, as harmless, for the next writer. */
        self->recovery = BIGFILE_LOCAL_FILE_RECOVERY_DISCARDED;
        break;

      case BF_JOURNAL_COMMITTED:
        if (!journal_writable)
          {
            g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                         "Could not open “%s”: its journal “%s” holds a save that was committed "
                         "but not applied to the file (the program that made it stopped), and "
                         "it must be applied before the file can be read, but %s. Open the file "
                         "once where it can be written",
                         self->name, jname, why_not);
            ok = FALSE;
            break;
          }
        ok = bf_journal_apply (jfd, jname, write_fd, self->name,
                               (const BfJournalEntry *)(void *)entries->data, entries->len, error)
             && bf_journal_sync_fd (write_fd, FALSE, "file-sync", self->name, error)
             && bf_journal_reset_fd (jfd, salt, TRUE, jname, error);
        if (!ok)
          g_prefix_error (error,
                          "Could not open “%s”: applying the save its journal holds failed "
                          "(the next open tries again): ",
                          self->name);
        else
          self->recovery = BIGFILE_LOCAL_FILE_RECOVERY_APPLIED;
        break;
    }

  /* Applied and durably reset, found empty, or not committed, under the
   * exclusive lock: no one else has the file, so the journal can go (an
   * atomic writer makes its own at its first save).  Should the removal
   * not reach the disk, what comes back is harmless: a reset journal, or
   * one without a trailer.  (A committed one must be reset durably first:
   * were it to come back, it would be applied over later changes.) */
  if (ok && journal_writable)
    g_unlink (self->journal_path);
  g_close (jfd, NULL);
  return ok;
}

/* Takes the file's lock for as long as it is open, recovering the journal
 * on the way if there is one.  See the comment above take_lock(). */
static gboolean
lock_and_recover (BigfileLocalFile *self, GError **error)
{
  gboolean exclusive = is_atomic_writer (self);
  gboolean journal_has_bytes;
  int saved_errno = 0;
  GStatBuf st;
  LockResult r;
  int write_fd;
  gboolean ok;

  /* An error other than "no journal" takes the careful path. */
  journal_has_bytes = g_stat (self->journal_path, &st) != 0 ? errno != ENOENT : st.st_size > 0;
  if (!exclusive && !journal_has_bytes)
    return lock_shared (self, error);

  if (!(self->flags & BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY))
    write_fd = self->fd;
  else
    {
      /* A write lock and a recovery both need a descriptor open for
       * writing, which a read-only open may not be able to have. */
      do
        write_fd = open (self->path, O_RDWR | O_CLOEXEC);
      while (write_fd < 0 && errno == EINTR);
      if (write_fd < 0)
        {
          g_autofree char *why
              = g_strdup_printf ("it cannot be opened for writing here (%s)", g_strerror (errno));

          return lock_shared (self, error) && recover (self, -1, why, error);
        }
    }

  r = take_lock (write_fd, F_WRLCK, &saved_errno);
  if (r == LOCK_CONFLICT && !exclusive)
    {
      /* Others share it: no writer can be running, but the journal is not
       * this open's to recover under their feet. */
      if (write_fd != self->fd)
        g_close (write_fd, NULL);
      return lock_shared (self, error)
             && recover (self, -1, "other programs have the file open (close them first)", error);
    }
  if (r != LOCK_TAKEN && !set_lock_error (self, r, saved_errno, exclusive, error))
    {
      if (write_fd != self->fd)
        g_close (write_fd, NULL);
      return FALSE;
    }

  ok = recover (self, write_fd, NULL, error);
  if (write_fd != self->fd)
    g_close (write_fd, NULL); /* and its lock */
  if (!ok || exclusive || r != LOCK_TAKEN)
    return ok;
  /* On self->fd, a downgrade: the lock is never let go. */
  return lock_shared (self, error);
}

static gboolean
bigfile_local_file_initable_init (GInitable *initable, GCancellable *cancellable, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (initable);
  g_autofree char *absolute = NULL;
  g_autofree char *journal = NULL;
  struct stat st;
  int open_flags;
  int fd;

  /* A second init of an initialized file has nothing to do. */
  if (self->fd >= 0)
    return TRUE;

  if (self->path == NULL || self->path[0] == '\0')
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "No path was given for the file");
      return FALSE;
    }

  /* Before opening, so that a bad size creates no file. */
  if (!bf_page_size_is_valid (self->block_size))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Block size %" G_GSIZE_FORMAT
                   " for “%s” is not a power of two from 4 KiB to 2 MiB",
                   self->block_size, self->path);
      return FALSE;
    }

  g_clear_pointer (&self->name, g_free);
  self->name = g_filename_display_name (self->path);
  absolute = g_canonicalize_filename (self->path, NULL);
  journal = g_strconcat (absolute, BF_JOURNAL_SUFFIX, NULL);

  open_flags = (self->flags & BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY) ? O_RDONLY : O_RDWR;
  open_flags |= O_CLOEXEC;

  for (;;)
    {
      fd = open (self->path, open_flags);
      if (fd >= 0 || errno != ENOENT || !(self->flags & BIGFILE_LOCAL_FILE_FLAGS_CREATE))
        break;
      /* O_EXCL tells whether this open made it: a durable commit must then
       * make its directory entry durable too. */
      fd = open (self->path, open_flags | O_CREAT | O_EXCL, 0666);
      if (fd >= 0)
        {
          self->created = TRUE;
          break;
        }
      if (errno != EEXIST)
        break;
    }

  if (fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not open “%s”: %s", self->path, g_strerror (saved_errno));
      return FALSE;
    }

  /* A directory opens read-only; refuse it here rather than at the first load. */
  if (fstat (fd, &st) == 0 && S_ISDIR (st.st_mode))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY, "Could not open “%s”: %s",
                   self->path, g_strerror (EISDIR));
      g_close (fd, NULL);
      return FALSE;
    }

  self->fd = fd;
  self->journal_path = g_steal_pointer (&journal);
  self->dir_path = g_path_get_dirname (absolute);
  self->dir_synced = !self->created;

  if (!lock_and_recover (self, error))
    {
      g_close (self->fd, NULL);
      self->fd = -1;
      g_clear_pointer (&self->journal_path, g_free);
      g_clear_pointer (&self->dir_path, g_free);
      self->recovery = BIGFILE_LOCAL_FILE_RECOVERY_NONE;
      return FALSE;
    }

  return TRUE;
}

static void
bigfile_local_file_initable_iface_init (GInitableIface *iface)
{
  iface->init = bigfile_local_file_initable_init;
}

/* Offsets are checked against G_MAXINT64, so off_t must be 64 bits; on
 * 32-bit systems the build must define _FILE_OFFSET_BITS=64. */
G_STATIC_ASSERT (sizeof (off_t) == sizeof (gint64));

/* Computes the offset in the file of @length bytes of block @block; FALSE
 * with an error if it cannot be represented as an off_t. */
static gboolean
block_offset (BigfileLocalFile *self, guint64 block, gsize length, gint64 *offset, GError **error)
{
  if (block > (guint64)G_MAXINT64 / self->block_size
      || block * self->block_size > (guint64)G_MAXINT64 - length)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Block %" G_GUINT64_FORMAT " of “%s” lies beyond the largest file offset", block,
                   self->path);
      return FALSE;
    }

  *offset = (gint64)(block * self->block_size);

  return TRUE;
}

static gboolean
check_open (BigfileLocalFile *self, GError **error)
{
  if (self->fd >= 0)
    return TRUE;

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED,
               "“%s” is not open: the BigfileLocalFile was not initialized",
               self->path != NULL ? self->path : "");
  return FALSE;
}

static gboolean
check_writable (BigfileLocalFile *self, const char *what, GError **error)
{
  if (!(self->flags & BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY))
    return check_open (self, error);

  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY,
               "Could not %s “%s”: it was opened read-only", what, self->name);
  return FALSE;
}

static gboolean
check_not_pending (BigfileLocalFile *self, GError **error)
{
  g_autofree char *jname = NULL;

  if (G_LIKELY (!g_atomic_int_get (&self->apply_pending)))
    return TRUE;

  jname = g_filename_display_name (self->journal_path);
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
               "“%s” cannot be read: its last save is committed in its journal “%s” but could not "
               "be applied to it yet; the next writeout (or open) applies it",
               self->name, jname);
  return FALSE;
}

static gsize
bigfile_local_file_get_block_size (BigfileFile *file)
{
  return BIGFILE_LOCAL_FILE (file)->block_size;
}

static gboolean
bigfile_local_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                                   GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  gboolean atomic = (self->flags & BIGFILE_LOCAL_FILE_FLAGS_ATOMIC) != 0;
  gboolean ok = TRUE;
  gint64 offset;
  gsize done = 0;

  if (!check_open (self, error) || !block_offset (self, block, length, &offset, error))
    return FALSE;

  if (atomic)
    {
      if (!check_not_pending (self, error))
        return FALSE;
      g_rw_lock_reader_lock (&self->apply_lock);
    }

  while (done < length)
    {
      ssize_t n = pread (self->fd, buffer + done, length - done, (off_t)(offset + (gint64)done));

      if (n < 0)
        {
          int saved_errno = errno;

          if (saved_errno == EINTR)
            continue;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       "Could not read block %" G_GUINT64_FORMAT
                       " of “%s” at offset %" G_GINT64_FORMAT ": %s",
                       block, self->path, offset + (gint64)done, g_strerror (saved_errno));
          ok = FALSE;
          break;
        }

      if (n == 0)
        {
          /* End of file: the rest of the block reads as zeros. */
          memset (buffer + done, 0, length - done);
          break;
        }

      done += n;
    }

  if (atomic)
    g_rw_lock_reader_unlock (&self->apply_lock);
  return ok;
}

/* pwrite() of a block into the file itself: plain mode. */
static gboolean
write_block (BigfileLocalFile *self, guint64 block, gint64 offset, const guint8 *data, gsize length,
             GError **error)
{
  gsize done = 0;

  while (done < length)
    {
      ssize_t n = pwrite (self->fd, data + done, length - done, (off_t)(offset + (gint64)done));

      if (n < 0)
        {
          int saved_errno = errno;

          if (saved_errno == EINTR)
            continue;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       "Could not write block %" G_GUINT64_FORMAT
                       " of “%s” at offset %" G_GINT64_FORMAT ": %s",
                       block, self->path, offset + (gint64)done, g_strerror (saved_errno));
          return FALSE;
        }

      if (n == 0)
        {
          /* pwrite() of a nonzero count does not return 0 on a regular file;
           * should it, looping would never end. */
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                       "Could not write block %" G_GUINT64_FORMAT
                       " of “%s” at offset %" G_GINT64_FORMAT ": nothing was written",
                       block, self->path, offset + (gint64)done);
          return FALSE;
        }

      done += n;
    }

  return TRUE;
}

/* ftruncate() of the file itself: plain mode. */
static gboolean
truncate_file (BigfileLocalFile *self, guint64 size, GError **error)
{
  /* bigfile_file_set_size() lets no size past G_MAXINT64 through. */
  while (ftruncate (self->fd, (off_t)size) != 0)
    {
      int saved_errno = errno;

      if (saved_errno == EINTR)
        continue;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not make “%s” %" G_GUINT64_FORMAT " bytes long: ftruncate() failed: %s",
                   self->name, size, g_strerror (saved_errno));
      return FALSE;
    }
  return TRUE;
}

/* -- transactions -----------------------------------------------------------------
 *
 * Plain mode: stores and size changes go straight to the file, as ever;
 * commit only makes them durable when asked, abort undoes nothing.
 *
 * Atomic mode: they go to the journal (bigfile-local-journal.c), and commit
 * applies them.  A store or size change outside a transaction is one of its
 * own, in both modes: in atomic mode that costs a commit (four syncs) per
 * call, which is why handles open a transaction around their writeouts. */

static void
end_transaction_locked (BigfileLocalFile *self)
{
  self->txn_open = FALSE;
  self->txn_thread = NULL;
  self->txn_failed = FALSE;
  g_cond_broadcast (&self->txn_cond);
}

/* Applies the journal's transaction to the file: the commit point is
 * passed.  On failure the journal keeps it, for the next begin or open. */
static gboolean
apply_locked (BigfileLocalFile *self, GError **error)
{
  BfJournal *journal = self->journal;
  gboolean ok;

  g_rw_lock_writer_lock (&self->apply_lock);
  ok = bf_journal_apply (journal->fd, journal->name, self->fd, self->name,
                         (const BfJournalEntry *)(void *)journal->entries->data,
                         journal->entries->len, error);
  g_rw_lock_writer_unlock (&self->apply_lock);

  ok = ok && bf_journal_sync_fd (self->fd, FALSE, "file-sync", self->name, error);
  if (!ok)
    {
      g_atomic_int_set (&self->apply_pending, TRUE);
      g_prefix_error (error,
                      "The save is committed in the journal “%s” but could not be applied to "
                      "“%s” (it is applied again at the next writeout, or at the next open; "
                      "until then the file cannot be read): ",
                      journal->name, self->name);
      return FALSE;
    }
  g_atomic_int_set (&self->apply_pending, FALSE);

  /* The file holds the save: the journal may go.  A failure here leaves
   * it dirty, and the next transaction empties it before writing. */
  bf_journal_reset (journal, TRUE, NULL);
  return TRUE;
}

static gboolean
begin_locked (BigfileLocalFile *self, GError **error)
{
  if (self->txn_open && self->txn_thread == g_thread_self ())
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY,
                   "Could not begin a transaction of “%s”: this thread has one open already, and "
                   "would wait for itself",
                   self->name);
      return FALSE;
    }
  while (self->txn_open)
    g_cond_wait (&self->txn_cond, &self->txn_lock);

  if (is_atomic_writer (self))
    {
      if (self->apply_pending && !apply_locked (self, error))
        return FALSE;

      if (self->journal == NULL)
        {
          gboolean created;
          struct stat st;
          mode_t mode = 0666;

          /* As the file's: whoever may write the file may recover it. */
          if (fstat (self->fd, &st) == 0)
            mode = st.st_mode & 0666;
          self->journal
              = bf_journal_open (self->journal_path, self->block_size, mode, &created, error);
          if (self->journal == NULL)
            {
              g_prefix_error (error, "Could not begin a transaction of “%s”: ", self->name);
              return FALSE;
            }
          if (created)
            self->dir_synced = FALSE;
        }
    }

  self->txn_open = TRUE;
  self->txn_thread = g_thread_self ();
  self->txn_failed = FALSE;
  return TRUE;
}

/* Throws the transaction away.  The file was not touched (atomic) or
 * cannot be put back (plain).  A journal without a trailer need not be
 * emptied durably (it is discarded wherever it shows up again), but one
 * whose commit failed after writing the trailer (a failed sync) might
 * have it on disk: @sync.  A failure leaves the journal dirty, for the
 * next transaction to empty durably. */
static void
abort_locked (BigfileLocalFile *self, gboolean sync)
{
  if (self->journal != NULL && self->journal->dirty)
    bf_journal_reset (self->journal, sync, NULL);
  else if (self->journal != NULL)
    g_array_set_size (self->journal->entries, 0);
  end_transaction_locked (self);
}

/* Checks, before the commit point, that applying cannot fail for want of
 * room: past RLIMIT_FSIZE (EFBIG), or of disk space (fallocate of the
 * blocks' ranges, keeping the size, so that the file shows nothing of it).
 * A failure here leaves the file as it was. */
static gboolean
preflight (BigfileLocalFile *self, GError **error)
{
  GArray *entries = self->journal->entries;
  guint64 max_end = 0;
  struct rlimit rl;

  for (guint i = 0; i < entries->len; i++)
    {
      const BfJournalEntry *e = &g_array_index (entries, BfJournalEntry, i);
      guint64 end = e->kind == BF_JOURNAL_ENTRY_SIZE ? e->file_offset : e->file_offset + e->length;

      max_end = MAX (max_end, end);
    }
  if (getrlimit (RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && max_end > rl.rlim_cur)
    {
      g_set_error (
          error, G_IO_ERROR, g_io_error_from_errno (EFBIG),
          "Could not save “%s”: it would grow to %" G_GUINT64_FORMAT
          " bytes, past the largest file this process may write (RLIMIT_FSIZE, %" G_GUINT64_FORMAT
          " bytes); nothing was saved",
          self->name, max_end, (guint64)rl.rlim_cur);
      return FALSE;
    }

  for (guint i = 0; i < entries->len;)
    {
      const BfJournalEntry *e = &g_array_index (entries, BfJournalEntry, i);
      guint64 start, end;
      int r;

      if (e->kind != BF_JOURNAL_ENTRY_BLOCK)
        {
          i++;
          continue;
        }
      /* Writeouts store in file order: one call per run of blocks. */
      start = e->file_offset;
      end = e->file_offset + e->length;
      for (i++; i < entries->len; i++)
        {
          const BfJournalEntry *n = &g_array_index (entries, BfJournalEntry, i);

          if (n->kind != BF_JOURNAL_ENTRY_BLOCK || n->file_offset != end)
            break;
          end += n->length;
        }

      r = bf_journal_fault ("preflight");
      if (r == 0)
        {
          do
            r = fallocate (self->fd, FALLOC_FL_KEEP_SIZE, (off_t)start, (off_t)(end - start)) == 0
                    ? 0
                    : errno;
          while (r == EINTR);
        }
      if (r == EOPNOTSUPP || r == ENOSYS || r == EINVAL)
        return TRUE; /* no preallocation here: apply may still meet ENOSPC */
      if (r != 0)
        {
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (r),
                       "Could not save “%s”: no room for its new blocks (fallocate() failed: "
                       "%s); nothing was saved",
                       self->name, g_strerror (r));
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
commit_locked (BigfileLocalFile *self, BigfileCommitFlags flags, GError **error)
{
  gboolean durable
      = (flags & BIGFILE_COMMIT_FLAGS_DURABLE) || (self->flags & BIGFILE_LOCAL_FILE_FLAGS_DURABLE);
  gboolean ok;

  if (!is_atomic_writer (self))
    {
      /* Plain (or read-only): what was stored is in the file already. */
      ok = !durable || (self->flags & BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY)
           || bf_journal_sync_fd (self->fd, FALSE, "file-sync", self->name, error);
      if (ok && durable && !self->dir_synced)
        self->dir_synced = ok = sync_dir (self, error);
      end_transaction_locked (self);
      return ok;
    }

  if (self->txn_failed)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   "Could not commit the transaction of “%s”: one of its stores failed, so none "
                   "of it was saved",
                   self->name);
      abort_locked (self, FALSE);
      return FALSE;
    }
  if (self->journal->entries->len == 0)
    {
      end_transaction_locked (self);
      return TRUE;
    }

  /* Atomic commits are durable whatever @flags say: the journal must be
   * on disk before the file changes, and the file before the journal is
   * emptied (see bigfile-local-journal.c), which is all durability asks. */
  ok = preflight (self, error);
  if (ok && !self->dir_synced)
    self->dir_synced = ok = sync_dir (self, error);
  ok = ok && bf_journal_commit (self->journal, error);
  if (!ok)
    {
      g_prefix_error (error, "Could not commit the transaction of “%s”: ", self->name);
      abort_locked (self, TRUE);
      return FALSE;
    }

  /* The commit point is passed. */
  ok = apply_locked (self, error);
  end_transaction_locked (self);
  return ok;
}

static gboolean
bigfile_local_file_begin_transaction (BigfileFile *file, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  gboolean ok;

  if (!check_open (self, error))
    return FALSE;
  g_mutex_lock (&self->txn_lock);
  ok = begin_locked (self, error);
  g_mutex_unlock (&self->txn_lock);
  return ok;
}

static gboolean
bigfile_local_file_commit_transaction (BigfileFile *file, BigfileCommitFlags flags, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  gboolean was_open, ok = FALSE;

  g_mutex_lock (&self->txn_lock);
  was_open = self->txn_open;
  if (was_open)
    ok = commit_locked (self, flags, error);
  g_mutex_unlock (&self->txn_lock);

  g_return_val_if_fail (was_open, FALSE);
  return ok;
}

static void
bigfile_local_file_abort_transaction (BigfileFile *file)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  gboolean was_open;

  g_mutex_lock (&self->txn_lock);
  was_open = self->txn_open;
  if (was_open)
    abort_locked (self, FALSE);
  g_mutex_unlock (&self->txn_lock);

  g_return_if_fail (was_open);
}

/* Adds a block or a size change (@data NULL: @offset is the size) to the
 * open transaction, or makes it a transaction of its own. */
static gboolean
journal_change (BigfileLocalFile *self, gint64 offset, const guint8 *data, gsize length,
                GError **error)
{
  gboolean own = FALSE, ok;

  g_mutex_lock (&self->txn_lock);
  if (!self->txn_open)
    {
      if (!begin_locked (self, error))
        {
          g_mutex_unlock (&self->txn_lock);
          return FALSE;
        }
      own = TRUE;
    }

  if (data != NULL)
    ok = bf_journal_add_block (self->journal, (guint64)offset, data, length, error);
  else
    {
      bf_journal_add_size (self->journal, (guint64)offset);
      ok = TRUE;
    }

  if (!ok)
    self->txn_failed = TRUE;
  if (own && ok)
    ok = commit_locked (self, BIGFILE_COMMIT_FLAGS_NONE, error);
  else if (own)
    abort_locked (self, FALSE);
  g_mutex_unlock (&self->txn_lock);
  return ok;
}

/* Plain mode, outside a transaction, with BIGFILE_LOCAL_FILE_FLAGS_DURABLE:
 * a store or size change is a transaction of its own, durable. */
static gboolean
plain_autocommit (BigfileLocalFile *self, GError **error)
{
  gboolean ok = TRUE;

  if (!(self->flags & BIGFILE_LOCAL_FILE_FLAGS_DURABLE))
    return TRUE;
  g_mutex_lock (&self->txn_lock);
  if (!self->txn_open)
    {
      ok = bf_journal_sync_fd (self->fd, FALSE, "file-sync", self->name, error);
      if (ok && !self->dir_synced)
        self->dir_synced = ok = sync_dir (self, error);
    }
  g_mutex_unlock (&self->txn_lock);
  return ok;
}

static gboolean
bigfile_local_file_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data,
                                    gsize length, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  gint64 offset;

  if (self->flags & BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY,
                   "Could not store block %" G_GUINT64_FORMAT " of “%s”: it was opened read-only",
                   block, self->path);
      return FALSE;
    }

  if (!check_open (self, error) || !block_offset (self, block, length, &offset, error))
    return FALSE;

  if (self->flags & BIGFILE_LOCAL_FILE_FLAGS_ATOMIC)
    {
      if (!journal_change (self, offset, data, length, error))
        {
          g_prefix_error (error, "Could not store block %" G_GUINT64_FORMAT " of “%s”: ", block,
                          self->name);
          return FALSE;
        }
      return TRUE;
    }

  return write_block (self, block, offset, data, length, error) && plain_autocommit (self, error);
}

static gboolean
bigfile_local_file_get_size (BigfileFile *file, guint64 *size, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  gboolean atomic = (self->flags & BIGFILE_LOCAL_FILE_FLAGS_ATOMIC) != 0;
  struct stat st;
  int r, saved_errno;

  if (!check_open (self, error))
    return FALSE;

  /* Atomic: the size of the snapshot, not half-way through a commit. */
  if (atomic)
    g_rw_lock_reader_lock (&self->apply_lock);
  r = fstat (self->fd, &st);
  saved_errno = errno;
  if (atomic)
    g_rw_lock_reader_unlock (&self->apply_lock);

  if (r != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not get the size of “%s”: fstat() failed: %s", self->name,
                   g_strerror (saved_errno));
      return FALSE;
    }

  *size = (guint64)st.st_size;
  return TRUE;
}

static gboolean
bigfile_local_file_set_size (BigfileFile *file, guint64 size, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  g_autofree char *what = g_strdup_printf ("make %" G_GUINT64_FORMAT " bytes long", size);

  if (!check_writable (self, what, error))
    return FALSE;

  if (self->flags & BIGFILE_LOCAL_FILE_FLAGS_ATOMIC)
    return journal_change (self, (gint64)size, NULL, 0, error);

  return truncate_file (self, size, error) && plain_autocommit (self, error);
}

/* pread and pwrite on one descriptor: safe from any thread at once. */
static gboolean
bigfile_local_file_is_thread_safe (BigfileFile *file)
{
  return TRUE;
}

static void
bigfile_local_file_file_iface_init (BigfileFileInterface *iface)
{
  /* Only the raw methods: the interface's invokers give bindings the GBytes
   * ones on top of them. */
  iface->get_block_size = bigfile_local_file_get_block_size;
  iface->load_block_raw = bigfile_local_file_load_block_raw;
  iface->store_block_raw = bigfile_local_file_store_block_raw;
  iface->is_thread_safe = bigfile_local_file_is_thread_safe;
  iface->get_size = bigfile_local_file_get_size;
  iface->set_size = bigfile_local_file_set_size;
  iface->begin_transaction = bigfile_local_file_begin_transaction;
  iface->commit_transaction = bigfile_local_file_commit_transaction;
  iface->abort_transaction = bigfile_local_file_abort_transaction;
}

/**
 * bigfile_local_file_new:
 * @path: (type filename): the path of the file
 * @block_size: the size of a block in bytes: a power of two from 4 KiB to
 *   2 MiB
 * @flags: how to open the file
 * @error: return location for a #GError
 *
 * Opens the file at @path as a #BigfileFile, for reading and writing, or
 * only reading with %BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY. With
 * %BIGFILE_LOCAL_FILE_FLAGS_CREATE a missing file is created empty. With
 * %BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, handles show its clean pages
 * from the page cache; with %BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, saves are
 * atomic; with %BIGFILE_LOCAL_FILE_FLAGS_DURABLE, durable (see the
 * description of #BigfileLocalFile).
 *
 * If the file's journal (#BigfileLocalFile:journal-path) holds a save that a
 * program left unfinished, the open completes it (a committed save) or
 * throws it away (one that did not commit) before anything else, in every
 * mode: see #BigfileLocalFile:recovery.
 *
 * Fails with a #G_IO_ERROR: the error of open() (for example
 * %G_IO_ERROR_NOT_FOUND), or %G_IO_ERROR_INVALID_ARGUMENT for a bad
 * @block_size; with %BIGFILE_FILE_ERROR_BUSY when another open excludes
 * this one (an atomic writer is alone with its file);
 * %BIGFILE_FILE_ERROR_CORRUPT when the journal says it holds a committed
 * save but is damaged (nothing is changed: the message says what to do);
 * %G_IO_ERROR_PERMISSION_DENIED when such a save must be applied but the
 * file cannot be written here.
 *
 * Returns: (transfer full): a new #BigfileLocalFile, or %NULL on error
 *
 * Since: 1.0
 */
BigfileLocalFile *
bigfile_local_file_new (const char *path, gsize block_size, BigfileLocalFileFlags flags,
                        GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (BIGFILE_TYPE_LOCAL_FILE, NULL, error, "path", path, "block-size",
                         (guint64)block_size, "flags", flags, NULL);
}

/**
 * bigfile_local_file_get_path:
 * @file: a #BigfileLocalFile
 *
 * Gets the path @file was opened with.
 *
 * Returns: (transfer none) (type filename): the path
 *
 * Since: 1.0
 */
const char *
bigfile_local_file_get_path (BigfileLocalFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_LOCAL_FILE (file), NULL);

  return file->path;
}

/**
 * bigfile_local_file_get_flags:
 * @file: a #BigfileLocalFile
 *
 * Gets the flags @file was opened with.
 *
 * Returns: the flags
 *
 * Since: 1.0
 */
BigfileLocalFileFlags
bigfile_local_file_get_flags (BigfileLocalFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_LOCAL_FILE (file), BIGFILE_LOCAL_FILE_FLAGS_NONE);

  return file->flags;
}

/**
 * bigfile_local_file_get_journal_path:
 * @file: a #BigfileLocalFile
 *
 * Gets the path of the journal of @file: see #BigfileLocalFile:journal-path.
 *
 * Returns: (transfer none) (type filename) (nullable): the path of the
 *   journal, or %NULL if @file was not initialized
 *
 * Since: 1.0
 */
const char *
bigfile_local_file_get_journal_path (BigfileLocalFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_LOCAL_FILE (file), NULL);

  return file->journal_path;
}

/**
 * bigfile_local_file_get_recovery:
 * @file: a #BigfileLocalFile
 *
 * Tells what opening @file found in its journal and did with it: see
 * #BigfileLocalFile:recovery.
 *
 * Returns: what the open recovered
 *
 * Since: 1.0
 */
BigfileLocalFileRecovery
bigfile_local_file_get_recovery (BigfileLocalFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_LOCAL_FILE (file), BIGFILE_LOCAL_FILE_RECOVERY_NONE);

  return file->recovery;
}

/* The descriptor handles map clean pages from, or -1 when the file was not
 * opened with BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES. */
int
_bigfile_local_file_get_map_fd (BigfileLocalFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_LOCAL_FILE (file), -1);

  if (!(file->flags & BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES))
    return -1;
  return file->fd;
}
