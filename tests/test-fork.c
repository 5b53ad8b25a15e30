/* bigfile-glib tests - fork(): the child cannot use the parent's mappings
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The contract (engine-private.h, "fork()", and the overview's "fork()"
 * section): every RAM, handle and mapping that exists at fork() is the
 * parent's.  In the child a touch of a mapping's memory gets SIGBUS with a
 * BIGFILE_HANDLE_ERROR_FORKED fault error, every call that would use pages
 * fails with that error (or does nothing, where it returns none), and
 * unmapping, closing and unreffing free the child's bookkeeping only.
 * Whatever the child does, the parent's pages, page states, statistics and
 * file stay as they were, and the child never hangs.  A new RAM and handle
 * made in the child work as usual.
 *
 * The children here report with their exit code, never with g_assert: they
 * share the parent's TAP output.  A child that hangs is killed after
 * CHILD_TIMEOUT_S and fails its test.
 *
 * Run it with G_SLICE=always-malloc, as meson does (tests/meson.build):
 * GLib 2.74's slice allocator has a global lock that a busy thread of the
 * parent can leave locked in a child, which then hangs in GLib, not in the
 * library.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"
#include "engine/engine-private.h" /* bf_lock(), to hold threads at a known place */

#define PS ((gsize)4096)
#define N_PAGES 128
#define CHILD_TIMEOUT_S 10

extern char **environ;

/* Exit codes of the children. */
enum
{
  CHILD_OK = 0,             /* the child's checks passed */
  CHILD_FORKED_SIGBUS = 10, /* SIGBUS with the FORKED fault error: right */
  CHILD_BAD_SIGBUS = 11,    /* SIGBUS with another error, or none */
  CHILD_NO_SIGBUS = 12,     /* a raw access went through */
  CHILD_CHECK_FAILED = 13,  /* a check failed: its line is on stderr */
};

/* -- children ------------------------------------------------------------------ */

static pid_t parent_pid;

/* Is @error the FORKED error, naming the parent and fork()? */
static gboolean
is_forked_error (const GError *error)
{
  g_autofree char *pid = g_strdup_printf ("(pid %d)", (int)parent_pid);

  return error != NULL && g_error_matches (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_FORKED)
         && strstr (error->message, "fork()") != NULL && strstr (error->message, pid) != NULL;
}

static void
child_on_sigbus (int sig, siginfo_t *si, void *uctx)
{
  GError *error = bigfile_vma_take_fault_error ();

  _exit (is_forked_error (error) ? CHILD_FORKED_SIGBUS : CHILD_BAD_SIGBUS);
}

static void
child_catch_sigbus (void)
{
  struct sigaction sa;

  memset (&sa, 0, sizeof sa);
  sa.sa_sigaction = child_on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGBUS, &sa, NULL);
}

static G_NORETURN void
child_fail (int line)
{
  char msg[64];
  int n = g_snprintf (msg, sizeof msg, "test-fork: child check failed at line %d\n", line);

  if (write (STDERR_FILENO, msg, (size_t)n) < 0)
    {
    }
  _exit (CHILD_CHECK_FAILED);
}

#define child_check(cond)                                                                          \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (!(cond))                                                                                   \
      child_fail (__LINE__);                                                                       \
  }                                                                                                \
  G_STMT_END

/* Does @error, which must be set, say FORKED?  Frees it. */
#define child_check_forked(error)                                                                  \
  G_STMT_START                                                                                     \
  {                                                                                                \
    child_check (is_forked_error (error));                                                         \
    g_clear_error (&(error));                                                                      \
  }                                                                                                \
  G_STMT_END

/* Nothing of the parent's page memory is left in the child: no mapping of
 * a pool's memfd (its window, slots in VMAs) or of the file at @path (clean
 * pages over a base file), and no memfd open. */
static gboolean
child_sees_no_parent_memory (const char *path)
{
  g_autofree char *maps = NULL;
  const char *name;
  GDir *dir;
  gboolean clean = TRUE;

  if (!g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL))
    return FALSE;
  if (strstr (maps, "memfd:bigfile-ram") != NULL || strstr (maps, path) != NULL)
    return FALSE;

  dir = g_dir_open ("/proc/self/fd", 0, NULL);
  if (dir == NULL)
    return FALSE;
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *link = g_build_filename ("/proc/self/fd", name, NULL);
      g_autofree char *target = g_file_read_link (link, NULL);

      if (target != NULL && strstr (target, "memfd:bigfile-ram") != NULL)
        clean = FALSE;
    }
  g_dir_close (dir);
  return clean;
}

typedef int (*ChildFunc) (gpointer data);

