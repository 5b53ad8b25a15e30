/* bigfile-glib - a BigfileFile in an SQLite database
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Only the public BigfileFile interface is used here (no engine, no
 * bigfile-private.h): a storage implementation is one file beside the
 * others of storage/.
 *
 * Locks, in the order they are taken:
 *
 *   write_lock          the write connection and the transaction
 *     read_lock         the two read connections and the snapshot
 *
 * commit_transaction() takes read_lock under write_lock to move the
 * snapshot to its own commit; loads and refresh() take read_lock alone; the
 * watch source (on the file's main context) only ever tries read_lock
 * (g_mutex_trylock()) and never takes write_lock; the checkpoint task
 * takes write_lock alone.  Nothing calls out (signals, other objects) with
 * either lock held.
 */
#include "config.h"

#include "bigfile.h"
#include "bigfile-sqlite-file-private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

/**
 * SECTION:bigfile-sqlite-file
 * @title: BigfileSqliteFile
 * @short_description: A transactional #BigfileFile in an SQLite database,
 *   shared by the processes of one machine
 * @include: bigfile-glib/bigfile.h
 * @see_also: #BigfileFile, #BigfileHandle, #BigfileLocalFile
 *
 * #BigfileSqliteFile keeps the blocks of a bigfile in a table of an SQLite
 * database (libsqlite3): the embedded storage for transactional use. One
 * database file holds many named bigfiles, each with its block size and
 * size. Writeouts are transactions: a crash or a power loss at any moment
 * leaves the storage with all of a writeout or none of it. Several
 * processes of one machine can open the same bigfile: each #BigfileHandle
 * reads a consistent snapshot, learns which blocks the others changed (its
 * clean pages of them are dropped and #BigfileHandle::page-invalidated is
 * emitted), and a writeout of a page that another process changed
 * meanwhile fails with %BIGFILE_HANDLE_ERROR_CONFLICT instead of losing
 * their change.
 *
 * A program switches from a #BigfileLocalFile by changing its constructor:
 *
 * |[<!-- language="C" -->
 * g_autoptr(GError) error = NULL;
 * g_autoptr(BigfileSqliteFile) file =
 *     bigfile_sqlite_file_new ("/var/lib/app/data.db", "matrix", 2 * 1024 * 1024,
 *                              BIGFILE_SQLITE_FILE_FLAGS_CREATE, &error);
 * g_autoptr(BigfileRam) ram = bigfile_ram_new (256 * 1024 * 1024);
 * g_autoptr(BigfileHandle) handle = NULL;
 *
 * if (file == NULL)
 *   g_error ("%s", error->message);
 * handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
 * // ... map, read, write ...
 * // Atomic and durable: all of the dirty pages or none, on disk when it returns.
 * if (!bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error))
 *   g_printerr ("Not saved (nothing is lost, the pages stay dirty): %s\n", error->message);
 * ]|
 *
 * The same in Python (the main loop delivers other processes' changes):
 *
 * |[<!-- language="Python" -->
 * file = Bigfile.SqliteFile.new("data.db", "matrix", 0, Bigfile.SqliteFileFlags.NONE)
 * handle = Bigfile.Handle.new(file, Bigfile.Ram.new(256 << 20))
 * handle.connect("page-invalidated", lambda h, page: print("page", page, "changed"))
 * GLib.MainLoop().run()
 * ]|
 *
 * ## The schema
 *
 * A database made by this class has `PRAGMA application_id` 0x42676631
 * ("Bgf1") and `PRAGMA user_version` 1, the schema version (a database of a
 * later schema is refused rather than misread), and three tables:
 *
 * |[
 * CREATE TABLE bigfile_files (          -- one row per bigfile
 *   id INTEGER PRIMARY KEY,
 *   name TEXT NOT NULL UNIQUE,
 *   block_size INTEGER NOT NULL,        -- fixed when the bigfile is made
 *   size INTEGER NOT NULL DEFAULT 0,    -- in bytes
 *   version INTEGER NOT NULL DEFAULT 0, -- one more at each commit that changed it
 *   log_floor INTEGER NOT NULL DEFAULT 0); -- the log of versions <= this is pruned
 * CREATE TABLE bigfile_blocks (         -- only the blocks that are not all zeros
 *   file INTEGER NOT NULL, block INTEGER NOT NULL,
 *   data BLOB NOT NULL,                 -- without its trailing zeros
 *   UNIQUE (file, block));
 * CREATE TABLE bigfile_log (            -- what each commit changed
 *   file INTEGER NOT NULL, version INTEGER NOT NULL,
 *   writer INTEGER NOT NULL,            -- the BigfileSqliteFile that committed
 *   blocks BLOB,                        -- runs (first, count), or NULL: any block
 *   PRIMARY KEY (file, version));
 * ]|
 *
 * Blocks are stored compactly: a block that has no row reads as zeros and
 * costs nothing, a store of a block of zeros deletes its row, and a row
 * keeps its data without the trailing zeros (so a partly filled block costs
 * what it holds). No row lies past the size, and no row has data past it:
 * bigfile_file_set_size() deletes and cuts them. The blocks of a log row
 * are little-endian 64-bit pairs (first block, number of blocks), one per
 * run of consecutive blocks, so a writeout of a range costs 16 bytes of
 * log; a commit of more than 4096 runs logs "any block" instead.
 *
 * ## Transactions and durability
 *
 * The file is transactional (bigfile_file_is_transactional()): a writeout
 * opens a write transaction (`BEGIN IMMEDIATE` on a connection of its own),
 * stores its pages and the size in it, and commits them in one SQLite
 * commit, with the log row and the new version, so the database holds all
 * of a writeout or none of it after a crash or power loss at any moment.
 * Writers of one database are serialized by SQLite's write lock: a
 * writeout waits for another client's to end, up to
 * #BigfileSqliteFile:busy-timeout, then fails with
 * %BIGFILE_FILE_ERROR_BUSY (nothing stored, nothing lost: retry). A store or
 * size change made outside a transaction (a direct call of
 * bigfile_file_store_block()) is a transaction of its own.
 *
 * The database is in WAL mode. With #BigfileSqliteFile:durable (the
 * default) it runs with `synchronous=FULL`: the write-ahead log is flushed
 * to the disk (fsync) at every commit, before the commit shows to anyone,
 * so a completed writeout survives a power loss. With durable off it runs
 * with `synchronous=NORMAL`: a commit is still atomic and survives a crash
 * of the program, but the last commits before a power loss may be lost
 * (never a part of one); %BIGFILE_COMMIT_FLAGS_DURABLE then still makes a
 * single commit durable (the log is flushed after it). NORMAL costs one
 * fsync per checkpoint instead of one per commit.
 *
 * ## Snapshots and isolation
 *
 * A #BigfileSqliteFile is one client's snapshot (a #BigfileHandle uses one
 * file object of its own). Its loads read a read transaction that it keeps
 * open on a read connection: every load between two refreshes sees the same
 * committed state of the database, whatever others commit meanwhile.
 * bigfile_file_refresh() opens a read transaction on a second read
 * connection, reads from the change log which blocks other clients changed
 * between the two states, and only then lets the old one go, so that a
 * refresh that fails keeps the old snapshot. The write transaction is on a
 * third connection: loads during a transaction do not see its stores. A
 * refresh inside the transaction (a writeout makes one after
 * `BEGIN IMMEDIATE`, holding the write lock) sees every commit there is.
 *
 * The isolation level, exactly: a writeout is serializable against every
 * other writer of the database (writers take SQLite's write lock in turn,
 * and a writeout's refresh inside its transaction finds every earlier
 * commit, so a #BigfileHandle detects each conflicting change: no update is
 * lost). Reads are snapshot isolation: between refreshes, loads read one
 * committed state. One exception, after a commit: the snapshot then moves
 * to the newest state of the database, which includes this client's commit
 * and, should another client have committed in the moments between the
 * commit and that move, theirs too: blocks loaded then may show that other
 * commit before a refresh reports it (the refresh still reports it, so
 * clean pages of it are dropped and a conflict is still detected; no
 * report is ever lost). Commits of this file object are never reported to
 * itself.
 *
 * Each file object has its own writer id (64 random bits): two file
 * objects of one process are two clients, which see each other's commits as
 * another process's.
 *
 * ## Invalidation between processes
 *
 * When another client commits a change of the bigfile, the file emits
 * #BigfileFile::changed on the main context that was the thread-default
 * one when it was made, and its handle refreshes there. The file watches
 * the database's directory with inotify (one watch, events of the database
 * file and its `-wal` file only): a commit writes the `-wal` file, and each
 * commit of this class also touches the `-wal` file's time once the commit
 * is visible, so that a watcher never checks too early. On an event the
 * file checks `PRAGMA data_version` on a connection of its own, then the
 * bigfile's version and the change log, on the main context; only commits
 * of other clients that changed this bigfile make it emit the signal (one
 * emission may stand for several commits). Without inotify it polls the
 * same way every 50 ms. The signal comes as soon as a message the
 * committing process would send by hand after its writeout: measured with
 * `invalidate-latency-sqlite` in bench/, 3.8 ms at the median and 10.4 ms
 * at p99 from the start of a durable writeout of one page in another
 * process, a writeout which itself takes 3.8 and 10.1 ms (its fsync).
 *
 * ## Big files, many clients, limits
 *
 * A 100 GiB bigfile with 2 MiB blocks has 51200 rows at most, one per block
 * that is not all zeros, 2 MiB each in overflow pages (the database uses
 * 64 KiB pages for bigfiles of blocks of 64 KiB and more). A writeout of
 * 512 MiB writes 512 MiB to the WAL, which a checkpoint copies to the
 * database: each byte written is written twice. Loads of one file object
 * are serialized on its read connection; loads of different file objects
 * run in parallel. SQLite allows one writer at a time per database: clients
 * of different bigfiles of one database wait for each other's writeouts
 * too (use a database per bigfile for independent writers).
 *
 * A held snapshot keeps SQLite from recycling the WAL past it: the WAL
 * grows while a client keeps an old snapshot (a program whose main loop
 * does not run, so that it never refreshes, or one that turned
 * #BigfileHandle:auto-refresh off and does not refresh). A file object
 * whose bigfile did not change moves its snapshot forward by itself (that
 * shows nothing new), and after each commit the committing file makes a
 * passive checkpoint on a worker thread a moment later, once the others
 * have refreshed, so that with clients that refresh the WAL is reset and
 * stays small (`journal_size_limit` is 64 MiB).
 *
 * The change log keeps the last 1000 commits of each bigfile, at most
 * 64 KiB each (usually 16 bytes per run of blocks). A client whose
 * snapshot is older than the log gets %G_MAXUINT64 ("any block") from
 * bigfile_file_refresh(): its handle drops all of its clean pages, and
 * treats every dirty page as a conflict. A refresh that would report more
 * than a million blocks reports "any block" too.
 *
 * Size changes: bigfile_file_get_size() gives the snapshot's size (inside
 * a transaction, the transaction's). A refresh reports the blocks that a
 * shrink by another client dropped or cut, not the size itself: read it
 * again after a refresh.
 *
 * Other programs may read the tables; a program that changes them without
 * this class (without the log and the version) is not seen by watchers
 * and breaks snapshots' reports.
 */

/**
 * BigfileSqliteFile:
 *
 * A #BigfileFile stored in a table of an SQLite database, transactional
 * and shared between processes: see the description above for the schema,
 * snapshots, isolation, invalidation and durability.
 *
 * It is thread-safe: loads run on whatever thread faults, and writeouts
 * may run on a worker thread (bigfile_handle_writeout_async()). It
 * implements #GInitable: bindings create it with bigfile_sqlite_file_new()
 * or, through its properties, with g_initable_new().
 *
 * Since: 1.0
 */

#define DEFAULT_BUSY_TIMEOUT_MS 5000
#define DEFAULT_LOG_KEEP 1000
/* A commit of more runs of blocks logs "any block". */
#define MAX_LOG_RUNS 4096
/* A refresh that would report more blocks reports "any block". */
#define MAX_REPORTED_BLOCKS (1u << 20)
#define JOURNAL_SIZE_LIMIT 67108864 /* 64 MiB; a literal, for G_STRINGIFY */
#define APPLICATION_ID 1114072625   /* 0x42676631, "Bgf1" */
#define SCHEMA_VERSION 1
#define MAX_NAME_LENGTH 1024

/* The watch source: how long to wait before a check that follows an
 * earlier one, how long after an event a second check runs (a commit of a
 * program that does not touch the WAL's time shows a moment after its last
 * write), and the polling interval without inotify. */
#define CHECK_MIN_INTERVAL_US (2 * 1000)
#define RECHECK_DELAY_US (20 * 1000)
#define POLL_INTERVAL_US (50 * 1000)
/* After a commit: the others refresh on their main loops, then the
 * checkpoint can copy the whole WAL. */
