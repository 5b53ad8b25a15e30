/* bigfile-glib tests - the table of BigfileFile implementations that the
 * conformance suite and the crash tests run against
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>

#include "test-backends.h"
#include "bigfile-local-journal.h"
#include "test-mem-file.h"
#include "test-shared-file.h"
#include "test-txn-file.h"
#ifdef HAVE_SQLITE
#include "bigfile-sqlite-file-private.h"
#endif
#ifdef HAVE_POSTGRESQL
#include "test-pg-util.h"
#endif

/* -- in-memory locations --------------------------------------------------------- */

/* The in-memory backends name their storages "KIND:N" in this table, which
 * holds a reference to each (a TestMemFile, or a TestSharedStore) until
 * its backend's destroy steals it back. */
static GMutex registry_lock;
static GHashTable *registry; /* char * -> gpointer, under registry_lock */
static guint registry_next;

static char *
registry_add (const char *kind, gpointer object)
{
  char *location;

  g_mutex_lock (&registry_lock);
  if (registry == NULL)
    registry = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  location = g_strdup_printf ("%s:%u", kind, ++registry_next);
  g_hash_table_insert (registry, g_strdup (location), object);
  g_mutex_unlock (&registry_lock);
  return location;
}

static gpointer
registry_lookup (const char *location, GError **error)
{
  gpointer object = NULL;

  g_mutex_lock (&registry_lock);
  if (registry != NULL)
    object = g_hash_table_lookup (registry, location);
  g_mutex_unlock (&registry_lock);
  if (object == NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "No in-memory storage “%s”", location);
  return object;
}

static gpointer
registry_steal (const char *location)
{
  gpointer object = NULL;

  g_mutex_lock (&registry_lock);
  if (registry != NULL)
    {
      object = g_hash_table_lookup (registry, location);
      g_hash_table_remove (registry, location);
    }
  g_mutex_unlock (&registry_lock);
  return object;
}

/* -- mem: TestMemFile ------------------------------------------------------------- */

/* A TestMemFile is storage and client in one: every open gives the same
 * object (TestBackend.one_object). */

static char *
mem_create (gsize block_size, GError **error)
{
  /* TestMemFile takes any block size, and a handle refuses the bad ones
   * (which /conformance/mem/bad-block-size sees), but it divides by 0. */
  if (block_size == 0)
    {
      g_set_error_literal (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
                           "A block size of 0 bytes: use a power of two from 4 KiB to 2 MiB");
      return NULL;
    }
  return registry_add ("mem", test_mem_file_new_sized (block_size, 0));
}

static BigfileFile *
mem_open (const char *location, gsize block_size, GError **error)
{
  TestMemFile *file = registry_lookup (location, error);

  return file != NULL ? g_object_ref (BIGFILE_FILE (file)) : NULL;
}

static void
mem_destroy (const char *location)
{
  TestMemFile *file = registry_steal (location);

  if (file != NULL)
    {
      test_mem_file_set_load_hook (file, NULL, NULL);
      test_mem_file_set_store_hook (file, NULL, NULL);
      g_object_unref (file);
    }
}

/* TestMemFile fails loads or stores from a given moment with a hook that
 * counts calls down: it runs before the file looks at its failures. */
typedef struct
{
  gint countdown; /* atomic: calls left before failures start; 0 = failing */
} MemFault;

static void
mem_fault_hook (TestMemFile *file, guint64 block, gpointer user_data, gboolean load)
{
  MemFault *fault = user_data;
  gint left = g_atomic_int_get (&fault->countdown);

  if (left > 0 && g_atomic_int_compare_and_exchange (&fault->countdown, left, left - 1))
    return;
  if (load)
    test_mem_file_set_fail_load (file, G_MAXUINT64, TRUE, FALSE);
  else
    test_mem_file_set_fail_store (file, G_MAXUINT64, TRUE, FALSE);
}

static void
mem_load_fault_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  mem_fault_hook (file, block, user_data, TRUE);
}

static void
mem_store_fault_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  mem_fault_hook (file, block, user_data, FALSE);
}

