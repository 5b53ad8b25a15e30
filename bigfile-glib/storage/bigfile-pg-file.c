/* bigfile-glib - a BigfileFile in a PostgreSQL database
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Only the public BigfileFile interface is used here (no engine, no
 * bigfile-private.h): a storage implementation is one more file beside the
 * others in storage/.
 */
#include "config.h"

#include "bigfile-error.h"
#include "bigfile-file.h"
#include "bigfile-enum-types.h"
#include "bigfile-pg-file.h"
#include "bigfile-pg-file-private.h"

#include <string.h>

#include <dlfcn.h>
#include <sys/socket.h>
#include <libpq-fe.h>

/**
 * SECTION:bigfile-pg-file
 * @title: BigfilePgFile
 * @short_description: A #BigfileFile in a PostgreSQL database, shared by many clients and hosts
 * @include: bigfile-glib/bigfile.h
 * @see_also: #BigfileFile, #BigfileHandle, #BigfileLocalFile
 *
 * #BigfilePgFile keeps the blocks of a file in tables of a PostgreSQL
 * database (version 12 or later), through libpq. Many processes on many
 * hosts may open the same file: each #BigfilePgFile is one client, which
 * reads a consistent snapshot of the file, commits its writeouts
 * atomically, and learns of the other clients' commits as they happen
 * (#BigfileFile::changed, then `page-invalidated` on its handle).
 *
 * |[<!-- language="C" -->
 * g_autoptr(GError) error = NULL;
 * g_autoptr(BigfilePgFile) file =
 *     bigfile_pg_file_new ("host=db.example.com dbname=science user=alice",
 *                          "matrix", 2 * 1024 * 1024,
 *                          BIGFILE_PG_FILE_FLAGS_CREATE, &error);
 * g_autoptr(BigfileRam) ram = bigfile_ram_new (1024 * 1024 * 1024);
 * g_autoptr(BigfileHandle) handle = NULL;
 *
 * if (file == NULL)
 *   g_error ("%s", error->message);
 * handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
 * // map, change, then save atomically and durably:
 * // bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error);
 * ]|
 *
 * The connection string is libpq's (`host=... dbname=...` or a
 * `postgresql://` URI; empty for libpq's defaults and `PG*` environment
 * variables): see the libpq documentation of connection strings. Without a
 * `connect_timeout` in it, connections give up after 10 seconds.
 *
 * ## Schema
 *
 * The file lives in three tables, which the first client creates (in the
 * first schema of the connection's `search_path`) and records with a
 * schema version in a fourth, `bigfile_schema`; clients that start at once
 * take turns with an advisory lock. One database holds any number of files,
 * each named by a string:
 *
 * - `bigfile_files`: one row per file: its `id`, `name`, `block_size`,
 *   `size` in bytes, `version` (the count of its commits) and `log_start`
 *   (see below).
 * - `bigfile_blocks`: one row per block that is not all zeros, keyed by
 *   (`file`, `block`), with the block's bytes up to its last byte that is
 *   not zero in `data` (stored out of line, uncompressed). A block without
 *   a row reads as zeros; storing a block of zeros deletes its row, so a
 *   sparse file costs only its data.
 * - `bigfile_changes`: the change log: one row (`file`, `version`,
 *   `block`, `writer`) per block that each commit changed, `writer` being
 *   the random id of the client that committed. The log keeps the last
 *   1000 versions of each file; `log_start` is the version before the
 *   oldest it still has.
 *
 * ## Snapshots and isolation
 *
 * Each client has three connections to the server. Loads and
 * bigfile_file_get_size() run on the first, inside one `REPEATABLE READ`
 * `READ ONLY` transaction: every load sees the database as it was when that
 * transaction took its snapshot, whatever other clients commit meanwhile,
 * so the pages of a handle are a consistent version of the file.
 * bigfile_file_refresh() ends that transaction and starts a new one, and
 * reports the blocks that other clients' commits changed in between, from
 * the change log (not this client's own commits). A #BigfileHandle
 * refreshes when the file emits #BigfileFile::changed and at the start of
 * each writeout.
 *
 * Writes run on the second connection. bigfile_file_begin_transaction()
 * opens a `READ COMMITTED` transaction and locks the file's row
 * (`SELECT ... FOR NO KEY UPDATE`): writers of one file are serialized, so
 * a writeout is never interleaved with another client's, and a refresh
 * inside it sees every commit before it. Stores and size changes go to the
 * tables inside that transaction, invisible to every other connection
 * (loads of this client too, which keep reading the snapshot) until
 * bigfile_file_commit_transaction() logs the changed blocks, bumps the
 * version, notifies the other clients and commits, all in one database
 * transaction: the storage holds all of a writeout or none of it, after a
 * crash of the client, of the server or of the machine. After a commit the
 * snapshot moves to include it (loads read what was stored), and the
 * commits of others that came before it are still reported by the next
 * refresh.
 *
 * The isolation level, exactly: a writeout through a handle is
 * serializable with respect to the other writeouts of the same file (they
 * are run one at a time, and each sees all earlier ones); a handle's reads
 * are snapshot isolation (PostgreSQL's `REPEATABLE READ`), moved forward at
 * each refresh, and a handle learns of every block another client changed
 * since its snapshot before it can overwrite it: a writeout of pages whose
 * blocks changed since they were read fails with
 * %BIGFILE_HANDLE_ERROR_CONFLICT, unless told to overwrite. Nothing is
 * serialized across different files.
 *
 * A long snapshot has a cost: while a transaction stays open, the server's
 * `VACUUM` cannot remove the old versions of rows that any transaction
 * committed after it started (in every table of the cluster, not only
 * these), so tables that change a lot grow. Every refresh ends the
 * transaction and takes a new snapshot, and handles refresh at every
 * commit of another client of the file (automatically, unless
 * #BigfileHandle:auto-refresh was turned off): a snapshot lives only as
 * long as the file stays unchanged, or the program stays away from its
 * main loop. A program that keeps a handle idle for hours on a busy server
 * should refresh from time to time. A server with
 * `idle_in_transaction_session_timeout` ends idle snapshots by itself: the
 * file reconnects, as below.
 *
 * ## Notifications
 *
 * A commit sends `NOTIFY` on the channel `bigfile_ID` (ID: the file's id)
 * with the file's id, its new version and the writer's id as the payload.
 * The third connection of each client listens on it: its socket is watched
 * by a #GSource on the thread-default main context of the thread that made
 * the file (no polling: the thread sleeps until the server sends
 * something), and a notification of another client's commit emits
 * #BigfileFile::changed there. The change log, not the notification, says
 * which blocks changed, so a lost or merged notification loses nothing.
 *
 * ## Batched loads
 *
 * A round trip to the server costs far more than a page fault, so a load
 * that follows the load of the block before it (sequential reading)
 * fetches the blocks after it too, in the same query: 2 blocks, then 4, 8
 * and so on up to #BigfilePgFile:read-ahead bytes. The blocks fetched ahead
 * are kept for the loads that follow, for the current snapshot only
 * (refresh and commit drop them), and only one batch is kept at a time.
 * Loads of blocks past the snapshot's size cost no query at all.
 *
 * ## Connection loss
 *
 * When a connection is lost (the server restarted, the network failed, an
 * administrator ended the session) the call that met it fails with
 * %BIGFILE_FILE_ERROR_DISCONNECTED, and the next call connects again. A
 * transaction is lost with its connection: the commit fails, the storage
 * holds nothing of it, the handle's pages stay dirty, and writing out
 * again works once the server is back. (A connection lost during the
 * commit itself leaves it unknown whether the server committed: the handle
 * keeps its pages dirty, and the next writeout stores them again.) The
 * snapshot is lost with the read connection: loads after the reconnection
 * read the newest state, and the file emits #BigfileFile::changed so that
 * the handle's refresh drops what changed since the old snapshot. The
 * listening connection reconnects by itself, on the main context, waiting
 * 50 ms, then twice as long after each failure, up to 5 s; once it is back
 * it emits #BigfileFile::changed, since notifications may have been missed,
 * and the refresh reports from the change log everything committed since
 * the snapshot (or, if the log no longer reaches back that far, "any
 * block": %G_MAXUINT64).
 *
 * ## Durability
 *
 * With #BigfilePgFile:durable (the default) a commit returns once the
 * server has flushed it to its write-ahead log (`synchronous_commit = on`,
 * and to the standbys if the server is set up to wait for them). Without
 * it, commits use `synchronous_commit = off`: they are still atomic, but a
 * crash of the server may lose the last ones (up to three times the
 * server's `wal_writer_delay`); %BIGFILE_COMMIT_FLAGS_DURABLE
 * (%BIGFILE_WRITEOUT_DURABLE) makes one commit durable anyway.
 *
 * ## Big files, many clients, and the limits
 *
 * A 100 GiB file with 2 MiB blocks is 51200 rows of `bigfile_blocks`, at
 * most (a block of zeros has none), each read and written whole, out of
 * line in TOAST chunks of about 2 KB; the index on (file, block) finds a
 * block, or a batch of consecutive ones, in a few page reads. A client
 * reads and writes only the blocks its handle touches, so RAM and traffic
 * follow the working set, not the file. A writeout sends its dirty blocks
 * one query each (a writeout of many small blocks costs a round trip per
 * block), and logs one row per changed block; a commit that changes more
 * than 16384 blocks logs one row that stands for every block instead, and
 * the other clients' refreshes then report %G_MAXUINT64 (drop all clean
 * pages).
 *
 * Each client keeps three connections (two for a read-only file), so a
 * server's `max_connections` bounds the clients of all files together
 * (a connection pooler in session mode works; transaction pooling does
 * not, as snapshots and `LISTEN` need a session). Readers never wait for
 * writers nor for each other; writers of one file wait for each other,
 * up to #BigfilePgFile:lock-timeout, then fail with
 * %BIGFILE_FILE_ERROR_BUSY. Loads of one client run one at a time (one
 * read connection), whatever the number of faulting threads. Blocks are
 * at most 2 MiB (a bigfile limit); files at most 2^63 - 1 bytes.
 *
 * ## Pointing it at a server
 *
 * Any PostgreSQL 12 or later that the user can create tables in (or where
 * the tables already exist, with `SELECT`, `INSERT`, `UPDATE` and `DELETE`
 * on them) will do. The tests of bigfile-glib run against the server named
 * by the environment variable `BIGFILE_TEST_PG_CONNINFO`, or start a
 * throwaway one of their own (`tools/pg-test-cluster.sh`).
 *
 * It implements #GInitable: bindings create it with bigfile_pg_file_new()
 * or, through its properties, with g_initable_new(). It is in the library
 * when bigfile-glib was built with libpq's header (the `postgresql`
 * option): see %BIGFILE_HAS_POSTGRESQL. The library loads libpq itself,
 * when the first file is opened; without libpq on the machine, opening
 * fails with %BIGFILE_FILE_ERROR_NOT_SUPPORTED.
 */