/* Forks a child that catches SIGBUS, waits for a byte on *@go (if @go is
 * not NULL: the parent writes it with child_go()), runs @func and exits
 * with what it returns. */
static pid_t
fork_child (ChildFunc func, gpointer data, int *go)
{
  int fds[2] = { -1, -1 };
  pid_t pid;

  parent_pid = getpid ();
  if (go != NULL)
    g_assert_cmpint (pipe (fds), ==, 0);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      char byte;

      child_catch_sigbus ();
      if (go != NULL)
        {
          close (fds[1]);
          if (read (fds[0], &byte, 1) != 1)
            _exit (CHILD_CHECK_FAILED);
        }
      _exit (func (data));
    }
  if (go != NULL)
    {
      close (fds[0]);
      *go = fds[1];
    }
  return pid;
}

static void
child_go (int go)
{
  g_assert_cmpint (write (go, "g", 1), ==, 1);
  close (go);
}

/* Waits for @pid, killing it after CHILD_TIMEOUT_S; returns its exit code,
 * or -1 if it hung, or 128 + the signal that killed it. */
static int
wait_child (pid_t pid)
{
  gint64 deadline = g_get_monotonic_time () + CHILD_TIMEOUT_S * G_USEC_PER_SEC;
  int status = 0;

  for (;;)
    {
      pid_t r = waitpid (pid, &status, WNOHANG);

      g_assert_cmpint (r, >=, 0);
      if (r == pid)
        break;
      if (g_get_monotonic_time () > deadline)
        {
          kill (pid, SIGKILL);
          g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
          g_test_message ("child %d hung", (int)pid);
          return -1;
        }
      g_usleep (1000);
    }
  if (WIFSIGNALED (status))
    return 128 + WTERMSIG (status);
  g_assert_true (WIFEXITED (status));
  return WEXITSTATUS (status);
}

/* -- a local file mapped, and what the parent knows of it ------------------------- */

typedef struct
{
  char *dir;
  char *path;
  BigfileLocalFileFlags flags;
  Mapping m;
  guint8 *expect; /* the parent's view of every page: the file plus its writes */

  /* At fork time. */
  BigfilePageState states[N_PAGES];
  guint64 n_pages;
  guint64 n_dirty;
  guint64 used_bytes;
} Fixture;

static guint8 *
page_addr (Fixture *fx, guint64 page)
{
  return fx->m.data + page * PS;
}

static void
fixture_setup (Fixture *fx, BigfileLocalFileFlags flags, guint64 budget_pages)
{
  fx->dir = temp_dir_new ();
  fx->path = g_build_filename (fx->dir, "data", NULL);
  fx->flags = flags;
  fx->expect = g_malloc (N_PAGES * PS);
  for (guint64 b = 0; b < N_PAGES; b++)
    for (gsize i = 0; i < PS; i++)
      fx->expect[b * PS + i] = test_mem_file_pattern (b, i);
  write_file (fx->path, fx->expect, N_PAGES * PS);
  mapping_setup_local_file (&fx->m, fx->path, PS, flags, N_PAGES, budget_pages * PS);
}

static void
fixture_teardown (Fixture *fx)
{
  mapping_teardown (&fx->m);
  temp_dir_remove (fx->dir);
  g_free (fx->path);
  g_free (fx->dir);
  g_free (fx->expect);
}

/* Writes @value at @offset of @page through raw memory, in the parent. */
static void
fixture_write (Fixture *fx, guint64 page, gsize offset, guint8 value)
{
  raw_write (page_addr (fx, page) + offset, value);
  fx->expect[page * PS + offset] = value;
}

static void
fixture_read (Fixture *fx, guint64 page)
{
  g_assert_cmpuint (raw_read (page_addr (fx, page) + 5), ==, fx->expect[page * PS + 5]);
}

/* The usual state before a fork: pages 0-3 read (clean), 4-7 written
 * (dirty), the rest never touched. */
static void
fixture_touch_some (Fixture *fx)
{
  for (guint64 p = 0; p < 4; p++)
    fixture_read (fx, p);
  for (guint64 p = 4; p < 8; p++)
    {
      fixture_write (fx, p, 0, (guint8)(0xa0 + p));
      fixture_write (fx, p, PS - 1, (guint8)(0xb0 + p));
    }
}

static void
fixture_snapshot (Fixture *fx)
{
  for (guint64 p = 0; p < N_PAGES; p++)
    fx->states[p] = page_state (&fx->m, p);
  fx->n_pages = bigfile_ram_get_n_pages (fx->m.ram);
  fx->n_dirty = bigfile_ram_get_n_dirty_pages (fx->m.ram);
  fx->used_bytes = bigfile_ram_get_used_bytes (fx->m.ram);
}