static gboolean
mem_set_fault (BigfileFile *bfile, TestFault kind, int after)
{
  TestMemFile *file = TEST_MEM_FILE (bfile);
  const char *key
      = kind == TEST_FAULT_LOAD ? "test-backends-load-fault" : "test-backends-store-fault";
  MemFault *fault;

  switch (kind)
    {
      case TEST_FAULT_LOAD:
      case TEST_FAULT_STORE:
        if (after < 0)
          {
            if (kind == TEST_FAULT_LOAD)
              {
                test_mem_file_set_load_hook (file, NULL, NULL);
                test_mem_file_set_fail_load (file, G_MAXUINT64, FALSE, FALSE);
              }
            else
              {
                test_mem_file_set_store_hook (file, NULL, NULL);
                test_mem_file_set_fail_store (file, G_MAXUINT64, FALSE, FALSE);
              }
            g_object_set_data (G_OBJECT (file), key, NULL);
            return TRUE;
          }
        fault = g_new0 (MemFault, 1);
        fault->countdown = after;
        /* The hook first: the data it replaces, freed next, is then unused. */
        if (kind == TEST_FAULT_LOAD)
          test_mem_file_set_load_hook (file, mem_load_fault_hook, fault);
        else
          test_mem_file_set_store_hook (file, mem_store_fault_hook, fault);
        g_object_set_data_full (G_OBJECT (file), key, fault, g_free);
        return TRUE;
      case TEST_FAULT_SET_SIZE:
        if (after > 0)
          return FALSE;
        test_mem_file_set_fail_set_size (file, after == 0);
        return TRUE;
      case TEST_FAULT_BEGIN:
      case TEST_FAULT_COMMIT:
      case TEST_FAULT_REFRESH:
      default:
        return FALSE;
    }
}

/* -- mem-shared: TestSharedFile ----------------------------------------------------- */

static char *
mem_shared_create (gsize block_size, GError **error)
{
  return registry_add ("mem-shared", test_shared_store_new (block_size));
}

static BigfileFile *
mem_shared_open_flags (const char *location, gsize block_size, gboolean read_only, GError **error)
{
  TestSharedStore *store = registry_lookup (location, error);

  if (store == NULL)
    return NULL;
  return (BigfileFile *)test_shared_file_new (store, block_size, read_only, error);
}

static BigfileFile *
mem_shared_open (const char *location, gsize block_size, GError **error)
{
  return mem_shared_open_flags (location, block_size, FALSE, error);
}

static BigfileFile *
mem_shared_open_read_only (const char *location, gsize block_size, GError **error)
{
  return mem_shared_open_flags (location, block_size, TRUE, error);
}

static void
mem_shared_destroy (const char *location)
{
  TestSharedStore *store = registry_steal (location);

  if (store != NULL)
    test_shared_store_unref (store);
}

static gboolean
mem_shared_set_fault (BigfileFile *file, TestFault fault, int after)
{
  static const TestSharedFault map[] = {
    [TEST_FAULT_LOAD] = TEST_SHARED_FAULT_LOAD,
    [TEST_FAULT_STORE] = TEST_SHARED_FAULT_STORE,
    [TEST_FAULT_SET_SIZE] = TEST_SHARED_FAULT_SET_SIZE,
    [TEST_FAULT_BEGIN] = TEST_SHARED_FAULT_BEGIN,
    [TEST_FAULT_COMMIT] = TEST_SHARED_FAULT_COMMIT,
    [TEST_FAULT_REFRESH] = TEST_SHARED_FAULT_REFRESH,
  };

  test_shared_file_set_fault (TEST_SHARED_FILE (file), map[fault], after);
  return TRUE;
}

/* -- txn: TestTxnFile ---------------------------------------------------------------- */

/* The handle's own model of a transactional store (test-txn-file.c), run
 * through the suite too: two models of one contract, written apart, that
 * must agree. It has no read-only mode and takes any block size; its
 * failures are one call each (after 0 only), and a store fails by block. */

static char *
txn_create (gsize block_size, GError **error)
{
  return registry_add ("txn", test_txn_store_new (block_size, 0));
}