/**
 * BigfilePgFile:
 *
 * A #BigfileFile in a PostgreSQL database: one client's snapshot of a
 * named file that many clients may share. See the description above.
 *
 * Since: 1.0
 */

#define MIN_BLOCK_SIZE ((gsize)4 * 1024)
#define MAX_BLOCK_SIZE ((gsize)2 * 1024 * 1024)
#define DEFAULT_LOCK_TIMEOUT_MS 30000
#define DEFAULT_READ_AHEAD ((guint64)8 * 1024 * 1024)
#define MAX_NAME_LENGTH 1024

/* The schema this code writes; a database with a newer one is refused. */
#define SCHEMA_VERSION 1
/* Key of the advisory lock that serializes schema creation. */
#define SCHEMA_LOCK_KEY "7303330100"
/* Versions of each file whose changes the log keeps. */
#define LOG_KEEP_VERSIONS 1000
/* A commit that changes more blocks logs one "any block" row instead. */
#define LOG_MAX_BLOCKS 16384
/* The block number of the "any block" row of the log. */
#define LOG_ANY_BLOCK (-1)
/* Backoff of the listening connection's reconnections, ms. */
#define LISTEN_BACKOFF_MIN_MS 50
#define LISTEN_BACKOFF_MAX_MS 5000

static gboolean
block_size_is_valid (gsize size)
{
  return size >= MIN_BLOCK_SIZE && size <= MAX_BLOCK_SIZE && (size & (size - 1)) == 0;
}

/* -- the object -------------------------------------------------------------- */

typedef struct _ListenSource ListenSource;

/* A batch of consecutive blocks fetched ahead by one load query: rows of
 * @res, for the loads that follow. Valid for the snapshot it was read in
 * only. */
typedef struct
{
  PGresult *res; /* NULL: no batch */
  guint64 first; /* blocks first .. first + n - 1 */
  guint n;
  int *rows; /* row of @res per block, -1: no row (zeros), -2: used */
} Batch;

struct _BigfilePgFile
{
  GObject parent_instance;

  /* Construct-only properties, then set once by init (before any other
   * thread can see the object), never changed: no lock needed. */
  char *conninfo;
  char *name;
  gsize block_size; /* 0 until init: the stored one */
  BigfilePgFileFlags flags;
  guint lock_timeout_ms;
  guint64 read_ahead;
  gboolean initialized;
  GMainContext *context; /* the owner context: ::changed is emitted there */
  gint64 id;             /* the row of bigfile_files */
  char *id_text;         /* the same, for query parameters */
  char *channel;         /* NOTIFY channel */
  char writer[40];       /* this client's id in the change log (a UUID) */

  gint durable; /* (atomic) boolean */

  /* Lock order: write_lock, then read_lock. */

  /* The read side: protected by read_lock. */
  GMutex read_lock;
  PGconn *read;           /* NULL while disconnected */
  gboolean have_snapshot; /* @read is inside its REPEATABLE READ transaction */
  gboolean had_snapshot;  /* a snapshot existed before: a new one is a move */
  guint64 snap_version, snap_size, snap_log_start;
  guint64 report_from; /* the changes of versions up to this one were reported */
  gboolean have_last;  /* @last_loaded is set: sequential detection */
  guint64 last_loaded;
  guint ra_blocks; /* the current read-ahead window, blocks */
  Batch batch;
  guint64 n_load_queries;

  /* The write side: protected by write_lock. */
  GMutex write_lock;
  PGconn *write;       /* NULL while disconnected (always for read-only files) */
  gboolean in_txn;     /* begin_transaction succeeded, no commit or abort yet */
  gboolean txn_failed; /* a statement of it failed: it can only be aborted */
  guint64 txn_version; /* the version locked at begin */
  guint64 txn_size;    /* the size as the transaction left it */
  GArray *txn_blocks;  /* guint64: the blocks it changed (may repeat) */

  /* Backend pids, for the tests (atomic; 0 while disconnected). */
  gint read_pid, write_pid;

  /* The listening connection and its GSource on @context: see
   * ListenSource. Set by init, never changed. */
  ListenSource *listen;
};

enum
{
  PROP_0,
  PROP_CONNINFO,
  PROP_NAME,
  PROP_BLOCK_SIZE,
  PROP_FLAGS,
  PROP_DURABLE,
  PROP_LOCK_TIMEOUT,
  PROP_READ_AHEAD,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

static void bigfile_pg_file_file_iface_init (BigfileFileInterface *iface);
static void bigfile_pg_file_initable_iface_init (GInitableIface *iface);

G_DEFINE_TYPE_WITH_CODE (BigfilePgFile, bigfile_pg_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE, bigfile_pg_file_file_iface_init)
                             G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                    bigfile_pg_file_initable_iface_init))

/* -- libpq, loaded when the first file is opened ------------------------------
 *
 * libpq is not linked: it is loaded with dlopen() by the first
 * bigfile_pg_file_new(). A program that never opens a PostgreSQL file does
 * not load it, nor what it pulls in (OpenSSL, GSSAPI, LDAP, GnuTLS,
 * p11-kit): they cost startup time and memory, and p11-kit's destructor
 * hangs at exit in programs built with AddressSanitizer whose runtime is
 * not loaded first (the GObject-Introspection dumper of the ASan build).
 * libpq's ABI is stable under its soname, libpq.so.5 (PostgreSQL 8.0 to 17
 * and on); the declarations come from its header. */

#define PQ_FUNCTIONS(X)                                                                            \
  X (PQbackendPID)                                                                                 \
  X (PQclear)                                                                                      \
  X (PQcmdStatus)                                                                                  \
  X (PQconnectPoll)                                                                                \
  X (PQconnectStartParams)                                                                         \
  X (PQconnectdbParams)                                                                            \
  X (PQconsumeInput)                                                                               \
  X (PQerrorMessage)                                                                               \
  X (PQexec)                                                                                       \
  X (PQexecParams)                                                                                 \
  X (PQfinish)                                                                                     \
  X (PQfreemem)                                                                                    \
  X (PQgetResult)                                                                                  \
  X (PQgetlength)                                                                                  \
  X (PQgetvalue)                                                                                   \
  X (PQisBusy)                                                                                     \
  X (PQnotifies)                                                                                   \
  X (PQntuples)                                                                                    \
  X (PQresultErrorField)                                                                           \
  X (PQresultStatus)                                                                               \
  X (PQsendQuery)                                                                                  \
  X (PQsetNoticeProcessor)                                                                         \
  X (PQsocket)                                                                                     \
  X (PQstatus)

/* Set once by pq_load(), then read-only. */
static struct
{
#define PQ_DECLARE(name) __typeof__ (name) *name;
  PQ_FUNCTIONS (PQ_DECLARE)
#undef PQ_DECLARE
} pq;

#define LIBPQ_SONAME "libpq.so.5"