/* After the child: the parent's page states and statistics are those of
 * the snapshot, every page shows the parent's data (pages in memory first,
 * read without changing any state, then all), and a writeout stores
 * exactly the parent's data. */
static void
fixture_check_parent (Fixture *fx)
{
  g_autofree guint8 *stored = NULL;
  gsize len = 0;
  GError *error = NULL;

  for (guint64 p = 0; p < N_PAGES; p++)
    g_assert_cmpint (page_state (&fx->m, p), ==, fx->states[p]);
  g_assert_cmpuint (bigfile_ram_get_n_pages (fx->m.ram), ==, fx->n_pages);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (fx->m.ram), ==, fx->n_dirty);
  g_assert_cmpuint (bigfile_ram_get_used_bytes (fx->m.ram), ==, fx->used_bytes);

  for (guint64 p = 0; p < N_PAGES; p++)
    if (fx->states[p] != BIGFILE_PAGE_STATE_EMPTY)
      g_assert_cmpmem (page_addr (fx, p), PS, fx->expect + p * PS, PS);
  for (guint64 p = 0; p < N_PAGES; p++)
    g_assert_cmpmem (page_addr (fx, p), PS, fx->expect + p * PS, PS);

  g_assert_true (bigfile_handle_writeout (fx->m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (fx->m.handle), ==, 0);
  stored = read_file (fx->path, &len);
  g_assert_cmpmem (stored, len, fx->expect, N_PAGES * PS);
}

/* -- raw accesses in the child ------------------------------------------------- */

typedef struct
{
  Fixture *fx;
  guint64 page;
  gboolean write;
} RawAccess;

static int
child_raw_access (gpointer data)
{
  RawAccess *a = data;
  guint8 *p = page_addr (a->fx, a->page) + 7;

  child_check (child_sees_no_parent_memory (a->fx->path));
  if (a->write)
    raw_write (p, 0x5a);
  else
    (void)raw_read (p);
  return CHILD_NO_SIGBUS;
}

/* A child touches @page (read or write) of the parent's mapping: SIGBUS
 * with the FORKED error, and the parent sees nothing of it. Between the
 * fork and the child's access, the parent loads a new page: the child must
 * not take the slot the parent just used (nor any other). */
static void
check_raw_access (BigfileLocalFileFlags flags, guint64 page, gboolean write)
{
  Fixture fx = { 0 };
  RawAccess a = { &fx, page, write };
  int go, code;
  pid_t pid;

  fixture_setup (&fx, flags, 64);
  fixture_touch_some (&fx);

  pid = fork_child (child_raw_access, &a, &go);
  fixture_read (&fx, 9);
  fixture_snapshot (&fx);
  child_go (go);
  code = wait_child (pid);

  /* The parent first: what a broken engine lets the child damage. */
  fixture_check_parent (&fx);
  g_assert_cmpint (code, ==, CHILD_FORKED_SIGBUS);
  fixture_teardown (&fx);
}

/* The raw accesses a child may try: each gets SIGBUS, with and without a
 * base file behind the clean pages. */
typedef struct
{
  const char *path;
  const char *summary;
  guint64 page; /* of fixture_touch_some(): 0-3 clean, 4-7 dirty, others never loaded */
  gboolean write;
} RawCase;

static const RawCase raw_cases[] = {
  { "/fork/raw/read-unloaded",
    "A child that reads a page the parent never loaded gets SIGBUS with the FORKED error; the "
    "parent's pages and slots stay its own",
    10, FALSE },
  { "/fork/raw/read-loaded", "A child that reads a page the parent has in memory gets SIGBUS", 1,
    FALSE },
  { "/fork/raw/write-clean",
    "A child that writes a clean page gets SIGBUS; the parent's page stays clean and unchanged", 2,
    TRUE },
  { "/fork/raw/write-dirty",
    "A child that writes a dirty page (mapped writable in the parent) gets SIGBUS; the parent's "
    "changes stay its own",
    5, TRUE },
};

static void
test_raw_access (gconstpointer data)
{
  const RawCase *c = data;

  g_test_summary (c->summary);
  check_raw_access (BIGFILE_LOCAL_FILE_FLAGS_NONE, c->page, c->write);
  check_raw_access (BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, c->page, c->write);
}

/* -- the API in the child ------------------------------------------------------ */

typedef struct
{
  gboolean done;
  GError *error;
} AsyncResult;

static void
on_writeout_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  AsyncResult *r = user_data;

  r->done = !bigfile_handle_writeout_finish (BIGFILE_HANDLE (source), result, &r->error);
  r->done = TRUE;
}