static BigfileFile *
txn_open (const char *location, gsize block_size, GError **error)
{
  TestTxnStore *store = registry_lookup (location, error);

  return store != NULL ? BIGFILE_FILE (test_txn_file_new (store)) : NULL;
}

static void
txn_destroy (const char *location)
{
  TestTxnStore *store = registry_steal (location);

  if (store != NULL)
    test_txn_store_unref (store);
}

static gboolean
txn_set_fault (BigfileFile *bfile, TestFault fault, int after)
{
  TestTxnFile *file = TEST_TXN_FILE (bfile);

  if (after < 0)
    {
      test_txn_file_clear_failures (file);
      return TRUE;
    }
  if (after > 0)
    return FALSE;
  switch (fault)
    {
      case TEST_FAULT_BEGIN:
        test_txn_file_fail_next_begin (file);
        return TRUE;
      case TEST_FAULT_COMMIT:
        test_txn_file_fail_next_commit (file);
        return TRUE;
      case TEST_FAULT_REFRESH:
        test_txn_file_fail_next_refresh (file);
        return TRUE;
      case TEST_FAULT_LOAD:
      case TEST_FAULT_STORE:
      case TEST_FAULT_SET_SIZE:
      default:
        return FALSE;
    }
}

/* -- local: BigfileLocalFile ------------------------------------------------------ */

/* Each storage is a file "data" in a directory of its own, so that
 * whatever else a mode keeps beside it (a journal) goes with it. */

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);

  if (dir != NULL)
    {
      const char *name;

      while ((name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);

          remove_tree (child);
        }
      g_dir_close (dir);
      if (g_rmdir (path) != 0)
        g_warning ("Could not remove the directory %s: %s", path, g_strerror (errno));
    }
  else if (g_remove (path) != 0)
    g_warning ("Could not remove %s: %s", path, g_strerror (errno));
}

static char *
local_create_flags (gsize block_size, BigfileLocalFileFlags flags, GError **error)
{
  g_autofree char *dir = g_dir_make_tmp ("bigfile-backend-XXXXXX", error);
  char *path;
  BigfileLocalFile *file;

  if (dir == NULL)
    return NULL;
  path = g_build_filename (dir, "data", NULL);
  file = bigfile_local_file_new (path, block_size, flags | BIGFILE_LOCAL_FILE_FLAGS_CREATE, error);
  if (file == NULL)
    {
      remove_tree (dir);
      g_free (path);
      return NULL;
    }
  g_object_unref (file);
  return path;
}

static void
local_destroy (const char *location)
{
  g_autofree char *dir = g_path_get_dirname (location);

  remove_tree (dir);
}

static char *
local_create (gsize block_size, GError **error)
{
  return local_create_flags (block_size, BIGFILE_LOCAL_FILE_FLAGS_NONE, error);
}

static BigfileFile *
local_open (const char *location, gsize block_size, GError **error)
{
  return (BigfileFile *)bigfile_local_file_new (location, block_size, BIGFILE_LOCAL_FILE_FLAGS_NONE,
                                                error);
}

static BigfileFile *
local_open_read_only (const char *location, gsize block_size, GError **error)
{
  return (BigfileFile *)bigfile_local_file_new (location, block_size,
                                                BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, error);
}

/* -- local-atomic: BigfileLocalFile with BIGFILE_LOCAL_FILE_FLAGS_ATOMIC ---------------
 *
 * An atomic writer is alone with its file: a second open fails with
 * BIGFILE_FILE_ERROR_BUSY while one is open (test-local-atomic checks it).
 * A program shares the one object among its parts, and so does this
 * backend: while an object of a location lives, open gives it again
 * (TestBackend.one_object), and after it is finalized, a new one, which
 * recovers the journal as any open does. */

static GMutex atomic_lock;
static GHashTable *atomic_open_files; /* location -> GWeakRef to the open BigfileLocalFile */

static void
weak_ref_free (gpointer data)
{
  g_weak_ref_clear (data);
  g_free (data);
}

static char *
local_atomic_create (gsize block_size, GError **error)
{
  return local_create_flags (block_size, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, error);
}

