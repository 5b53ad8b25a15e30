/* bigfile-glib tests - the conformance suite: what every BigfileFile
 * implementation does, run against each backend of test-backends.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One program, one body of tests: the backend comes from the first
 * argument (--backend=NAME) or $BIGFILE_TEST_BACKEND, and the test paths
 * are /conformance/NAME/... tests/meson.build registers the program once
 * per backend. A test that needs what a backend does not claim (see
 * TestBackend) is skipped with the reason; a claim is itself checked
 * (/conformance/NAME/capabilities), so that a backend cannot skip by
 * claiming less than it has.
 *
 * The data: blocks are filled with one 64-bit word repeated, VAL (version,
 * block) (TEST_VAL of test-backends.h).
 *
 * Clients: "a second client" is a second file object opened on the same
 * storage, as another process or host would be; each has at most one
 * handle.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "test-backends.h"
#include "test-util.h"

#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

static const TestBackend *backend;

#define PS ((gsize)4096)
/* How long a test waits for something that should come at once (a
 * ::changed, a page-invalidated), before it fails. */
#define WAIT_MS (RUNNING_ON_VALGRIND ? 30000 : 10000)

#define VAL TEST_VAL
#define VERSION_OF TEST_VERSION_OF
#define BLOCK_OF TEST_BLOCK_OF

/* Asserts that @call, which sets the GError `error` on failure, succeeded:
 * the error first, so that a failure shows its message. */
#define CHECK(call)                                                                                \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gboolean ok_ = (call);                                                                         \
    g_assert_no_error (error);                                                                     \
    g_assert_true (ok_);                                                                           \
  }                                                                                                \
  G_STMT_END

/* Skips the rest of the test, saying why, unless @cond. */
#define REQUIRE(cond, why)                                                                         \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (!(cond))                                                                                   \
      {                                                                                            \
        g_test_skip_printf ("%s: %s", backend->name, (why));                                       \
        return;                                                                                    \
      }                                                                                            \
  }                                                                                                \
  G_STMT_END

/* -- blocks ---------------------------------------------------------------------- */

static void
fill (guint8 *buffer, gsize length, guint64 value)
{
  for (gsize i = 0; i + 8 <= length; i += 8)
    memcpy (buffer + i, &value, 8);
}

/* The word a block is filled with; fails the test if it is not uniform
 * (a torn block, or junk). */
static guint64
uniform_value (const guint8 *buffer, gsize length, const char *what, guint64 block)
{
  guint64 first, word;

  memcpy (&first, buffer, 8);
  for (gsize i = 8; i + 8 <= length; i += 8)
    {
      memcpy (&word, buffer + i, 8);
      if (word != first)
        g_error ("%s: block %" G_GUINT64_FORMAT " is not one value: 0x%" G_GINT64_MODIFIER
                 "x at 0, 0x%" G_GINT64_MODIFIER "x at byte %" G_GSIZE_FORMAT,
                 what, block, first, word, i);
    }
  return first;
}

static guint64
load_value (BigfileFile *file, guint64 block)
{
  gsize bs = bigfile_file_get_block_size (file);
  g_autofree guint8 *buffer = g_malloc (bs);
  GError *error = NULL;

  /* Junk in the buffer: a load fills it whole. */
  memset (buffer, 0xa5, bs);
  CHECK (bigfile_file_load_block_raw (file, block, buffer, bs, &error));
  return uniform_value (buffer, bs, "load", block);
}

static void
assert_loads (BigfileFile *file, guint64 block, guint64 want)
{
  guint64 got = load_value (file, block);

  if (got != want)
    g_error ("block %" G_GUINT64_FORMAT " holds version %u (value 0x%" G_GINT64_MODIFIER
             "x), not version %u (0x%" G_GINT64_MODIFIER "x)",
             block, VERSION_OF (got), got, VERSION_OF (want), want);
}

static void
store_value (BigfileFile *file, guint64 block, guint64 value)
{
  gsize bs = bigfile_file_get_block_size (file);
  g_autofree guint8 *buffer = g_malloc (bs);
  GError *error = NULL;

  fill (buffer, bs, value);
  CHECK (bigfile_file_store_block_raw (file, block, buffer, bs, &error));
}

/* Makes the file at least @size bytes long, for a backend with a size,
 * inside the transaction the caller opened: a file with a size is never
 * stored past it. */
static void
cover_size (BigfileFile *file, guint64 size)
{
  guint64 current = 0;
  GError *error = NULL;

  if (!backend->has_size)
    return;
  CHECK (bigfile_file_get_size (file, &current, &error));
  if (current < size)
    {
      CHECK (bigfile_file_set_size (file, size, &error));
    }
}

/* Stores VAL (@version, b) in blocks @first to @first + @n - 1, in one
 * transaction (nothing, for a backend without). */
static void
commit_range (BigfileFile *file, guint64 first, guint64 n, guint version)
{
  GError *error = NULL;

  CHECK (bigfile_file_begin_transaction (file, &error));
  cover_size (file, (first + n) * bigfile_file_get_block_size (file));
  for (guint64 b = first; b < first + n; b++)
    store_value (file, b, VAL (version, b));
  CHECK (bigfile_file_commit_transaction (file, BIGFILE_COMMIT_FLAGS_NONE, &error));
}

static GArray *
refresh (BigfileFile *file)
{
  GError *error = NULL;
  GArray *changed = bigfile_file_refresh (file, &error);

  g_assert_no_error (error);
  g_assert_nonnull (changed);
  return changed;
}

static void
refresh_quietly (BigfileFile *file)
{
  g_array_unref (refresh (file));
}

static gint
compare_u64 (gconstpointer a, gconstpointer b)
{
  guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;

  return x < y ? -1 : x > y;
}

static char *
blocks_to_string (const guint64 *blocks, gsize n)
{
  GString *s = g_string_new ("{");

  for (gsize i = 0; i < n; i++)
    {
      if (blocks[i] == G_MAXUINT64)
        g_string_append_printf (s, "%sANY", i > 0 ? ", " : "");
      else
        g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i > 0 ? ", " : "", blocks[i]);
    }
  g_string_append (s, "}");
  return g_string_free (s, FALSE);
}

/* Asserts that @changed (taken) holds exactly the blocks @want, each once
 * or more, in any order: G_MAXUINT64 ("any block", which the contract
 * allows a file that cannot tell) fails too, since every backend here can
 * tell. */
static void
assert_changed (GArray *changed, const guint64 *want, gsize n_want)
{
  g_autofree guint64 *sorted_want = g_memdup2 (want, n_want * sizeof (guint64));
  gsize n = 0;

  g_array_sort (changed, compare_u64);
  for (guint i = 0; i < changed->len; i++)
    if (n == 0 || g_array_index (changed, guint64, i) != g_array_index (changed, guint64, n - 1))
      g_array_index (changed, guint64, n++) = g_array_index (changed, guint64, i);
  g_array_set_size (changed, (guint)n);
  if (n_want > 0)
    qsort (sorted_want, n_want, sizeof (guint64), compare_u64);

  if (n != n_want || (n > 0 && memcmp (changed->data, sorted_want, n * sizeof (guint64)) != 0))
    {
      g_autofree char *got_s = blocks_to_string ((guint64 *)changed->data, n);
      g_autofree char *want_s = blocks_to_string (sorted_want, n_want);

      g_error ("refresh reported the blocks %s, not %s", got_s, want_s);
    }
  g_array_unref (changed);
}

/* -- the fixture: a fresh storage and its clients ------------------------------------ */

/* A client and its handle. Made, used and freed on the test's main
 * thread, whose default main context gets their signals; the threads of a
 * test only use the file and the handle they point to. */
typedef struct
{
  BigfileFile *file;
  BigfileHandle *handle; /* NULL until client_map() */
  BigfileVma *vma;       /* pages 0 to n_pages - 1 of handle */
  guint64 n_pages;
  GArray *invalidated; /* guint64: the handle's page-invalidated, in order */
  guint n_changed;     /* the file's ::changed */
  gint64 changed_at;   /* monotonic time of the last ::changed */
} Client;

typedef struct
{
  char *location;
  gsize bs;
  BigfileRam *ram;
  GPtrArray *clients;   /* Client * */
  BigfileFile *checker; /* a client that only loads, to see the storage */
} Fixture;

static void
on_changed (BigfileFile *file, gpointer user_data)
{
  Client *c = user_data;

  c->n_changed++;
  c->changed_at = g_get_monotonic_time ();
}

static void
on_page_invalidated (BigfileHandle *handle, guint64 page, gpointer user_data)
{
  Client *c = user_data;

  g_array_append_val (c->invalidated, page);
}

static BigfileFile *
open_file (const char *location, gsize bs)
{
  GError *error = NULL;
  BigfileFile *file = backend->open (location, bs, &error);

  g_assert_no_error (error);
  g_assert_nonnull (file);
  return file;
}

static Client *
client_new (Fixture *fx)
{
  Client *c = g_new0 (Client, 1);

  c->file = open_file (fx->location, fx->bs);
  c->invalidated = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_signal_connect (c->file, "changed", G_CALLBACK (on_changed), c);
  g_ptr_array_add (fx->clients, c);
  return c;
}

/* Opens a handle of @c's file and maps its first @n_pages pages. */
static void
client_map (Fixture *fx, Client *c, guint64 n_pages)
{
  GError *error = NULL;

  g_assert_null (c->handle);
  c->handle = bigfile_handle_new (c->file, fx->ram, &error);
  g_assert_no_error (error);
  g_signal_connect (c->handle, "page-invalidated", G_CALLBACK (on_page_invalidated), c);
  c->vma = bigfile_handle_map (c->handle, 0, n_pages, &error);
  g_assert_no_error (error);
  c->n_pages = n_pages;
}

static void
client_free (Client *c)
{
  if (c->vma != NULL)
    {
      bigfile_vma_unmap (c->vma);
      g_clear_object (&c->vma);
    }
  if (c->handle != NULL)
    {
      g_signal_handlers_disconnect_by_data (c->handle, c);
      bigfile_handle_close (c->handle);
      g_clear_object (&c->handle);
    }
  g_signal_handlers_disconnect_by_data (c->file, c);
  g_clear_object (&c->file);
  g_array_unref (c->invalidated);
  g_free (c);
}