/* Everything a program may call, on the parent's objects: errors or
 * nothing, then every object let go. */
static int
child_api_everything (gpointer data)
{
  Fixture *fx = data;
  BigfileVma *vma = fx->m.vma;
  BigfileHandle *handle = fx->m.handle;
  BigfileRam *ram = fx->m.ram;
  guint64 budget = bigfile_ram_get_budget (ram);
  GError *error = NULL;
  guint8 buf[16];
  GBytes *bytes;
  GMainContext *context;
  AsyncResult async = { FALSE, NULL };

  child_check (child_sees_no_parent_memory (fx->path));

  /* Reads of a clean, a dirty and an unloaded page; writes. */
  child_check (bigfile_vma_read (vma, 1 * PS, 16, &error) == NULL);
  child_check_forked (error);
  child_check (!bigfile_vma_read_into (vma, 5 * PS, buf, sizeof buf, &error));
  child_check_forked (error);
  child_check (bigfile_vma_read (vma, 20 * PS, 16, &error) == NULL);
  child_check_forked (error);
  bytes = g_bytes_new_static ("child", 5);
  child_check (!bigfile_vma_write (vma, 2 * PS, bytes, &error));
  child_check_forked (error);
  child_check (!bigfile_vma_write (vma, 5 * PS, bytes, &error));
  child_check_forked (error);
  child_check (!bigfile_vma_write (vma, 30 * PS, bytes, &error));
  child_check_forked (error);
  g_bytes_unref (bytes);

  /* Populate and pin, read-only and writable. */
  child_check (!bigfile_vma_populate (vma, 0, 8 * PS, FALSE, &error));
  child_check_forked (error);
  child_check (!bigfile_vma_populate (vma, 40 * PS, PS, TRUE, &error));
  child_check_forked (error);
  child_check (!bigfile_vma_pin (vma, 0, PS, FALSE, &error));
  child_check_forked (error);
  child_check (!bigfile_vma_pin (vma, 50 * PS, PS, TRUE, &error));
  child_check_forked (error);
  /* The parent's pin (see test_api_everything): undone here, for the child. */
  bigfile_vma_unpin (vma, 60 * PS, 2 * PS);

  /* Writeouts, mapping, opening in the parent's RAM. */
  child_check (!bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  child_check_forked (error);
  child_check (!bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_MARK_STORED, &error));
  child_check_forked (error);
  context = g_main_context_new ();
  g_main_context_push_thread_default (context);
  bigfile_handle_writeout_async (handle, BIGFILE_WRITEOUT_DEFAULT, G_PRIORITY_DEFAULT, NULL, NULL,
                                 NULL, NULL, on_writeout_done, &async);
  for (int i = 0; i < 1000 && !async.done; i++)
    g_main_context_iteration (context, FALSE);
  child_check (async.done);
  child_check_forked (async.error);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  child_check (bigfile_handle_map (handle, 0, 4, &error) == NULL);
  child_check_forked (error);
  child_check (bigfile_handle_new (bigfile_handle_get_file (handle), ram, &error) == NULL);
  child_check_forked (error);

  /* Those that return no error: nothing happens. */
  child_check (bigfile_handle_discard (handle) == 0);
  bigfile_handle_invalidate_page (handle, 1);
  bigfile_handle_invalidate_page (handle, 5);
  child_check (bigfile_ram_reclaim (ram) == 0);
  bigfile_ram_set_budget (ram, PS);
  child_check (bigfile_ram_get_budget (ram) == budget);
  bigfile_ram_set_budget (ram, 0);
  child_check (bigfile_handle_get_n_dirty_pages (handle) == 32);

  /* And everything let go. */
  bigfile_vma_unmap (vma);
  child_check (bigfile_handle_close (handle));
  g_clear_object (&fx->m.vma);
  g_clear_object (&fx->m.handle);
  g_clear_object (&fx->m.ram);
  return CHILD_OK;
}