#define CHECKPOINT_DELAY_MS 100

/* -- fault injection: every call into SQLite that can fail ------------------- */

static gint fail_countdown; /* atomic: 0 off, else calls until the failing one */
static gint fail_code;      /* atomic */
static gint fault_fired;    /* atomic */
static gint n_calls;        /* atomic */
/* Whether the last wrapped call of this thread was made to fail: its error
 * message is then not SQLite's (which tells of an earlier call). */
static _Thread_local gboolean last_injected;

void
_bigfile_sqlite_file_fail_after (guint n, int sqlite_error_code)
{
  g_atomic_int_set (&fail_code, sqlite_error_code);
  g_atomic_int_set (&fault_fired, FALSE);
  g_atomic_int_set (&fail_countdown, (gint)n);
}

guint
_bigfile_sqlite_file_get_n_calls (void)
{
  return (guint)g_atomic_int_get (&n_calls);
}

gboolean
_bigfile_sqlite_file_fault_fired (void)
{
  return g_atomic_int_get (&fault_fired);
}

/* SQLITE_OK, or the injected error for the call that is to fail. */
static int
fault_point (void)
{
  gint v;

  g_atomic_int_inc (&n_calls);
  last_injected = FALSE;
  while ((v = g_atomic_int_get (&fail_countdown)) > 0)
    if (g_atomic_int_compare_and_exchange (&fail_countdown, v, v - 1))
      {
        if (v != 1)
          break;
        g_atomic_int_set (&fault_fired, TRUE);
        last_injected = TRUE;
        return g_atomic_int_get (&fail_code);
      }
  return SQLITE_OK;
}

static int
sq_open (const char *path, int flags, sqlite3 **db)
{
  int rc = fault_point ();

  *db = NULL;
  if (rc != SQLITE_OK)
    return rc;
  return sqlite3_open_v2 (path, db, flags, NULL);
}

static int
sq_prepare (sqlite3 *db, const char *sql, sqlite3_stmt **stmt)
{
  int rc = fault_point ();

  *stmt = NULL;
  if (rc != SQLITE_OK)
    return rc;
  return sqlite3_prepare_v3 (db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL);
}

static int
sq_step (sqlite3_stmt *stmt)
{
  int rc = fault_point ();

  return rc != SQLITE_OK ? rc : sqlite3_step (stmt);
}

static int
sq_exec (sqlite3 *db, const char *sql)
{
  int rc = fault_point ();

  return rc != SQLITE_OK ? rc : sqlite3_exec (db, sql, NULL, NULL, NULL);
}

static int
sq_bind_int64 (sqlite3_stmt *stmt, int i, gint64 value)
{
  int rc = fault_point ();

  return rc != SQLITE_OK ? rc : sqlite3_bind_int64 (stmt, i, value);
}

/* The data must stay valid until the statement is reset. */
static int
sq_bind_blob (sqlite3_stmt *stmt, int i, const void *data, gsize length)
{
  int rc = fault_point ();

  if (rc != SQLITE_OK)
    return rc;
  if (data == NULL)
    return sqlite3_bind_null (stmt, i);
  return sqlite3_bind_blob64 (stmt, i, data, length, SQLITE_STATIC);
}

static int
sq_bind_text (sqlite3_stmt *stmt, int i, const char *text)
{
  int rc = fault_point ();

  return rc != SQLITE_OK ? rc : sqlite3_bind_text (stmt, i, text, -1, SQLITE_TRANSIENT);
}

static int
sq_blob_open (sqlite3 *db, gint64 rowid, sqlite3_blob **blob)
{
  int rc = fault_point ();

  *blob = NULL;
  if (rc != SQLITE_OK)
    return rc;
  return sqlite3_blob_open (db, "main", "bigfile_blocks", "data", rowid, 0, blob);
}

static int
sq_blob_reopen (sqlite3_blob *blob, gint64 rowid)
{
  int rc = fault_point ();

  return rc != SQLITE_OK ? rc : sqlite3_blob_reopen (blob, rowid);
}

static int
sq_blob_read (sqlite3_blob *blob, void *buffer, int n)
{
  int rc = fault_point ();

  return rc != SQLITE_OK ? rc : sqlite3_blob_read (blob, buffer, n, 0);
}

/* Flushes the WAL of @db to the disk: a commit made with
 * synchronous=NORMAL becomes durable. */
static int
sq_sync_wal (sqlite3 *db)
{
  sqlite3_file *wal = NULL;
  int rc = fault_point ();

  if (rc != SQLITE_OK)
    return rc;
  rc = sqlite3_file_control (db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
  if (rc != SQLITE_OK)
    return rc;
  if (wal == NULL || wal->pMethods == NULL)
    return SQLITE_ERROR;
  return wal->pMethods->xSync (wal, SQLITE_SYNC_NORMAL);
}

/* -- errors ------------------------------------------------------------------ */

/* Sets @error for @rc, a failure of a call on @db (NULL if it did not
 * open), as "WHAT failed: DETAIL".  The domain and code follow the primary
 * result code; the detail is SQLite's message and, for I/O, the system
 * error. */
static void G_GNUC_PRINTF (4, 5)
    set_sqlite_error (GError **error, sqlite3 *db, int rc, const char *format, ...)
{
  g_autofree char *what = NULL;
  const char *detail = sqlite3_errstr (rc);
  int sys_errno = 0;
  GQuark domain = BIGFILE_FILE_ERROR;
  int code = BIGFILE_FILE_ERROR_FAILED;
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);

  if (!last_injected && db != NULL && sqlite3_extended_errcode (db) == rc)
    {
      detail = sqlite3_errmsg (db);
      sys_errno = sqlite3_system_errno (db);
    }

  switch (rc & 0xff)
    {
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        code = BIGFILE_FILE_ERROR_BUSY;
        break;
      case SQLITE_CORRUPT:
      case SQLITE_NOTADB:
      case SQLITE_FORMAT:
        code = BIGFILE_FILE_ERROR_CORRUPT;
        break;
      case SQLITE_READONLY:
        code = BIGFILE_FILE_ERROR_READ_ONLY;
        break;
      case SQLITE_FULL:
        domain = G_IO_ERROR;
        code = G_IO_ERROR_NO_SPACE;
        break;
      case SQLITE_PERM:
      case SQLITE_AUTH:
        domain = G_IO_ERROR;
        code = G_IO_ERROR_PERMISSION_DENIED;
        break;
      case SQLITE_CANTOPEN:
      case SQLITE_IOERR:
        domain = G_IO_ERROR;
        code = sys_errno != 0 ? g_io_error_from_errno (sys_errno) : G_IO_ERROR_FAILED;
        break;
      default:
        break;
    }

  if (sys_errno != 0 && domain == G_IO_ERROR)
    g_set_error (error, domain, code, "%s failed: %s (SQLite error %d, %s)", what, detail, rc,
                 g_strerror (sys_errno));
  else
    g_set_error (error, domain, code, "%s failed: %s (SQLite error %d%s)", what, detail, rc,
                 last_injected ? ", injected" : "");
}

/* -- connections and their statements ------------------------------------------ */

typedef enum
{
  ST_HEAD,
  ST_ROWID,
  ST_LOG,
  ST_OTHERS,
  ST_DATA_VERSION,
  ST_UPSERT,
  ST_DELETE,
  ST_LIST_FROM,
  ST_DELETE_FROM,
  ST_DATA,
  ST_SET_SIZE,
  ST_SET_VERSION,
  ST_INSERT_LOG,
  ST_PRUNE_LOG,
  ST_SET_FLOOR,
  N_STMTS
} StmtId;

static const char *const stmt_sql[N_STMTS] = {
  [ST_HEAD] = "SELECT version, size, log_floor FROM bigfile_files WHERE id = ?1",
  [ST_ROWID] = "SELECT rowid FROM bigfile_blocks WHERE file = ?1 AND block = ?2",
  [ST_LOG] = "SELECT blocks FROM bigfile_log WHERE file = ?1 AND version > ?2 AND writer != ?3"
             " ORDER BY version",
  [ST_OTHERS] = "SELECT 1 FROM bigfile_log WHERE file = ?1 AND version > ?2 AND writer != ?3"
                " LIMIT 1",
  [ST_DATA_VERSION] = "PRAGMA data_version",
  [ST_UPSERT] = "INSERT INTO bigfile_blocks (file, block, data) VALUES (?1, ?2, ?3)"
                " ON CONFLICT (file, block) DO UPDATE SET data = excluded.data",
  [ST_DELETE] = "DELETE FROM bigfile_blocks WHERE file = ?1 AND block = ?2",
  [ST_LIST_FROM] = "SELECT block FROM bigfile_blocks WHERE file = ?1 AND block >= ?2",
  [ST_DELETE_FROM] = "DELETE FROM bigfile_blocks WHERE file = ?1 AND block >= ?2",
  [ST_DATA] = "SELECT data FROM bigfile_blocks WHERE file = ?1 AND block = ?2",
  [ST_SET_SIZE] = "UPDATE bigfile_files SET size = ?2 WHERE id = ?1",
  [ST_SET_VERSION] = "UPDATE bigfile_files SET version = ?2 WHERE id = ?1",
  [ST_INSERT_LOG] = "INSERT INTO bigfile_log (file, version, writer, blocks)"
                    " VALUES (?1, ?2, ?3, ?4)",
  [ST_PRUNE_LOG] = "DELETE FROM bigfile_log WHERE file = ?1 AND version <= ?2",
  [ST_SET_FLOOR] = "UPDATE bigfile_files SET log_floor = max(log_floor, ?2) WHERE id = ?1",
};

/* A connection and its statements, prepared on first use.  Whoever owns
 * the connection's lock owns these. */
typedef struct
{
  sqlite3 *db; /* NULL when closed */
  sqlite3_stmt *stmts[N_STMTS];
  sqlite3_blob *blob; /* the open blob handle of the read connections' loads */
  int synchronous;    /* the write connection's PRAGMA synchronous, -1 unknown */
} Conn;

static void
conn_close (Conn *c)
{
  if (c->blob != NULL)
    sqlite3_blob_close (c->blob);
  c->blob = NULL;
  for (guint i = 0; i < N_STMTS; i++)
    g_clear_pointer (&c->stmts[i], sqlite3_finalize);
  /* Closing rolls back an open transaction.  sqlite3_close_v2() never
   * fails with every statement finalized. */
  g_clear_pointer (&c->db, sqlite3_close_v2);
  c->synchronous = -1;
}

/* -- the object --------------------------------------------------------------- */

struct _BigfileSqliteFile
{
  GObject parent_instance;

  /* Construct-only properties; immutable once initialized: no lock. */
  char *path;
  char *name;
  gsize block_size; /* 0 until initialized if given as 0 (the stored one) */
  BigfileSqliteFileFlags flags;
  guint busy_timeout_ms;

  /* Set by init, immutable afterwards: no lock. */
  gboolean initialized;
  gint64 file_id;   /* bigfile_files.id */
  gint64 writer_id; /* bigfile_log.writer of our commits */
  char *wal_path;
  GMainContext *context; /* where ::changed is emitted */
  GSource *watch;        /* the watch source, attached to context */

  /* Atomic. */
  gint durable;
  gint log_keep;
  gint checkpoint_scheduled;
  gint op_faults[BF_SQLITE_N_FAULTS]; /* test hook: -1 off, else successes left */
  gint checkpoint_running;            /* checkpoint_thread has not ended yet */

  /* Protected by checkpoint_lock: the last checkpoint thread started, joined
   * before the next starts and at finalize, so that none outlives the file
   * (and touches a database its program has removed). */
  GMutex checkpoint_lock;
  GThread *checkpoint_thread;

  /* Protected by read_lock: the snapshot. */
  GMutex read_lock;
  Conn readers[2];
  guint current;          /* readers[current] holds the snapshot's read transaction */
  gboolean snapshot_open; /* FALSE: none is open; the next load or refresh opens one */
  gint64 snap_version;    /* the bigfile's version in the snapshot */
  guint64 snap_size;
  gint64 reported_version; /* refresh() reported other clients' commits up to here */

  /* Protected by write_lock: the write connection (db NULL when closed, as
   * after a rollback that failed: reopened by the next transaction) and the
   * transaction. */
  GMutex write_lock;
  Conn writer;
  gboolean in_txn;
  gboolean txn_failed;     /* a call of the transaction failed: it cannot commit */
  gint64 txn_base_version; /* the bigfile's version at BEGIN */
  guint64 txn_size;        /* the size in the transaction */
  gboolean txn_changed;    /* the transaction changed a block or the size */
  GArray *txn_blocks;      /* guint64: the blocks it changed, unsorted, maybe repeated */
};