static BigfileFile *
local_atomic_open (const char *location, gsize block_size, GError **error)
{
  BigfileLocalFile *file = NULL;
  GWeakRef *ref;

  g_mutex_lock (&atomic_lock);
  if (atomic_open_files == NULL)
    atomic_open_files = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, weak_ref_free);
  ref = g_hash_table_lookup (atomic_open_files, location);
  if (ref != NULL)
    file = g_weak_ref_get (ref);
  if (file != NULL && bigfile_file_get_block_size (BIGFILE_FILE (file)) != block_size)
    g_clear_object (&file); /* as two opens would: each with its own block size */
  if (file == NULL)
    {
      file = bigfile_local_file_new (location, block_size, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC, error);
      if (file != NULL)
        {
          ref = g_new0 (GWeakRef, 1);
          g_weak_ref_init (ref, file);
          g_hash_table_replace (atomic_open_files, g_strdup (location), ref);
        }
    }
  g_mutex_unlock (&atomic_lock);
  return (BigfileFile *)file;
}

/* Fault injection through the journal's hook (bigfile-local-journal.h), for
 * the I/O errors a real disk cannot be made to have on demand: a store
 * fails where it writes its block into the journal, a commit where it
 * syncs the journal before the commit point.  The hook is the process's:
 * it fails those steps of whichever file comes, which in a test is the
 * one. */
static const char *atomic_fault_point;
static gint atomic_fault_after;

static int
local_atomic_fault_hook (const char *point, gpointer user_data)
{
  if (atomic_fault_point == NULL || !g_str_equal (point, atomic_fault_point))
    return 0;
  return g_atomic_int_add (&atomic_fault_after, -1) <= 0 ? EIO : 0;
}

static gboolean
local_atomic_set_fault (BigfileFile *file, TestFault fault, int after)
{
  if (after < 0)
    {
      bf_journal_set_fault_hook (NULL, NULL);
      atomic_fault_point = NULL;
      return TRUE;
    }
  switch (fault)
    {
      case TEST_FAULT_STORE:
        atomic_fault_point = "journal-block";
        break;
      case TEST_FAULT_COMMIT:
        atomic_fault_point = "journal-sync";
        break;
      /* A size change only adds to the transaction's index; begin, loads
       * and refresh do no I/O that can fail. */
      case TEST_FAULT_SET_SIZE:
      case TEST_FAULT_BEGIN:
      case TEST_FAULT_LOAD:
      case TEST_FAULT_REFRESH:
      default:
        return FALSE;
    }
  g_atomic_int_set (&atomic_fault_after, after);
  bf_journal_set_fault_hook (local_atomic_fault_hook, NULL);
  return TRUE;
}

static BigfileFile *
local_atomic_open_read_only (const char *location, gsize block_size, GError **error)
{
  return (BigfileFile *)bigfile_local_file_new (
      location, block_size, BIGFILE_LOCAL_FILE_FLAGS_ATOMIC | BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY,
      error);
}

#ifdef HAVE_POSTGRESQL
/* -- pg: BigfilePgFile ---------------------------------------------------------------- */

/* Each storage is a file of its own name in the tests' server
 * (test_pg_conninfo(): $BIGFILE_TEST_PG_CONNINFO, which the children of the
 * crash test inherit, or a cluster of this process's own). */

static char *
pg_create (gsize block_size, GError **error)
{
  char *name = test_pg_unique_name ("conformance");
  BigfilePgFile *file = bigfile_pg_file_new (test_pg_conninfo (FALSE), name, block_size,
                                             BIGFILE_PG_FILE_FLAGS_CREATE, error);

  if (file == NULL)
    {
      g_free (name);
      return NULL;
    }
  g_object_unref (file);
  return name;
}

static BigfileFile *
pg_open (const char *location, gsize block_size, GError **error)
{
  return (BigfileFile *)bigfile_pg_file_new (test_pg_conninfo (FALSE), location, block_size,
                                             BIGFILE_PG_FILE_FLAGS_NONE, error);
}

static BigfileFile *
pg_open_read_only (const char *location, gsize block_size, GError **error)
{
  return (BigfileFile *)bigfile_pg_file_new (test_pg_conninfo (FALSE), location, block_size,
                                             BIGFILE_PG_FILE_FLAGS_READ_ONLY, error);
}