static void
test_api_everything (void)
{
  Fixture fx = { 0 };
  GError *error = NULL;
  int go, code;
  pid_t pid;

  g_test_summary ("In a child every call on the parent's objects fails with FORKED or does "
                  "nothing, and letting them go is harmless; the parent's 64 pages, page "
                  "states, statistics, further loads and file stay right");

  fixture_setup (&fx, BIGFILE_LOCAL_FILE_FLAGS_NONE, 256);
  /* 64 pages of distinct patterns: 0-31 dirty, 32-63 clean. */
  for (guint64 p = 0; p < 64; p++)
    {
      if (p < 32)
        for (gsize i = 0; i < PS; i += 512)
          fixture_write (&fx, p, i, (guint8)(p * 3 + i / 512));
      else
        fixture_read (&fx, p);
    }
  /* A pin the child undoes for itself. */
  g_assert_true (bigfile_vma_pin (fx.m.vma, 60 * PS, 2 * PS, FALSE, &error));
  g_assert_no_error (error);

  pid = fork_child (child_api_everything, &fx, &go);
  /* The next slot, which the child must not take. */
  fixture_read (&fx, 70);
  fixture_snapshot (&fx);
  child_go (go);
  code = wait_child (pid);

  /* fixture_check_parent() loads 64 more pages and writes out. */
  fixture_check_parent (&fx);
  g_assert_cmpint (code, ==, CHILD_OK);
  bigfile_vma_unpin (fx.m.vma, 60 * PS, 2 * PS);
  fixture_teardown (&fx);
}

/* -- the child's own objects ---------------------------------------------------- */

/* Opens @path in a RAM of its own and checks that page 3 shows @expect
 * through raw memory and read(); FALSE on any failure. */
static gboolean
child_open_and_read (BigfileFile *file, const guint8 *expect, BigfileVma **out_vma)
{
  g_autoptr (BigfileRam) ram = NULL;
  g_autoptr (BigfileHandle) handle = NULL;
  g_autoptr (BigfileVma) vma = NULL;
  g_autoptr (GBytes) bytes = NULL;
  GError *error = NULL;

  /* The objects' sources go to a context of the child's own: a thread of
   * the parent may have held the default context's lock at fork(), and
   * GLib does not reset it. */
  g_main_context_push_thread_default (g_main_context_new ());
  ram = g_object_new (BIGFILE_TYPE_RAM, "budget", (guint64)(16 * PS), "reclaim-on-low-memory",
                      FALSE, NULL);
  handle = bigfile_handle_new (file, ram, &error);
  if (handle == NULL)
    return FALSE;
  vma = bigfile_handle_map (handle, 0, 8, &error);
  if (vma == NULL)
    return FALSE;
  if (memcmp (bigfile_vma_get_data (vma) + 3 * PS, expect + 3 * PS, PS) != 0)
    return FALSE;
  bytes = bigfile_vma_read (vma, 2 * PS, PS, &error);
  if (bytes == NULL || memcmp (g_bytes_get_data (bytes, NULL), expect + 2 * PS, PS) != 0)
    return FALSE;
  if (out_vma != NULL)
    *out_vma = g_steal_pointer (&vma);
  return TRUE;
}

static int
grandchild_touch (gpointer data)
{
  BigfileVma *vma = data;

  (void)raw_read (bigfile_vma_get_data (vma));
  return CHILD_NO_SIGBUS;
}

static int
child_reopen (gpointer data)
{
  Fixture *fx = data;
  g_autoptr (BigfileLocalFile) file = NULL;
  g_autofree guint8 *on_disk = NULL;
  BigfileVma *vma = NULL;
  GError *error = NULL;
  gsize len;
  pid_t pid;

  /* The file as it is on disk: without the parent's unsaved changes. */
  on_disk = read_file (fx->path, &len);
  child_check (len == N_PAGES * PS);

  /* The parent's file object, in a new RAM. */
  child_check (child_open_and_read (bigfile_handle_get_file (fx->m.handle), on_disk, NULL));

  /* The file opened again. */
  file = bigfile_local_file_new (fx->path, PS, fx->flags, &error);
  child_check (file != NULL);
  child_check (child_open_and_read (BIGFILE_FILE (file), on_disk, &vma));

  /* A grandchild cannot use the child's mapping either: it names the
   * child. */
  pid = fork_child (grandchild_touch, vma, NULL);
  parent_pid = getppid ();
  child_check (wait_child (pid) == CHILD_FORKED_SIGBUS);
  /* The child's mapping still works in the child. */
  child_check (raw_read (bigfile_vma_get_data (vma) + 4 * PS + 1) == on_disk[4 * PS + 1]);
  g_object_unref (vma);

  /* And the parent's are still the parent's. */
  (void)raw_read (page_addr (fx, 4));
  return CHILD_NO_SIGBUS;
}

static void
check_reopen (BigfileLocalFileFlags flags)
{
  Fixture fx = { 0 };
  pid_t pid;

  fixture_setup (&fx, flags, 64);
  fixture_touch_some (&fx);
  fixture_snapshot (&fx);
  pid = fork_child (child_reopen, &fx, NULL);
  g_assert_cmpint (wait_child (pid), ==, CHILD_FORKED_SIGBUS);
  fixture_check_parent (&fx);
  fixture_teardown (&fx);
}