static void
fixture_setup_bs (Fixture *fx, gsize bs)
{
  GError *error = NULL;

  fx->bs = bs;
  fx->location = backend->create (bs, &error);
  g_assert_no_error (error);
  g_assert_nonnull (fx->location);
  fx->ram = bigfile_ram_new (64 << 20);
  fx->clients = g_ptr_array_new ();
}

static void
fixture_setup (Fixture *fx, gconstpointer data)
{
  fixture_setup_bs (fx, PS);
}

static void
fixture_teardown (Fixture *fx, gconstpointer data)
{
  /* Let what the clients scheduled (::changed, notifications) run while
   * they are alive, so that nothing is left for the next test. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  for (guint i = 0; i < fx->clients->len; i++)
    client_free (g_ptr_array_index (fx->clients, i));
  g_ptr_array_unref (fx->clients);
  g_clear_object (&fx->checker);
  g_clear_object (&fx->ram);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  backend->destroy (fx->location);
  g_free (fx->location);
}

/* What the storage holds at @block now, seen by a client that only
 * loads (refreshed first). */
static guint64
stored_value (Fixture *fx, guint64 block)
{
  if (fx->checker == NULL)
    fx->checker = open_file (fx->location, fx->bs);
  refresh_quietly (fx->checker);
  return load_value (fx->checker, block);
}

static void
assert_stored (Fixture *fx, guint64 block, guint64 want)
{
  guint64 got = stored_value (fx, block);

  if (got != want)
    g_error ("the storage holds version %u (0x%" G_GINT64_MODIFIER "x) at block %" G_GUINT64_FORMAT
             ", not version %u",
             VERSION_OF (got), got, block, VERSION_OF (want));
}

/* Two clients of the storage, after a commits version 1 of its first
 * @n_blocks blocks (none if 0) and b refreshes to it. */
static void
two_clients (Fixture *fx, Client **a, Client **b, guint64 n_blocks)
{
  *a = client_new (fx);
  *b = client_new (fx);
  if (n_blocks > 0)
    commit_range ((*a)->file, 0, n_blocks, 1);
  refresh_quietly ((*b)->file);
}

/* @block holds @want for a, for b and in the storage. */
static void
assert_everywhere (Fixture *fx, Client *a, Client *b, guint64 block, guint64 want)
{
  assert_loads (a->file, block, want);
  assert_loads (b->file, block, want);
  assert_stored (fx, block, want);
}

static guint64
stored_size (Fixture *fx)
{
  guint64 size = 0;
  GError *error = NULL;

  if (fx->checker == NULL)
    fx->checker = open_file (fx->location, fx->bs);
  refresh_quietly (fx->checker);
  CHECK (bigfile_file_get_size (fx->checker, &size, &error));
  return size;
}

static gboolean
inject (BigfileFile *file, TestFault fault, int after)
{
  return backend->set_fault != NULL && backend->set_fault (file, fault, after);
}

/* -- pages of a handle ------------------------------------------------------------- */

static void
page_write (Client *c, guint64 page, guint64 value)
{
  gsize ps = bigfile_handle_get_page_size (c->handle);
  guint8 *buffer = g_malloc (ps);
  g_autoptr (GBytes) bytes = NULL;
  GError *error = NULL;

  fill (buffer, ps, value);
  bytes = g_bytes_new_take (buffer, ps);
  CHECK (bigfile_vma_write (c->vma, page * ps, bytes, &error));
}

static guint64
page_read (Client *c, guint64 page)
{
  gsize ps = bigfile_handle_get_page_size (c->handle);
  g_autofree guint8 *buffer = g_malloc (ps);
  GError *error = NULL;

  CHECK (bigfile_vma_read_into (c->vma, page * ps, buffer, ps, &error));
  return uniform_value (buffer, ps, "page", page);
}

static void
assert_page (Client *c, guint64 page, guint64 want)
{
  guint64 got = page_read (c, page);

  if (got != want)
    g_error ("page %" G_GUINT64_FORMAT " shows version %u (0x%" G_GINT64_MODIFIER
             "x), not version %u",
             page, VERSION_OF (got), got, VERSION_OF (want));
}

static void
assert_state (Client *c, guint64 page, BigfilePageState want)
{
  g_assert_cmpint (bigfile_handle_get_page_state (c->handle, page), ==, want);
}

static void
writeout (Client *c, BigfileWriteoutFlags flags)
{
  GError *error = NULL;

  CHECK (bigfile_handle_writeout (c->handle, flags, &error));
}

/* Runs the main context until @done or WAIT_MS pass; returns @done. */
static gboolean
wait_until (gboolean (*done) (gpointer), gpointer data)
{
  gint64 deadline = g_get_monotonic_time () + (gint64)WAIT_MS * 1000;

  while (!done (data))
    {
      if (g_get_monotonic_time () > deadline)
        return FALSE;
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (1000);
    }
  return TRUE;
}

/* Runs the main context for @ms, for what should not come. */
static void
run_for (guint ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64)ms * 1000;

  while (g_get_monotonic_time () < deadline)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);
}

/* ================================================================================= */
/* The file                                                                           */
/* ================================================================================= */

static void
test_capabilities (Fixture *fx, gconstpointer data)
{
  Client *a = client_new (fx);
  guint64 size = 1;
  GError *error = NULL;

  g_test_summary ("What the backend table claims is what the objects do: transactions, refresh, "
                  "a size, thread safety.");

  /* An atomic file implements the transaction methods; a file may
   * implement them without being atomic (a plain BigfileLocalFile, for
   * durable commits). */
  if (backend->transactional)
    g_assert_true (bigfile_file_is_transactional (a->file));
  g_assert_cmpint (BIGFILE_FILE_GET_IFACE (a->file)->refresh != NULL, ==, backend->shared);
  g_assert_cmpint (bigfile_file_get_size (a->file, &size, &error), ==, backend->has_size);
  g_assert_no_error (error);
  if (backend->has_size)
    g_assert_cmpuint (size, ==, 0);
  /* Every storage implementation is in C and thread-safe (issue 7). */
  g_assert_true (bigfile_file_is_thread_safe (a->file));
  g_assert_cmpuint (bigfile_file_get_block_size (a->file), ==, PS);

  if (!backend->one_object)
    {
      Client *b = client_new (fx);

      g_assert_true (a->file != b->file);
    }
}

static void
test_absent_blocks (Fixture *fx, gconstpointer data)
{
  const guint64 blocks[] = { 0, 1, 7, 1000, (guint64)1 << 30 };
  Client *a = client_new (fx);

  g_test_summary ("A block never stored loads as zeros, far past the end too, in both load "
                  "methods, and loading changes nothing.");

  for (guint i = 0; i < G_N_ELEMENTS (blocks); i++)
    {
      GError *error = NULL;
      g_autoptr (GBytes) bytes = NULL;
      const guint8 *p;
      gsize n;

      g_assert_cmpuint (load_value (a->file, blocks[i]), ==, 0);
      bytes = bigfile_file_load_block (a->file, blocks[i], &error);
      g_assert_no_error (error);
      g_assert_nonnull (bytes);
      p = g_bytes_get_data (bytes, &n);
      g_assert_cmpuint (n, <=, PS);
      for (gsize j = 0; j < n; j++)
        g_assert_cmpuint (p[j], ==, 0);
    }
  if (backend->has_size)
    g_assert_cmpuint (stored_size (fx), ==, 0);
}

static void
test_store_load (Fixture *fx, gconstpointer data)
{
  Client *a = client_new (fx);
  GError *error = NULL;
  guint8 buffer[PS];
  g_autoptr (GBytes) bytes = NULL;

  g_test_summary ("Blocks stored load back, on the client that stored them and on a new one; "
                  "blocks between them stay zeros; a block stored again shows the new data.");

  CHECK (bigfile_file_begin_transaction (a->file, &error));
  cover_size (a->file, 8 * PS);
  store_value (a->file, 0, VAL (1, 0));
  store_value (a->file, 3, VAL (1, 3));
  /* The GBytes method as well as the raw one. */
  fill (buffer, PS, VAL (1, 7));
  bytes = g_bytes_new (buffer, PS);
  CHECK (bigfile_file_store_block (a->file, 7, bytes, &error));
  CHECK (bigfile_file_commit_transaction (a->file, BIGFILE_COMMIT_FLAGS_NONE, &error));

  for (guint64 b = 0; b < 8; b++)
    {
      guint64 want = (b == 0 || b == 3 || b == 7) ? VAL (1, b) : 0;

      assert_loads (a->file, b, want);
      assert_stored (fx, b, want);
    }
  {
    g_autoptr (GBytes) back = bigfile_file_load_block (a->file, 3, &error);
    gsize n;
    const guint8 *p = g_bytes_get_data (back, &n);

    g_assert_no_error (error);
    g_assert_cmpuint (n, ==, PS);
    g_assert_cmpuint (uniform_value (p, n, "load_block", 3), ==, VAL (1, 3));
  }

  commit_range (a->file, 3, 1, 2);
  assert_loads (a->file, 3, VAL (2, 3));
  assert_stored (fx, 3, VAL (2, 3));
  assert_stored (fx, 0, VAL (1, 0));
}

static void
test_store_outside_transaction (Fixture *fx, gconstpointer data)
{
  Client *a = client_new (fx);
  GError *error = NULL;
  guint8 buffer[PS];
  gboolean ok;

  g_test_summary ("A store outside a transaction either is committed at once, or fails with a "
                  "GError and stores nothing: never half.");

  if (backend->has_size)
    {
      ok = bigfile_file_set_size (a->file, PS, &error);
      if (!ok)
        {
          g_assert_nonnull (error);
          g_test_message ("set_size outside a transaction fails: %s", error->message);
          g_clear_error (&error);
          g_assert_cmpuint (stored_size (fx), ==, 0);
          return;
        }
      g_assert_cmpuint (stored_size (fx), ==, PS);
    }
  fill (buffer, PS, VAL (1, 0));
  ok = bigfile_file_store_block_raw (a->file, 0, buffer, PS, &error);
  if (ok)
    {
      g_assert_no_error (error);
      assert_loads (a->file, 0, VAL (1, 0));
      assert_stored (fx, 0, VAL (1, 0));
    }
  else
    {
      g_assert_nonnull (error);
      g_test_message ("a store outside a transaction fails: %s", error->message);
      g_clear_error (&error);
      assert_stored (fx, 0, 0);
    }
}