enum
{
  PROP_0,
  PROP_PATH,
  PROP_NAME,
  PROP_BLOCK_SIZE,
  PROP_FLAGS,
  PROP_DURABLE,
  PROP_BUSY_TIMEOUT,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

static gboolean force_polling;

static void bigfile_sqlite_file_file_iface_init (BigfileFileInterface *iface);
static void bigfile_sqlite_file_initable_iface_init (GInitableIface *iface);
static GSource *watch_source_new (BigfileSqliteFile *self, GError **error);

G_DEFINE_TYPE_WITH_CODE (BigfileSqliteFile, bigfile_sqlite_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE,
                                                bigfile_sqlite_file_file_iface_init)
                             G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                    bigfile_sqlite_file_initable_iface_init))

/* "WHAT bigfile “NAME” in “PATH”", the start of every error message. */
#define FILE_FMT "%s bigfile “%s” in “%s”"
#define FILE_ARGS(self, what) (what), (self)->name, (self)->path

static gboolean
page_size_is_valid (gsize size)
{
  return size >= 4096 && size <= 2 * 1024 * 1024 && (size & (size - 1)) == 0;
}

static void
bigfile_sqlite_file_finalize (GObject *object)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (object);

  /* Handles hold a reference on their file: no load or store runs. */
  if (self->checkpoint_thread != NULL)
    g_thread_join (self->checkpoint_thread);
  if (self->watch != NULL)
    {
      g_source_destroy (self->watch);
      g_source_unref (self->watch);
    }
  conn_close (&self->writer); /* rolls back a transaction left open */
  conn_close (&self->readers[0]);
  conn_close (&self->readers[1]);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_clear_pointer (&self->txn_blocks, g_array_unref);
  g_free (self->path);
  g_free (self->name);
  g_free (self->wal_path);
  g_mutex_clear (&self->read_lock);
  g_mutex_clear (&self->write_lock);
  g_mutex_clear (&self->checkpoint_lock);

  G_OBJECT_CLASS (bigfile_sqlite_file_parent_class)->finalize (object);
}

static void
bigfile_sqlite_file_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (object);

  switch (prop_id)
    {
      case PROP_PATH:
        g_value_set_string (value, self->path);
        break;
      case PROP_NAME:
        g_value_set_string (value, self->name);
        break;
      case PROP_BLOCK_SIZE:
        g_value_set_uint64 (value, self->block_size);
        break;
      case PROP_FLAGS:
        g_value_set_flags (value, self->flags);
        break;
      case PROP_DURABLE:
        g_value_set_boolean (value, g_atomic_int_get (&self->durable));
        break;
      case PROP_BUSY_TIMEOUT:
        g_value_set_uint (value, self->busy_timeout_ms);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_sqlite_file_set_property (GObject *object, guint prop_id, const GValue *value,
                                  GParamSpec *pspec)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (object);

  switch (prop_id)
    {
      case PROP_PATH:
        g_free (self->path);
        self->path = g_value_dup_string (value);
        break;
      case PROP_NAME:
        g_free (self->name);
        self->name = g_value_dup_string (value);
        break;
      case PROP_BLOCK_SIZE:
        {
          guint64 block_size = g_value_get_uint64 (value);

          /* An oversized value (on a 32-bit system) must not wrap into a
           * valid size: make it one that init() rejects. */
          self->block_size = block_size <= G_MAXSIZE ? (gsize)block_size : 1;
        }
        break;
      case PROP_FLAGS:
        self->flags = g_value_get_flags (value);
        break;
      case PROP_DURABLE:
        bigfile_sqlite_file_set_durable (self, g_value_get_boolean (value));
        break;
      case PROP_BUSY_TIMEOUT:
        self->busy_timeout_ms = g_value_get_uint (value);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_sqlite_file_class_init (BigfileSqliteFileClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = bigfile_sqlite_file_finalize;
  object_class->get_property = bigfile_sqlite_file_get_property;
  object_class->set_property = bigfile_sqlite_file_set_property;

  /**
   * BigfileSqliteFile:path:
   *
   * The path of the database file, in the GLib file name encoding.
   *
   * Since: 1.0
   */
  props[PROP_PATH] = g_param_spec_string ("path", NULL, NULL, NULL,
                                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY
                                              | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileSqliteFile:name:
   *
   * The name of the bigfile in the database: any non-empty UTF-8 string of
   * up to 1024 bytes.
   *
   * Since: 1.0
   */
  props[PROP_NAME] = g_param_spec_string ("name", NULL, NULL, NULL,
                                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY
                                              | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileSqliteFile:block-size:
   *
   * The size of a block in bytes: a power of two from 4 KiB to 2 MiB, fixed
   * when the bigfile is made. 0 at construction means the stored one (the
   * bigfile must then exist); once made, the file's block size.
   *
   * Since: 1.0
   */
  props[PROP_BLOCK_SIZE]
      = g_param_spec_uint64 ("block-size", NULL, NULL, 0, G_MAXUINT64, 0,
                             G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS
                                 | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileSqliteFile:flags:
   *
   * How the bigfile is opened.
   *
   * Since: 1.0
   */
  props[PROP_FLAGS] = g_param_spec_flags ("flags", NULL, NULL, BIGFILE_TYPE_SQLITE_FILE_FLAGS,
                                          BIGFILE_SQLITE_FILE_FLAGS_NONE,
                                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY
                                              | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileSqliteFile:durable:
   *
   * Whether every commit is durable when it returns: flushed to the disk
   * (`synchronous=FULL`), so that it survives a power loss. Off, commits
   * are still atomic and survive a crash of the program, but the last ones
   * before a power loss may be lost (`synchronous=NORMAL`), unless a commit
   * asks for %BIGFILE_COMMIT_FLAGS_DURABLE. Takes effect at the next
   * transaction.
   *
   * Since: 1.0
   */
  props[PROP_DURABLE]
      = g_param_spec_boolean ("durable", NULL, NULL, TRUE,
                              G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileSqliteFile:busy-timeout:
   *
   * How long, in milliseconds, a transaction waits for another client's to
   * end (SQLite's busy timeout) before failing with
   * %BIGFILE_FILE_ERROR_BUSY.
   *
   * Since: 1.0
   */
  props[PROP_BUSY_TIMEOUT]
      = g_param_spec_uint ("busy-timeout", NULL, NULL, 0, G_MAXINT, DEFAULT_BUSY_TIMEOUT_MS,
                           G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS
                               | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
bigfile_sqlite_file_init (BigfileSqliteFile *self)
{
  g_mutex_init (&self->read_lock);
  g_mutex_init (&self->write_lock);
  g_mutex_init (&self->checkpoint_lock);
  self->durable = TRUE;
  self->log_keep = DEFAULT_LOG_KEEP;
  self->busy_timeout_ms = DEFAULT_BUSY_TIMEOUT_MS;
  self->writer.synchronous = -1;
  self->readers[0].synchronous = -1;
  self->readers[1].synchronous = -1;
  self->txn_blocks = g_array_new (FALSE, FALSE, sizeof (guint64));
  for (guint i = 0; i < BF_SQLITE_N_FAULTS; i++)
    self->op_faults[i] = -1;
}

/* The statement @id of @c, prepared on first use, reset and with its
 * bindings cleared by its last user. */
static sqlite3_stmt *
conn_stmt (BigfileSqliteFile *self, Conn *c, StmtId id, GError **error)
{
  int rc;

  if (c->stmts[id] != NULL)
    return c->stmts[id];
  rc = sq_prepare (c->db, stmt_sql[id], &c->stmts[id]);
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, c->db, rc, "Preparing “%s” for bigfile “%s” in “%s”", stmt_sql[id],
                        self->name, self->path);
      c->stmts[id] = NULL;
      return NULL;
    }
  return c->stmts[id];
}

static void
stmt_done (sqlite3_stmt *stmt)
{
  /* sqlite3_reset() only repeats the error of the last step, which the
   * caller has seen. */
  sqlite3_reset (stmt);
  sqlite3_clear_bindings (stmt);
}

/* Binds the file id to ?1 and @n more integers to ?2...  */
static int
bind_ints (sqlite3_stmt *stmt, gint64 file_id, int n, ...)
{
  va_list args;
  int rc = sq_bind_int64 (stmt, 1, file_id);

  va_start (args, n);
  for (int i = 0; i < n && rc == SQLITE_OK; i++)
    rc = sq_bind_int64 (stmt, i + 2, va_arg (args, gint64));
  va_end (args);
  return rc;
}

/* Runs a statement that returns no rows: ?1 is the file, then @n integers.
 * @what starts the error message. */
static gboolean
run_stmt (BigfileSqliteFile *self, Conn *c, StmtId id, const char *what, GError **error, int n, ...)
{
  sqlite3_stmt *stmt = conn_stmt (self, c, id, error);
  va_list args;
  int rc;

  if (stmt == NULL)
    return FALSE;
  rc = sq_bind_int64 (stmt, 1, self->file_id);
  va_start (args, n);
  for (int i = 0; i < n && rc == SQLITE_OK; i++)
    rc = sq_bind_int64 (stmt, i + 2, va_arg (args, gint64));
  va_end (args);
  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  stmt_done (stmt);
  if (rc != SQLITE_DONE)
    {
      set_sqlite_error (error, c->db, rc, FILE_FMT, FILE_ARGS (self, what));
      return FALSE;
    }
  return TRUE;
}

/* Reads the bigfile's row: FALSE with an error if it is gone (deleted by
 * bigfile_sqlite_file_delete()). */
static gboolean
read_head (BigfileSqliteFile *self, Conn *c, gint64 *version, guint64 *size, gint64 *floor,
           const char *what, GError **error)
{
  sqlite3_stmt *stmt = conn_stmt (self, c, ST_HEAD, error);
  int rc;

  if (stmt == NULL)
    return FALSE;
  rc = bind_ints (stmt, self->file_id, 0);
  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  if (rc == SQLITE_ROW)
    {
      gint64 s = sqlite3_column_int64 (stmt, 1);

      *version = sqlite3_column_int64 (stmt, 0);
      *size = s > 0 ? (guint64)s : 0;
      if (floor != NULL)
        *floor = sqlite3_column_int64 (stmt, 2);
      stmt_done (stmt);
      return TRUE;
    }
  stmt_done (stmt);
  if (rc == SQLITE_DONE)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                 FILE_FMT " failed: the bigfile was deleted from the database",
                 FILE_ARGS (self, what));
  else
    set_sqlite_error (error, c->db, rc, FILE_FMT, FILE_ARGS (self, what));
  return FALSE;
}

/* Opens @c on the database, for reading only if the file is read-only (or
 * @read_only), creating the database if @create. */
static gboolean
conn_open (BigfileSqliteFile *self, Conn *c, gboolean create, gboolean read_only, GError **error)
{
  int flags = SQLITE_OPEN_NOMUTEX; /* each connection is used under one of our locks */
  int rc;

  read_only = read_only || (self->flags & BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY);
  flags |= read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (create && !read_only)
    flags |= SQLITE_OPEN_CREATE;

  rc = sq_open (self->path, flags, &c->db);
  if (rc != SQLITE_OK)
    {
      g_autofree char *display = g_filename_display_name (self->path);

      set_sqlite_error (error, c->db, rc, "Opening the database “%s”", display);
      conn_close (c);
      return FALSE;
    }
  sqlite3_extended_result_codes (c->db, 1);
  /* A pure setter that cannot fail on an open connection. */
  sqlite3_busy_timeout (c->db, (int)MIN (self->busy_timeout_ms, (guint)G_MAXINT));

  /* Freed space is not overwritten with zeros (Debian builds SQLite with
   * SECURE_DELETE, which would double the writes of overwritten blocks);
   * the WAL is cut back to 64 MiB after a checkpoint reset it. */
  rc = sq_exec (c->db, "PRAGMA secure_delete = FAST");
  if (rc == SQLITE_OK && !read_only)
    rc = sq_exec (c->db, "PRAGMA journal_size_limit = " G_STRINGIFY (JOURNAL_SIZE_LIMIT));
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, c->db, rc, FILE_FMT,
                        FILE_ARGS (self, "Setting up a connection for"));
      conn_close (c);
      return FALSE;
    }
  c->synchronous = -1;
  return TRUE;
}

/* Runs a query that returns one integer, while opening the file. */
static gboolean
query_int (BigfileSqliteFile *self, Conn *c, const char *sql, gint64 *value, GError **error)
{
  sqlite3_stmt *stmt = NULL;
  int rc = sq_prepare (c->db, sql, &stmt);

  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  if (rc == SQLITE_ROW)
    {
      *value = sqlite3_column_int64 (stmt, 0);
      sqlite3_finalize (stmt);
      return TRUE;
    }
  set_sqlite_error (error, c->db, rc, "Opening bigfile “%s” in “%s” (%s)", self->name, self->path,
                    sql);
  sqlite3_finalize (stmt);
  return FALSE;
}

/* -- the schema --------------------------------------------------------------- */

static const char schema_sql[]
    = "CREATE TABLE bigfile_files ("
      " id INTEGER PRIMARY KEY,"
      " name TEXT NOT NULL UNIQUE,"
      " block_size INTEGER NOT NULL,"
      " size INTEGER NOT NULL DEFAULT 0,"
      " version INTEGER NOT NULL DEFAULT 0,"
      " log_floor INTEGER NOT NULL DEFAULT 0);"
      "CREATE TABLE bigfile_blocks ("
      " file INTEGER NOT NULL,"
      " block INTEGER NOT NULL,"
      " data BLOB NOT NULL,"
      " UNIQUE (file, block));"
      "CREATE TABLE bigfile_log ("
      " file INTEGER NOT NULL,"
      " version INTEGER NOT NULL,"
      " writer INTEGER NOT NULL,"
      " blocks BLOB,"
      " PRIMARY KEY (file, version));"
      "PRAGMA application_id = " G_STRINGIFY (APPLICATION_ID) ";"
                                                              "PRAGMA user_version = " G_STRINGIFY (
                                                                  SCHEMA_VERSION) ";";

/* Inside a transaction on @c: checks that the database is one of ours (or
 * empty: then creates the schema, if @may_create), and reports in
 * *@has_schema whether it has the tables. */
static gboolean
check_schema (BigfileSqliteFile *self, Conn *c, gboolean may_create, gboolean *has_schema,
              GError **error)
{
  g_autofree char *display = g_filename_display_name (self->path);
  gint64 app_id, user_version, n_objects;
  int rc;

  *has_schema = FALSE;
  if (!query_int (self, c, "PRAGMA application_id", &app_id, error)
      || !query_int (self, c, "PRAGMA user_version", &user_version, error)
      || !query_int (self, c, "SELECT count(*) FROM sqlite_schema", &n_objects, error))
    return FALSE;

  if (app_id == APPLICATION_ID)
    {
      if (user_version > SCHEMA_VERSION)
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                       "“%s” has bigfile schema version %" G_GINT64_FORMAT
                       ", newer than this library reads (%d): use a newer bigfile-glib",
                       display, user_version, SCHEMA_VERSION);
          return FALSE;
        }
      if (user_version < 1)
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
                       "“%s” is marked as a bigfile database but has no schema version", display);
          return FALSE;
        }
      *has_schema = TRUE;
      return TRUE;
    }

  if (app_id != 0 || n_objects != 0)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "“%s” is an SQLite database of another application, not a bigfile database",
                   display);
      return FALSE;
    }

  /* An empty database. */
  if (!may_create)
    return TRUE;
  rc = sq_exec (c->db, schema_sql);
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, c->db, rc, "Creating the bigfile tables in “%s”", display);
      return FALSE;
    }
  *has_schema = TRUE;
  return TRUE;
}