static gboolean
pq_load (GError **error)
{
  static gsize loaded;
  static char *failure; /* set once, with loaded */

  if (g_once_init_enter (&loaded))
    {
      void *lib = dlopen (LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL);

      if (lib == NULL)
        failure = g_strdup (dlerror ());
#define PQ_RESOLVE(name)                                                                           \
  if (failure == NULL && (pq.name = dlsym (lib, #name)) == NULL)                                   \
    failure = g_strdup_printf ("%s has no %s", LIBPQ_SONAME, #name);
      PQ_FUNCTIONS (PQ_RESOLVE)
#undef PQ_RESOLVE
      /* The library stays loaded for the life of the process. */
      g_once_init_leave (&loaded, 1);
    }
  if (failure == NULL)
    return TRUE;
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
               "Could not load libpq, the PostgreSQL client library (Debian: libpq5): %s", failure);
  return FALSE;
}

/* -- fault injection ------------------------------------------------------------
 *
 * Every libpq call that can fail goes through one of the pgw_*() wrappers
 * below, which count the calls and make the armed one fail
 * (_bigfile_pg_file_fail_after()): the tests make each of them fail in
 * turn. A failure is made real where it can be: a statement that the
 * server fails, or a socket that is shut down under libpq. */

static GMutex inject_lock;
static gint inject_countdown = -1; /* protected by inject_lock; < 0: disarmed */
static BfPgFailMode inject_mode;   /* protected by inject_lock */
static gint inject_armed;          /* (atomic) inject_countdown >= 0: the fast path */
static gint inject_happened;       /* (atomic) */
static guint64 n_calls;            /* (atomic) */

typedef enum
{
  INJECT_NONE,
  INJECT_ERROR,
  INJECT_DISCONNECT,
} Inject;

static Inject
inject_take (void)
{
  Inject what = INJECT_NONE;

  g_atomic_pointer_add (&n_calls, 1);
  if (!g_atomic_int_get (&inject_armed))
    return INJECT_NONE;

  g_mutex_lock (&inject_lock);
  if (inject_countdown == 0)
    {
      what = inject_mode == BF_PG_FAIL_ERROR ? INJECT_ERROR : INJECT_DISCONNECT;
      inject_countdown = -1;
      g_atomic_int_set (&inject_armed, 0);
      g_atomic_int_set (&inject_happened, 1);
    }
  else if (inject_countdown > 0)
    inject_countdown--;
  g_mutex_unlock (&inject_lock);

  return what;
}

void
_bigfile_pg_file_fail_after (gint n, BfPgFailMode mode)
{
  g_mutex_lock (&inject_lock);
  inject_countdown = n;
  inject_mode = mode;
  if (n >= 0)
    g_atomic_int_set (&inject_happened, 0);
  g_atomic_int_set (&inject_armed, n >= 0);
  g_mutex_unlock (&inject_lock);
}

gboolean
_bigfile_pg_file_failure_happened (void)
{
  return g_atomic_int_get (&inject_happened);
}

guint64
_bigfile_pg_file_get_n_calls (void)
{
  return (guint64)g_atomic_pointer_get (&n_calls);
}

static void
shut_down_socket (PGconn *conn)
{
  int fd = pq.PQsocket (conn);

  if (fd >= 0)
    shutdown (fd, SHUT_RDWR);
}

#define INJECTED_FAILURE_SQL                                                                       \
  "DO $$BEGIN RAISE EXCEPTION 'bigfile-glib test: injected failure'; END$$"

static PGresult *
pgw_exec (PGconn *conn, const char *sql, int n_params, const char *const *values,
          const int *lengths, const int *formats, int result_format)
{
  switch (inject_take ())
    {
      case INJECT_ERROR:
        return pq.PQexec (conn, INJECTED_FAILURE_SQL);
      case INJECT_DISCONNECT:
        shut_down_socket (conn);
        break;
      case INJECT_NONE:
      default:
        break;
    }
  if (n_params < 0)
    return pq.PQexec (conn, sql);
  return pq.PQexecParams (conn, sql, n_params, NULL, values, lengths, formats, result_format);
}

/* Connection keywords: the defaults come before "dbname", whose value (the
 * caller's connection string, expanded) overrides them. */
static const char *const connect_keywords[]
    = { "connect_timeout", "fallback_application_name", "dbname", NULL };

/* An injected failure to connect is a real one: to a socket directory
 * that does not exist (the keywords after "dbname" override it). */
static const char *const inject_connect_keywords[]
    = { "connect_timeout", "fallback_application_name", "dbname", "host", NULL };
#define INJECT_CONNECT_HOST "/nonexistent/bigfile-glib-test-injected-failure"

static PGconn *
pgw_connect (const char *conninfo)
{
  const char *values[] = { "10", "bigfile-glib", conninfo, INJECT_CONNECT_HOST, NULL };

  if (inject_take () != INJECT_NONE)
    return pq.PQconnectdbParams (inject_connect_keywords, values, 1);
  return pq.PQconnectdbParams (connect_keywords, values, 1);
}

static PGconn *
pgw_connect_start (const char *conninfo)
{
  const char *values[] = { "10", "bigfile-glib", conninfo, INJECT_CONNECT_HOST, NULL };

  if (inject_take () != INJECT_NONE)
    return pq.PQconnectStartParams (inject_connect_keywords, values, 1);
  return pq.PQconnectStartParams (connect_keywords, values, 1);
}

static PostgresPollingStatusType
pgw_connect_poll (PGconn *conn)
{
  if (inject_take () != INJECT_NONE)
    return PGRES_POLLING_FAILED;
  return pq.PQconnectPoll (conn);
}

static int
pgw_send_query (PGconn *conn, const char *sql)
{
  switch (inject_take ())
    {
      case INJECT_ERROR:
        return pq.PQsendQuery (conn, INJECTED_FAILURE_SQL);
      case INJECT_DISCONNECT:
        shut_down_socket (conn);
        break;
      case INJECT_NONE:
      default:
        break;
    }
  return pq.PQsendQuery (conn, sql);
}

static int
pgw_consume_input (PGconn *conn)
{
  if (inject_take () != INJECT_NONE)
    shut_down_socket (conn);
  return pq.PQconsumeInput (conn);
}

/* -- errors ---------------------------------------------------------------------- */

/* The message of a failed call: the server's primary message, or libpq's,
 * without the trailing newline. */
static char *
pg_error_detail (PGconn *conn, const PGresult *res)
{
  const char *msg = NULL;
  char *detail;

  if (res != NULL)
    msg = pq.PQresultErrorField (res, PG_DIAG_MESSAGE_PRIMARY);
  if (msg == NULL || msg[0] == '\0')
    msg = conn != NULL ? pq.PQerrorMessage (conn) : NULL;
  if (msg == NULL || msg[0] == '\0')
    msg = "unknown error (out of memory?)";
  /* One line: libpq's messages run over several, indented with tabs. */
  detail = g_strdup (msg);
  g_strdelimit (detail, "\n\t", ' ');
  g_strstrip (detail);
  for (char *p = detail; (p = strstr (p, "  ")) != NULL;)
    memmove (p, p + 1, strlen (p));
  return detail;
}

/* The error code for a failed call on @conn with result @res: a lost
 * connection, a lock that could not be had in time, a read-only server. */
static BigfileFileError
pg_error_code (PGconn *conn, const PGresult *res)
{
  const char *state = res != NULL ? pq.PQresultErrorField (res, PG_DIAG_SQLSTATE) : NULL;

  /* Errors of the server always come with an SQLSTATE; one without is
   * libpq's own, about the connection. PQstatus() alone cannot tell: after
   * a write to a socket that the server closed, libpq 15 returns "server
   * closed the connection unexpectedly" and still says CONNECTION_OK. */
  if (conn == NULL || pq.PQstatus (conn) == CONNECTION_BAD || state == NULL)
    return BIGFILE_FILE_ERROR_DISCONNECTED;
  /* lock_not_available (lock_timeout), deadlock_detected,
   * serialization_failure, query_canceled (statement_timeout) */
  if (g_str_equal (state, "55P03") || g_str_equal (state, "40P01") || g_str_equal (state, "40001")
      || g_str_equal (state, "57014"))
    return BIGFILE_FILE_ERROR_BUSY;
  /* Class 08, connection exceptions; 57P01-57P03: the server shuts down,
   * crashed, or cannot take connections now. */
  if (g_str_has_prefix (state, "08") || g_str_has_prefix (state, "57P"))
    return BIGFILE_FILE_ERROR_DISCONNECTED;
  /* read_only_sql_transaction: a standby, or default_transaction_read_only */
  if (g_str_equal (state, "25006"))
    return BIGFILE_FILE_ERROR_READ_ONLY;
  return BIGFILE_FILE_ERROR_FAILED;
}

static void
set_pg_error (GError **error, PGconn *conn, const PGresult *res, const char *what)
{
  BigfileFileError code = pg_error_code (conn, res);
  g_autofree char *detail = pg_error_detail (conn, res);

  if (code == BIGFILE_FILE_ERROR_DISCONNECTED)
    g_set_error (error, BIGFILE_FILE_ERROR, code,
                 "%s: the connection to the database server was lost (%s); the next call "
                 "connects again",
                 what, detail);
  else if (code == BIGFILE_FILE_ERROR_BUSY)
    g_set_error (error, BIGFILE_FILE_ERROR, code,
                 "%s: another client keeps the file locked (%s); try again later", what, detail);
  else
    g_set_error (error, BIGFILE_FILE_ERROR, code, "%s: %s", what, detail);
}

/* -- connections ------------------------------------------------------------------ */

/* What the server says outside of results (NOTICEs, the FATAL message of a
 * session it ends) goes to the debug log, not to stderr as libpq would:
 * the error of the call that meets it says what matters. */
static void
notice_to_debug (void *data, const char *message)
{
  g_debug ("BigfilePgFile: the server says: %s", message);
}

static void
setup_connection (PGconn *conn)
{
  pq.PQsetNoticeProcessor (conn, notice_to_debug, NULL);
}

static PGconn *
connect_to_server (BigfilePgFile *self, const char *purpose, GError **error)
{
  PGconn *conn = pgw_connect (self->conninfo);

  if (conn == NULL || pq.PQstatus (conn) != CONNECTION_OK)
    {
      g_autofree char *detail
          = conn != NULL ? pg_error_detail (conn, NULL) : g_strdup ("out of memory");

      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_DISCONNECTED,
                   "Could not connect to the database server for “%s” (%s): %s", self->name,
                   purpose, detail);
      if (conn != NULL)
        pq.PQfinish (conn);
      return NULL;
    }
  setup_connection (conn);
  return conn;
}

/* Runs @sql on *@connp (with @n_params parameters, or as a simple query
 * of possibly several statements if @n_params is -1) and returns its
 * result if its status is @want; otherwise NULL with @error set, "@what:
 * reason". A connection found broken is closed and *@connp set to NULL. */
static PGresult *
run (PGconn **connp, const char *sql, int n_params, const char *const *values, const int *lengths,
     const int *formats, int result_format, ExecStatusType want, const char *what, GError **error)
{
  PGresult *res = pgw_exec (*connp, sql, n_params, values, lengths, formats, result_format);
  BigfileFileError code;

  if (res != NULL && pq.PQresultStatus (res) == want)
    return res;

  code = pg_error_code (*connp, res);
  set_pg_error (error, *connp, res, what);
  if (res != NULL)
    pq.PQclear (res);
  /* A connection that failed is not used again: the next call makes a new
   * one. */
  if (code == BIGFILE_FILE_ERROR_DISCONNECTED)
    {
      pq.PQfinish (*connp);
      *connp = NULL;
    }
  return NULL;
}

/* A simple query without result rows. */
static gboolean
run_command (PGconn **connp, const char *sql, const char *what, GError **error)
{
  PGresult *res = run (connp, sql, -1, NULL, NULL, NULL, 0, PGRES_COMMAND_OK, what, error);

  if (res == NULL)
    return FALSE;
  pq.PQclear (res);
  return TRUE;
}

/* Ends the transaction of *@connp, or, if that fails, gives up the
 * connection (the server then rolls back): a rollback cannot fail. *@pid
 * is the connection's backend pid for the tests. */
static void
rollback_or_close (PGconn **connp, gint *pid)
{
  GError *ignored = NULL;

  if (*connp != NULL && !run_command (connp, "ROLLBACK", "Rolling back", &ignored))
    {
      g_clear_error (&ignored);
      g_clear_pointer (connp, pq.PQfinish);
    }
  if (*connp == NULL)
    g_atomic_int_set (pid, 0);
}

static void
set_row_gone_error (GError **error, const char *what)
{
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
               "%s: the file's row in bigfile_files is gone (was the file deleted?)", what);
}

static guint64
get_u64 (const PGresult *res, int row, int col)
{
  return g_ascii_strtoull (pq.PQgetvalue (res, row, col), NULL, 10);
}

static char *
u64_text (guint64 v)
{
  return g_strdup_printf ("%" G_GUINT64_FORMAT, v);
}

/* -- ::changed on the owner context ----------------------------------------------
 *
 * The listening connection (one per file) is a GSource on the owner
 * context, which watches its socket: connecting (asynchronously, after a
 * loss), sending LISTEN, then reading notifications. It also emits
 * ::changed for the other threads, which ask for it with
 * listen_request_changed() (a load that found the snapshot lost).
 *
 *   BACKOFF --(ready time)--> CONNECTING --(ok)--> LISTEN_SENT --(ok)--> LISTENING
 *      ^                          |                    |                     |
 *      +--------------------------+--------------------+---------------------+
 *                        (failure, lost connection: backoff doubles)
 *
 * All fields but @emit_pending and @pid are the main context's: only
 * dispatch touches them, and finalize, which runs after the last dispatch. */

typedef enum
{
  LISTEN_BACKOFF,
  LISTEN_CONNECTING,
  LISTEN_SENT,
  LISTENING,
} ListenState;

struct _ListenSource
{
  GSource source;

  /* Immutable. */
  GWeakRef file; /* BigfilePgFile */
  char *conninfo;
  char *channel;
  char *listen_sql;
  char writer[40];
  char *id_text;

  PGconn *conn;
  gpointer fd_tag; /* the watch of pq.PQsocket (conn), or NULL */
  int fd;
  ListenState state;
  guint backoff_ms;
  gint64 retry_at;    /* BACKOFF: when to connect again */
  gboolean missed;    /* notifications may have been missed: emit once listening */
  gint emit_pending;  /* (atomic) another thread asked for ::changed */
  gint pid;           /* (atomic) backend pid while connected, else 0 */
  guint n_reconnects; /* for messages */
};

static void
listen_watch (ListenSource *ls, GIOCondition condition)
{
  int fd = ls->conn != NULL ? pq.PQsocket (ls->conn) : -1;

  if (ls->fd_tag != NULL && fd != ls->fd)
    {
      g_source_remove_unix_fd (&ls->source, ls->fd_tag);
      ls->fd_tag = NULL;
    }
  if (fd < 0)
    return;
  if (ls->fd_tag == NULL)
    {
      ls->fd = fd;
      ls->fd_tag = g_source_add_unix_fd (&ls->source, fd, condition);
    }
  else
    g_source_modify_unix_fd (&ls->source, ls->fd_tag, condition);
}

static void
listen_close (ListenSource *ls)
{
  if (ls->fd_tag != NULL)
    {
      g_source_remove_unix_fd (&ls->source, ls->fd_tag);
      ls->fd_tag = NULL;
    }
  ls->fd = -1;
  if (ls->conn != NULL)
    {
      pq.PQfinish (ls->conn);
      ls->conn = NULL;
    }
  g_atomic_int_set (&ls->pid, 0);
}

/* The connection failed or was lost: try again later, waiting longer each
 * time. */
static void
listen_backoff (ListenSource *ls, const char *why)
{
  if (ls->conn != NULL)
    {
      g_autofree char *detail = pg_error_detail (ls->conn, NULL);

      g_debug ("BigfilePgFile: listening on %s: %s (%s); trying again in %u ms", ls->channel, why,
               detail, ls->backoff_ms);
    }
  listen_close (ls);
  ls->missed = TRUE;
  ls->state = LISTEN_BACKOFF;
  ls->retry_at = g_get_monotonic_time () + (gint64)ls->backoff_ms * 1000;
  ls->backoff_ms = MIN (ls->backoff_ms * 2, LISTEN_BACKOFF_MAX_MS);
  g_source_set_ready_time (&ls->source, ls->retry_at);
}

static void
listen_start_connect (ListenSource *ls)
{
  ls->conn = pgw_connect_start (ls->conninfo);
  ls->n_reconnects++;
  if (ls->conn == NULL || pq.PQstatus (ls->conn) == CONNECTION_BAD)
    {
      listen_backoff (ls, "could not start connecting");
      return;
    }
  setup_connection (ls->conn);
  ls->state = LISTEN_CONNECTING;
  /* libpq's rule: after PQconnectStart, wait for the socket to be
   * writable before the first pq.PQconnectPoll. */
  listen_watch (ls, G_IO_OUT | G_IO_ERR | G_IO_HUP);
}

static void
listen_poll_connect (ListenSource *ls)
{
  switch (pgw_connect_poll (ls->conn))
    {
      case PGRES_POLLING_READING:
        listen_watch (ls, G_IO_IN | G_IO_ERR | G_IO_HUP);
        break;
      case PGRES_POLLING_WRITING:
        listen_watch (ls, G_IO_OUT | G_IO_ERR | G_IO_HUP);
        break;
      case PGRES_POLLING_OK:
        if (!pgw_send_query (ls->conn, ls->listen_sql))
          {
            listen_backoff (ls, "could not send LISTEN");
            break;
          }
        ls->state = LISTEN_SENT;
        listen_watch (ls, G_IO_IN | G_IO_ERR | G_IO_HUP);
        break;
      case PGRES_POLLING_FAILED:
      case PGRES_POLLING_ACTIVE:
      default:
        listen_backoff (ls, "could not connect");
        break;
    }
}

/* Whether @payload ("ID VERSION WRITER") tells of another client's commit
 * of this file. */
static gboolean
listen_payload_is_news (ListenSource *ls, const char *payload)
{
  g_auto (GStrv) parts = g_strsplit (payload, " ", 3);

  if (g_strv_length (parts) != 3)
    return TRUE; /* not ours to judge: let the log tell */
  return g_str_equal (parts[0], ls->id_text) && !g_str_equal (parts[2], ls->writer);
}

/* Reads what the server sent; TRUE if ::changed is due. */
static gboolean
listen_read (ListenSource *ls)
{
  gboolean news = FALSE;
  PGnotify *notify;

  if (!pgw_consume_input (ls->conn) || pq.PQstatus (ls->conn) == CONNECTION_BAD)
    {
      listen_backoff (ls, "lost the connection");
      return FALSE;
    }

  if (ls->state == LISTEN_SENT)
    {
      while (!pq.PQisBusy (ls->conn))
        {
          PGresult *res = pq.PQgetResult (ls->conn);

          if (res == NULL)
            {
              /* LISTEN done: from now on no commit goes unnoticed. The
               * ones made while not listening are in the log. */
              ls->state = LISTENING;
              ls->backoff_ms = LISTEN_BACKOFF_MIN_MS;
              g_atomic_int_set (&ls->pid, pq.PQbackendPID (ls->conn));
              if (ls->missed)
                {
                  ls->missed = FALSE;
                  news = TRUE;
                }
              break;
            }
          if (pq.PQresultStatus (res) != PGRES_COMMAND_OK)
            {
              pq.PQclear (res);
              listen_backoff (ls, "LISTEN failed");
              return FALSE;
            }
          pq.PQclear (res);
        }
    }

  while ((notify = pq.PQnotifies (ls->conn)) != NULL)
    {
      if (g_str_equal (notify->relname, ls->channel) && listen_payload_is_news (ls, notify->extra))
        news = TRUE;
      pq.PQfreemem (notify);
    }
  return news;
}

static gboolean
listen_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  ListenSource *ls = (ListenSource *)source;
  GIOCondition cond = ls->fd_tag != NULL ? g_source_query_unix_fd (source, ls->fd_tag) : 0;
  gboolean emit = FALSE;

  /* Reset the ready time before looking at emit_pending: a request that
   * comes after the look sets it again (see listen_request_changed()). */
  g_source_set_ready_time (source, ls->state == LISTEN_BACKOFF ? ls->retry_at : -1);
  if (g_atomic_int_exchange (&ls->emit_pending, 0))
    emit = TRUE;

  switch (ls->state)
    {
      case LISTEN_BACKOFF:
        if (g_get_monotonic_time () >= ls->retry_at)
          {
            g_source_set_ready_time (source, -1);
            listen_start_connect (ls);
          }
        break;
      case LISTEN_CONNECTING:
        if (cond != 0)
          listen_poll_connect (ls);
        break;
      case LISTEN_SENT:
      case LISTENING:
        if (cond != 0 && listen_read (ls))
          emit = TRUE;
        break;
      default:
        g_assert_not_reached ();
    }

  if (emit)
    {
      BigfileFile *file = g_weak_ref_get (&ls->file);

      if (file != NULL)
        {
          bigfile_file_changed (file);
          g_object_unref (file);
        }
    }
  return G_SOURCE_CONTINUE;
}