static void
test_block_sizes (void)
{
  const gsize sizes[] = { 4096, 16384, 65536, 2 << 20 };

  g_test_summary ("Every valid block size, 4 KiB to 2 MiB, is kept and stores whole blocks.");

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      Fixture fx = { 0 };
      Client *a;

      fixture_setup_bs (&fx, sizes[i]);
      a = client_new (&fx);
      g_assert_cmpuint (bigfile_file_get_block_size (a->file), ==, sizes[i]);
      commit_range (a->file, 1, 1, 1);
      assert_loads (a->file, 1, VAL (1, 1));
      assert_loads (a->file, 0, 0);
      assert_stored (&fx, 1, VAL (1, 1));
      g_assert_cmpuint (bigfile_file_get_block_size (fx.checker), ==, sizes[i]);
      if (backend->has_size)
        g_assert_cmpuint (stored_size (&fx), ==, 2 * sizes[i]);
      fixture_teardown (&fx, NULL);
    }
}

static void
test_bad_block_size (void)
{
  const gsize sizes[] = { 0, 1000, 2048, 4097, 3 * 4096, (gsize)4 << 20 };
  g_autoptr (BigfileRam) ram = bigfile_ram_new (64 << 20);

  g_test_summary ("A block size that is not a power of two from 4 KiB to 2 MiB gives a clear "
                  "error: from create, from open, or at the latest from bigfile_handle_new().");

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      GError *error = NULL;
      char *location = backend->create (sizes[i], &error);
      BigfileFile *file;
      BigfileHandle *handle;

      if (location == NULL)
        {
          g_assert_nonnull (error);
          g_assert_cmpstr (error->message, !=, "");
          g_test_message ("%" G_GSIZE_FORMAT ": create fails: %s", sizes[i], error->message);
          g_clear_error (&error);
          continue;
        }
      g_assert_no_error (error);
      file = backend->open (location, sizes[i], &error);
      if (file == NULL)
        {
          g_assert_nonnull (error);
          g_assert_cmpstr (error->message, !=, "");
          g_test_message ("%" G_GSIZE_FORMAT ": open fails: %s", sizes[i], error->message);
          g_clear_error (&error);
          backend->destroy (location);
          g_free (location);
          continue;
        }
      handle = bigfile_handle_new (file, ram, &error);
      g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_INVALID_BLOCK_SIZE);
      g_assert_null (handle);
      g_test_message ("%" G_GSIZE_FORMAT ": bigfile_handle_new fails: %s", sizes[i],
                      error->message);
      g_clear_error (&error);
      g_object_unref (file);
      backend->destroy (location);
      g_free (location);
    }
}

static void
test_other_block_size (Fixture *fx, gconstpointer data)
{
  Client *a;
  GError *error = NULL;
  BigfileFile *file;

  g_test_summary ("A storage keeps its block size: opening it with another fails with "
                  "BIGFILE_FILE_ERROR_INVALID_ARGUMENT and leaves it as it was.");
  REQUIRE (backend->checks_block_size, "the storage records no block size");

  a = client_new (fx);
  commit_range (a->file, 0, 2, 1);
  file = backend->open (fx->location, 2 * PS, &error);
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_INVALID_ARGUMENT);
  g_assert_null (file);
  g_clear_error (&error);
  assert_stored (fx, 0, VAL (1, 0));
  assert_stored (fx, 1, VAL (1, 1));
}

static void
set_size_committed (BigfileFile *file, guint64 size)
{
  GError *error = NULL;

  CHECK (bigfile_file_begin_transaction (file, &error));
  CHECK (bigfile_file_set_size (file, size, &error));
  CHECK (bigfile_file_commit_transaction (file, BIGFILE_COMMIT_FLAGS_NONE, &error));
}

static guint64
get_size (BigfileFile *file)
{
  guint64 size = G_MAXUINT64;
  GError *error = NULL;

  CHECK (bigfile_file_get_size (file, &size, &error));
  return size;
}

/* Loads @block and checks that its first @n bytes are VAL (@version,
 * @block) and the rest zeros. */
static void
assert_partial (BigfileFile *file, guint64 block, gsize n, guint version)
{
  g_autofree guint8 *buffer = g_malloc (PS);
  g_autofree guint8 *want = g_malloc0 (PS);
  GError *error = NULL;

  memset (buffer, 0xa5, PS);
  CHECK (bigfile_file_load_block_raw (file, block, buffer, PS, &error));
  fill (want, n - n % 8, VAL (version, block));
  memcpy (want + n - n % 8, &(guint64){ VAL (version, block) }, n % 8);
  g_assert_cmpmem (buffer, PS, want, PS);
}

static void
test_size (Fixture *fx, gconstpointer data)
{
  Client *a;
  GError *error = NULL;
  guint8 buffer[PS];

  g_test_summary ("The size in bytes is kept exactly, odd sizes too; the last block is stored "
                  "with only the bytes below the size; shrinking drops bytes, which growing "
                  "again does not bring back.");
  REQUIRE (backend->has_size, "no size");

  a = client_new (fx);
  g_assert_cmpuint (get_size (a->file), ==, 0);

  set_size_committed (a->file, 5000);
  g_assert_cmpuint (get_size (a->file), ==, 5000);
  g_assert_cmpuint (stored_size (fx), ==, 5000);
  assert_loads (a->file, 1, 0);

  /* The last block holds 904 bytes. */
  CHECK (bigfile_file_begin_transaction (a->file, &error));
  fill (buffer, PS, VAL (1, 1));
  CHECK (bigfile_file_store_block_raw (a->file, 1, buffer, 5000 - PS, &error));
  store_value (a->file, 0, VAL (1, 0));
  CHECK (bigfile_file_commit_transaction (a->file, BIGFILE_COMMIT_FLAGS_NONE, &error));
  g_assert_cmpuint (get_size (a->file), ==, 5000);
  g_assert_cmpuint (stored_size (fx), ==, 5000);
  assert_partial (a->file, 1, 5000 - PS, 1);
  assert_partial (fx->checker, 1, 5000 - PS, 1);

  /* Shrinking into the block keeps the bytes below the size... */
  set_size_committed (a->file, PS + 9);
  g_assert_cmpuint (get_size (a->file), ==, PS + 9);
  g_assert_cmpuint (stored_size (fx), ==, PS + 9);
  assert_partial (a->file, 1, 9, 1);
  assert_partial (fx->checker, 1, 9, 1);

  /* ...and growing shows zeros from there on: the dropped bytes are gone. */
  set_size_committed (a->file, 3 * PS + 1);
  g_assert_cmpuint (stored_size (fx), ==, 3 * PS + 1);
  assert_partial (a->file, 1, 9, 1);
  assert_partial (fx->checker, 1, 9, 1);
  assert_loads (a->file, 2, 0);
  assert_loads (a->file, 3, 0);
  assert_loads (a->file, 0, VAL (1, 0));

  set_size_committed (a->file, 0);
  g_assert_cmpuint (stored_size (fx), ==, 0);
  assert_loads (a->file, 0, 0);
  assert_loads (a->file, 1, 0);
  assert_loads (fx->checker, 0, 0);
}

static void
test_size_odd (Fixture *fx, gconstpointer data)
{
  const guint64 sizes[] = { 1, 7, 4095, 4096, 4097, 12345, 3 * 4096 - 1, 100 * 4096 + 13 };
  Client *a;
  GError *error = NULL;

  g_test_summary ("A partial last block of any length is stored and loaded back exactly, with "
                  "zeros after it, and the size kept to the byte.");
  REQUIRE (backend->has_size, "no size");

  a = client_new (fx);
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      guint64 last = (sizes[i] - 1) / PS;
      gsize n = (gsize)(sizes[i] - last * PS);
      guint8 buffer[PS];

      CHECK (bigfile_file_begin_transaction (a->file, &error));
      CHECK (bigfile_file_set_size (a->file, 0, &error));
      CHECK (bigfile_file_set_size (a->file, sizes[i], &error));
      fill (buffer, PS, VAL (i + 1, last));
      CHECK (bigfile_file_store_block_raw (a->file, last, buffer, n, &error));
      CHECK (bigfile_file_commit_transaction (a->file, BIGFILE_COMMIT_FLAGS_NONE, &error));

      g_assert_cmpuint (get_size (a->file), ==, sizes[i]);
      g_assert_cmpuint (stored_size (fx), ==, sizes[i]);
      assert_partial (a->file, last, n, i + 1);
      assert_partial (fx->checker, last, n, i + 1);
      assert_loads (fx->checker, last + 1, 0);
    }
}

/* -- transactions ------------------------------------------------------------------ */

static void
test_transaction_commit (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  GError *error = NULL;

  g_test_summary ("Inside a transaction, loads (of the writer and of others) read the snapshot "
                  "without its stores; after the commit everyone sees all of them.");
  REQUIRE (backend->transactional, "not transactional");

  two_clients (fx, &a, &b, 4);

  CHECK (bigfile_file_begin_transaction (a->file, &error));
  for (guint64 i = 0; i < 4; i++)
    store_value (a->file, i, VAL (2, i));
  for (guint64 i = 0; i < 4; i++)
    {
      assert_loads (a->file, i, VAL (1, i));
      assert_loads (b->file, i, VAL (1, i));
    }
  refresh_quietly (b->file);
  assert_loads (b->file, 0, VAL (1, 0));
  assert_stored (fx, 0, VAL (1, 0));

  CHECK (bigfile_file_commit_transaction (a->file, BIGFILE_COMMIT_FLAGS_NONE, &error));
  refresh_quietly (b->file);
  for (guint64 i = 0; i < 4; i++)
    {
      assert_everywhere (fx, a, b, i, VAL (2, i));
    }
}