/* Inside a transaction on @c: finds the bigfile (creating it if
 * @may_create) and sets file_id and block_size. */
static gboolean
find_file (BigfileSqliteFile *self, Conn *c, gboolean may_create, GError **error)
{
  sqlite3_stmt *stmt = NULL;
  int rc;

  rc = sq_prepare (c->db, "SELECT id, block_size FROM bigfile_files WHERE name = ?1", &stmt);
  if (rc == SQLITE_OK)
    rc = sq_bind_text (stmt, 1, self->name);
  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  if (rc == SQLITE_ROW)
    {
      gint64 id = sqlite3_column_int64 (stmt, 0);
      gint64 stored = sqlite3_column_int64 (stmt, 1);

      sqlite3_finalize (stmt);
      if (stored <= 0 || !page_size_is_valid ((gsize)stored))
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
                       FILE_FMT " failed: its stored block size, %" G_GINT64_FORMAT
                                ", is not a power of two from 4 KiB to 2 MiB",
                       FILE_ARGS (self, "Opening"), stored);
          return FALSE;
        }
      if (self->block_size != 0 && self->block_size != (gsize)stored)
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                       FILE_FMT " failed: it has blocks of %" G_GINT64_FORMAT
                                " bytes, not %" G_GSIZE_FORMAT " (give 0 for the stored size)",
                       FILE_ARGS (self, "Opening"), stored, self->block_size);
          return FALSE;
        }
      self->file_id = id;
      self->block_size = (gsize)stored;
      return TRUE;
    }
  sqlite3_finalize (stmt);
  if (rc != SQLITE_DONE)
    {
      set_sqlite_error (error, c->db, rc, FILE_FMT, FILE_ARGS (self, "Looking up"));
      return FALSE;
    }

  if (!may_create || self->block_size == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   FILE_FMT " failed: the database has no bigfile of that name%s",
                   FILE_ARGS (self, "Opening"),
                   !may_create ? "" : " (give a block size to create it)");
      return FALSE;
    }

  rc = sq_prepare (c->db, "INSERT INTO bigfile_files (name, block_size) VALUES (?1, ?2)", &stmt);
  if (rc == SQLITE_OK)
    rc = sq_bind_text (stmt, 1, self->name);
  if (rc == SQLITE_OK)
    rc = sq_bind_int64 (stmt, 2, (gint64)self->block_size);
  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  sqlite3_finalize (stmt);
  if (rc != SQLITE_DONE)
    {
      set_sqlite_error (error, c->db, rc, FILE_FMT, FILE_ARGS (self, "Creating"));
      return FALSE;
    }
  self->file_id = sqlite3_last_insert_rowid (c->db);
  return TRUE;
}

/* Ends the read transaction of @r, if any.  A rollback of a read
 * transaction does not fail (it only drops a lock); it is not a fault
 * point. */
static void
reader_end (Conn *r)
{
  if (r->blob != NULL)
    sqlite3_blob_close (r->blob);
  r->blob = NULL;
  if (r->db != NULL && !sqlite3_get_autocommit (r->db))
    sqlite3_exec (r->db, "ROLLBACK", NULL, NULL, NULL);
}

static gboolean
wal_mode (BigfileSqliteFile *self, Conn *c, gboolean set, GError **error)
{
  g_autofree char *display = g_filename_display_name (self->path);
  sqlite3_stmt *stmt = NULL;
  gboolean wal;
  int rc;

  rc = sq_prepare (c->db, set ? "PRAGMA journal_mode = WAL" : "PRAGMA journal_mode", &stmt);
  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  if (rc != SQLITE_ROW)
    {
      set_sqlite_error (error, c->db, rc, "Reading the journal mode of “%s”", display);
      sqlite3_finalize (stmt);
      return FALSE;
    }
  wal = g_ascii_strcasecmp ((const char *)sqlite3_column_text (stmt, 0), "wal") == 0;
  sqlite3_finalize (stmt);
  if (!wal)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "“%s” is not in WAL mode%s", display,
                   set ? " and could not be put in it (is another program using it?)"
                       : ": open it read-write once to convert it");
      return FALSE;
    }
  return TRUE;
}

/* Inside a transaction on @c: the schema is there (or is made, if
 * @may_create) and the bigfile is found (or made). */
static gboolean
find_schema_and_file (BigfileSqliteFile *self, Conn *c, gboolean may_create, gboolean *missing,
                      GError **error)
{
  gboolean has_schema;

  *missing = FALSE;
  if (!check_schema (self, c, may_create, &has_schema, error))
    return FALSE;
  if (!has_schema)
    {
      g_autofree char *display = g_filename_display_name (self->path);

      *missing = TRUE;
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   FILE_FMT " failed: “%s” holds no bigfiles%s", FILE_ARGS (self, "Opening"),
                   display,
                   (self->flags & BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY)
                       ? ""
                       : " (open with BIGFILE_SQLITE_FILE_FLAGS_CREATE)");
      return FALSE;
    }
  if (!find_file (self, c, may_create, error))
    {
      *missing = error != NULL && *error != NULL
                 && g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
      return FALSE;
    }
  return TRUE;
}

/* Opens the database, checks or makes the schema and finds the bigfile.
 * The checks read in a deferred transaction, which waits for no writer:
 * only making the schema or the bigfile takes the write lock. */
static gboolean
open_database (BigfileSqliteFile *self, GError **error)
{
  gboolean read_only = (self->flags & BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY) != 0;
  gboolean create = (self->flags & BIGFILE_SQLITE_FILE_FLAGS_CREATE) != 0 && !read_only;
  Conn *c = read_only ? &self->readers[0] : &self->writer;
  GError *local = NULL;
  gboolean missing;
  int rc;

  if (!conn_open (self, c, create, FALSE, error))
    return FALSE;

  if (!read_only)
    {
      gint64 page_count;

      /* A new database gets pages that suit its first bigfile: large
       * blocks then span fewer overflow pages. */
      if (!query_int (self, c, "PRAGMA page_count", &page_count, error))
        return FALSE;
      if (page_count == 0 && self->block_size != 0)
        {
          g_autofree char *sql
              = g_strdup_printf ("PRAGMA page_size = %" G_GSIZE_FORMAT,
                                 (gsize)CLAMP (self->block_size / 32, (gsize)4096, (gsize)65536));

          rc = sq_exec (c->db, sql);
          if (rc != SQLITE_OK)
            {
              set_sqlite_error (error, c->db, rc, FILE_FMT,
                                FILE_ARGS (self, "Setting the page size for"));
              return FALSE;
            }
        }
    }
  if (!wal_mode (self, c, !read_only, error))
    return FALSE;

  rc = sq_exec (c->db, "BEGIN");
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, c->db, rc, FILE_FMT, FILE_ARGS (self, "Opening"));
      return FALSE;
    }
  if (find_schema_and_file (self, c, FALSE, &missing, &local))
    {
      reader_end (c);
      return TRUE;
    }
  reader_end (c);
  if (!missing || !create)
    {
      g_propagate_error (error, local);
      return FALSE;
    }
  g_clear_error (&local);

  /* Making it: under the write lock, looking again (another client may
   * have made it meanwhile). */
  rc = sq_exec (c->db, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, c->db, rc, FILE_FMT, FILE_ARGS (self, "Creating"));
      return FALSE;
    }
  if (!find_schema_and_file (self, c, TRUE, &missing, error))
    {
      reader_end (c);
      return FALSE;
    }
  rc = sq_exec (c->db, "COMMIT");
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, c->db, rc, FILE_FMT, FILE_ARGS (self, "Creating"));
      reader_end (c);
      return FALSE;
    }
  return TRUE;
}

/* -- the snapshot ------------------------------------------------------------- */

typedef enum
{
  MOVE_REPORT,       /* refresh(): report others' commits since reported_version */
  MOVE_KEEP_REPORTS, /* after our commit: reported_version stays */
  MOVE_IF_UNCHANGED, /* the watcher: only if the bigfile's version is the same */
} MoveMode;

/* Appends the blocks of a log row's runs to @changes; FALSE if it is not a
 * list of runs.  Past MAX_REPORTED_BLOCKS, @changes becomes "any block". */
static gboolean
append_runs (GArray *changes, const guint8 *data, gsize length, gboolean *any)
{
  if (length % 16 != 0)
    return FALSE;
  for (gsize i = 0; i < length && !*any; i += 16)
    {
      guint64 first, count;

      memcpy (&first, data + i, 8);
      memcpy (&count, data + i + 8, 8);
      first = GUINT64_FROM_LE (first);
      count = GUINT64_FROM_LE (count);
      if (count == 0 || first > G_MAXUINT64 - count)
        return FALSE;
      if (count > MAX_REPORTED_BLOCKS - changes->len)
        {
          *any = TRUE;
          break;
        }
      for (guint64 b = first; b < first + count; b++)
        g_array_append_val (changes, b);
    }
  return TRUE;
}

/* The blocks that other clients' commits after @since changed, read in the
 * read transaction of @r. */
static gboolean
collect_changes (BigfileSqliteFile *self, Conn *r, gint64 since, GArray *changes, GError **error)
{
  sqlite3_stmt *stmt = conn_stmt (self, r, ST_LOG, error);
  gboolean any = FALSE;
  int rc;

  if (stmt == NULL)
    return FALSE;
  rc = bind_ints (stmt, self->file_id, 2, since, self->writer_id);
  while (rc == SQLITE_OK || rc == SQLITE_ROW)
    {
      rc = sq_step (stmt);
      if (rc != SQLITE_ROW)
        break;
      if (sqlite3_column_type (stmt, 0) == SQLITE_NULL)
        any = TRUE;
      else if (!append_runs (changes, sqlite3_column_blob (stmt, 0),
                             (gsize)sqlite3_column_bytes (stmt, 0), &any))
        {
          stmt_done (stmt);
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
                       FILE_FMT " failed: a row of its change log is not a list of runs",
                       FILE_ARGS (self, "Refreshing"));
          return FALSE;
        }
      if (any)
        break;
    }
  stmt_done (stmt);
  if (rc != SQLITE_DONE && !any)
    {
      set_sqlite_error (error, r->db, rc, FILE_FMT, FILE_ARGS (self, "Reading the change log of"));
      return FALSE;
    }
  if (any)
    {
      guint64 all = G_MAXUINT64;

      g_array_set_size (changes, 0);
      g_array_append_val (changes, all);
    }
  return TRUE;
}