static void
listen_finalize (GSource *source)
{
  ListenSource *ls = (ListenSource *)source;

  listen_close (ls);
  g_weak_ref_clear (&ls->file);
  g_free (ls->conninfo);
  g_free (ls->channel);
  g_free (ls->listen_sql);
  g_free (ls->id_text);
}

static GSourceFuncs listen_source_funcs = {
  .dispatch = listen_dispatch,
  .finalize = listen_finalize,
};

/* Makes the listening connection synchronously, on the calling thread,
 * before the first snapshot is taken: no commit after that snapshot can go
 * unnoticed. The source is not attached yet. */
static ListenSource *
listen_source_new (BigfilePgFile *self, GError **error)
{
  ListenSource *ls;
  PGresult *res;

  ls = (ListenSource *)g_source_new (&listen_source_funcs, sizeof (ListenSource));
  g_source_set_static_name (&ls->source, "BigfilePgFile LISTEN");
  g_weak_ref_init (&ls->file, self);
  ls->conninfo = g_strdup (self->conninfo);
  ls->channel = g_strdup (self->channel);
  ls->listen_sql = g_strdup_printf ("LISTEN \"%s\"", self->channel);
  ls->id_text = g_strdup (self->id_text);
  memcpy (ls->writer, self->writer, sizeof ls->writer);
  ls->fd = -1;
  ls->backoff_ms = LISTEN_BACKOFF_MIN_MS;

  ls->conn = connect_to_server (self, "notifications", error);
  if (ls->conn == NULL)
    goto fail;
  res = run (&ls->conn, ls->listen_sql, -1, NULL, NULL, NULL, 0, PGRES_COMMAND_OK,
             "Could not listen for the commits of other clients", error);
  if (res == NULL)
    goto fail;
  pq.PQclear (res);
  ls->state = LISTENING;
  g_atomic_int_set (&ls->pid, pq.PQbackendPID (ls->conn));
  listen_watch (ls, G_IO_IN | G_IO_ERR | G_IO_HUP);
  return ls;

fail:
  g_source_unref (&ls->source);
  return NULL;
}

/* From any thread: emit ::changed on the owner context soon. */
static void
listen_request_changed (ListenSource *ls)
{
  g_atomic_int_set (&ls->emit_pending, 1);
  g_source_set_ready_time (&ls->source, 0);
}

/* -- the read side: snapshots and loads ---------------------------------------------- */

static void
batch_clear (Batch *batch)
{
  g_clear_pointer (&batch->res, pq.PQclear);
  g_clear_pointer (&batch->rows, g_free);
  batch->n = 0;
}

/* The read connection is lost or its transaction aborted: the snapshot is
 * gone. Called with read_lock held. */
static void
read_drop_snapshot (BigfilePgFile *self)
{
  batch_clear (&self->batch);
  self->have_last = FALSE;
  /* An error aborted the transaction: end it, or give up the connection. */
  if (self->have_snapshot)
    rollback_or_close (&self->read, &self->read_pid);
  else if (self->read == NULL)
    g_atomic_int_set (&self->read_pid, 0);
  self->have_snapshot = FALSE;
}

/* Starts a new snapshot on the read connection (ending the old one, and
 * connecting first if needed) and reads the file's row in it. Called with
 * read_lock held. The old snapshot's version stays in report_from: the
 * caller decides what to report. */
static gboolean
read_new_snapshot (BigfilePgFile *self, GError **error)
{
  g_autofree char *sql = NULL;
  g_autofree char *what = NULL;
  PGresult *res;

  batch_clear (&self->batch);
  self->have_last = FALSE;

  if (self->read == NULL)
    {
      self->have_snapshot = FALSE;
      self->read = connect_to_server (self, "loads", error);
      if (self->read == NULL)
        return FALSE;
      g_atomic_int_set (&self->read_pid, pq.PQbackendPID (self->read));
    }

  sql = g_strdup_printf ("%sBEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                         "SELECT version, size, log_start FROM bigfile_files WHERE id = %s",
                         self->have_snapshot ? "COMMIT; " : "", self->id_text);
  self->have_snapshot = FALSE;
  what = g_strdup_printf ("Could not read a snapshot of “%s”", self->name);
  res = run (&self->read, sql, -1, NULL, NULL, NULL, 0, PGRES_TUPLES_OK, what, error);
  if (res == NULL)
    {
      /* The transaction (begun or not) is aborted: end it. */
      self->have_snapshot = self->read != NULL;
      read_drop_snapshot (self);
      return FALSE;
    }
  self->have_snapshot = TRUE;
  if (pq.PQntuples (res) != 1)
    {
      pq.PQclear (res);
      set_row_gone_error (error, what);
      read_drop_snapshot (self);
      return FALSE;
    }
  self->snap_version = get_u64 (res, 0, 0);
  self->snap_size = get_u64 (res, 0, 1);
  self->snap_log_start = get_u64 (res, 0, 2);
  pq.PQclear (res);
  return TRUE;
}