static void
test_transaction_abort (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  GError *error = NULL;

  g_test_summary ("An aborted transaction leaves the storage as it was, stores and size alike, "
                  "and the next one works.");
  REQUIRE (backend->transactional, "not transactional");

  two_clients (fx, &a, &b, 4);

  CHECK (bigfile_file_begin_transaction (a->file, &error));
  if (backend->has_size)
    {
      CHECK (bigfile_file_set_size (a->file, PS, &error));
      CHECK (bigfile_file_set_size (a->file, 6 * PS, &error));
    }
  for (guint64 i = 0; i < 6; i++)
    store_value (a->file, i, VAL (2, i));
  bigfile_file_abort_transaction (a->file);

  refresh_quietly (b->file);
  for (guint64 i = 0; i < 6; i++)
    {
      guint64 want = i < 4 ? VAL (1, i) : 0;

      assert_everywhere (fx, a, b, i, want);
    }
  if (backend->has_size)
    {
      g_assert_cmpuint (get_size (a->file), ==, 4 * PS);
      g_assert_cmpuint (stored_size (fx), ==, 4 * PS);
    }

  commit_range (a->file, 1, 1, 3);
  assert_stored (fx, 1, VAL (3, 1));
  assert_stored (fx, 2, VAL (1, 2));
}

static void
test_transaction_commit_failure (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  GError *error = NULL;

  g_test_summary ("A commit that fails leaves the storage unchanged, ends the transaction, and "
                  "a retry works.");
  REQUIRE (backend->transactional, "not transactional");

  two_clients (fx, &a, &b, 4);
  REQUIRE (inject (a->file, TEST_FAULT_COMMIT, 0), "cannot make a commit fail");

  CHECK (bigfile_file_begin_transaction (a->file, &error));
  cover_size (a->file, 8 * PS);
  for (guint64 i = 0; i < 8; i++)
    store_value (a->file, i, VAL (2, i));
  g_assert_false (bigfile_file_commit_transaction (a->file, BIGFILE_COMMIT_FLAGS_NONE, &error));
  g_assert_nonnull (error);
  g_test_message ("the commit failed: %s", error->message);
  g_clear_error (&error);
  g_assert_true (inject (a->file, TEST_FAULT_COMMIT, -1));

  refresh_quietly (a->file);
  refresh_quietly (b->file);
  for (guint64 i = 0; i < 8; i++)
    {
      guint64 want = i < 4 ? VAL (1, i) : 0;

      assert_everywhere (fx, a, b, i, want);
    }
  if (backend->has_size)
    g_assert_cmpuint (stored_size (fx), ==, 4 * PS);

  /* The transaction is over: a new one begins and commits. */
  commit_range (a->file, 0, 8, 3);
  for (guint64 i = 0; i < 8; i++)
    assert_stored (fx, i, VAL (3, i));
}