/* With read_lock held: opens a read transaction on the spare read
 * connection and makes it the snapshot, then lets the old one go.  On
 * failure the old snapshot stays (and FALSE without an error: with
 * MOVE_IF_UNCHANGED, the bigfile changed). */
static gboolean
snapshot_move_locked (BigfileSqliteFile *self, MoveMode mode, GArray **changes, GError **error)
{
  guint spare = 1 - self->current;
  Conn *r = &self->readers[spare];
  g_autoptr (GArray) found = NULL;
  gint64 version, floor;
  guint64 size;
  int rc;

  if (r->db == NULL && !conn_open (self, r, FALSE, TRUE, error))
    return FALSE;
  reader_end (r);
  rc = sq_exec (r->db, "BEGIN");
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, r->db, rc, FILE_FMT, FILE_ARGS (self, "Refreshing"));
      return FALSE;
    }
  /* The read transaction starts here, at the first read. */
  if (!read_head (self, r, &version, &size, &floor, "Refreshing", error))
    goto fail;

  if (mode == MOVE_IF_UNCHANGED && (!self->snapshot_open || version != self->snap_version))
    goto fail;

  if (mode == MOVE_REPORT)
    {
      found = g_array_new (FALSE, FALSE, sizeof (guint64));
      if (floor > self->reported_version)
        {
          guint64 all = G_MAXUINT64;

          g_array_append_val (found, all);
        }
      else if (!collect_changes (self, r, self->reported_version, found, error))
        goto fail;
    }

  reader_end (&self->readers[self->current]);
  self->current = spare;
  self->snapshot_open = TRUE;
  self->snap_version = version;
  self->snap_size = size;
  if (mode == MOVE_REPORT)
    {
      self->reported_version = version;
      *changes = g_steal_pointer (&found);
    }
  return TRUE;

fail:
  reader_end (r);
  return FALSE;
}

static gboolean
snapshot_ensure_locked (BigfileSqliteFile *self, GError **error)
{
  return self->snapshot_open || snapshot_move_locked (self, MOVE_KEEP_REPORTS, NULL, error);
}

static gboolean
check_initialized (BigfileSqliteFile *self, GError **error)
{
  if (self->initialized)
    return TRUE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED,
               "The BigfileSqliteFile for “%s” was not initialized",
               self->name != NULL ? self->name : "");
  return FALSE;
}

/* The byte offset of @length bytes of @block, if it is a file offset. */
static gboolean
check_block (BigfileSqliteFile *self, guint64 block, gsize length, const char *what, GError **error)
{
  if (block <= (guint64)G_MAXINT64 / self->block_size
      && block * self->block_size <= (guint64)G_MAXINT64 - length)
    return TRUE;
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
               "%s block %" G_GUINT64_FORMAT " of bigfile “%s” in “%s” failed: it lies beyond "
               "the largest file offset",
               what, block, self->name, self->path);
  return FALSE;
}

static gboolean
check_writable (BigfileSqliteFile *self, const char *what, GError **error)
{
  if (!(self->flags & BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY))
    return TRUE;
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY,
               FILE_FMT " failed: it was opened read-only", FILE_ARGS (self, what));
  return FALSE;
}

/* The test hook of _bigfile_sqlite_file_set_fault(): TRUE, with an
 * error, if this call of kind @fault is to fail. */
static gboolean
op_fails (BigfileSqliteFile *self, BfSqliteFault fault, const char *what, GError **error)
{
  gint v;

  while ((v = g_atomic_int_get (&self->op_faults[fault])) > 0)
    if (g_atomic_int_compare_and_exchange (&self->op_faults[fault], v, v - 1))
      return FALSE;
  if (v < 0)
    return FALSE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
               FILE_FMT " failed: disk I/O error (SQLite error 10, injected)",
               FILE_ARGS (self, what));
  return TRUE;
}

/* -- loads -------------------------------------------------------------------- */

static gboolean
bigfile_sqlite_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                                    GError **error)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (file);
  sqlite3_stmt *stmt;
  gboolean ok = FALSE;
  gint64 rowid;
  Conn *r;
  int rc, n;

  if (!check_initialized (self, error) || !check_block (self, block, length, "Loading", error)
      || op_fails (self, BF_SQLITE_FAULT_LOAD, "Loading a block of", error))
    return FALSE;

  g_mutex_lock (&self->read_lock);
  if (!snapshot_ensure_locked (self, error))
    goto out;
  r = &self->readers[self->current];
  stmt = conn_stmt (self, r, ST_ROWID, error);
  if (stmt == NULL)
    goto out;
  rc = bind_ints (stmt, self->file_id, 1, (gint64)block);
  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  rowid = rc == SQLITE_ROW ? sqlite3_column_int64 (stmt, 0) : 0;
  stmt_done (stmt);
  if (rc == SQLITE_DONE)
    {
      /* No row: a block of zeros, which @buffer holds already. */
      ok = TRUE;
      goto out;
    }
  if (rc != SQLITE_ROW)
    goto fail;

  /* Incremental blob I/O reads the overflow pages straight into @buffer:
   * one copy fewer than sqlite3_column_blob(). */
  rc = r->blob != NULL ? sq_blob_reopen (r->blob, rowid) : sq_blob_open (r->db, rowid, &r->blob);
  if (rc != SQLITE_OK)
    goto fail;
  n = sqlite3_blob_bytes (r->blob);
  if ((gsize)n > self->block_size)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
                   "Loading block %" G_GUINT64_FORMAT " of bigfile “%s” in “%s” failed: "
                   "it holds %d bytes, more than a block (%" G_GSIZE_FORMAT ")",
                   block, self->name, self->path, n, self->block_size);
      goto out;
    }
  rc = sq_blob_read (r->blob, buffer, (int)MIN ((gsize)n, length));
  if (rc != SQLITE_OK)
    goto fail;
  ok = TRUE;
  goto out;

fail:
  set_sqlite_error (error, r->db, rc, "Loading block %" G_GUINT64_FORMAT " of bigfile “%s” in “%s”",
                    block, self->name, self->path);
  /* A blob handle that failed is of no further use. */
  if (r->blob != NULL)
    sqlite3_blob_close (r->blob);
  r->blob = NULL;
out:
  g_mutex_unlock (&self->read_lock);
  return ok;
}

/* -- transactions --------------------------------------------------------------- */

/* Rolls back the transaction of the write connection; one that fails
 * closes the connection, which rolls back too: the transaction is over
 * either way. */
static void
writer_rollback_locked (BigfileSqliteFile *self)
{
  if (self->writer.db != NULL && !sqlite3_get_autocommit (self->writer.db)
      && sq_exec (self->writer.db, "ROLLBACK") != SQLITE_OK)
    conn_close (&self->writer);
  self->in_txn = FALSE;
}

static gboolean
begin_locked (BigfileSqliteFile *self, GError **error)
{
  int synchronous = g_atomic_int_get (&self->durable) ? 2 /* FULL */ : 1 /* NORMAL */;
  guint64 size;
  int rc;

  if (self->writer.db == NULL && !conn_open (self, &self->writer, FALSE, FALSE, error))
    return FALSE;

  /* Only outside a transaction may the level change. */
  if (self->writer.synchronous != synchronous)
    {
      rc = sq_exec (self->writer.db,
                    synchronous == 2 ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
      if (rc != SQLITE_OK)
        {
          set_sqlite_error (error, self->writer.db, rc, FILE_FMT,
                            FILE_ARGS (self, "Beginning a transaction of"));
          return FALSE;
        }
      self->writer.synchronous = synchronous;
    }

  rc = sq_exec (self->writer.db, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK)
    {
      if ((rc & 0xff) == SQLITE_BUSY)
        g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_BUSY,
                     FILE_FMT " failed: another client's transaction of the database did not end "
                              "within %u ms; try again",
                     FILE_ARGS (self, "Beginning a transaction of"), self->busy_timeout_ms);
      else
        set_sqlite_error (error, self->writer.db, rc, FILE_FMT,
                          FILE_ARGS (self, "Beginning a transaction of"));
      return FALSE;
    }
  self->in_txn = TRUE;
  if (!read_head (self, &self->writer, &self->txn_base_version, &size, NULL,
                  "Beginning a transaction of", error))
    {
      writer_rollback_locked (self);
      return FALSE;
    }
  self->txn_size = size;
  self->txn_failed = FALSE;
  self->txn_changed = FALSE;
  g_array_set_size (self->txn_blocks, 0);
  return TRUE;
}

/* Whether the transaction can go on: SQLite rolls a transaction back by
 * itself after some errors (a full disk, an I/O error), and a transaction
 * with a failed call must not commit a part of what it was asked. */
static gboolean
txn_check_locked (BigfileSqliteFile *self, const char *what, GError **error)
{
  if (self->txn_failed)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   FILE_FMT " failed: an earlier call of the transaction failed; abort it",
                   FILE_ARGS (self, what));
      return FALSE;
    }
  if (self->writer.db == NULL || sqlite3_get_autocommit (self->writer.db))
    {
      self->txn_failed = TRUE;
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   FILE_FMT " failed: SQLite rolled the transaction back after an earlier error",
                   FILE_ARGS (self, what));
      return FALSE;
    }
  return TRUE;
}

/* Writes @length bytes of @data as block @block: a row without the
 * trailing zeros, or no row for a block of zeros. */
static gboolean
write_block_locked (BigfileSqliteFile *self, guint64 block, const guint8 *data, gsize length,
                    GError **error)
{
  Conn *w = &self->writer;
  sqlite3_stmt *stmt;
  gsize n = length;
  int rc;

  while (n >= 8 && memcmp (data + n - 8, "\0\0\0\0\0\0\0\0", 8) == 0)
    n -= 8;
  while (n > 0 && data[n - 1] == 0)
    n--;

  stmt = conn_stmt (self, w, n == 0 ? ST_DELETE : ST_UPSERT, error);
  if (stmt == NULL)
    return FALSE;
  rc = bind_ints (stmt, self->file_id, 1, (gint64)block);
  if (rc == SQLITE_OK && n > 0)
    rc = sq_bind_blob (stmt, 3, data, n);
  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  stmt_done (stmt);
  if (rc != SQLITE_DONE)
    {
      set_sqlite_error (error, w->db, rc,
                        "Storing block %" G_GUINT64_FORMAT " of bigfile “%s” in “%s”", block,
                        self->name, self->path);
      return FALSE;
    }
  /* Deleting a row that was not there changes nothing. */
  if (n > 0 || sqlite3_changes (w->db) > 0)
    {
      g_array_append_val (self->txn_blocks, block);
      self->txn_changed = TRUE;
    }
  return TRUE;
}

static gboolean
set_txn_size_locked (BigfileSqliteFile *self, guint64 size, GError **error)
{
  if (!run_stmt (self, &self->writer, ST_SET_SIZE, "Setting the size of", error, 1, (gint64)size))
    return FALSE;
  self->txn_size = size;
  self->txn_changed = TRUE;
  return TRUE;
}

static gboolean
store_locked (BigfileSqliteFile *self, guint64 block, const guint8 *data, gsize length,
              GError **error)
{
  guint64 end = block * self->block_size + length;

  if (op_fails (self, BF_SQLITE_FAULT_STORE, "Storing a block of", error)
      || !txn_check_locked (self, "Storing a block of", error))
    return FALSE;
  /* A store past the size makes the file as long as what was stored, as
   * pwrite() does to a file. */
  if (!write_block_locked (self, block, data, length, error)
      || (end > self->txn_size && !set_txn_size_locked (self, end, error)))
    {
      self->txn_failed = TRUE;
      return FALSE;
    }
  return TRUE;
}

/* Cuts the bigfile to @size: drops the rows past it and the bytes past it
 * of the block that holds it (so that growing again shows zeros). */