/* Makes sure there is a snapshot, taking a new one after a loss: loads
 * then read the newest state, which the handle learns of by a ::changed
 * and the refresh that follows it. Called with read_lock held. */
static gboolean
read_ensure_snapshot (BigfilePgFile *self, GError **error)
{
  guint64 old_version = self->snap_version;

  if (self->have_snapshot)
    return TRUE;
  if (!read_new_snapshot (self, error))
    return FALSE;
  if (self->had_snapshot && self->snap_version != old_version)
    listen_request_changed (self->listen);
  self->had_snapshot = TRUE;
  return TRUE;
}

static guint64
snapshot_n_blocks (BigfilePgFile *self)
{
  return self->snap_size / self->block_size + (self->snap_size % self->block_size != 0);
}

/* Fetches blocks @first .. @first + @n - 1 into the batch. Called with
 * read_lock held. */
static gboolean
read_fetch (BigfilePgFile *self, guint64 first, guint n, GError **error)
{
  g_autofree char *first_text = u64_text (first);
  g_autofree char *end_text = u64_text (first + n);
  g_autofree char *what = NULL;
  const char *values[] = { self->id_text, first_text, end_text };
  PGresult *res;
  int n_rows;

  self->n_load_queries++;
  what = n == 1 ? g_strdup_printf ("Could not load block %" G_GUINT64_FORMAT " of “%s”", first,
                                   self->name)
                : g_strdup_printf ("Could not load blocks %" G_GUINT64_FORMAT
                                   " to %" G_GUINT64_FORMAT " of “%s”",
                                   first, first + n - 1, self->name);
  /* Binary results: the blocks come as they are, not as hex text. */
  res = run (
      &self->read,
      "SELECT block, data FROM bigfile_blocks WHERE file = $1 AND block >= $2 AND block < $3", 3,
      values, NULL, NULL, 1, PGRES_TUPLES_OK, what, error);
  if (res == NULL)
    {
      read_drop_snapshot (self);
      return FALSE;
    }

  batch_clear (&self->batch);
  self->batch.res = res;
  self->batch.first = first;
  self->batch.n = n;
  self->batch.rows = g_new (int, n);
  for (guint i = 0; i < n; i++)
    self->batch.rows[i] = -1;

  n_rows = pq.PQntuples (res);
  for (int row = 0; row < n_rows; row++)
    {
      guint64 block_be, block;

      if (pq.PQgetlength (res, row, 0) != sizeof block_be
          || pq.PQgetlength (res, row, 1) > (int)self->block_size)
        {
          g_set_error (
              error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
              "%s: a row of bigfile_blocks holds %d bytes, more than a block (%" G_GSIZE_FORMAT ")",
              what, pq.PQgetlength (res, row, 1), self->block_size);
          batch_clear (&self->batch);
          return FALSE;
        }
      memcpy (&block_be, pq.PQgetvalue (res, row, 0), sizeof block_be);
      block = GUINT64_FROM_BE (block_be);
      if (block >= first && block < first + n)
        self->batch.rows[block - first] = row;
    }
  return TRUE;
}

static gboolean
bigfile_pg_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                                GError **error)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (file);
  gboolean ok = TRUE;
  Batch *batch = &self->batch;

  g_mutex_lock (&self->read_lock);

  if (!read_ensure_snapshot (self, error))
    {
      ok = FALSE;
      goto out;
    }

  /* Past the snapshot's size there are no rows: zeros (the buffer holds
   * zeros on entry). */
  if (block >= snapshot_n_blocks (self))
    goto out;

  if (batch->res == NULL || block < batch->first || block >= batch->first + batch->n
      || batch->rows[block - batch->first] == -2)
    {
      guint64 max_blocks = MAX (self->read_ahead / self->block_size, 1);
      guint n;

      /* Read-ahead: a window that doubles while loads go block after
       * block, and shrinks to one block at the first jump. */
      if (self->have_last && block == self->last_loaded + 1)
        self->ra_blocks = (guint)MIN ((guint64)self->ra_blocks * 2, max_blocks);
      else
        self->ra_blocks = 1;
      n = (guint)MIN ((guint64)self->ra_blocks, snapshot_n_blocks (self) - block);
      if (!read_fetch (self, block, n, error))
        {
          ok = FALSE;
          goto out;
        }
    }

  {
    int row = batch->rows[block - batch->first];

    if (row >= 0)
      memcpy (buffer, pq.PQgetvalue (batch->res, row, 1),
              MIN ((gsize)pq.PQgetlength (batch->res, row, 1), length));
    batch->rows[block - batch->first] = -2;
  }
  self->have_last = TRUE;
  self->last_loaded = block;

out:
  g_mutex_unlock (&self->read_lock);
  return ok;
}

static gboolean
bigfile_pg_file_get_size (BigfileFile *file, guint64 *size, GError **error)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (file);
  gboolean ok;

  g_mutex_lock (&self->read_lock);
  ok = read_ensure_snapshot (self, error);
  if (ok)
    *size = self->snap_size;
  g_mutex_unlock (&self->read_lock);
  return ok;
}

/* The blocks other clients changed in versions report_from + 1 ..
 * snap_version, from the log. Called with read_lock held, in the new
 * snapshot. */
static GArray *
read_changes (BigfilePgFile *self, GError **error)
{
  GArray *changed = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autofree char *from_text = NULL;
  g_autofree char *to_text = NULL;
  g_autofree char *what = NULL;
  PGresult *res;

  if (self->snap_version <= self->report_from)
    return changed;

  if (self->report_from < self->snap_log_start)
    {
      /* The log no longer reaches back to the old snapshot. */
      guint64 any = G_MAXUINT64;

      g_array_append_val (changed, any);
      return changed;
    }

  from_text = u64_text (self->report_from);
  to_text = u64_text (self->snap_version);
  what = g_strdup_printf ("Could not read the change log of “%s”", self->name);
  {
    const char *values[] = { self->id_text, from_text, to_text, self->writer };

    res = run (&self->read,
               "SELECT DISTINCT block FROM bigfile_changes WHERE file = $1 AND version > $2 "
               "AND version <= $3 AND writer <> $4",
               4, values, NULL, NULL, 0, PGRES_TUPLES_OK, what, error);
  }
  if (res == NULL)
    {
      g_array_unref (changed);
      return NULL;
    }
  for (int row = 0; row < pq.PQntuples (res); row++)
    {
      gint64 block = g_ascii_strtoll (pq.PQgetvalue (res, row, 0), NULL, 10);
      guint64 b = block < 0 ? G_MAXUINT64 : (guint64)block;

      g_array_append_val (changed, b);
    }
  pq.PQclear (res);
  return changed;
}

static GArray *
bigfile_pg_file_refresh (BigfileFile *file, GError **error)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (file);
  GArray *changed = NULL;

  g_mutex_lock (&self->read_lock);
  if (read_new_snapshot (self, error))
    {
      self->had_snapshot = TRUE;
      changed = read_changes (self, error);
      if (changed != NULL)
        self->report_from = self->snap_version;
      else
        {
          /* Loads would read the new snapshot, which the handle does not
           * know of: drop it, and make the handle come back. */
          read_drop_snapshot (self);
          listen_request_changed (self->listen);
        }
    }
  g_mutex_unlock (&self->read_lock);
  return changed;
}

/* -- the write side: transactions and stores ---------------------------------------- */

static gboolean
check_writable (BigfilePgFile *self, const char *what, GError **error)
{
  if (!(self->flags & BIGFILE_PG_FILE_FLAGS_READ_ONLY))
    return TRUE;
  g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY,
               "%s of “%s” failed: it was opened read-only", what, self->name);
  return FALSE;
}

/* Ends the transaction on the server if it still can be, and forgets it.
 * Called with write_lock held. */
static void
write_rollback (BigfilePgFile *self)
{
  rollback_or_close (&self->write, &self->write_pid);
  self->in_txn = FALSE;
  self->txn_failed = FALSE;
  g_array_set_size (self->txn_blocks, 0);
}

/* A statement of the transaction failed: the server aborted it. Called
 * with write_lock held. */
static void
write_failed (BigfilePgFile *self)
{
  self->txn_failed = TRUE;
  if (self->write == NULL)
    g_atomic_int_set (&self->write_pid, 0);
}

static gboolean
write_begin (BigfilePgFile *self, GError **error)
{
  g_autofree char *sql = NULL;
  g_autofree char *what = NULL;
  PGresult *res;

  what = g_strdup_printf ("Could not begin a transaction of “%s”", self->name);
  if (self->in_txn)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   "%s: one is already open (begin_transaction called twice)", what);
      return FALSE;
    }
  if (self->write == NULL)
    {
      self->write = connect_to_server (self, "writes", error);
      if (self->write == NULL)
        return FALSE;
      g_atomic_int_set (&self->write_pid, pq.PQbackendPID (self->write));
    }

  /* The row lock serializes the writers of this file; NO KEY UPDATE, as
   * the key stays, so that it does not wait for the foreign-key checks of
   * bigfile_blocks. */
  sql = g_strdup_printf ("BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = %u; "
                         "SELECT version, size FROM bigfile_files WHERE id = %s FOR NO KEY UPDATE",
                         self->lock_timeout_ms, self->id_text);
  res = run (&self->write, sql, -1, NULL, NULL, NULL, 0, PGRES_TUPLES_OK, what, error);
  if (res == NULL)
    {
      write_rollback (self);
      return FALSE;
    }
  if (pq.PQntuples (res) != 1)
    {
      pq.PQclear (res);
      set_row_gone_error (error, what);
      write_rollback (self);
      return FALSE;
    }
  self->in_txn = TRUE;
  self->txn_failed = FALSE;
  self->txn_version = get_u64 (res, 0, 0);
  self->txn_size = get_u64 (res, 0, 1);
  g_array_set_size (self->txn_blocks, 0);
  pq.PQclear (res);
  return TRUE;
}

static int
cmp_u64 (gconstpointer a, gconstpointer b)
{
  guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;

  return x < y ? -1 : x > y;
}

/* The changed blocks as a PostgreSQL array literal, "{1,2,3}", sorted and
 * without repeats; "{-1}" ("any block") if there are too many. */