static void
test_child_reopens (void)
{
  g_test_summary ("A child can open the file again, in a RAM of its own, and use it as "
                  "usual; a grandchild cannot use the child's mapping");
  check_reopen (BIGFILE_LOCAL_FILE_FLAGS_NONE);
  check_reopen (BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES);
}

/* -- busy threads ---------------------------------------------------------------- */

/* Two threads on the parent's mapping while it forks: one reads pages
 * 0-63 round and round (a budget of 32 pages: loads and reclaims all the
 * time), the other writes pages 64-71 and writes them out every so
 * often. */
typedef struct
{
  Fixture *fx;
  gint stop;
  gint n_bad;
  guint64 n_reads;
  guint64 n_writes;
  GThread *reader;
  GThread *writer;
} Busy;

static gpointer
busy_reader (gpointer data)
{
  Busy *b = data;
  guint64 n = 0;

  while (!g_atomic_int_get (&b->stop))
    {
      guint64 page = n % 64;
      gsize off = (n * 131) % PS;

      if (raw_read (page_addr (b->fx, page) + off) != b->fx->expect[page * PS + off])
        g_atomic_int_inc (&b->n_bad);
      n++;
    }
  b->n_reads = n;
  return NULL;
}

static gpointer
busy_writer (gpointer data)
{
  Busy *b = data;
  guint64 n = 0;

  while (!g_atomic_int_get (&b->stop))
    {
      guint64 page = 64 + n % 8;
      gsize off = (n * 17) % PS;

      /* Only this thread writes these pages, and their expect bytes. */
      fixture_write (b->fx, page, off, (guint8)n);
      if (n % 512 == 511)
        {
          GError *error = NULL;

          if (!bigfile_handle_writeout (b->fx->m.handle, BIGFILE_WRITEOUT_DEFAULT, &error))
            g_atomic_int_inc (&b->n_bad);
          g_clear_error (&error);
        }
      n++;
    }
  b->n_writes = n;
  return NULL;
}

static void
busy_start (Busy *b, Fixture *fx)
{
  b->fx = fx;
  b->stop = 0;
  b->n_bad = 0;
  b->reader = g_thread_new ("busy-reader", busy_reader, b);
  b->writer = g_thread_new ("busy-writer", busy_writer, b);
  g_usleep (20000);
}

static void
busy_stop (Busy *b)
{
  g_atomic_int_set (&b->stop, 1);
  g_thread_join (b->reader);
  g_thread_join (b->writer);
  g_test_message ("%" G_GUINT64_FORMAT " reads, %" G_GUINT64_FORMAT " writes", b->n_reads,
                  b->n_writes);
  g_assert_cmpint (b->n_bad, ==, 0);
  g_assert_cmpuint (b->n_reads, >, 0);
  g_assert_cmpuint (b->n_writes, >, 0);
}

static int
child_busy (gpointer data)
{
  Fixture *fx = data;
  g_autoptr (BigfileLocalFile) file = NULL;
  g_autofree guint8 *on_disk = NULL;
  GError *error = NULL;
  gsize len;

  /* The engine lock works in the child, whoever held it at fork(). */
  on_disk = read_file (fx->path, &len);
  file = bigfile_local_file_new (fx->path, PS, BIGFILE_LOCAL_FILE_FLAGS_NONE, &error);
  child_check (file != NULL);
  /* Pages 2 and 3 are never written: the file has them as they are. */
  child_check (child_open_and_read (BIGFILE_FILE (file), on_disk, NULL));

  (void)raw_read (page_addr (fx, 3));
  return CHILD_NO_SIGBUS;
}

static void
test_busy_threads (void)
{
  Fixture fx = { 0 };
  Busy b;
  guint n_forks = 60;

  g_test_summary ("60 forks while two threads fault, write and write out all the time: "
                  "no child hangs (each touches a page and gets SIGBUS), and the parent's "
                  "data stays right");

  fixture_setup (&fx, BIGFILE_LOCAL_FILE_FLAGS_NONE, 32);
  busy_start (&b, &fx);
  for (guint i = 0; i < n_forks; i++)
    {
      pid_t pid = fork_child (child_busy, &fx, NULL);
      int code = wait_child (pid);

      if (code != CHILD_FORKED_SIGBUS)
        g_test_message ("fork %u of %u: child exit code %d", i + 1, n_forks, code);
      g_assert_cmpint (code, ==, CHILD_FORKED_SIGBUS);
    }
  busy_stop (&b);

  fixture_snapshot (&fx);
  fixture_check_parent (&fx);
  fixture_teardown (&fx);
}