static void
pg_destroy (const char *location)
{
  g_autofree char *sql
      = g_strdup_printf ("WITH f AS (DELETE FROM bigfile_files WHERE name = '%s' RETURNING id) "
                         "DELETE FROM bigfile_changes WHERE file IN (SELECT id FROM f)",
                         location);

  g_free (test_pg_query (test_pg_conninfo (FALSE), sql));
}
#endif

#ifdef HAVE_SQLITE
/* -- sqlite: BigfileSqliteFile ------------------------------------------------------ */

/* Each storage is the bigfile "conformance" of a database "data.db" in a
 * directory of its own (with the database's -wal and -shm files). */

#define SQLITE_NAME "conformance"

static char *
sqlite_create (gsize block_size, GError **error)
{
  g_autofree char *dir = g_dir_make_tmp ("bigfile-backend-XXXXXX", error);
  char *path;
  BigfileSqliteFile *file;

  if (dir == NULL)
    return NULL;
  path = g_build_filename (dir, "data.db", NULL);
  file = bigfile_sqlite_file_new (path, SQLITE_NAME, block_size, BIGFILE_SQLITE_FILE_FLAGS_CREATE,
                                  error);
  if (file == NULL)
    {
      remove_tree (dir);
      g_free (path);
      return NULL;
    }
  g_object_unref (file);
  return path;
}

static BigfileFile *
sqlite_open (const char *location, gsize block_size, GError **error)
{
  return (BigfileFile *)bigfile_sqlite_file_new (location, SQLITE_NAME, block_size,
                                                 BIGFILE_SQLITE_FILE_FLAGS_NONE, error);
}

static BigfileFile *
sqlite_open_read_only (const char *location, gsize block_size, GError **error)
{
  return (BigfileFile *)bigfile_sqlite_file_new (location, SQLITE_NAME, block_size,
                                                 BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY, error);
}

static gboolean
sqlite_set_fault (BigfileFile *file, TestFault fault, int after)
{
  static const BfSqliteFault map[] = {
    [TEST_FAULT_LOAD] = BF_SQLITE_FAULT_LOAD,
    [TEST_FAULT_STORE] = BF_SQLITE_FAULT_STORE,
    [TEST_FAULT_SET_SIZE] = BF_SQLITE_FAULT_SET_SIZE,
    [TEST_FAULT_BEGIN] = BF_SQLITE_FAULT_BEGIN,
    [TEST_FAULT_COMMIT] = BF_SQLITE_FAULT_COMMIT,
    [TEST_FAULT_REFRESH] = BF_SQLITE_FAULT_REFRESH,
  };

  _bigfile_sqlite_file_set_fault (BIGFILE_SQLITE_FILE (file), map[fault], after);
  return TRUE;
}
#endif

/* -- the table ------------------------------------------------------------------- */