static char *
txn_blocks_literal (BigfilePgFile *self)
{
  GArray *blocks = self->txn_blocks;
  GString *s = g_string_new ("{");
  guint n = 0;

  g_array_sort (blocks, cmp_u64);
  for (guint i = 0; i < blocks->len; i++)
    if (i == 0 || g_array_index (blocks, guint64, i) != g_array_index (blocks, guint64, i - 1))
      n++;
  if (n > LOG_MAX_BLOCKS)
    g_string_append_printf (s, "%d", LOG_ANY_BLOCK);
  else
    for (guint i = 0; i < blocks->len; i++)
      {
        guint64 b = g_array_index (blocks, guint64, i);

        if (i > 0 && b == g_array_index (blocks, guint64, i - 1))
          continue;
        g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, s->len > 1 ? "," : "", b);
      }
  g_string_append_c (s, '}');
  return g_string_free (s, FALSE);
}

/* After a commit of version @version: the snapshot moves to include it.
 * Its own changes are not reported; others' before it still are, unless
 * none came between the last report and this commit. Called with
 * write_lock held; takes read_lock. */
static void
move_snapshot_after_commit (BigfilePgFile *self, guint64 version)
{
  GError *ignored = NULL;

  g_mutex_lock (&self->read_lock);
  if (self->report_from == version - 1)
    self->report_from = version;
  if (!read_new_snapshot (self, &ignored))
    {
      /* The commit stands: the next load takes a snapshot (see
       * read_ensure_snapshot()). */
      g_debug ("BigfilePgFile: %s", ignored->message);
      g_clear_error (&ignored);
    }
  g_mutex_unlock (&self->read_lock);
}

static gboolean
write_commit (BigfilePgFile *self, BigfileCommitFlags flags, GError **error)
{
  g_autofree char *what = NULL;
  g_autofree char *version_text = NULL;
  g_autofree char *log_start_text = NULL;
  g_autofree char *size_text = NULL;
  g_autofree char *blocks = NULL;
  g_autofree char *payload = NULL;
  gboolean durable;
  guint64 version;
  PGresult *res;

  what = g_strdup_printf ("Could not commit the transaction of “%s”", self->name);
  if (!self->in_txn)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   "%s: no transaction is open", what);
      return FALSE;
    }
  if (self->txn_failed)
    {
      write_rollback (self);
      g_set_error (error, BIGFILE_FILE_ERROR,
                   self->write == NULL ? BIGFILE_FILE_ERROR_DISCONNECTED
                                       : BIGFILE_FILE_ERROR_FAILED,
                   "%s: a store or size change in it failed, so it was rolled back", what);
      return FALSE;
    }

  version = self->txn_version + 1;
  version_text = u64_text (version);
  log_start_text = u64_text (version > LOG_KEEP_VERSIONS ? version - LOG_KEEP_VERSIONS : 0);
  size_text = u64_text (self->txn_size);
  blocks = txn_blocks_literal (self);
  payload = g_strdup_printf ("%s %s %s", self->id_text, version_text, self->writer);

  /* One statement: the log, its pruning, the new version and size, the
   * notification (which the server sends at commit, if it commits). */
  {
    const char *values[] = { self->id_text,  version_text, self->writer,  blocks,
                             log_start_text, size_text,    self->channel, payload };

    res = run (&self->write,
               "WITH c AS (INSERT INTO bigfile_changes (file, version, block, writer) "
               "SELECT $1, $2, b, $3::uuid FROM unnest($4::bigint[]) AS b), "
               "p AS (DELETE FROM bigfile_changes WHERE file = $1 AND version <= $5), "
               "u AS (UPDATE bigfile_files SET version = $2, size = $6, "
               "log_start = GREATEST(log_start, $5) WHERE id = $1) "
               "SELECT pg_notify($7, $8)",
               8, values, NULL, NULL, 0, PGRES_TUPLES_OK, what, error);
  }
  if (res == NULL)
    {
      write_rollback (self);
      return FALSE;
    }
  pq.PQclear (res);

  durable = (flags & BIGFILE_COMMIT_FLAGS_DURABLE) || g_atomic_int_get (&self->durable);
  res = run (&self->write,
             durable ? "SET LOCAL synchronous_commit = on; COMMIT"
                     : "SET LOCAL synchronous_commit = off; COMMIT",
             -1, NULL, NULL, NULL, 0, PGRES_COMMAND_OK, what, error);
  if (res == NULL)
    {
      write_rollback (self);
      return FALSE;
    }
  /* A COMMIT of a transaction that failed is a ROLLBACK, with success. */
  if (!g_str_equal (pq.PQcmdStatus (res), "COMMIT"))
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   "%s: the server rolled it back (%s)", what, pq.PQcmdStatus (res));
      pq.PQclear (res);
      self->in_txn = FALSE;
      g_array_set_size (self->txn_blocks, 0);
      return FALSE;
    }
  pq.PQclear (res);
  self->in_txn = FALSE;
  g_array_set_size (self->txn_blocks, 0);

  move_snapshot_after_commit (self, version);
  return TRUE;
}

static gboolean
bigfile_pg_file_begin_transaction (BigfileFile *file, GError **error)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (file);
  gboolean ok;

  if (!check_writable (self, "Beginning a transaction", error))
    return FALSE;
  g_mutex_lock (&self->write_lock);
  ok = write_begin (self, error);
  g_mutex_unlock (&self->write_lock);
  return ok;
}

static gboolean
bigfile_pg_file_commit_transaction (BigfileFile *file, BigfileCommitFlags flags, GError **error)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (file);
  gboolean ok;

  if (!check_writable (self, "Committing a transaction", error))
    return FALSE;
  g_mutex_lock (&self->write_lock);
  ok = write_commit (self, flags, error);
  g_mutex_unlock (&self->write_lock);
  return ok;
}

static void
bigfile_pg_file_abort_transaction (BigfileFile *file)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (file);

  g_mutex_lock (&self->write_lock);
  if (self->in_txn)
    write_rollback (self);
  g_mutex_unlock (&self->write_lock);
}

/* Opens a transaction of its own for a store or size change made outside
 * one (the call is then committed at once); TRUE in *@autocommit if it
 * did. Called with write_lock held. */
static gboolean
write_enter (BigfilePgFile *self, gboolean *autocommit, const char *what, GError **error)
{
  *autocommit = FALSE;
  if (self->in_txn)
    {
      if (self->txn_failed)
        {
          g_set_error (error, BIGFILE_FILE_ERROR,
                       self->write == NULL ? BIGFILE_FILE_ERROR_DISCONNECTED
                                           : BIGFILE_FILE_ERROR_FAILED,
                       "%s: an earlier statement of the transaction failed; abort it", what);
          return FALSE;
        }
      return TRUE;
    }
  if (!write_begin (self, error))
    return FALSE;
  *autocommit = TRUE;
  return TRUE;
}

static gboolean
write_leave (BigfilePgFile *self, gboolean autocommit, gboolean ok, GError **error)
{
  if (!autocommit)
    return ok;
  if (!ok)
    {
      write_rollback (self);
      return FALSE;
    }
  return write_commit (self, BIGFILE_COMMIT_FLAGS_NONE, error);
}

static gboolean
bigfile_pg_file_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data, gsize length,
                                 GError **error)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (file);
  g_autofree char *what = NULL;
  g_autofree char *block_text = NULL;
  gboolean autocommit, ok;
  gsize used = length;
  PGresult *res;

  what = g_strdup_printf ("Could not store block %" G_GUINT64_FORMAT " of “%s”", block, self->name);
  if (!check_writable (self, "Storing a block", error))
    return FALSE;
  if (length > self->block_size || block > (guint64)G_MAXINT64 / self->block_size
      || block * self->block_size > (guint64)G_MAXINT64 - length)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "%s: %" G_GSIZE_FORMAT " bytes there lie beyond the largest file size or "
                   "exceed a block",
                   what, length);
      return FALSE;
    }

  /* Only up to the last byte that is not zero: a block of zeros is no row. */
  while (used > 0 && data[used - 1] == 0)
    used--;

  g_mutex_lock (&self->write_lock);
  if (!write_enter (self, &autocommit, what, error))
    {
      g_mutex_unlock (&self->write_lock);
      return FALSE;
    }

  block_text = u64_text (block);
  if (used == 0)
    {
      const char *values[] = { self->id_text, block_text };

      res = run (&self->write, "DELETE FROM bigfile_blocks WHERE file = $1 AND block = $2", 2,
                 values, NULL, NULL, 0, PGRES_COMMAND_OK, what, error);
    }
  else
    {
      const char *values[] = { self->id_text, block_text, (const char *)data };
      const int lengths[] = { 0, 0, (int)used };
      const int formats[] = { 0, 0, 1 };

      res = run (&self->write,
                 "INSERT INTO bigfile_blocks (file, block, data) VALUES ($1, $2, $3) "
                 "ON CONFLICT (file, block) DO UPDATE SET data = EXCLUDED.data",
                 3, values, lengths, formats, 0, PGRES_COMMAND_OK, what, error);
    }
  ok = res != NULL;
  if (ok)
    {
      pq.PQclear (res);
      g_array_append_val (self->txn_blocks, block);
      /* A store past the size makes the file grow to cover it, as
       * pwrite() does. */
      self->txn_size = MAX (self->txn_size, block * self->block_size + length);
    }
  else
    write_failed (self);

  ok = write_leave (self, autocommit, ok, error);
  g_mutex_unlock (&self->write_lock);
  return ok;
}

static gboolean
bigfile_pg_file_set_size (BigfileFile *file, guint64 size, GError **error)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (file);
  g_autofree char *what = NULL;
  gboolean autocommit, ok = TRUE;

  what = g_strdup_printf ("Could not make “%s” %" G_GUINT64_FORMAT " bytes long", self->name, size);
  if (!check_writable (self, "Setting the size", error))
    return FALSE;

  g_mutex_lock (&self->write_lock);
  if (!write_enter (self, &autocommit, what, error))
    {
      g_mutex_unlock (&self->write_lock);
      return FALSE;
    }

  if (size < self->txn_size)
    {
      /* Drop the blocks past the new end, and the bytes past it in the
       * block that holds it, so that they read as zeros if the file grows
       * again. */
      guint64 kept = size / self->block_size + (size % self->block_size != 0);
      g_autofree char *kept_text = u64_text (kept);
      g_autofree char *last_text = u64_text (size / self->block_size);
      g_autofree char *tail_text = u64_text (size % self->block_size);
      const char *values[] = { self->id_text, kept_text, last_text, tail_text };
      PGresult *res;

      res = run (&self->write,
                 "WITH d AS (DELETE FROM bigfile_blocks WHERE file = $1 AND block >= $2 "
                 "RETURNING block), "
                 "t AS (UPDATE bigfile_blocks SET data = substring(data FROM 1 FOR $4::integer) "
                 "WHERE file = $1 AND block = $3 AND $4::integer > 0 "
                 "AND length(data) > $4::integer RETURNING block) "
                 "SELECT block FROM d UNION ALL SELECT block FROM t",
                 4, values, NULL, NULL, 0, PGRES_TUPLES_OK, what, error);
      ok = res != NULL;
      if (ok)
        {
          for (int row = 0; row < pq.PQntuples (res); row++)
            {
              guint64 b = get_u64 (res, row, 0);

              g_array_append_val (self->txn_blocks, b);
            }
          pq.PQclear (res);
        }
      else
        write_failed (self);
    }
  if (ok)
    self->txn_size = size;

  ok = write_leave (self, autocommit, ok, error);
  g_mutex_unlock (&self->write_lock);
  return ok;
}