/* -- spawning ------------------------------------------------------------------- */

static void
child_setup_nothing (gpointer data)
{
  /* With a child setup function g_spawn forks (and so runs the atfork
   * handlers) instead of using posix_spawn. */
}

static void
test_spawn (void)
{
  const char *argv[] = { "/bin/true", NULL };
  Fixture fx = { 0 };
  Busy b;

  g_test_summary ("g_spawn_sync (posix_spawn and fork paths), GSubprocess and posix_spawn "
                  "of /bin/true work while threads fault");

  fixture_setup (&fx, BIGFILE_LOCAL_FILE_FLAGS_NONE, 32);
  busy_start (&b, &fx);
  for (int i = 0; i < 5; i++)
    {
      g_autoptr (GSubprocess) sub = NULL;
      GError *error = NULL;
      int status = -1;
      pid_t pid;

      g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL,
                                   NULL, &status, &error));
      g_assert_no_error (error);
      g_assert_true (g_spawn_check_wait_status (status, &error));
      g_assert_no_error (error);

      g_assert_true (g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, child_setup_nothing,
                                   NULL, NULL, NULL, &status, &error));
      g_assert_no_error (error);
      g_assert_true (g_spawn_check_wait_status (status, &error));
      g_assert_no_error (error);

      sub = g_subprocess_newv (argv, G_SUBPROCESS_FLAGS_NONE, &error);
      g_assert_no_error (error);
      g_assert_true (g_subprocess_wait_check (sub, NULL, &error));
      g_assert_no_error (error);

      g_assert_cmpint (posix_spawn (&pid, argv[0], NULL, NULL, (char **)argv, environ), ==, 0);
      g_assert_cmpint (wait_child (pid), ==, 0);
    }
  busy_stop (&b);

  fixture_snapshot (&fx);
  fixture_check_parent (&fx);
  fixture_teardown (&fx);
}

/* -- fork() from inside the engine -------------------------------------------------- */

typedef struct
{
  BigfileVma *vma;
  pid_t pid;
} ForkInLoad;

static int
child_in_load (gpointer data)
{
  ForkInLoad *f = data;
  GError *error = NULL;

  /* Inside the parent's load (its buffer is gone here): the child may only
   * call what touches no page memory, and exit. */
  child_check (bigfile_vma_read (f->vma, 6 * PS, 1, &error) == NULL);
  child_check_forked (error);
  return CHILD_OK;
}

static void
fork_in_load (TestMemFile *file, guint64 block, gpointer user_data)
{
  ForkInLoad *f = user_data;

  if (block == 3 && f->pid == 0)
    f->pid = fork_child (child_in_load, f, NULL);
}

static void
test_fork_in_load (void)
{
  Mapping m;
  ForkInLoad f = { NULL, 0 };

  g_test_summary ("fork() from inside a load callback (in the fault handler, the engine "
                  "lock released) neither hangs the parent nor the child");

  mapping_setup (&m, PS, 8, 8, 8 * PS);
  f.vma = m.vma;
  test_mem_file_set_load_hook (m.file, fork_in_load, &f);
  g_assert_cmpuint (raw_read (m.data + 3 * PS + 2), ==, test_mem_file_pattern (3, 2));
  g_assert_cmpint (f.pid, >, 0);
  g_assert_cmpint (wait_child (f.pid), ==, CHILD_OK);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_LOADED);
  mapping_teardown (&m);
}

/* The engine's dirty_changed runs with the engine lock held: a fork() there
 * must not take it again.  The child then goes on with the fault that
 * called it, and gets SIGBUS. */
static pid_t locked_fork_pid;

static gboolean
plain_load (gpointer data, guint64 block, void *buf, gsize len, GError **error)
{
  memset (buf, (int)(block + 1), len);
  return TRUE;
}

static gboolean
plain_store (gpointer data, guint64 block, const void *buf, gsize len, GError **error)
{
  return TRUE;
}

static void
fork_in_dirty_changed (gpointer data)
{
  if (locked_fork_pid != 0)
    return;
  parent_pid = getpid ();
  locked_fork_pid = fork ();
  g_assert_cmpint (locked_fork_pid, >=, 0);
  if (locked_fork_pid == 0)
    child_catch_sigbus (); /* and back into the fault: SIGBUS */
}