static gboolean
truncate_locked (BigfileSqliteFile *self, guint64 size, GError **error)
{
  Conn *w = &self->writer;
  guint64 first_gone = size / self->block_size + (size % self->block_size != 0);
  sqlite3_stmt *stmt;
  int rc;

  stmt = conn_stmt (self, w, ST_LIST_FROM, error);
  if (stmt == NULL)
    return FALSE;
  rc = bind_ints (stmt, self->file_id, 1, (gint64)first_gone);
  while (rc == SQLITE_OK || rc == SQLITE_ROW)
    {
      guint64 block;

      rc = sq_step (stmt);
      if (rc != SQLITE_ROW)
        break;
      block = (guint64)sqlite3_column_int64 (stmt, 0);
      g_array_append_val (self->txn_blocks, block);
      self->txn_changed = TRUE;
    }
  stmt_done (stmt);
  if (rc != SQLITE_DONE)
    {
      set_sqlite_error (error, w->db, rc, FILE_FMT, FILE_ARGS (self, "Truncating"));
      return FALSE;
    }
  if (!run_stmt (self, w, ST_DELETE_FROM, "Truncating", error, 1, (gint64)first_gone))
    return FALSE;

  if (size % self->block_size != 0)
    {
      guint64 block = size / self->block_size;
      gsize keep = size % self->block_size;
      g_autofree guint8 *cut = NULL;

      stmt = conn_stmt (self, w, ST_DATA, error);
      if (stmt == NULL)
        return FALSE;
      rc = bind_ints (stmt, self->file_id, 1, (gint64)block);
      if (rc == SQLITE_OK)
        rc = sq_step (stmt);
      if (rc == SQLITE_ROW && (gsize)sqlite3_column_bytes (stmt, 0) > keep)
        cut = g_memdup2 (sqlite3_column_blob (stmt, 0), keep);
      stmt_done (stmt);
      if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        {
          set_sqlite_error (error, w->db, rc, FILE_FMT, FILE_ARGS (self, "Truncating"));
          return FALSE;
        }
      if (cut != NULL && !write_block_locked (self, block, cut, keep, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
set_size_locked (BigfileSqliteFile *self, guint64 size, GError **error)
{
  if (op_fails (self, BF_SQLITE_FAULT_SET_SIZE, "Setting the size of", error)
      || !txn_check_locked (self, "Setting the size of", error))
    return FALSE;
  if (size == self->txn_size)
    return TRUE;
  if ((size < self->txn_size && !truncate_locked (self, size, error))
      || !set_txn_size_locked (self, size, error))
    {
      self->txn_failed = TRUE;
      return FALSE;
    }
  return TRUE;
}

static int
cmp_guint64 (gconstpointer a, gconstpointer b)
{
  guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;

  return x < y ? -1 : x > y;
}

/* The transaction's blocks as a log row: runs of (first, count), little
 * endian; NULL (any block) past MAX_LOG_RUNS. */
static GByteArray *
encode_runs (GArray *blocks)
{
  GByteArray *runs = g_byte_array_new ();
  guint n_runs = 0;

  g_array_sort (blocks, cmp_guint64);
  for (guint i = 0; i < blocks->len;)
    {
      guint64 first = g_array_index (blocks, guint64, i), count = 1, le[2];

      /* Repeats and the blocks that follow on. */
      for (i++; i < blocks->len && g_array_index (blocks, guint64, i) <= first + count; i++)
        if (g_array_index (blocks, guint64, i) == first + count)
          count++;
      if (++n_runs > MAX_LOG_RUNS)
        {
          g_byte_array_unref (runs);
          return NULL;
        }
      le[0] = GUINT64_TO_LE (first);
      le[1] = GUINT64_TO_LE (count);
      g_byte_array_append (runs, (const guint8 *)le, sizeof le);
    }
  return runs;
}

static void schedule_checkpoint (BigfileSqliteFile *self);

static gboolean
commit_locked (BigfileSqliteFile *self, BigfileCommitFlags flags, GError **error)
{
  Conn *w = &self->writer;
  gint64 version = self->txn_base_version + 1;
  gint64 keep = MAX (g_atomic_int_get (&self->log_keep), 1);
  gboolean changed = self->txn_changed;
  int rc;

  if (op_fails (self, BF_SQLITE_FAULT_COMMIT, "Committing a transaction of", error)
      || !txn_check_locked (self, "Committing a transaction of", error))
    goto fail;

  if (changed)
    {
      g_autoptr (GByteArray) runs = encode_runs (self->txn_blocks);
      sqlite3_stmt *stmt = conn_stmt (self, w, ST_INSERT_LOG, error);

      if (stmt == NULL)
        goto fail;
      rc = bind_ints (stmt, self->file_id, 2, version, self->writer_id);
      /* An empty run list (only the size changed) is a zero-length blob,
       * not NULL (which means any block). */
      if (rc == SQLITE_OK)
        rc = runs == NULL ? sq_bind_blob (stmt, 4, NULL, 0)
                          : (runs->len > 0 ? sq_bind_blob (stmt, 4, runs->data, runs->len)
                                           : sq_bind_blob (stmt, 4, "", 0));
      if (rc == SQLITE_OK)
        rc = sq_step (stmt);
      stmt_done (stmt);
      if (rc != SQLITE_DONE)
        {
          set_sqlite_error (error, w->db, rc, FILE_FMT,
                            FILE_ARGS (self, "Writing the change log of"));
          goto fail;
        }
      if (!run_stmt (self, w, ST_SET_VERSION, "Committing a transaction of", error, 1, version))
        goto fail;
      if (version > keep
          && (!run_stmt (self, w, ST_PRUNE_LOG, "Pruning the change log of", error, 1,
                         version - keep)
              || !run_stmt (self, w, ST_SET_FLOOR, "Pruning the change log of", error, 1,
                            version - keep)))
        goto fail;
    }

  rc = sq_exec (w->db, "COMMIT");
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, w->db, rc, FILE_FMT,
                        FILE_ARGS (self, "Committing a transaction of"));
      goto fail;
    }
  self->in_txn = FALSE;
  if (!changed)
    return TRUE;

  /* From here on the commit is visible to everyone. */
  if ((flags & BIGFILE_COMMIT_FLAGS_DURABLE) && w->synchronous < 2)
    {
      rc = sq_sync_wal (w->db);
      if (rc != SQLITE_OK)
        {
          /* Not durable as asked: fail, though the commit shows.  The
           * pages stay dirty, and storing them again loses nothing. */
          set_sqlite_error (error, w->db, rc, FILE_FMT,
                            FILE_ARGS (self, "Flushing the commit to the disk of"));
          return FALSE;
        }
    }

  /* Loads from now on see this commit.  A move that fails leaves no
   * snapshot: the next load opens one, or fails. */
  g_mutex_lock (&self->read_lock);
  if (!snapshot_move_locked (self, MOVE_KEEP_REPORTS, NULL, NULL))
    {
      reader_end (&self->readers[self->current]);
      self->snapshot_open = FALSE;
    }
  g_mutex_unlock (&self->read_lock);

  /* Tell the watchers, once the commit is visible: inotify sees the
   * -wal file's time change (IN_ATTRIB).  Best effort. */
  utimensat (AT_FDCWD, self->wal_path, NULL, 0);
  schedule_checkpoint (self);
  return TRUE;

fail:
  writer_rollback_locked (self);
  return FALSE;
}

static gboolean
bigfile_sqlite_file_begin_transaction (BigfileFile *file, GError **error)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (file);
  gboolean ok;

  if (!check_initialized (self, error)
      || !check_writable (self, "Beginning a transaction of", error))
    return FALSE;

  g_mutex_lock (&self->write_lock);
  if (self->in_txn)
    {
      g_mutex_unlock (&self->write_lock);
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   FILE_FMT " failed: a transaction of this file object is open already",
                   FILE_ARGS (self, "Beginning a transaction of"));
      return FALSE;
    }
  ok = !op_fails (self, BF_SQLITE_FAULT_BEGIN, "Beginning a transaction of", error)
       && begin_locked (self, error);
  g_mutex_unlock (&self->write_lock);
  return ok;
}

static gboolean
bigfile_sqlite_file_commit_transaction (BigfileFile *file, BigfileCommitFlags flags, GError **error)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (file);
  gboolean ok;

  if (!check_initialized (self, error))
    return FALSE;

  g_mutex_lock (&self->write_lock);
  if (!self->in_txn)
    {
      g_mutex_unlock (&self->write_lock);
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   FILE_FMT " failed: no transaction is open",
                   FILE_ARGS (self, "Committing a transaction of"));
      return FALSE;
    }
  ok = commit_locked (self, flags, error);
  g_mutex_unlock (&self->write_lock);
  return ok;
}

static void
bigfile_sqlite_file_abort_transaction (BigfileFile *file)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (file);

  g_mutex_lock (&self->write_lock);
  if (self->in_txn)
    writer_rollback_locked (self);
  g_mutex_unlock (&self->write_lock);
}

/* A store or size change outside a transaction is a transaction of its
 * own. */
typedef gboolean (*TxnOp) (BigfileSqliteFile *self, guint64 a, const guint8 *data, gsize length,
                           GError **error);

static gboolean
in_transaction (BigfileSqliteFile *self, TxnOp op, guint64 a, const guint8 *data, gsize length,
                GError **error)
{
  gboolean ok;

  g_mutex_lock (&self->write_lock);
  if (self->in_txn)
    ok = op (self, a, data, length, error);
  else
    {
      ok = begin_locked (self, error);
      if (ok && !op (self, a, data, length, error))
        {
          writer_rollback_locked (self);
          ok = FALSE;
        }
      else if (ok)
        ok = commit_locked (self, BIGFILE_COMMIT_FLAGS_NONE, error);
    }
  g_mutex_unlock (&self->write_lock);
  return ok;
}

static gboolean
store_op (BigfileSqliteFile *self, guint64 block, const guint8 *data, gsize length, GError **error)
{
  return store_locked (self, block, data, length, error);
}

static gboolean
set_size_op (BigfileSqliteFile *self, guint64 size, const guint8 *data, gsize length,
             GError **error)
{
  return set_size_locked (self, size, error);
}

static gboolean
bigfile_sqlite_file_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data,
                                     gsize length, GError **error)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (file);

  if (!check_initialized (self, error) || !check_writable (self, "Storing a block of", error)
      || !check_block (self, block, length, "Storing", error))
    return FALSE;
  if (length > self->block_size)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "Storing block %" G_GUINT64_FORMAT " of bigfile “%s” in “%s” failed: "
                   "%" G_GSIZE_FORMAT " bytes are more than a block",
                   block, self->name, self->path, length);
      return FALSE;
    }
  return in_transaction (self, store_op, block, data, length, error);
}

static gboolean
bigfile_sqlite_file_set_size (BigfileFile *file, guint64 size, GError **error)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (file);

  if (!check_initialized (self, error) || !check_writable (self, "Setting the size of", error))
    return FALSE;
  return in_transaction (self, set_size_op, size, NULL, 0, error);
}

static gboolean
bigfile_sqlite_file_get_size (BigfileFile *file, guint64 *size, GError **error)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (file);
  gboolean ok = TRUE;

  if (!check_initialized (self, error))
    return FALSE;

  /* Inside a transaction, its own size: what writeout set. */
  g_mutex_lock (&self->write_lock);
  if (self->in_txn)
    {
      *size = self->txn_size;
      g_mutex_unlock (&self->write_lock);
      return TRUE;
    }
  g_mutex_unlock (&self->write_lock);

  g_mutex_lock (&self->read_lock);
  ok = snapshot_ensure_locked (self, error);
  if (ok)
    *size = self->snap_size;
  g_mutex_unlock (&self->read_lock);
  return ok;
}

static GArray *
bigfile_sqlite_file_refresh (BigfileFile *file, GError **error)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (file);
  GArray *changes = NULL;

  if (!check_initialized (self, error)
      || op_fails (self, BF_SQLITE_FAULT_REFRESH, "Refreshing", error))
    return NULL;

  g_mutex_lock (&self->read_lock);
  if (!snapshot_move_locked (self, MOVE_REPORT, &changes, error))
    changes = NULL;
  g_mutex_unlock (&self->read_lock);
  return changes;
}

static gsize
bigfile_sqlite_file_get_block_size_vfunc (BigfileFile *file)
{
  return BIGFILE_SQLITE_FILE (file)->block_size;
}

/* Each connection is used under one of the locks: any thread, at once. */
static gboolean
bigfile_sqlite_file_is_thread_safe (BigfileFile *file)
{
  return TRUE;
}

static void
bigfile_sqlite_file_file_iface_init (BigfileFileInterface *iface)
{
  iface->get_block_size = bigfile_sqlite_file_get_block_size_vfunc;
  iface->load_block_raw = bigfile_sqlite_file_load_block_raw;
  iface->store_block_raw = bigfile_sqlite_file_store_block_raw;
  iface->is_thread_safe = bigfile_sqlite_file_is_thread_safe;
  iface->get_size = bigfile_sqlite_file_get_size;
  iface->set_size = bigfile_sqlite_file_set_size;
  iface->begin_transaction = bigfile_sqlite_file_begin_transaction;
  iface->commit_transaction = bigfile_sqlite_file_commit_transaction;
  iface->abort_transaction = bigfile_sqlite_file_abort_transaction;
  iface->refresh = bigfile_sqlite_file_refresh;
}