static void
test_transaction_store_failure (Fixture *fx, gconstpointer data)
{
  Client *a;
  GError *error = NULL;
  guint8 buffer[PS];

  g_test_summary ("A store that fails inside a transaction gives a GError; the abort that "
                  "follows leaves nothing of the transaction.");
  REQUIRE (backend->transactional, "not transactional");

  a = client_new (fx);
  commit_range (a->file, 0, 4, 1);
  REQUIRE (inject (a->file, TEST_FAULT_STORE, 2), "cannot make a store fail");

  CHECK (bigfile_file_begin_transaction (a->file, &error));
  store_value (a->file, 0, VAL (2, 0));
  store_value (a->file, 1, VAL (2, 1));
  fill (buffer, PS, VAL (2, 2));
  g_assert_false (bigfile_file_store_block_raw (a->file, 2, buffer, PS, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  bigfile_file_abort_transaction (a->file);
  g_assert_true (inject (a->file, TEST_FAULT_STORE, -1));

  for (guint64 i = 0; i < 4; i++)
    {
      assert_loads (a->file, i, VAL (1, i));
      assert_stored (fx, i, VAL (1, i));
    }
  commit_range (a->file, 0, 4, 3);
  assert_stored (fx, 2, VAL (3, 2));
}

typedef struct
{
  Fixture *fx;
  BigfileFile *file;
  gint began;   /* atomic */
  GArray *seen; /* what refresh reported inside the transaction */
} SecondWriter;

static gpointer
second_writer_thread (gpointer data)
{
  SecondWriter *w = data;
  GError *error = NULL;

  CHECK (bigfile_file_begin_transaction (w->file, &error));
  g_atomic_int_set (&w->began, 1);
  w->seen = refresh (w->file);
  store_value (w->file, 0, VAL (3, 0));
  CHECK (bigfile_file_commit_transaction (w->file, BIGFILE_COMMIT_FLAGS_NONE, &error));
  return NULL;
}

static void
test_transaction_serialized (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  GError *error = NULL;
  SecondWriter w = { 0 };
  GThread *thread;

  g_test_summary ("Writers of one storage are serialized: a second client's begin_transaction "
                  "waits until the first one's transaction ends, and then sees its commit.");
  REQUIRE (backend->transactional, "not transactional");

  two_clients (fx, &a, &b, 1);

  CHECK (bigfile_file_begin_transaction (a->file, &error));
  w.fx = fx;
  w.file = b->file;
  thread = g_thread_new ("second writer", second_writer_thread, &w);
  g_usleep (200 * 1000);
  g_assert_cmpint (g_atomic_int_get (&w.began), ==, 0);
  store_value (a->file, 0, VAL (2, 0));
  CHECK (bigfile_file_commit_transaction (a->file, BIGFILE_COMMIT_FLAGS_NONE, &error));
  g_thread_join (thread);

  g_assert_cmpint (w.began, ==, 1);
  if (backend->shared)
    assert_changed (w.seen, (guint64[]){ 0 }, 1);
  else
    g_array_unref (w.seen);
  assert_stored (fx, 0, VAL (3, 0));
}

static void
test_transaction_durable (Fixture *fx, gconstpointer data)
{
  Client *a;
  GError *error = NULL;

  g_test_summary ("A durable commit (BIGFILE_COMMIT_FLAGS_DURABLE) is accepted and commits.");
  REQUIRE (backend->transactional, "not transactional (see handle/durable)");

  a = client_new (fx);
  CHECK (bigfile_file_begin_transaction (a->file, &error));
  cover_size (a->file, 2 * PS);
  store_value (a->file, 1, VAL (1, 1));
  CHECK (bigfile_file_commit_transaction (a->file, BIGFILE_COMMIT_FLAGS_DURABLE, &error));
  assert_stored (fx, 1, VAL (1, 1));
}

/* -- atomicity --------------------------------------------------------------------- */

#define N_ATOMIC 64

static void
assert_all_stored (Fixture *fx, BigfileFile *file, guint64 n, guint version)
{
  refresh_quietly (file);
  for (guint64 i = 0; i < n; i++)
    assert_loads (file, i, VAL (version, i));
}

static void
test_atomicity (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  GError *error = NULL;
  guint8 buffer[PS];

  g_test_summary ("A transaction of many blocks is all or nothing for a second client: none of "
                  "it while it is open, all after the commit, none after a failed store.");
  REQUIRE (backend->transactional, "not transactional");

  two_clients (fx, &a, &b, N_ATOMIC);

  CHECK (bigfile_file_begin_transaction (a->file, &error));
  for (guint64 i = 0; i < N_ATOMIC; i++)
    {
      store_value (a->file, i, VAL (2, i));
      if (i % 16 == 0 || i == N_ATOMIC - 1)
        assert_all_stored (fx, b->file, N_ATOMIC, 1);
    }
  CHECK (bigfile_file_commit_transaction (a->file, BIGFILE_COMMIT_FLAGS_NONE, &error));
  assert_all_stored (fx, b->file, N_ATOMIC, 2);

  if (inject (a->file, TEST_FAULT_STORE, 40))
    {
      CHECK (bigfile_file_begin_transaction (a->file, &error));
      for (guint64 i = 0; i < 40; i++)
        store_value (a->file, i, VAL (3, i));
      fill (buffer, PS, VAL (3, 40));
      g_assert_false (bigfile_file_store_block_raw (a->file, 40, buffer, PS, &error));
      g_assert_nonnull (error);
      g_clear_error (&error);
      bigfile_file_abort_transaction (a->file);
      g_assert_true (inject (a->file, TEST_FAULT_STORE, -1));
      assert_all_stored (fx, b->file, N_ATOMIC, 2);
    }
  else
    g_test_message ("%s cannot make a store fail: the failed half of the test did not run",
                    backend->name);
}

typedef struct
{
  BigfileFile *file;
  guint n_versions;
  gint done; /* atomic */
} VersionWriter;

static gpointer
version_writer_thread (gpointer data)
{
  VersionWriter *w = data;

  for (guint v = 2; v < 2 + w->n_versions; v++)
    commit_range (w->file, 0, N_ATOMIC, v);
  g_atomic_int_set (&w->done, 1);
  return NULL;
}

static void
test_atomicity_concurrent (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  VersionWriter w = { 0 };
  GThread *thread;
  guint n_passes = 0, last = 1;

  g_test_summary ("While a writer commits version after version of many blocks, a reader's "
                  "snapshot (between two refreshes) always shows one version of all of them, "
                  "and versions only go forward.");
  REQUIRE (backend->transactional, "not transactional");
  REQUIRE (backend->shared, "no snapshots (refresh)");

  two_clients (fx, &a, &b, N_ATOMIC);

  w.file = a->file;
  w.n_versions = RUNNING_ON_VALGRIND ? 5 : 30;
  thread = g_thread_new ("writer", version_writer_thread, &w);
  for (gboolean done = FALSE; !done;)
    {
      guint version;

      done = g_atomic_int_get (&w.done);
      refresh_quietly (b->file);
      version = VERSION_OF (load_value (b->file, 0));
      g_assert_cmpuint (version, >=, last);
      for (guint64 i = 0; i < N_ATOMIC; i++)
        assert_loads (b->file, i, VAL (version, i));
      last = version;
      n_passes++;
    }
  g_thread_join (thread);
  g_assert_cmpuint (last, ==, 1 + w.n_versions);
  g_test_message ("%u passes over %u versions", n_passes, w.n_versions);
}

/* -- snapshots and refresh ------------------------------------------------------------ */

static void
test_snapshot_isolated (Fixture *fx, gconstpointer data)
{
  Client *a, *b;

  g_test_summary ("A client's loads read its snapshot: another client's commit shows only "
                  "after refresh.");
  REQUIRE (backend->shared, "no snapshots (refresh)");

  two_clients (fx, &a, &b, 2);
  assert_loads (b->file, 0, VAL (1, 0));

  commit_range (a->file, 0, 2, 2);
  assert_loads (b->file, 0, VAL (1, 0));
  assert_loads (b->file, 1, VAL (1, 1));
  assert_changed (refresh (b->file), (guint64[]){ 0, 1 }, 2);
  assert_loads (b->file, 0, VAL (2, 0));
  assert_loads (b->file, 1, VAL (2, 1));
}

static void
test_refresh_others (Fixture *fx, gconstpointer data)
{
  Client *a, *b;

  g_test_summary ("refresh reports exactly the blocks other clients committed since the last "
                  "one, once, and never the client's own commits.");
  REQUIRE (backend->shared, "no refresh");

  two_clients (fx, &a, &b, 0);
  assert_changed (refresh (a->file), NULL, 0);

  commit_range (b->file, 2, 1, 1);
  commit_range (b->file, 5, 1, 1);
  assert_changed (refresh (a->file), (guint64[]){ 2, 5 }, 2);
  assert_changed (refresh (a->file), NULL, 0);
  assert_changed (refresh (b->file), NULL, 0);

  commit_range (a->file, 7, 1, 1);
  assert_changed (refresh (b->file), (guint64[]){ 7 }, 1);
  assert_changed (refresh (a->file), NULL, 0);
  assert_loads (b->file, 7, VAL (1, 7));
  assert_loads (a->file, 5, VAL (1, 5));
}

static void
test_refresh_in_transaction (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  GError *error = NULL;

  g_test_summary ("refresh inside a transaction shows every commit before it; the commit that "
                  "follows is reported to the others only.");
  REQUIRE (backend->shared, "no refresh");
  REQUIRE (backend->transactional, "not transactional");

  two_clients (fx, &a, &b, 0);
  commit_range (b->file, 1, 1, 1);

  CHECK (bigfile_file_begin_transaction (a->file, &error));
  assert_changed (refresh (a->file), (guint64[]){ 1 }, 1);
  assert_loads (a->file, 1, VAL (1, 1));
  cover_size (a->file, 4 * PS);
  store_value (a->file, 3, VAL (1, 3));
  CHECK (bigfile_file_commit_transaction (a->file, BIGFILE_COMMIT_FLAGS_NONE, &error));

  assert_changed (refresh (b->file), (guint64[]){ 3 }, 1);
  assert_changed (refresh (a->file), NULL, 0);
}

static void
test_refresh_after_own_commit (Fixture *fx, gconstpointer data)
{
  Client *a, *b;

  g_test_summary ("A commit moves the committer's snapshot past other clients' commits it never "
                  "refreshed to: the next refresh still reports those.");
  REQUIRE (backend->shared, "no refresh");
  REQUIRE (backend->transactional, "not transactional");

  two_clients (fx, &a, &b, 0);
  assert_loads (a->file, 1, 0);
  commit_range (b->file, 1, 1, 1);
  /* a commits without refreshing inside its transaction (a handle always
   * does; a program calling the file itself may not). */
  commit_range (a->file, 3, 1, 1);
  assert_changed (refresh (a->file), (guint64[]){ 1 }, 1);
  assert_loads (a->file, 1, VAL (1, 1));
}

static void
test_refresh_failure (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  GError *error = NULL;

  g_test_summary ("A refresh that fails gives a GError and keeps the old snapshot; the next "
                  "one reports what the failed one would have.");
  REQUIRE (backend->shared, "no refresh");

  two_clients (fx, &a, &b, 0);
  commit_range (b->file, 1, 1, 1);
  assert_changed (refresh (a->file), (guint64[]){ 1 }, 1);
  commit_range (b->file, 1, 1, 2);
  REQUIRE (inject (a->file, TEST_FAULT_REFRESH, 0), "cannot make a refresh fail");

  g_assert_null (bigfile_file_refresh (a->file, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_true (inject (a->file, TEST_FAULT_REFRESH, -1));
  assert_loads (a->file, 1, VAL (1, 1));
  assert_changed (refresh (a->file), (guint64[]){ 1 }, 1);
  assert_loads (a->file, 1, VAL (2, 1));
}

/* -- ::changed ----------------------------------------------------------------------- */

static void
quit_on_changed (BigfileFile *file, gpointer user_data)
{
  g_main_loop_quit (user_data);
}

static gboolean
quit_on_timeout (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

static gboolean
has_changed (gpointer data)
{
  return ((Client *)data)->n_changed > 0;
}

static void
test_changed_main_loop (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  gulong id;
  guint timeout;
  gint64 committed;

  g_test_summary ("Another client's commit arrives as ::changed in a GMainLoop of the context "
                  "the file was made on; the committer gets none for its own.");
  REQUIRE (backend->shared, "no ::changed");

  two_clients (fx, &a, &b, 0);

  id = g_signal_connect (a->file, "changed", G_CALLBACK (quit_on_changed), loop);
  timeout = g_timeout_add (WAIT_MS, quit_on_timeout, loop);
  committed = g_get_monotonic_time ();
  commit_range (b->file, 1, 1, 1);
  g_main_loop_run (loop);
  g_signal_handler_disconnect (a->file, id);
  if (a->n_changed == 0)
    g_error ("no ::changed within %d ms of another client's commit", WAIT_MS);
  g_source_remove (timeout);
  g_test_message ("::changed came %.1f ms after the commit", (a->changed_at - committed) / 1000.0);
  assert_changed (refresh (a->file), (guint64[]){ 1 }, 1);

  /* Its own commit: no ::changed on a; b hears of it. */
  a->n_changed = 0;
  b->n_changed = 0;
  commit_range (a->file, 2, 1, 1);
  g_assert_true (wait_until (has_changed, b));
  run_for (200);
  g_assert_cmpuint (a->n_changed, ==, 0);
}

typedef struct
{
  const char *location;
  GMutex lock;
  GCond cond;
  gboolean ready, stop;
  GThread *thread;    /* the thread the client was made in */
  GThread *signalled; /* where ::changed came */
} OtherContext;

static void
record_changed_thread (BigfileFile *file, gpointer user_data)
{
  OtherContext *oc = user_data;

  g_mutex_lock (&oc->lock);
  oc->signalled = g_thread_self ();
  g_cond_signal (&oc->cond);
  g_mutex_unlock (&oc->lock);
}

static gpointer
other_context_thread (gpointer data)
{
  OtherContext *oc = data;
  GMainContext *context = g_main_context_new ();
  BigfileFile *file;
  gint64 deadline;

  g_main_context_push_thread_default (context);
  file = open_file (oc->location, PS);
  g_signal_connect (file, "changed", G_CALLBACK (record_changed_thread), oc);
  g_mutex_lock (&oc->lock);
  oc->ready = TRUE;
  g_cond_signal (&oc->cond);
  g_mutex_unlock (&oc->lock);

  deadline = g_get_monotonic_time () + (gint64)WAIT_MS * 1000;
  for (;;)
    {
      gboolean stop;

      g_mutex_lock (&oc->lock);
      stop = oc->stop || oc->signalled != NULL;
      g_mutex_unlock (&oc->lock);
      if (stop || g_get_monotonic_time () > deadline)
        break;
      if (!g_main_context_iteration (context, FALSE))
        g_usleep (1000);
    }
  g_object_unref (file);
  while (g_main_context_iteration (context, FALSE))
    ;
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return NULL;
}

static void
test_changed_thread_context (Fixture *fx, gconstpointer data)
{
  Client *b;
  OtherContext oc = { 0 };

  g_test_summary ("::changed is emitted on the main context that was the thread-default one "
                  "when the file was made, in that context's thread.");
  REQUIRE (backend->shared, "no ::changed");

  b = client_new (fx);
  oc.location = fx->location;
  g_mutex_init (&oc.lock);
  g_cond_init (&oc.cond);
  oc.thread = g_thread_new ("other context", other_context_thread, &oc);
  g_mutex_lock (&oc.lock);
  while (!oc.ready)
    g_cond_wait (&oc.cond, &oc.lock);
  g_mutex_unlock (&oc.lock);

  commit_range (b->file, 0, 1, 1);
  /* The main context of this thread must not be the one: it does not run. */
  g_thread_join (oc.thread);
  g_assert_true (oc.signalled == oc.thread);
  g_mutex_clear (&oc.lock);
  g_cond_clear (&oc.cond);
}

/* -- errors ----------------------------------------------------------------------------- */

static void
test_read_only (Fixture *fx, gconstpointer data)
{
  Client *a;
  Client *r;
  GError *error = NULL;
  guint8 buffer[PS];

  g_test_summary ("A client opened read-only loads, and its stores, resizes and writeouts fail "
                  "with BIGFILE_FILE_ERROR_READ_ONLY, changing nothing and keeping the dirty "
                  "pages.");
  REQUIRE (backend->open_read_only != NULL, "no read-only mode");
  REQUIRE (!backend->one_object, "no second client beside the writer");

  a = client_new (fx);
  commit_range (a->file, 0, 2, 1);

  r = g_new0 (Client, 1);
  r->file = backend->open_read_only (fx->location, PS, &error);
  g_assert_no_error (error);
  r->invalidated = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_ptr_array_add (fx->clients, r);
  assert_loads (r->file, 0, VAL (1, 0));

  fill (buffer, PS, VAL (2, 0));
  if (bigfile_file_begin_transaction (r->file, &error))
    {
      g_assert_false (bigfile_file_store_block_raw (r->file, 0, buffer, PS, &error));
      g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
      g_test_message ("store: %s", error->message);
      g_clear_error (&error);
      if (backend->has_size)
        {
          g_assert_false (bigfile_file_set_size (r->file, 10 * PS, &error));
          g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
          g_clear_error (&error);
        }
      bigfile_file_abort_transaction (r->file);
    }
  else
    {
      g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
      g_test_message ("begin_transaction: %s", error->message);
      g_clear_error (&error);
    }
  assert_stored (fx, 0, VAL (1, 0));
  if (backend->has_size)
    g_assert_cmpuint (stored_size (fx), ==, 2 * PS);

  /* Through a handle: the writeout fails, the page stays dirty. */
  client_map (fx, r, 4);
  page_write (r, 1, VAL (3, 1));
  g_assert_false (bigfile_handle_writeout (r->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY);
  g_clear_error (&error);
  assert_state (r, 1, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (r->handle), ==, 1);
  assert_page (r, 1, VAL (3, 1));
  assert_stored (fx, 1, VAL (1, 1));
}

/* -- threads ------------------------------------------------------------------------------ */

#define N_THREAD_BLOCKS 16

typedef struct
{
  BigfileFile *file;
  guint n_versions;
  gint committed; /* atomic: the newest version committed */
  gint done;      /* atomic */
} LoadRace;

static gpointer
race_writer_thread (gpointer data)
{
  LoadRace *race = data;

  for (guint v = 2; v < 2 + race->n_versions; v++)
    {
      commit_range (race->file, 0, N_THREAD_BLOCKS, v);
      g_atomic_int_set (&race->committed, (gint)v);
    }
  g_atomic_int_set (&race->done, 1);
  return NULL;
}

static gpointer
race_reader_thread (gpointer data)
{
  LoadRace *race = data;
  gsize bs = bigfile_file_get_block_size (race->file);
  g_autofree guint8 *buffer = g_malloc (bs);
  guint n_loads = 0;

  while (!g_atomic_int_get (&race->done) || n_loads < N_THREAD_BLOCKS)
    for (guint64 b = 0; b < N_THREAD_BLOCKS; b++, n_loads++)
      {
        guint before = (guint)g_atomic_int_get (&race->committed);
        guint after;
        GError *error = NULL;

        CHECK (bigfile_file_load_block_raw (race->file, b, buffer, bs, &error));
        after = (guint)g_atomic_int_get (&race->committed);
        /* A store that is not part of a transaction may show half done:
         * each word is then from the version before or the one being
         * written. A transactional file's commit is atomic, so a block is
         * one version whole. */
        for (gsize i = 0; i < bs; i += 8)
          {
            guint64 word;

            memcpy (&word, buffer + i, 8);
            if (BLOCK_OF (word) != b || VERSION_OF (word) < before || VERSION_OF (word) > after + 1)
              g_error ("a load of block %" G_GUINT64_FORMAT " on a thread got 0x%" G_GINT64_MODIFIER
                       "x at byte %" G_GSIZE_FORMAT ", with versions %u to %u committed",
                       b, word, i, before, after);
          }
        if (backend->transactional)
          uniform_value (buffer, bs, "threaded load", b);
      }
  return NULL;
}

static void
test_threads_loads (Fixture *fx, gconstpointer data)
{
  Client *a = client_new (fx);
  LoadRace race = { 0 };
  GThread *readers[4], *writer;

  g_test_summary ("Loads from four threads at once, while a fifth commits new versions through "
                  "the same file object, each see a version no older than the last committed "
                  "before them.");

  commit_range (a->file, 0, N_THREAD_BLOCKS, 1);
  race.file = a->file;
  race.committed = 1;
  race.n_versions = RUNNING_ON_VALGRIND ? 5 : 50;
  for (guint i = 0; i < G_N_ELEMENTS (readers); i++)
    readers[i] = g_thread_new ("reader", race_reader_thread, &race);
  writer = g_thread_new ("writer", race_writer_thread, &race);
  g_thread_join (writer);
  for (guint i = 0; i < G_N_ELEMENTS (readers); i++)
    g_thread_join (readers[i]);
  for (guint64 b = 0; b < N_THREAD_BLOCKS; b++)
    assert_stored (fx, b, VAL (1 + race.n_versions, b));
}

/* ================================================================================= */
/* Through a handle                                                                   */
/* ================================================================================= */

static void
test_handle_writeout (Fixture *fx, gconstpointer data)
{
  Client *a = client_new (fx);

  g_test_summary ("A writeout stores the dirty pages, and only them, and marks them clean; a "
                  "new client loads them.");

  client_map (fx, a, 8);
  page_write (a, 1, VAL (1, 1));
  page_write (a, 6, VAL (1, 6));
  assert_state (a, 1, BIGFILE_PAGE_STATE_DIRTY);
  assert_state (a, 6, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a->handle), ==, 2);
  assert_stored (fx, 1, 0);

  writeout (a, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a->handle), ==, 0);
  assert_state (a, 1, BIGFILE_PAGE_STATE_LOADED);
  assert_state (a, 6, BIGFILE_PAGE_STATE_LOADED);
  for (guint64 p = 0; p < 8; p++)
    {
      guint64 want = (p == 1 || p == 6) ? VAL (1, p) : 0;

      assert_stored (fx, p, want);
      assert_page (a, p, want);
    }
  if (backend->has_size)
    g_assert_cmpuint (stored_size (fx), ==, 7 * PS);

  /* Nothing dirty: nothing to do. */
  writeout (a, BIGFILE_WRITEOUT_DEFAULT);
  assert_stored (fx, 6, VAL (1, 6));
}

static void
test_handle_page_states (Fixture *fx, gconstpointer data)
{
  Client *a = client_new (fx);

  g_test_summary ("Pages go EMPTY -> LOADED (read) -> DIRTY (written) -> LOADED (written out).");

  commit_range (a->file, 0, 4, 1);
  client_map (fx, a, 4);
  for (guint64 p = 0; p < 4; p++)
    assert_state (a, p, BIGFILE_PAGE_STATE_EMPTY);
  assert_page (a, 2, VAL (1, 2));
  assert_state (a, 2, BIGFILE_PAGE_STATE_LOADED);
  assert_state (a, 1, BIGFILE_PAGE_STATE_EMPTY);
  page_write (a, 2, VAL (2, 2));
  assert_state (a, 2, BIGFILE_PAGE_STATE_DIRTY);
  writeout (a, BIGFILE_WRITEOUT_DEFAULT);
  assert_state (a, 2, BIGFILE_PAGE_STATE_LOADED);
  assert_page (a, 2, VAL (2, 2));
}

static void
test_handle_discard (Fixture *fx, gconstpointer data)
{
  Client *a = client_new (fx);

  g_test_summary ("discard drops the dirty pages, which load again as stored; the storage is "
                  "untouched and clean pages stay.");

  commit_range (a->file, 0, 4, 1);
  client_map (fx, a, 4);
  assert_page (a, 0, VAL (1, 0));
  assert_page (a, 1, VAL (1, 1));
  page_write (a, 0, VAL (2, 0));
  page_write (a, 3, VAL (2, 3));
  g_assert_cmpuint (bigfile_handle_discard (a->handle), ==, 2);
  assert_state (a, 0, BIGFILE_PAGE_STATE_EMPTY);
  assert_state (a, 3, BIGFILE_PAGE_STATE_EMPTY);
  assert_state (a, 1, BIGFILE_PAGE_STATE_LOADED);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a->handle), ==, 0);
  assert_page (a, 0, VAL (1, 0));
  assert_page (a, 3, VAL (1, 3));
  assert_stored (fx, 0, VAL (1, 0));
  assert_stored (fx, 3, VAL (1, 3));
}

static void
handle_writeout_failure (Fixture *fx, TestFault fault, int after)
{
  Client *a = client_new (fx);
  GError *error = NULL;

  commit_range (a->file, 0, 8, 1);
  client_map (fx, a, 8);
  for (guint64 p = 0; p < 8; p++)
    page_write (a, p, VAL (2, p));
  REQUIRE (inject (a->file, fault, after), "cannot inject that failure");

  g_assert_false (bigfile_handle_writeout (a->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_nonnull (error);
  g_test_message ("the writeout failed: %s", error->message);
  g_clear_error (&error);
  g_assert_true (inject (a->file, fault, -1));

  /* Nothing is lost: every page the storage does not hold is still
   * dirty, with what was written; a transactional file holds none. */
  for (guint64 p = 0; p < 8; p++)
    {
      guint64 stored = stored_value (fx, p);

      assert_page (a, p, VAL (2, p));
      if (backend->transactional)
        g_assert_cmpuint (stored, ==, VAL (1, p));
      if (stored != VAL (2, p))
        assert_state (a, p, BIGFILE_PAGE_STATE_DIRTY);
    }
  if (backend->transactional)
    g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a->handle), ==, 8);

  writeout (a, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a->handle), ==, 0);
  for (guint64 p = 0; p < 8; p++)
    assert_stored (fx, p, VAL (2, p));
}

static void
test_handle_store_failure (Fixture *fx, gconstpointer data)
{
  g_test_summary ("A writeout whose fourth store fails gives the error and loses nothing: pages "
                  "not stored stay dirty (all of them, for a transactional file, which stores "
                  "none); a retry stores them.");
  handle_writeout_failure (fx, TEST_FAULT_STORE, 3);
}

static void
test_handle_commit_failure (Fixture *fx, gconstpointer data)
{
  g_test_summary ("A writeout whose commit fails stores nothing and keeps every page dirty; a "
                  "retry stores them.");
  REQUIRE (backend->transactional, "not transactional");
  handle_writeout_failure (fx, TEST_FAULT_COMMIT, 0);
}

static void
test_handle_durable (Fixture *fx, gconstpointer data)
{
  Client *a = client_new (fx);

  g_test_summary ("BIGFILE_WRITEOUT_DURABLE is accepted by every backend and writes out.");

  client_map (fx, a, 2);
  page_write (a, 1, VAL (1, 1));
  writeout (a, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_DURABLE);
  assert_state (a, 1, BIGFILE_PAGE_STATE_LOADED);
  assert_stored (fx, 1, VAL (1, 1));
}

static void
test_handle_two_phase (Fixture *fx, gconstpointer data)
{
  Client *a, *b;

  g_test_summary ("The two steps of a two-phase commit: BIGFILE_WRITEOUT_STORE alone keeps the "
                  "pages dirty and, for a transactional file, out of the storage until "
                  "BIGFILE_WRITEOUT_MARK_STORED commits them and marks them clean.");
  REQUIRE (!backend->one_object, "no second client");

  two_clients (fx, &a, &b, 4);
  client_map (fx, a, 4);
  page_write (a, 1, VAL (2, 1));
  page_write (a, 2, VAL (2, 2));
  writeout (a, BIGFILE_WRITEOUT_STORE);
  assert_state (a, 1, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a->handle), ==, 2);
  refresh_quietly (b->file);
  assert_loads (b->file, 1, backend->transactional ? VAL (1, 1) : VAL (2, 1));
  assert_loads (b->file, 2, backend->transactional ? VAL (1, 2) : VAL (2, 2));

  writeout (a, BIGFILE_WRITEOUT_MARK_STORED);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a->handle), ==, 0);
  assert_state (a, 1, BIGFILE_PAGE_STATE_LOADED);
  refresh_quietly (b->file);
  assert_loads (b->file, 1, VAL (2, 1));
  assert_loads (b->file, 2, VAL (2, 2));
}