static const TestBackend backends[] = {
  {
      .name = "mem",
      .transactional = FALSE,
      .shared = FALSE,
      .has_size = TRUE,
      .persistent = FALSE,
      .checks_block_size = FALSE,
      .one_object = TRUE,
      .create = mem_create,
      .open = mem_open,
      .open_read_only = NULL,
      .destroy = mem_destroy,
      .set_fault = mem_set_fault,
  },
  {
      .name = "mem-shared",
      .transactional = TRUE,
      .shared = TRUE,
      .has_size = TRUE,
      .persistent = FALSE,
      .checks_block_size = TRUE,
      .one_object = FALSE,
      .create = mem_shared_create,
      .open = mem_shared_open,
      .open_read_only = mem_shared_open_read_only,
      .destroy = mem_shared_destroy,
      .set_fault = mem_shared_set_fault,
  },
  {
      .name = "txn",
      .transactional = TRUE,
      .shared = TRUE,
      .has_size = TRUE,
      .persistent = FALSE,
      .checks_block_size = FALSE,
      .one_object = FALSE,
      .create = txn_create,
      .open = txn_open,
      .open_read_only = NULL,
      .destroy = txn_destroy,
      .set_fault = txn_set_fault,
  },
  {
      .name = "local",
      .transactional = FALSE,
      .shared = FALSE,
      .has_size = TRUE,
      .persistent = TRUE,
      /* A plain file records no block size: any is as good. */
      .checks_block_size = FALSE,
      .one_object = FALSE,
      .create = local_create,
      .open = local_open,
      .open_read_only = local_open_read_only,
      .destroy = local_destroy,
      /* No fault injection: a real file cannot be made to fail on demand,
       * and a mock would test the mock. */
      .set_fault = NULL,
  },
  {
      .name = "local-atomic",
      .transactional = TRUE,
      .shared = FALSE,
      .has_size = TRUE,
      .persistent = TRUE,
      /* The journal records byte offsets: any block size reads the file. */
      .checks_block_size = FALSE,
      /* See local_atomic_open(). */
      .one_object = TRUE,
      .create = local_atomic_create,
      .open = local_atomic_open,
      .open_read_only = local_atomic_open_read_only,
      .destroy = local_destroy,
      .set_fault = local_atomic_set_fault,
  },

#ifdef HAVE_SQLITE
  {
      .name = "sqlite",
      .transactional = TRUE,
      .shared = TRUE,
      .has_size = TRUE,
      .persistent = TRUE,
      .checks_block_size = TRUE,
      .one_object = FALSE,
      .create = sqlite_create,
      .open = sqlite_open,
      .open_read_only = sqlite_open_read_only,
      .destroy = local_destroy, /* the directory, as for local */
      /* The real SQLite, failing before the call: see
       * _bigfile_sqlite_file_set_fault() (test-sqlite-file.c fails each
       * SQLite call in turn too). */
      .set_fault = sqlite_set_fault,
  },
#endif
#ifdef HAVE_POSTGRESQL
  {
      .name = "pg",
      .transactional = TRUE,
      .shared = TRUE,
      .has_size = TRUE,
      .persistent = TRUE,
      .checks_block_size = TRUE,
      .one_object = FALSE,
      .create = pg_create,
      .open = pg_open,
      .open_read_only = pg_open_read_only,
      .destroy = pg_destroy,
      /* None by kind of call: test-pg-file.c fails every libpq call in
       * turn (_bigfile_pg_file_fail_after()), and kills real backends. */
      .set_fault = NULL,
  },
#endif
};

static const TestBackend *const *
backend_pointers (void)
{
  static const TestBackend *list[G_N_ELEMENTS (backends) + 1];

  if (list[0] == NULL)
    for (gsize i = 0; i < G_N_ELEMENTS (backends); i++)
      list[i] = &backends[i];
  return list;
}

const TestBackend *const *
test_backends_list (void)
{
  return backend_pointers ();
}

const TestBackend *
test_backends_lookup (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (backends); i++)
    if (g_strcmp0 (backends[i].name, name) == 0)
      return &backends[i];
  return NULL;
}

const TestBackend *
test_backends_from_args (int *argc, char ***argv)
{
  const char *name = g_getenv ("BIGFILE_TEST_BACKEND");
  const TestBackend *backend;

  if (*argc > 1 && g_str_has_prefix ((*argv)[1], "--backend="))
    {
      name = (*argv)[1] + strlen ("--backend=");
      memmove (&(*argv)[1], &(*argv)[2], (gsize)(*argc - 1) * sizeof (char *));
      (*argc)--;
    }

  backend = name != NULL ? test_backends_lookup (name) : NULL;
  if (backend == NULL)
    {
      GString *names = g_string_new (NULL);

      for (const TestBackend *const *b = test_backends_list (); *b != NULL; b++)
        g_string_append_printf (names, " %s", (*b)->name);
      fprintf (stderr,
               "%s: %s backend%s%s: give one with --backend=NAME (the first argument) or "
               "BIGFILE_TEST_BACKEND; this build has:%s\n",
               g_get_prgname () != NULL ? g_get_prgname () : (*argv)[0],
               name != NULL ? "unknown" : "no", name != NULL ? " " : "", name != NULL ? name : "",
               names->str);
      g_string_free (names, TRUE);
      exit (2);
    }
  return backend;
}