/* -- the checkpoint after a commit ---------------------------------------------
 *
 * SQLite checkpoints after a commit, in the committing connection, but then
 * the other clients still read the snapshots they had before it, and the
 * checkpoint stops at the oldest: with commits coming one after another the
 * WAL would never be copied whole, so never reset, and it would grow
 * without end.  A moment later the others have refreshed (their handles do
 * on ::changed); a passive checkpoint then copies the WAL whole, the watch
 * sources of all clients see the database file written and move their
 * unchanged snapshots past the WAL (see watch_check()), and the next
 * commit starts the WAL from its beginning. */

typedef struct
{
  char *path;
  gint *running; /* the file's checkpoint_running: the file joins us before it goes */
} Checkpoint;

/* A thread of its own, with a copy of the path, joined by the next one
 * and by finalize (a GTask would keep the file alive until its main
 * context ran again to deliver the result). */
static gpointer
checkpoint_thread (gpointer data)
{
  Checkpoint *ck = data;
  int n_log = -1, n_copied = -1;
  sqlite3 *db = NULL;

  /* A connection of its own, for the moment: a checkpoint and a writer's
   * transaction run side by side in WAL mode, so the next writeout need
   * not wait for this one's copy.  Best effort, and not a fault point:
   * nothing depends on it, and it runs at a time of its own, which would
   * make the counts of the fault tests vary. */
  if (sqlite3_open_v2 (ck->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
          == SQLITE_OK
      /* A read first: a connection knows of the WAL from its first read
       * on (before, a checkpoint finds no WAL and does nothing). */
      && sqlite3_exec (db, "PRAGMA schema_version", NULL, NULL, NULL) == SQLITE_OK
      && sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_PASSIVE, &n_log, &n_copied)
             == SQLITE_OK
      && n_log > 0 && n_copied == n_log)
    {
      /* All of the WAL is in the database now: tell the watchers, whose
       * snapshots then move past the WAL (IN_ATTRIB of the database file:
       * the checkpoint's own writes come before SQLite records that it is
       * complete, so a snapshot moved on them would still hold the WAL). */
      utimensat (AT_FDCWD, sqlite3_db_filename (db, "main"), NULL, 0);
    }
  sqlite3_close_v2 (db);
  g_atomic_int_set (ck->running, FALSE);
  g_free (ck->path);
  g_free (ck);
  return NULL;
}

static gboolean
checkpoint_timeout (gpointer data)
{
  BigfileSqliteFile *self = g_weak_ref_get (data);
  Checkpoint *ck;

  if (self == NULL)
    return G_SOURCE_REMOVE;

  /* Commits from now on schedule the next one. */
  g_atomic_int_set (&self->checkpoint_scheduled, FALSE);
  g_mutex_lock (&self->checkpoint_lock);
  if (!g_atomic_int_get (&self->checkpoint_running))
    {
      if (self->checkpoint_thread != NULL)
        g_thread_join (self->checkpoint_thread);
      ck = g_new0 (Checkpoint, 1);
      ck->path = g_strdup (self->path);
      ck->running = &self->checkpoint_running;
      g_atomic_int_set (&self->checkpoint_running, TRUE);
      self->checkpoint_thread = g_thread_new ("bigfile-sqlite-checkpoint", checkpoint_thread, ck);
    }
  /* else the one still running copies the new commits too, or the next
   * commit schedules another. */
  g_mutex_unlock (&self->checkpoint_lock);
  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

static void
weak_ref_free (gpointer data)
{
  g_weak_ref_clear (data);
  g_free (data);
}

static void
schedule_checkpoint (BigfileSqliteFile *self)
{
  GWeakRef *ref;
  GSource *timeout;

  if (!g_atomic_int_compare_and_exchange (&self->checkpoint_scheduled, FALSE, TRUE))
    return;
  ref = g_new0 (GWeakRef, 1);
  g_weak_ref_init (ref, self);
  timeout = g_timeout_source_new (CHECKPOINT_DELAY_MS);
  g_source_set_static_name (timeout, "BigfileSqliteFile checkpoint");
  g_source_set_callback (timeout, checkpoint_timeout, ref, weak_ref_free);
  g_source_attach (timeout, self->context);
  g_source_unref (timeout);
}

/* -- the watch source: other clients' commits --------------------------------- */

typedef struct
{
  GSource source;

  /* Immutable after watch_source_new(). */
  GWeakRef file;
  int inotify_fd; /* -1: polling */
  gpointer fd_tag;
  char *db_name; /* the base names of the database and its WAL */
  char *wal_name;

  /* Only touched by the dispatch, on the file's main context. */
  Conn conn; /* a read connection of its own, in autocommit mode */
  gboolean have_data_version;
  gint64 data_version;
  gint64 notified_version; /* ::changed was emitted for others' commits up to here */
} WatchSource;

/* Reads every pending event; *@event if one is about the database or its
 * WAL, *@db_event if the database file itself was written (a checkpoint). */
static void
watch_drain (WatchSource *w, gboolean *event, gboolean *db_event)
{
  char buf[4096] __attribute__ ((aligned (__alignof__(struct inotify_event))));

  for (;;)
    {
      ssize_t n = read (w->inotify_fd, buf, sizeof buf);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      for (char *p = buf; p < buf + n;)
        {
          const struct inotify_event *ev = (const struct inotify_event *)p;

          if (ev->mask & IN_Q_OVERFLOW)
            *event = *db_event = TRUE;
          else if (ev->len > 0 && strcmp (ev->name, w->wal_name) == 0)
            *event = TRUE;
          else if (ev->len > 0 && strcmp (ev->name, w->db_name) == 0)
            *event = *db_event = TRUE;
          p += sizeof *ev + ev->len;
        }
    }
}

/* Whether another client committed a change of the bigfile that it was
 * not told of yet; on the way, moves the file's snapshot forward if the
 * bigfile did not change (which releases old WAL frames). */
static gboolean
watch_check (WatchSource *w, BigfileSqliteFile *self, gboolean db_event)
{
  g_autoptr (GError) error = NULL;
  sqlite3_stmt *stmt;
  gint64 data_version, version, floor, notified;
  guint64 size;
  gboolean others = FALSE;
  int rc;

  stmt = conn_stmt (self, &w->conn, ST_DATA_VERSION, &error);
  if (stmt == NULL)
    goto fail;
  rc = sq_step (stmt);
  data_version = rc == SQLITE_ROW ? sqlite3_column_int64 (stmt, 0) : 0;
  stmt_done (stmt);
  if (rc != SQLITE_ROW)
    {
      set_sqlite_error (&error, w->conn.db, rc, FILE_FMT, FILE_ARGS (self, "Watching"));
      goto fail;
    }
  /* Nothing committed since the last look, and no checkpoint to follow. */
  if (w->have_data_version && data_version == w->data_version && !db_event)
    return FALSE;

  if (!read_head (self, &w->conn, &version, &size, &floor, "Watching", &error))
    goto fail;
  w->have_data_version = TRUE;
  w->data_version = data_version;

  notified = w->notified_version;
  if (g_mutex_trylock (&self->read_lock))
    {
      notified = MAX (notified, self->reported_version);
      /* The bigfile is as the snapshot has it: a newer snapshot shows the
       * same, and lets SQLite reuse the WAL behind it. */
      if (self->snapshot_open && version == self->snap_version)
        snapshot_move_locked (self, MOVE_IF_UNCHANGED, NULL, NULL);
      g_mutex_unlock (&self->read_lock);
    }
  if (version <= notified)
    return FALSE;

  if (floor > notified)
    others = TRUE;
  else
    {
      stmt = conn_stmt (self, &w->conn, ST_OTHERS, &error);
      if (stmt == NULL)
        goto fail;
      rc = bind_ints (stmt, self->file_id, 2, notified, self->writer_id);
      if (rc == SQLITE_OK)
        rc = sq_step (stmt);
      stmt_done (stmt);
      if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        {
          set_sqlite_error (&error, w->conn.db, rc, FILE_FMT,
                            FILE_ARGS (self, "Reading the change log of"));
          goto fail;
        }
      others = rc == SQLITE_ROW;
    }
  w->notified_version = version;
  return others;

fail:
  /* Try again at the next event (or poll): a failing look must not stop
   * the watching. */
  g_debug ("%s", error->message);
  w->have_data_version = FALSE;
  return FALSE;
}

static gboolean
watch_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  WatchSource *w = (WatchSource *)source;
  gint64 ready = g_source_get_ready_time (source);
  gint64 now = g_source_get_time (source);
  gboolean due = ready >= 0 && now >= ready;
  gboolean event = FALSE, db_event = FALSE, others;
  BigfileSqliteFile *self;

  if (w->fd_tag != NULL && (g_source_query_unix_fd (source, w->fd_tag) & G_IO_IN))
    watch_drain (w, &event, &db_event);
  if (!event && !due)
    return G_SOURCE_CONTINUE;

  self = g_weak_ref_get (&w->file);
  if (self == NULL)
    return G_SOURCE_REMOVE;

  others = watch_check (w, self, db_event || (due && w->inotify_fd < 0));
  if (w->inotify_fd < 0)
    g_source_set_ready_time (source, now + POLL_INTERVAL_US);
  else if (event && !others)
    /* A writer that does not touch the WAL's time after its commit (another
     * program, or one that died at that moment) shows a moment after its
     * last write: look once more. */
    g_source_set_ready_time (source, now + RECHECK_DELAY_US);
  else if (due)
    g_source_set_ready_time (source, -1);

  if (others)
    bigfile_file_changed (BIGFILE_FILE (self));
  g_object_unref (self);
  return G_SOURCE_CONTINUE;
}

static void
watch_finalize (GSource *source)
{
  WatchSource *w = (WatchSource *)source;

  g_weak_ref_clear (&w->file);
  conn_close (&w->conn);
  if (w->inotify_fd >= 0)
    close (w->inotify_fd);
  g_free (w->db_name);
  g_free (w->wal_name);
}

static GSourceFuncs watch_funcs = {
  .dispatch = watch_dispatch,
  .finalize = watch_finalize,
};

static GSource *
watch_source_new (BigfileSqliteFile *self, GError **error)
{
  GSource *source = g_source_new (&watch_funcs, sizeof (WatchSource));
  WatchSource *w = (WatchSource *)source;
  g_autofree char *db_path = NULL;
  g_autofree char *dir = NULL;

  g_source_set_static_name (source, "BigfileSqliteFile watch");
  g_weak_ref_init (&w->file, self);
  w->inotify_fd = -1;
  w->conn.synchronous = -1;

  if (!conn_open (self, &w->conn, FALSE, TRUE, error))
    {
      g_source_unref (source);
      return NULL;
    }
  /* The names SQLite itself uses (symbolic links resolved). */
  db_path = g_strdup (sqlite3_db_filename (w->conn.db, "main"));
  w->db_name = g_path_get_basename (db_path);
  w->wal_name = g_strconcat (w->db_name, "-wal", NULL);
  dir = g_path_get_dirname (db_path);

  if (!force_polling)
    {
      w->inotify_fd = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);
      if (w->inotify_fd >= 0
          && inotify_add_watch (w->inotify_fd, dir,
                                IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO)
                 < 0)
        {
          g_debug ("Watching “%s” with inotify failed (%s): polling", dir, g_strerror (errno));
          close (w->inotify_fd);
          w->inotify_fd = -1;
        }
    }
  if (w->inotify_fd >= 0)
    w->fd_tag = g_source_add_unix_fd (source, w->inotify_fd, G_IO_IN);
  else
    g_source_set_ready_time (source, g_get_monotonic_time () + POLL_INTERVAL_US);

  /* The commits so far are in the snapshot. */
  w->notified_version = self->snap_version;
  g_source_attach (source, self->context);
  return source;
}

/* -- construction ---------------------------------------------------------------- */

static gint64
new_writer_id (void)
{
  guint64 id = 0;

  /* getrandom(), not GLib's generator: a forked child must not share its
   * parent's ids. */
  if (getrandom (&id, sizeof id, 0) != sizeof id)
    id = ((guint64)g_random_int () << 32) ^ g_random_int () ^ (guint64)getpid ();
  id &= (guint64)G_MAXINT64;
  return id != 0 ? (gint64)id : 1;
}