static void
test_handle_two_phase_abort (Fixture *fx, gconstpointer data)
{
  Client *a, *b;

  g_test_summary ("bigfile_handle_abort_writeout() after BIGFILE_WRITEOUT_STORE leaves the "
                  "storage of a transactional file as it was and every page dirty; a writeout "
                  "then stores them.");
  REQUIRE (backend->transactional, "not transactional: a store cannot be undone");

  two_clients (fx, &a, &b, 4);
  client_map (fx, a, 4);
  page_write (a, 1, VAL (2, 1));
  page_write (a, 3, VAL (2, 3));
  writeout (a, BIGFILE_WRITEOUT_STORE);
  bigfile_handle_abort_writeout (a->handle);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a->handle), ==, 2);
  assert_page (a, 1, VAL (2, 1));
  assert_stored (fx, 1, VAL (1, 1));
  assert_stored (fx, 3, VAL (1, 3));

  /* The write lock went with the transaction: another client writes. */
  commit_range (b->file, 0, 1, 3);
  writeout (a, BIGFILE_WRITEOUT_DEFAULT);
  assert_stored (fx, 0, VAL (3, 0));
  assert_stored (fx, 1, VAL (2, 1));
  assert_stored (fx, 3, VAL (2, 3));
}

/* -- invalidation and conflicts ---------------------------------------------------------- */