/* -- opening ------------------------------------------------------------------------- */

static const char schema_sql[]
    = "CREATE TABLE bigfile_files ("
      " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
      " name text NOT NULL UNIQUE,"
      " block_size integer NOT NULL CHECK (block_size >= 4096 AND block_size <= 2097152"
      "  AND (block_size & (block_size - 1)) = 0),"
      " size bigint NOT NULL DEFAULT 0 CHECK (size >= 0),"
      " version bigint NOT NULL DEFAULT 0,"
      " log_start bigint NOT NULL DEFAULT 0);"
      "CREATE TABLE bigfile_blocks ("
      " file bigint NOT NULL REFERENCES bigfile_files (id) ON DELETE CASCADE,"
      " block bigint NOT NULL CHECK (block >= 0),"
      " data bytea NOT NULL,"
      " PRIMARY KEY (file, block));"
      /* Out of line and uncompressed: blocks are read and written whole,
       * and compressing 2 MiB costs more than sending it over a LAN. */
      "ALTER TABLE bigfile_blocks ALTER COLUMN data SET STORAGE EXTERNAL;"
      "CREATE TABLE bigfile_changes ("
      " file bigint NOT NULL,"
      " version bigint NOT NULL,"
      " block bigint NOT NULL,"
      " writer uuid NOT NULL);"
      "CREATE INDEX bigfile_changes_file_version ON bigfile_changes (file, version);"
      "CREATE TABLE bigfile_schema (version integer NOT NULL);"
      "INSERT INTO bigfile_schema VALUES (1);";

/* Creates the tables if the database has none yet; checks the schema's
 * version. Two clients that start at once take turns: the advisory lock
 * lasts until the transaction ends. */
static gboolean
ensure_schema (BigfilePgFile *self, GError **error)
{
  const char *what = "Could not set up the bigfile tables of the database";
  PGresult *res;
  gboolean ok = FALSE;

  G_STATIC_ASSERT (SCHEMA_VERSION == 1); /* schema_sql inserts 1 */
  res = run (&self->write,
             "BEGIN; SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY "); "
             "SELECT to_regclass('bigfile_schema') IS NOT NULL",
             -1, NULL, NULL, NULL, 0, PGRES_TUPLES_OK, what, error);
  if (res == NULL)
    goto out;
  if (g_str_equal (pq.PQgetvalue (res, 0, 0), "f"))
    {
      pq.PQclear (res);
      if (!run_command (&self->write, schema_sql, what, error))
        goto out;
    }
  else
    {
      guint64 version;

      pq.PQclear (res);
      res = run (&self->write, "SELECT max(version) FROM bigfile_schema", -1, NULL, NULL, NULL, 0,
                 PGRES_TUPLES_OK, what, error);
      if (res == NULL)
        goto out;
      version = get_u64 (res, 0, 0);
      pq.PQclear (res);
      if (version != SCHEMA_VERSION)
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_NOT_SUPPORTED,
                       "%s: its schema has version %" G_GUINT64_FORMAT
                       ", and this bigfile-glib knows version %d only",
                       what, version, SCHEMA_VERSION);
          goto out;
        }
    }
  ok = run_command (&self->write, "COMMIT", what, error);

out:
  if (!ok && self->write != NULL)
    {
      GError *ignored = NULL;

      if (!run_command (&self->write, "ROLLBACK", what, &ignored))
        g_clear_error (&ignored);
    }
  return ok;
}

/* Finds the file's row, or makes it (CREATE): its id and block size. */
static gboolean
open_file_row (BigfilePgFile *self, GError **error)
{
  g_autofree char *what = g_strdup_printf ("Could not open “%s”", self->name);
  g_autofree char *bs_text = u64_text (self->block_size);
  PGresult *res;
  gsize stored_bs;

  for (int attempt = 0; attempt < 2; attempt++)
    {
      const char *values[] = { self->name, bs_text };

      res = run (&self->write, "SELECT id, block_size FROM bigfile_files WHERE name = $1", 1,
                 values, NULL, NULL, 0, PGRES_TUPLES_OK, what, error);
      if (res == NULL)
        return FALSE;
      if (pq.PQntuples (res) == 1)
        break;
      pq.PQclear (res);
      res = NULL;

      if (!(self->flags & BIGFILE_PG_FILE_FLAGS_CREATE))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                       "%s: the database has no such file (open it with "
                       "BIGFILE_PG_FILE_FLAGS_CREATE to create it)",
                       what);
          return FALSE;
        }
      if (self->block_size == 0)
        {
          g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                       "%s: a new file needs a block size (0 means the stored one)", what);
          return FALSE;
        }
      /* Another client may create it at the same moment: then this inserts
       * nothing, and the SELECT again finds theirs. */
      res = run (&self->write,
                 "INSERT INTO bigfile_files (name, block_size) VALUES ($1, $2) "
                 "ON CONFLICT (name) DO NOTHING",
                 2, values, NULL, NULL, 0, PGRES_COMMAND_OK, what, error);
      if (res == NULL)
        return FALSE;
      pq.PQclear (res);
      res = NULL;
    }
  if (res == NULL)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
                   "%s: it was created, and is gone again", what);
      return FALSE;
    }

  self->id = g_ascii_strtoll (pq.PQgetvalue (res, 0, 0), NULL, 10);
  stored_bs = (gsize)get_u64 (res, 0, 1);
  pq.PQclear (res);
  if (!block_size_is_valid (stored_bs))
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_CORRUPT,
                   "%s: its stored block size, %" G_GSIZE_FORMAT ", is not valid", what, stored_bs);
      return FALSE;
    }
  if (self->block_size != 0 && self->block_size != stored_bs)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "%s: its block size is %" G_GSIZE_FORMAT " bytes, not %" G_GSIZE_FORMAT
                   " (pass 0 for the stored one)",
                   what, stored_bs, self->block_size);
      return FALSE;
    }
  self->block_size = stored_bs;
  self->id_text = g_strdup_printf ("%" G_GINT64_FORMAT, self->id);
  self->channel = g_strdup_printf ("bigfile_%" G_GINT64_FORMAT, self->id);
  return TRUE;
}

static gboolean
pg_file_open (BigfilePgFile *self, GError **error)
{
  g_autofree char *uuid = g_uuid_string_random ();

  if (!pq_load (error))
    return FALSE;
  g_strlcpy (self->writer, uuid, sizeof self->writer);
  self->txn_blocks = g_array_new (FALSE, FALSE, sizeof (guint64));

  /* The order matters: the listening connection listens before the first
   * snapshot is taken, so that every commit after it is notified. */
  self->write = connect_to_server (self, "writes", error);
  if (self->write == NULL || !ensure_schema (self, error) || !open_file_row (self, error))
    return FALSE;
  self->listen = listen_source_new (self, error);
  if (self->listen == NULL)
    return FALSE;
  g_mutex_lock (&self->read_lock);
  if (!read_new_snapshot (self, error))
    {
      g_mutex_unlock (&self->read_lock);
      return FALSE;
    }
  self->had_snapshot = TRUE;
  self->report_from = self->snap_version;
  g_mutex_unlock (&self->read_lock);

  if (self->flags & BIGFILE_PG_FILE_FLAGS_READ_ONLY)
    g_clear_pointer (&self->write, pq.PQfinish);
  else
    g_atomic_int_set (&self->write_pid, pq.PQbackendPID (self->write));

  g_source_attach (&self->listen->source, self->context);
  return TRUE;
}

static void
pg_file_close (BigfilePgFile *self)
{
  if (self->listen != NULL)
    {
      g_source_destroy (&self->listen->source);
      g_source_unref (&self->listen->source);
      self->listen = NULL;
    }
  batch_clear (&self->batch);
  /* Handles hold a reference on their file: no call runs. An open
   * transaction ends with its connection (the server rolls it back). */
  g_clear_pointer (&self->read, pq.PQfinish);
  g_clear_pointer (&self->write, pq.PQfinish);
  g_clear_pointer (&self->txn_blocks, g_array_unref);
  g_clear_pointer (&self->id_text, g_free);
  g_clear_pointer (&self->channel, g_free);
}

int
_bigfile_pg_file_get_backend_pid (BigfilePgFile *file, BfPgConn which)
{
  g_return_val_if_fail (BIGFILE_IS_PG_FILE (file), 0);

  switch (which)
    {
      case BF_PG_CONN_READ:
        return g_atomic_int_get (&file->read_pid);
      case BF_PG_CONN_WRITE:
        return g_atomic_int_get (&file->write_pid);
      case BF_PG_CONN_LISTEN:
        return file->listen != NULL ? g_atomic_int_get (&file->listen->pid) : 0;
      default:
        return 0;
    }
}

guint64
_bigfile_pg_file_get_n_load_queries (BigfilePgFile *file)
{
  guint64 n;

  g_return_val_if_fail (BIGFILE_IS_PG_FILE (file), 0);
  g_mutex_lock (&file->read_lock);
  n = file->n_load_queries;
  g_mutex_unlock (&file->read_lock);
  return n;
}

guint64
_bigfile_pg_file_get_snapshot_version (BigfilePgFile *file)
{
  guint64 v;

  g_return_val_if_fail (BIGFILE_IS_PG_FILE (file), 0);
  g_mutex_lock (&file->read_lock);
  v = file->snap_version;
  g_mutex_unlock (&file->read_lock);
  return v;
}

/* -- GObject ---------------------------------------------------------------------------- */

static void
bigfile_pg_file_finalize (GObject *object)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (object);

  pg_file_close (self);
  g_mutex_clear (&self->read_lock);
  g_mutex_clear (&self->write_lock);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_clear_pointer (&self->conninfo, g_free);
  g_clear_pointer (&self->name, g_free);

  G_OBJECT_CLASS (bigfile_pg_file_parent_class)->finalize (object);
}