static gboolean
bigfile_sqlite_file_initable_init (GInitable *initable, GCancellable *cancellable, GError **error)
{
  BigfileSqliteFile *self = BIGFILE_SQLITE_FILE (initable);
  gboolean ok;

  if (self->initialized)
    return TRUE;

  if (self->path == NULL || self->path[0] == '\0')
    {
      g_set_error_literal (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                           "No path was given for the SQLite database");
      return FALSE;
    }
  if (self->name == NULL || self->name[0] == '\0' || strlen (self->name) > MAX_NAME_LENGTH
      || !g_utf8_validate (self->name, -1, NULL))
    {
      g_autofree char *display = g_filename_display_name (self->path);

      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "Opening a bigfile in “%s” failed: its name must be a non-empty UTF-8 string "
                   "of at most %d bytes",
                   display, MAX_NAME_LENGTH);
      return FALSE;
    }
  if (self->block_size != 0 && !page_size_is_valid (self->block_size))
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   FILE_FMT " failed: block size %" G_GSIZE_FORMAT
                            " is not 0 (the stored one) or a power of two from 4 KiB to 2 MiB",
                   FILE_ARGS (self, "Opening"), self->block_size);
      return FALSE;
    }
  if ((self->flags & BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY)
      && (self->flags & BIGFILE_SQLITE_FILE_FLAGS_CREATE))
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   FILE_FMT " failed: READ_ONLY and CREATE exclude each other",
                   FILE_ARGS (self, "Opening"));
      return FALSE;
    }

  self->writer_id = new_writer_id ();
  if (!open_database (self, error))
    return FALSE;

  g_mutex_lock (&self->read_lock);
  ok = snapshot_move_locked (self, MOVE_KEEP_REPORTS, NULL, error);
  self->reported_version = self->snap_version;
  if (ok)
    self->wal_path = g_strdup (
        sqlite3_filename_wal (sqlite3_db_filename (self->readers[self->current].db, "main")));
  g_mutex_unlock (&self->read_lock);
  if (!ok)
    return FALSE;

  self->context = g_main_context_ref_thread_default ();
  self->watch = watch_source_new (self, error);
  if (self->watch == NULL)
    return FALSE;

  self->initialized = TRUE;
  return TRUE;
}

static void
bigfile_sqlite_file_initable_iface_init (GInitableIface *iface)
{
  iface->init = bigfile_sqlite_file_initable_init;
}

/**
 * bigfile_sqlite_file_new:
 * @path: (type filename): the path of the SQLite database file
 * @name: the name of the bigfile in the database
 * @block_size: the size of a block in bytes: a power of two from 4 KiB to
 *   2 MiB, or 0 for the block size the bigfile was made with
 * @flags: how to open it
 * @error: return location for a #GError
 *
 * Opens the bigfile @name of the database at @path as a #BigfileFile. With
 * %BIGFILE_SQLITE_FILE_FLAGS_CREATE, a missing database is created, and a
 * missing bigfile too (empty, with blocks of @block_size, which must then
 * not be 0); with %BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY it is only read.
 * The database is put in WAL mode.
 *
 * The file emits #BigfileFile::changed on the thread-default main context
 * of the caller (see g_main_context_push_thread_default()) when other
 * clients commit changes of the bigfile: call this on the thread whose main
 * loop its handles use.
 *
 * Fails with %G_IO_ERROR_NOT_FOUND for a missing database or bigfile
 * (without %BIGFILE_SQLITE_FILE_FLAGS_CREATE), with
 * %BIGFILE_FILE_ERROR_INVALID_ARGUMENT for a bad name or block size, a
 * block size other than the stored one, or a database of another
 * application, with %BIGFILE_FILE_ERROR_CORRUPT for a file that is not an
 * SQLite database or a damaged one, with %BIGFILE_FILE_ERROR_BUSY when
 * another client holds the database locked for longer than
 * #BigfileSqliteFile:busy-timeout, and with a #G_IO_ERROR for system errors.
 *
 * Returns: (transfer full): a new #BigfileSqliteFile, or %NULL on error
 *
 * Since: 1.0
 */
BigfileSqliteFile *
bigfile_sqlite_file_new (const char *path, const char *name, gsize block_size,
                         BigfileSqliteFileFlags flags, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (BIGFILE_TYPE_SQLITE_FILE, NULL, error, "path", path, "name", name,
                         "block-size", (guint64)block_size, "flags", flags, NULL);
}

/**
 * bigfile_sqlite_file_get_path:
 * @file: a #BigfileSqliteFile
 *
 * Gets the path of the database @file was opened in.
 *
 * Returns: (transfer none) (type filename): the path
 *
 * Since: 1.0
 */
const char *
bigfile_sqlite_file_get_path (BigfileSqliteFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_SQLITE_FILE (file), NULL);

  return file->path;
}

/**
 * bigfile_sqlite_file_get_name:
 * @file: a #BigfileSqliteFile
 *
 * Gets the name of the bigfile in its database.
 *
 * Returns: (transfer none): the name
 *
 * Since: 1.0
 */
const char *
bigfile_sqlite_file_get_name (BigfileSqliteFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_SQLITE_FILE (file), NULL);

  return file->name;
}

/**
 * bigfile_sqlite_file_get_block_size:
 * @file: a #BigfileSqliteFile
 *
 * Gets the block size of the bigfile, as stored in the database (also
 * when it was opened with a block size of 0).
 *
 * Returns: the block size in bytes
 *
 * Since: 1.0
 */
gsize
bigfile_sqlite_file_get_block_size (BigfileSqliteFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_SQLITE_FILE (file), 0);

  return file->block_size;
}

/**
 * bigfile_sqlite_file_get_flags:
 * @file: a #BigfileSqliteFile
 *
 * Gets the flags @file was opened with.
 *
 * Returns: the flags
 *
 * Since: 1.0
 */
BigfileSqliteFileFlags
bigfile_sqlite_file_get_flags (BigfileSqliteFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_SQLITE_FILE (file), BIGFILE_SQLITE_FILE_FLAGS_NONE);

  return file->flags;
}

/**
 * bigfile_sqlite_file_get_durable:
 * @file: a #BigfileSqliteFile
 *
 * Gets #BigfileSqliteFile:durable.
 *
 * Returns: %TRUE if every commit is flushed to the disk before it returns
 *
 * Since: 1.0
 */
gboolean
bigfile_sqlite_file_get_durable (BigfileSqliteFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_SQLITE_FILE (file), FALSE);

  return g_atomic_int_get (&file->durable);
}

/**
 * bigfile_sqlite_file_set_durable:
 * @file: a #BigfileSqliteFile
 * @durable: whether every commit is to be durable
 *
 * Sets #BigfileSqliteFile:durable, from the next transaction on. May be
 * called from any thread.
 *
 * Since: 1.0
 */
void
bigfile_sqlite_file_set_durable (BigfileSqliteFile *file, gboolean durable)
{
  g_return_if_fail (BIGFILE_IS_SQLITE_FILE (file));

  durable = !!durable;
  if (g_atomic_int_exchange (&file->durable, durable) != durable)
    g_object_notify_by_pspec (G_OBJECT (file), props[PROP_DURABLE]);
}

/* A connection for the functions that take a path, not a file. */
static sqlite3 *
open_path (const char *path, gboolean read_only, GError **error)
{
  g_autofree char *display = g_filename_display_name (path);
  sqlite3 *db = NULL;
  gint64 app_id = 0;
  sqlite3_stmt *stmt = NULL;
  int rc;

  rc = sq_open (
      path, (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX, &db);
  if (rc == SQLITE_OK)
    {
      sqlite3_extended_result_codes (db, 1);
      sqlite3_busy_timeout (db, DEFAULT_BUSY_TIMEOUT_MS);
      rc = sq_prepare (db, "PRAGMA application_id", &stmt);
    }
  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  if (rc == SQLITE_ROW)
    app_id = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  if (rc != SQLITE_ROW)
    {
      set_sqlite_error (error, db, rc, "Opening the database “%s”", display);
      sqlite3_close_v2 (db);
      return NULL;
    }
  if (app_id != APPLICATION_ID)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a bigfile database", display);
      sqlite3_close_v2 (db);
      return NULL;
    }
  return db;
}

/**
 * bigfile_sqlite_file_list:
 * @path: (type filename): the path of an SQLite database file
 * @error: return location for a #GError
 *
 * Lists the bigfiles of the database at @path, in the order of their
 * names.
 *
 * Returns: (transfer full) (array zero-terminated=1): the names, or %NULL
 *   on error
 *
 * Since: 1.0
 */
char **
bigfile_sqlite_file_list (const char *path, GError **error)
{
  g_autofree char *display = NULL;
  GPtrArray *names;
  sqlite3_stmt *stmt = NULL;
  sqlite3 *db;
  int rc;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  db = open_path (path, TRUE, error);
  if (db == NULL)
    return NULL;
  names = g_ptr_array_new_with_free_func (g_free);
  rc = sq_prepare (db, "SELECT name FROM bigfile_files ORDER BY name", &stmt);
  while (rc == SQLITE_OK || rc == SQLITE_ROW)
    {
      rc = sq_step (stmt);
      if (rc == SQLITE_ROW)
        g_ptr_array_add (names, g_strdup ((const char *)sqlite3_column_text (stmt, 0)));
    }
  sqlite3_finalize (stmt);
  if (rc != SQLITE_DONE)
    {
      display = g_filename_display_name (path);
      set_sqlite_error (error, db, rc, "Listing the bigfiles of “%s”", display);
      sqlite3_close_v2 (db);
      g_ptr_array_unref (names);
      return NULL;
    }
  sqlite3_close_v2 (db);
  g_ptr_array_add (names, NULL);
  return (char **)g_ptr_array_free (names, FALSE);
}

/**
 * bigfile_sqlite_file_delete:
 * @path: (type filename): the path of an SQLite database file
 * @name: the name of a bigfile in it
 * @error: return location for a #GError
 *
 * Deletes the bigfile @name from the database at @path: its blocks, its
 * size and its change log, in one transaction. File objects that have it
 * open keep their snapshot until they refresh, which then fails with
 * %G_IO_ERROR_NOT_FOUND, as do their transactions.
 *
 * Fails with %G_IO_ERROR_NOT_FOUND if the database has no bigfile @name.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_sqlite_file_delete (const char *path, const char *name, GError **error)
{
  static const char *const sql[] = {
    "DELETE FROM bigfile_blocks WHERE file = ?1",
    "DELETE FROM bigfile_log WHERE file = ?1",
    "DELETE FROM bigfile_files WHERE id = ?1",
  };
  g_autofree char *display = NULL;
  sqlite3_stmt *stmt = NULL;
  gint64 id = 0;
  sqlite3 *db;
  int rc;

  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  display = g_filename_display_name (path);
  db = open_path (path, FALSE, error);
  if (db == NULL)
    return FALSE;

  rc = sq_exec (db, "BEGIN IMMEDIATE");
  if (rc == SQLITE_OK)
    rc = sq_prepare (db, "SELECT id FROM bigfile_files WHERE name = ?1", &stmt);
  if (rc == SQLITE_OK)
    rc = sq_bind_text (stmt, 1, name);
  if (rc == SQLITE_OK)
    rc = sq_step (stmt);
  if (rc == SQLITE_ROW)
    id = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  if (rc == SQLITE_DONE)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   "Deleting bigfile “%s” from “%s” failed: the database has no bigfile of that "
                   "name",
                   name, display);
      sqlite3_close_v2 (db); /* rolls back */
      return FALSE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (sql) && rc == SQLITE_ROW; i++)
    {
      stmt = NULL;
      rc = sq_prepare (db, sql[i], &stmt);
      if (rc == SQLITE_OK)
        rc = sq_bind_int64 (stmt, 1, id);
      if (rc == SQLITE_OK)
        rc = sq_step (stmt);
      sqlite3_finalize (stmt);
      if (rc == SQLITE_DONE)
        rc = SQLITE_ROW;
    }
  if (rc == SQLITE_ROW)
    rc = sq_exec (db, "COMMIT");
  if (rc != SQLITE_OK)
    {
      set_sqlite_error (error, db, rc, "Deleting bigfile “%s” from “%s”", name, display);
      sqlite3_close_v2 (db); /* rolls back */
      return FALSE;
    }
  sqlite3_close_v2 (db);
  return TRUE;
}

/* -- test hooks (bigfile-sqlite-file-private.h) ------------------------------- */

void
_bigfile_sqlite_file_set_log_keep (BigfileSqliteFile *file, guint n_commits)
{
  g_return_if_fail (BIGFILE_IS_SQLITE_FILE (file));

  g_atomic_int_set (&file->log_keep, (gint)MIN (n_commits, (guint)G_MAXINT));
}

void
_bigfile_sqlite_file_set_fault (BigfileSqliteFile *file, BfSqliteFault fault, int after)
{
  g_return_if_fail (BIGFILE_IS_SQLITE_FILE (file));
  g_return_if_fail (fault < BF_SQLITE_N_FAULTS);

  g_atomic_int_set (&file->op_faults[fault], MAX (after, -1));
}

void
_bigfile_sqlite_file_set_force_polling (gboolean force)
{
  force_polling = force;
}

gint64
_bigfile_sqlite_file_get_snapshot_version (BigfileSqliteFile *file)
{
  gint64 version;

  g_return_val_if_fail (BIGFILE_IS_SQLITE_FILE (file), -1);

  g_mutex_lock (&file->read_lock);
  version = file->snap_version;
  g_mutex_unlock (&file->read_lock);
  return version;
}