typedef struct
{
  Client *c;
  const guint64 *pages;
  gsize n_pages;
} WantInvalidated;

static gboolean
has_invalidated (gpointer data)
{
  WantInvalidated *w = data;

  for (gsize i = 0; i < w->n_pages; i++)
    {
      gboolean found = FALSE;

      for (guint j = 0; j < w->c->invalidated->len && !found; j++)
        found = g_array_index (w->c->invalidated, guint64, j) == w->pages[i];
      if (!found)
        return FALSE;
    }
  return TRUE;
}

/* Waits until @c's handle emitted page-invalidated for each of @pages, and
 * asserts that it emitted it for no other page. */
static void
wait_invalidated (Client *c, const guint64 *pages, gsize n_pages)
{
  WantInvalidated w = { c, pages, n_pages };

  if (!wait_until (has_invalidated, &w))
    {
      g_autofree char *got
          = blocks_to_string ((guint64 *)c->invalidated->data, c->invalidated->len);
      g_autofree char *want = blocks_to_string (pages, n_pages);

      g_error ("within %d ms the handle emitted page-invalidated for %s, not %s", WAIT_MS, got,
               want);
    }
  run_for (50);
  assert_changed (g_array_ref (c->invalidated), pages, n_pages);
  g_array_set_size (c->invalidated, 0);
}

/* Two clients of one storage holding 16 blocks of version 1, each with a
 * handle that has read them all. */
static void
two_handles (Fixture *fx, Client **a, Client **b)
{
  /* b's snapshot is from before a's commit until it refreshes. */
  two_clients (fx, a, b, 16);
  client_map (fx, *a, 16);
  client_map (fx, *b, 16);
  for (guint64 p = 0; p < 16; p++)
    {
      assert_page (*a, p, VAL (1, p));
      assert_page (*b, p, VAL (1, p));
    }
}

static void
test_handle_invalidation (Fixture *fx, gconstpointer data)
{
  Client *a, *b;

  g_test_summary ("Another client's writeout reaches a handle in its main loop: it drops its "
                  "clean pages of the blocks that changed, emits page-invalidated for each, "
                  "and shows the new data; its other pages stay.");
  REQUIRE (backend->shared, "other clients' commits are not reported");

  two_handles (fx, &a, &b);
  g_assert_true (bigfile_handle_get_auto_refresh (a->handle));

  page_write (b, 2, VAL (2, 2));
  page_write (b, 5, VAL (2, 5));
  writeout (b, BIGFILE_WRITEOUT_DEFAULT);
  wait_invalidated (a, (guint64[]){ 2, 5 }, 2);
  assert_state (a, 2, BIGFILE_PAGE_STATE_EMPTY);
  assert_state (a, 5, BIGFILE_PAGE_STATE_EMPTY);
  assert_state (a, 3, BIGFILE_PAGE_STATE_LOADED);
  assert_page (a, 2, VAL (2, 2));
  assert_page (a, 5, VAL (2, 5));
  assert_page (a, 3, VAL (1, 3));
  /* Nothing for b: its own commit. */
  run_for (100);
  g_assert_cmpuint (b->invalidated->len, ==, 0);
}

static void
test_handle_refresh (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  GError *error = NULL;

  g_test_summary ("With auto-refresh off, a handle keeps its snapshot until "
                  "bigfile_handle_refresh(), which then invalidates the pages that changed.");
  REQUIRE (backend->shared, "other clients' commits are not reported");

  two_handles (fx, &a, &b);
  bigfile_handle_set_auto_refresh (a->handle, FALSE);
  g_assert_false (bigfile_handle_get_auto_refresh (a->handle));

  page_write (b, 2, VAL (2, 2));
  page_write (b, 5, VAL (2, 5));
  writeout (b, BIGFILE_WRITEOUT_DEFAULT);
  run_for (300);
  g_assert_cmpuint (a->invalidated->len, ==, 0);
  assert_state (a, 2, BIGFILE_PAGE_STATE_LOADED);
  assert_page (a, 2, VAL (1, 2));

  CHECK (bigfile_handle_refresh (a->handle, &error));
  wait_invalidated (a, (guint64[]){ 2, 5 }, 2);
  assert_page (a, 2, VAL (2, 2));
  assert_page (a, 5, VAL (2, 5));
  assert_page (a, 4, VAL (1, 4));
}

/* a and b both change page 13 (and a also page 5); b writes out first.
 * Returns after a's writeout failed with the conflict. */
static void
make_conflict (Fixture *fx, Client **a, Client **b)
{
  GError *error = NULL;
  gsize n = 0;
  g_autofree guint64 *conflicts = NULL;

  two_handles (fx, a, b);
  page_write (*a, 13, VAL (3, 13));
  page_write (*a, 5, VAL (3, 5));
  page_write (*b, 13, VAL (2, 13));
  writeout (*b, BIGFILE_WRITEOUT_DEFAULT);

  g_assert_false (bigfile_handle_writeout ((*a)->handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT);
  g_test_message ("the conflict: %s", error->message);
  g_assert_nonnull (strstr (error->message, "13"));
  g_clear_error (&error);

  conflicts = bigfile_handle_get_conflicts ((*a)->handle, &n);
  g_assert_cmpuint (n, ==, 1);
  g_assert_cmpuint (conflicts[0], ==, 13);

  /* Nothing stored, nothing lost. */
  assert_stored (fx, 13, VAL (2, 13));
  assert_stored (fx, 5, VAL (1, 5));
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages ((*a)->handle), ==, 2);
  assert_state (*a, 13, BIGFILE_PAGE_STATE_DIRTY);
  assert_state (*a, 5, BIGFILE_PAGE_STATE_DIRTY);
  assert_page (*a, 13, VAL (3, 13));
  assert_page (*a, 5, VAL (3, 5));
}

static void
test_handle_conflict (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  gsize n = 1;
  g_autofree guint64 *conflicts = NULL;

  g_test_summary ("A writeout of a dirty page whose block another client changed fails with "
                  "BIGFILE_HANDLE_ERROR_CONFLICT naming it, stores nothing and keeps the pages; "
                  "after a discard the other client's data shows and writeouts work again.");
  REQUIRE (backend->shared, "other clients' commits are not reported");
  REQUIRE (backend->transactional, "not transactional");

  make_conflict (fx, &a, &b);
  g_assert_cmpuint (bigfile_handle_discard (a->handle), ==, 2);
  assert_page (a, 13, VAL (2, 13));
  assert_page (a, 5, VAL (1, 5));
  assert_page (a, 12, VAL (1, 12));
  page_write (a, 5, VAL (4, 5));
  writeout (a, BIGFILE_WRITEOUT_DEFAULT);
  conflicts = bigfile_handle_get_conflicts (a->handle, &n);
  g_assert_cmpuint (n, ==, 0);
  assert_stored (fx, 5, VAL (4, 5));
  assert_stored (fx, 13, VAL (2, 13));
}

static void
test_handle_overwrite (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  gsize n = 1;
  g_autofree guint64 *conflicts = NULL;

  g_test_summary ("After a conflict, BIGFILE_WRITEOUT_OVERWRITE stores the handle's pages over "
                  "the other client's, which then sees them.");
  REQUIRE (backend->shared, "other clients' commits are not reported");
  REQUIRE (backend->transactional, "not transactional");

  make_conflict (fx, &a, &b);
  writeout (a, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_OVERWRITE);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (a->handle), ==, 0);
  conflicts = bigfile_handle_get_conflicts (a->handle, &n);
  g_assert_cmpuint (n, ==, 0);
  assert_stored (fx, 13, VAL (3, 13));
  assert_stored (fx, 5, VAL (3, 5));
  wait_invalidated (b, (guint64[]){ 5, 13 }, 2);
  assert_page (b, 13, VAL (3, 13));
}