static void
test_fork_with_lock_held (void)
{
  static const BfFileOps ops = {
    .load = plain_load,
    .store = plain_store,
    .dirty_changed = fork_in_dirty_changed,
  };
  GError *error = NULL;
  BfRam *ram;
  BfHandle *handle;
  BfVma *vma;
  guint8 *data;

  g_test_summary ("fork() from a callback that runs with the engine lock held (dirty_changed) "
                  "does not deadlock; the child's fault then ends in SIGBUS");

  ram = bf_ram_new (16 * PS, &error);
  g_assert_no_error (error);
  handle = bf_handle_new (ram, PS, &ops, NULL, -1, BF_NO_SIZE, &error);
  g_assert_no_error (error);
  bf_fault_install ();
  vma = bf_vma_map (handle, 0, 4, &error);
  g_assert_no_error (error);
  data = bf_vma_get_start (vma);

  locked_fork_pid = 0;
  raw_write (data + PS + 9, 0x42); /* dirties page 1: forks */
  if (locked_fork_pid == 0)
    _exit (CHILD_NO_SIGBUS); /* the child's write went through */
  g_assert_cmpint (wait_child (locked_fork_pid), ==, CHILD_FORKED_SIGBUS);
  g_assert_cmpuint (raw_read (data + PS + 9), ==, 0x42);
  g_assert_cmpuint (raw_read (data + PS + 10), ==, 2);
  g_assert_cmpint (bf_handle_get_page_state (handle, 1), ==, BF_PAGE_DIRTY);

  bf_vma_free (vma);
  g_assert_true (bf_handle_close (handle));
  bf_ram_unref (ram);
}

/* A thread of the parent in bigfile_ram_set_budget() at fork(): it holds
 * the RAM's budget lock, and waits for the engine lock (which the test
 * holds).  In the child the budget calls must not wait for that thread. */
typedef struct
{
  BigfileRam *ram;
  gint entered;
} BudgetSetter;

static gpointer
budget_setter (gpointer data)
{
  BudgetSetter *b = data;

  g_atomic_int_set (&b->entered, 1);
  bigfile_ram_set_budget (b->ram, 32 * PS);
  return NULL;
}

static int
child_budget (gpointer data)
{
  BigfileRam *ram = data;
  guint64 budget;

  /* The forking thread held the engine lock: so does the child. */
  bf_unlock ();
  budget = bigfile_ram_get_budget (ram);
  bigfile_ram_set_budget (ram, 8 * PS);
  child_check (bigfile_ram_get_budget (ram) == budget);
  return CHILD_OK;
}

static void
test_budget_lock (void)
{
  Mapping m;
  BudgetSetter b = { NULL, 0 };
  GThread *thread;
  pid_t pid;

  g_test_summary ("A child forked while a thread of the parent changes the budget can still "
                  "read and set it: it does not wait for that thread");

  mapping_setup (&m, PS, 8, 8, 16 * PS);
  b.ram = m.ram;
  bf_lock ();
  thread = g_thread_new ("budget-setter", budget_setter, &b);
  while (!g_atomic_int_get (&b.entered))
    g_usleep (1000);
  g_usleep (50000); /* now in bf_ram_set_budget(), waiting for the engine lock */
  pid = fork_child (child_budget, m.ram, NULL);
  bf_unlock ();
  g_thread_join (thread);
  g_assert_cmpint (wait_child (pid), ==, CHILD_OK);
  g_assert_cmpuint (bigfile_ram_get_budget (m.ram), ==, 32 * PS);
  mapping_teardown (&m);
}

int
main (int argc, char **argv)
{
  GMemoryMonitor *monitor;
  int ret;

  g_test_init (&argc, &argv, NULL);

  /* Each BigfileRam watches GLib's memory monitor, which connects to D-Bus
   * in worker threads when first made.  GLib's own locks (its slice
   * allocator, main contexts) are not reset in a child, so a fork() while
   * those threads run can leave a child stuck in GLib: let them finish
   * before any test forks. */
  monitor = g_memory_monitor_dup_default ();
  for (gint64 end = g_get_monotonic_time () + 200000; g_get_monotonic_time () < end;)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);

  for (gsize i = 0; i < G_N_ELEMENTS (raw_cases); i++)
    g_test_add_data_func (raw_cases[i].path, &raw_cases[i], test_raw_access);
  g_test_add_func ("/fork/api/everything", test_api_everything);
  g_test_add_func ("/fork/child-reopens", test_child_reopens);
  g_test_add_func ("/fork/busy-threads", test_busy_threads);
  g_test_add_func ("/fork/spawn", test_spawn);
  g_test_add_func ("/fork/in-load-callback", test_fork_in_load);
  g_test_add_func ("/fork/with-lock-held", test_fork_with_lock_held);
  g_test_add_func ("/fork/budget-lock", test_budget_lock);

  ret = g_test_run ();
  g_object_unref (monitor);
  return ret;
}