static void
bigfile_pg_file_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (object);

  switch (prop_id)
    {
      case PROP_CONNINFO:
        g_value_set_string (value, self->conninfo);
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
      case PROP_LOCK_TIMEOUT:
        g_value_set_uint (value, self->lock_timeout_ms);
        break;
      case PROP_READ_AHEAD:
        g_value_set_uint64 (value, self->read_ahead);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_pg_file_set_property (GObject *object, guint prop_id, const GValue *value,
                              GParamSpec *pspec)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (object);

  switch (prop_id)
    {
      case PROP_CONNINFO:
        g_free (self->conninfo);
        self->conninfo = g_value_dup_string (value);
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
        bigfile_pg_file_set_durable (self, g_value_get_boolean (value));
        break;
      case PROP_LOCK_TIMEOUT:
        self->lock_timeout_ms = g_value_get_uint (value);
        break;
      case PROP_READ_AHEAD:
        self->read_ahead = g_value_get_uint64 (value);
        break;
      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_pg_file_class_init (BigfilePgFileClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  const GParamFlags construct = G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS
                                | G_PARAM_EXPLICIT_NOTIFY;

  object_class->finalize = bigfile_pg_file_finalize;
  object_class->get_property = bigfile_pg_file_get_property;
  object_class->set_property = bigfile_pg_file_set_property;

  /**
   * BigfilePgFile:conninfo:
   *
   * The libpq connection string of the database: `key=value` words or a
   * `postgresql://` URI, or an empty string for libpq's defaults (the
   * `PG*` environment variables).
   *
   * Since: 1.0
   */
  props[PROP_CONNINFO] = g_param_spec_string ("conninfo", NULL, NULL, "", construct);

  /**
   * BigfilePgFile:name:
   *
   * The name of the file in the database (any non-empty UTF-8 string of
   * at most 1024 bytes): one database holds many files.
   *
   * Since: 1.0
   */
  props[PROP_NAME] = g_param_spec_string ("name", NULL, NULL, NULL, construct);

  /**
   * BigfilePgFile:block-size:
   *
   * The size of a block in bytes: a power of two from 4 KiB to 2 MiB, or 0
   * to take the one the file was created with. After construction, the
   * file's block size.
   *
   * Since: 1.0
   */
  props[PROP_BLOCK_SIZE]
      = g_param_spec_uint64 ("block-size", NULL, NULL, 0, G_MAXUINT64, 0, construct);

  /**
   * BigfilePgFile:flags:
   *
   * How the file is opened.
   *
   * Since: 1.0
   */
  props[PROP_FLAGS] = g_param_spec_flags ("flags", NULL, NULL, BIGFILE_TYPE_PG_FILE_FLAGS,
                                          BIGFILE_PG_FILE_FLAGS_NONE, construct);

  /**
   * BigfilePgFile:durable:
   *
   * Whether every commit is durable: flushed to the server's write-ahead
   * log before bigfile_file_commit_transaction() returns
   * (`synchronous_commit = on`). Without it commits use
   * `synchronous_commit = off`: as atomic, much faster when commits are
   * small, but a crash of the server may lose the last ones. A commit with
   * %BIGFILE_COMMIT_FLAGS_DURABLE is durable either way.
   *
   * Since: 1.0
   */
  props[PROP_DURABLE] = g_param_spec_boolean (
      "durable", NULL, NULL, TRUE,
      G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfilePgFile:lock-timeout:
   *
   * How long bigfile_file_begin_transaction() waits, in milliseconds, for
   * the transaction of another client of the file to end before it fails
   * with %BIGFILE_FILE_ERROR_BUSY; 0 waits for ever.
   *
   * Since: 1.0
   */
  props[PROP_LOCK_TIMEOUT] = g_param_spec_uint ("lock-timeout", NULL, NULL, 0, G_MAXINT32,
                                                DEFAULT_LOCK_TIMEOUT_MS, construct);

  /**
   * BigfilePgFile:read-ahead:
   *
   * The most bytes a load fetches in one query when blocks are loaded one
   * after another (see "Batched loads" above): the blocks after the one
   * asked for come along, and wait in memory for the loads that follow.
   * 0 (or less than a block) fetches each block on its own.
   *
   * Since: 1.0
   */
  props[PROP_READ_AHEAD] = g_param_spec_uint64 ("read-ahead", NULL, NULL, 0, G_MAXUINT32,
                                                DEFAULT_READ_AHEAD, construct);

  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
bigfile_pg_file_init (BigfilePgFile *self)
{
  self->durable = TRUE;
  self->lock_timeout_ms = DEFAULT_LOCK_TIMEOUT_MS;
  self->read_ahead = DEFAULT_READ_AHEAD;
  g_mutex_init (&self->read_lock);
  g_mutex_init (&self->write_lock);
  self->ra_blocks = 1;
}

static gboolean
bigfile_pg_file_initable_init (GInitable *initable, GCancellable *cancellable, GError **error)
{
  BigfilePgFile *self = BIGFILE_PG_FILE (initable);

  if (self->initialized)
    return TRUE;

  if (self->name == NULL || self->name[0] == '\0' || strlen (self->name) > MAX_NAME_LENGTH
      || !g_utf8_validate (self->name, -1, NULL))
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "Could not open a PostgreSQL file: its name must be a non-empty UTF-8 string "
                   "of at most %d bytes",
                   MAX_NAME_LENGTH);
      return FALSE;
    }
  if (self->block_size != 0 && !block_size_is_valid (self->block_size))
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                   "Could not open “%s”: block size %" G_GSIZE_FORMAT
                   " is not a power of two from 4 KiB to 2 MiB (or 0 for the stored one)",
                   self->name, self->block_size);
      return FALSE;
    }
  if (self->conninfo == NULL)
    self->conninfo = g_strdup ("");

  self->context = g_main_context_ref_thread_default ();
  if (!pg_file_open (self, error))
    {
      pg_file_close (self);
      return FALSE;
    }
  self->initialized = TRUE;
  return TRUE;
}

static void
bigfile_pg_file_initable_iface_init (GInitableIface *iface)
{
  iface->init = bigfile_pg_file_initable_init;
}

static gsize
bigfile_pg_file_get_block_size (BigfileFile *file)
{
  return BIGFILE_PG_FILE (file)->block_size;
}

/* Every method takes the lock of the connection it uses. */
static gboolean
bigfile_pg_file_is_thread_safe (BigfileFile *file)
{
  return TRUE;
}

static void
bigfile_pg_file_file_iface_init (BigfileFileInterface *iface)
{
  iface->get_block_size = bigfile_pg_file_get_block_size;
  iface->is_thread_safe = bigfile_pg_file_is_thread_safe;
  /* Only the raw methods: the interface's invokers give bindings the
   * GBytes ones on top of them. */
  iface->load_block_raw = bigfile_pg_file_load_block_raw;
  iface->store_block_raw = bigfile_pg_file_store_block_raw;
  iface->get_size = bigfile_pg_file_get_size;
  iface->set_size = bigfile_pg_file_set_size;
  iface->begin_transaction = bigfile_pg_file_begin_transaction;
  iface->commit_transaction = bigfile_pg_file_commit_transaction;
  iface->abort_transaction = bigfile_pg_file_abort_transaction;
  iface->refresh = bigfile_pg_file_refresh;
}

/* -- public API ----------------------------------------------------------------------- */

/**
 * bigfile_pg_file_new:
 * @conninfo: the libpq connection string of the database (see
 *   #BigfilePgFile:conninfo)
 * @name: the name of the file in the database
 * @block_size: the size of a block in bytes: a power of two from 4 KiB to
 *   2 MiB, or 0 to take the one the file was created with
 * @flags: how to open the file
 * @error: return location for a #GError
 *
 * Opens the file @name of the database @conninfo as a #BigfileFile, for
 * reading and writing, or only reading with
 * %BIGFILE_PG_FILE_FLAGS_READ_ONLY; with %BIGFILE_PG_FILE_FLAGS_CREATE a
 * missing file is created empty. The first file opened in a database
 * creates the tables (see the description of #BigfilePgFile).
 *
 * This connects to the server (three connections, two for a read-only
 * file), and blocks until it is done. #BigfileFile::changed is emitted on
 * the thread-default main context of the calling thread.
 *
 * Fails with %BIGFILE_FILE_ERROR_DISCONNECTED if the server cannot be
 * reached, %G_IO_ERROR_NOT_FOUND if there is no such file (without
 * %BIGFILE_PG_FILE_FLAGS_CREATE), %BIGFILE_FILE_ERROR_INVALID_ARGUMENT for a
 * bad name or block size or one other than the stored one, and
 * %BIGFILE_FILE_ERROR_NOT_SUPPORTED if libpq (libpq.so.5) cannot be loaded
 * or the database's tables are of a newer version.
 *
 * Returns: (transfer full): a new #BigfilePgFile, or %NULL on error
 *
 * Since: 1.0
 */
BigfilePgFile *
bigfile_pg_file_new (const char *conninfo, const char *name, gsize block_size,
                     BigfilePgFileFlags flags, GError **error)
{
  g_return_val_if_fail (conninfo != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (BIGFILE_TYPE_PG_FILE, NULL, error, "conninfo", conninfo, "name", name,
                         "block-size", (guint64)block_size, "flags", flags, NULL);
}

/**
 * bigfile_pg_file_get_name:
 * @file: a #BigfilePgFile
 *
 * Gets the name of @file in its database.
 *
 * Returns: (transfer none): the name
 *
 * Since: 1.0
 */
const char *
bigfile_pg_file_get_name (BigfilePgFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_PG_FILE (file), NULL);

  return file->name;
}

/**
 * bigfile_pg_file_get_flags:
 * @file: a #BigfilePgFile
 *
 * Gets the flags @file was opened with.
 *
 * Returns: the flags
 *
 * Since: 1.0
 */
BigfilePgFileFlags
bigfile_pg_file_get_flags (BigfilePgFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_PG_FILE (file), BIGFILE_PG_FILE_FLAGS_NONE);

  return file->flags;
}

/**
 * bigfile_pg_file_get_durable:
 * @file: a #BigfilePgFile
 *
 * Gets #BigfilePgFile:durable.
 *
 * Returns: whether every commit of @file is durable
 *
 * Since: 1.0
 */
gboolean
bigfile_pg_file_get_durable (BigfilePgFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_PG_FILE (file), FALSE);

  return g_atomic_int_get (&file->durable);
}

/**
 * bigfile_pg_file_set_durable:
 * @file: a #BigfilePgFile
 * @durable: whether every commit is to be durable
 *
 * Sets #BigfilePgFile:durable, for the commits that follow. May be called
 * from any thread.
 *
 * Since: 1.0
 */
void
bigfile_pg_file_set_durable (BigfilePgFile *file, gboolean durable)
{
  g_return_if_fail (BIGFILE_IS_PG_FILE (file));

  durable = !!durable;
  if (g_atomic_int_exchange (&file->durable, durable) != durable)
    g_object_notify_by_pspec (G_OBJECT (file), props[PROP_DURABLE]);
}