static void
test_handle_no_lost_update (Fixture *fx, gconstpointer data)
{
  Client *a, *b;

  g_test_summary ("Two clients that change different blocks both keep their change: the second "
                  "writeout is no conflict, and each handle then shows the other's data.");
  REQUIRE (!backend->one_object, "no second client");

  two_handles (fx, &a, &b);
  bigfile_handle_set_auto_refresh (a->handle, FALSE);
  bigfile_handle_set_auto_refresh (b->handle, FALSE);
  page_write (a, 1, VAL (2, 1));
  page_write (b, 2, VAL (3, 2));
  writeout (a, BIGFILE_WRITEOUT_DEFAULT);
  writeout (b, BIGFILE_WRITEOUT_DEFAULT);
  assert_stored (fx, 1, VAL (2, 1));
  assert_stored (fx, 2, VAL (3, 2));
  assert_stored (fx, 3, VAL (1, 3));

  if (backend->shared)
    {
      GError *error = NULL;

      /* b's writeout refreshed inside its transaction: its stale copy of
       * page 1 is gone. a sees page 2 once it refreshes. */
      assert_page (b, 1, VAL (2, 1));
      assert_page (a, 2, VAL (1, 2));
      CHECK (bigfile_handle_refresh (a->handle, &error));
      assert_page (a, 2, VAL (3, 2));
    }
}

static void
test_handle_size_no_lost_update (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  GError *error = NULL;

  g_test_summary ("A client that writes past the size it knew, after another client grew the "
                  "file further, does not cut the other's pages off: its writeout learns the "
                  "new size first.");
  REQUIRE (backend->shared, "other clients' commits are not reported");
  REQUIRE (backend->has_size, "no size");

  two_clients (fx, &a, &b, 2);
  client_map (fx, a, 8);
  client_map (fx, b, 8);
  bigfile_handle_set_auto_refresh (a->handle, FALSE);
  bigfile_handle_set_auto_refresh (b->handle, FALSE);
  g_assert_cmpuint (bigfile_handle_get_size (b->handle), ==, 2 * PS);

  page_write (a, 5, VAL (2, 5));
  writeout (a, BIGFILE_WRITEOUT_DEFAULT);
  g_assert_cmpuint (stored_size (fx), ==, 6 * PS);

  /* b's page 3 lies between the size b knew and the new one: the handle
   * counts such pages as changed (their bytes past the old size are the
   * storage's now), so a dirty one is a conflict, although a's commit left
   * that block zeros. Either way b's writeout must not make the file
   * 4 pages long. */
  page_write (b, 3, VAL (3, 3));
  if (!bigfile_handle_writeout (b->handle, BIGFILE_WRITEOUT_DEFAULT, &error))
    {
      g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CONFLICT);
      g_test_message ("a conflict: %s", error->message);
      g_clear_error (&error);
      g_assert_cmpuint (stored_size (fx), ==, 6 * PS);
      assert_stored (fx, 3, 0);
      writeout (b, BIGFILE_WRITEOUT_DEFAULT | BIGFILE_WRITEOUT_OVERWRITE);
    }
  g_assert_cmpuint (stored_size (fx), ==, 6 * PS);
  assert_stored (fx, 5, VAL (2, 5));
  assert_stored (fx, 3, VAL (3, 3));
  g_assert_cmpuint (bigfile_handle_get_size (b->handle), ==, 6 * PS);
}

typedef struct
{
  Client *c;
  guint first; /* pages first, first + 2, ... */
  guint n_rounds;
} RoundWriter;

static gpointer
round_writer_thread (gpointer data)
{
  RoundWriter *w = data;

  for (guint r = 2; r < 2 + w->n_rounds; r++)
    {
      for (guint64 p = w->first; p < 16; p += 2)
        page_write (w->c, p, VAL (r, p));
      writeout (w->c, BIGFILE_WRITEOUT_DEFAULT);
    }
  return NULL;
}

static void
test_handle_no_lost_update_threads (Fixture *fx, gconstpointer data)
{
  Client *a, *b;
  RoundWriter wa, wb;
  GThread *ta, *tb;

  g_test_summary ("Two clients writing out different pages round after round from two threads "
                  "at once: no writeout fails, and the storage ends with the last round of "
                  "each.");
  REQUIRE (!backend->one_object, "no second client");

  two_handles (fx, &a, &b);
  bigfile_handle_set_auto_refresh (a->handle, FALSE);
  bigfile_handle_set_auto_refresh (b->handle, FALSE);
  wa = (RoundWriter){ a, 0, RUNNING_ON_VALGRIND ? 3 : 20 };
  wb = (RoundWriter){ b, 1, wa.n_rounds };
  ta = g_thread_new ("writer a", round_writer_thread, &wa);
  tb = g_thread_new ("writer b", round_writer_thread, &wb);
  g_thread_join (ta);
  g_thread_join (tb);
  for (guint64 p = 0; p < 16; p++)
    assert_stored (fx, p, VAL (1 + wa.n_rounds, p));
}

typedef struct
{
  Client *c;
  gint stop;    /* atomic */
  gint n_reads; /* atomic */
} PageReader;

static gpointer
page_reader_thread (gpointer data)
{
  PageReader *r = data;
  GRand *rand = g_rand_new ();

  while (!g_atomic_int_get (&r->stop))
    {
      guint64 p = (guint64)g_rand_int_range (rand, 32, 64);

      assert_page (r->c, p, VAL (1, p));
      g_atomic_int_inc (&r->n_reads);
    }
  g_rand_free (rand);
  return NULL;
}

static void
test_handle_threads (Fixture *fx, gconstpointer data)
{
  Client *a = client_new (fx);
  PageReader r[3];
  GThread *threads[3];
  guint n_rounds = RUNNING_ON_VALGRIND ? 3 : 20;
  guint round = 2;

  g_test_summary ("Three threads read pages of a handle (loads, since its budget keeps few in "
                  "memory) while its owner writes out other pages round after round.");

  commit_range (a->file, 0, 64, 1);
  g_clear_object (&fx->ram);
  fx->ram = bigfile_ram_new (16 * PS);
  client_map (fx, a, 64);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      r[i] = (PageReader){ a, 0, 0 };
      threads[i] = g_thread_new ("page reader", page_reader_thread, &r[i]);
    }
  /* Rounds until the readers are well under way too. */
  for (gboolean readers_busy = FALSE; round < 2 + n_rounds || !readers_busy; round++)
    {
      for (guint64 p = 0; p < 8; p++)
        page_write (a, p, VAL (round, p));
      writeout (a, BIGFILE_WRITEOUT_DEFAULT);
      readers_busy = TRUE;
      for (guint i = 0; i < G_N_ELEMENTS (r); i++)
        readers_busy = readers_busy && g_atomic_int_get (&r[i].n_reads) >= 100;
    }
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      g_atomic_int_set (&r[i].stop, 1);
      g_thread_join (threads[i]);
    }
  for (guint64 p = 0; p < 8; p++)
    assert_stored (fx, p, VAL (round - 1, p));
  assert_stored (fx, 40, VAL (1, 40));
}

/* ================================================================================= */

static void
add (const char *name, void (*func) (Fixture *, gconstpointer))
{
  g_autofree char *path = g_strdup_printf ("/conformance/%s/%s", backend->name, name);

  g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown);
}

static void
add_func (const char *name, void (*func) (void))
{
  g_autofree char *path = g_strdup_printf ("/conformance/%s/%s", backend->name, name);

  g_test_add_func (path, func);
}

int
main (int argc, char **argv)
{
  GError *error = NULL;

  backend = test_backends_from_args (&argc, &argv);
  g_test_init (&argc, &argv, NULL);
  /* Reads of pages that are not in memory go through the fault handler. */
  CHECK (bigfile_install_fault_handler (&error));

  add ("capabilities", test_capabilities);
  add ("absent-blocks", test_absent_blocks);
  add ("store-load", test_store_load);
  add ("store-outside-transaction", test_store_outside_transaction);
  add_func ("block-sizes", test_block_sizes);
  add_func ("bad-block-size", test_bad_block_size);
  add ("other-block-size", test_other_block_size);
  add ("size", test_size);
  add ("size-odd", test_size_odd);
  add ("transaction/commit", test_transaction_commit);
  add ("transaction/abort", test_transaction_abort);
  add ("transaction/commit-failure", test_transaction_commit_failure);
  add ("transaction/store-failure", test_transaction_store_failure);
  add ("transaction/serialized", test_transaction_serialized);
  add ("transaction/durable", test_transaction_durable);
  add ("atomicity/all-or-none", test_atomicity);
  add ("atomicity/concurrent-reader", test_atomicity_concurrent);
  add ("snapshot/isolated", test_snapshot_isolated);
  add ("refresh/others", test_refresh_others);
  add ("refresh/in-transaction", test_refresh_in_transaction);
  add ("refresh/after-own-commit", test_refresh_after_own_commit);
  add ("refresh/failure", test_refresh_failure);
  add ("changed/main-loop", test_changed_main_loop);
  add ("changed/thread-context", test_changed_thread_context);
  add ("errors/read-only", test_read_only);
  add ("threads/loads", test_threads_loads);
  add ("handle/writeout", test_handle_writeout);
  add ("handle/page-states", test_handle_page_states);
  add ("handle/discard", test_handle_discard);
  add ("handle/store-failure", test_handle_store_failure);
  add ("handle/commit-failure", test_handle_commit_failure);
  add ("handle/durable", test_handle_durable);
  add ("handle/two-phase", test_handle_two_phase);
  add ("handle/two-phase-abort", test_handle_two_phase_abort);
  add ("handle/invalidation", test_handle_invalidation);
  add ("handle/refresh", test_handle_refresh);
  add ("handle/conflict", test_handle_conflict);
  add ("handle/overwrite", test_handle_overwrite);
  add ("handle/no-lost-update", test_handle_no_lost_update);
  add ("handle/no-lost-update-threads", test_handle_no_lost_update_threads);
  add ("handle/size-no-lost-update", test_handle_size_no_lost_update);
  add ("handle/threads", test_handle_threads);

  return g_test_run ();
}
