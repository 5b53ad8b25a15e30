/* bigfile-glib tests - kill -9 in the middle of a save: the storage holds
 * one whole version, never a mix, and never less than what was committed
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   test-crash --backend=NAME   (or $BIGFILE_TEST_BACKEND)
 *
 * For each try, crash-writer (crash-writer.c) opens the storage and writes
 * out versions of n_pages blocks, one each time it is told to: three whole,
 * which measure how long a version takes, and a fourth, which it is killed
 * in with SIGKILL, after a delay from its start drawn uniformly from 0 to
 * twice that. The writer runs slower while this process sleeps on a busy
 * machine, and the end of a version (a commit, a journal, an fsync) is
 * where atomicity is made: the kills must reach it, and some land after
 * it. The storage is then opened by a new client, as after a crash, which
 * checks every block:
 *
 *  - each holds one version whole, of its own block (TEST_VAL);
 *  - each holds the last version the writer reported committed, L, or the
 *    next one, L + 1 (committed, but killed before it could say so):
 *    nothing committed is lost, nothing comes from nowhere;
 *  - for a transactional backend, all hold the same one: a writeout is
 *    atomic. For the others, a mix is counted, and the test is reported
 *    skipped with the count, since atomicity is not what they claim.
 *
 * The next try's writer goes on from the newest version found, so the
 * storage carries the history of every crash before.
 * $BIGFILE_TEST_CRASH_TRIES sets the number of tries (50; 10 under
 * valgrind, where only this program runs under memcheck: the writer runs
 * natively), $BIGFILE_TEST_CRASH_PAGES the pages of a version (512: 2 MiB,
 * which a plain local file writes out in about 2 ms).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-backends.h"

#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#define PS ((gsize)4096)
#define LINE_TIMEOUT_MS 20000

static const TestBackend *backend;
static guint n_pages = 512;

/* -- the writer process --------------------------------------------------------------- */

typedef struct
{
  GPid pid;
  int in;          /* its stdin */
  int out;         /* its stdout */
  GString *buffer; /* what was read and not yet split into lines */
  gboolean eof;
  gboolean have_committed;
  guint last_committed;
} Writer;

static void
writer_spawn (Writer *w, const char *location, guint first_version, const char *mode)
{
  const char *path = g_getenv ("BIGFILE_CRASH_WRITER");
  g_autofree char *built = NULL;
  g_autofree char *pages = g_strdup_printf ("%u", n_pages);
  g_autofree char *first = g_strdup_printf ("%u", first_version);
  GError *error = NULL;

  if (path == NULL)
    path = built = g_test_build_filename (G_TEST_BUILT, "crash-writer", NULL);
  {
    const char *argv[] = { path, backend->name, location, pages, first, mode, NULL };

    memset (w, 0, sizeof *w);
    g_spawn_async_with_pipes (NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                              &w->pid, &w->in, &w->out, NULL, &error);
  }
  g_assert_no_error (error);
  w->buffer = g_string_new (NULL);
}

/* The next line the writer printed (g_free() it), or NULL at its end.
 * Fails the test if none comes within LINE_TIMEOUT_MS. */
static char *
writer_read_line (Writer *w)
{
  for (;;)
    {
      char *newline = strchr (w->buffer->str, '\n');
      char chunk[4096];
      struct pollfd pfd = { w->out, POLLIN, 0 };
      ssize_t n;
      int ready;

      if (newline != NULL)
        {
          char *line = g_strndup (w->buffer->str, (gsize)(newline - w->buffer->str));

          g_string_erase (w->buffer, 0, newline - w->buffer->str + 1);
          if (g_str_has_prefix (line, "committed "))
            {
              w->last_committed = (guint)g_ascii_strtoull (line + strlen ("committed "), NULL, 10);
              w->have_committed = TRUE;
            }
          return line;
        }
      if (w->eof)
        return NULL;
      do
        ready = poll (&pfd, 1, LINE_TIMEOUT_MS);
      while (ready < 0 && errno == EINTR);
      if (ready == 0)
        g_error ("crash-writer printed nothing for %d ms", LINE_TIMEOUT_MS);
      g_assert_cmpint (ready, ==, 1);
      do
        n = read (w->out, chunk, sizeof chunk);
      while (n < 0 && errno == EINTR);
      g_assert_cmpint (n, >=, 0);
      if (n == 0)
        w->eof = TRUE;
      else
        g_string_append_len (w->buffer, chunk, n);
    }
}

/* Tells the writer to write one more version. */
static void
writer_go (Writer *w)
{
  ssize_t n;

  do
    n = write (w->in, "go\n", 3);
  while (n < 0 && errno == EINTR);
  g_assert_cmpint (n, ==, 3);
}

/* Reads lines until one that starts with @prefix; fails the test if the
 * writer ends first (it printed why on stderr). */
static void
writer_expect (Writer *w, const char *prefix)
{
  for (;;)
    {
      g_autofree char *line = writer_read_line (w);

      if (line == NULL)
        g_error ("crash-writer ended before printing “%s” (see its error above)", prefix);
      if (g_str_has_prefix (line, prefix))
        return;
    }
}

/* Kills the writer, waits for it, and reads what it printed before it
 * died. */
static void
writer_kill (Writer *w)
{
  int status;
  char *line;

  g_assert_cmpint (kill (w->pid, SIGKILL), ==, 0);
  g_assert_cmpint (waitpid (w->pid, &status, 0), ==, w->pid);
  if (!WIFSIGNALED (status) || WTERMSIG (status) != SIGKILL)
    g_error ("crash-writer ended on its own (status 0x%x) before it was killed", status);
  while ((line = writer_read_line (w)) != NULL)
    g_free (line);
  g_spawn_close_pid (w->pid);
  close (w->in);
  close (w->out);
  g_string_free (w->buffer, TRUE);
}

/* -- the check after the crash --------------------------------------------------------- */

typedef struct
{
  guint min, max; /* the versions found */
  guint n_torn;   /* blocks that are not one word repeated, or of another block */
} Found;

static void
check_storage (const char *location, Found *found)
{
  GError *error = NULL;
  BigfileFile *file = backend->open (location, PS, &error);
  g_autofree guint8 *buffer = g_malloc (PS);
  GArray *changed;

  g_assert_no_error (error);
  changed = bigfile_file_refresh (file, &error);
  g_assert_no_error (error);
  g_array_unref (changed);

  found->min = G_MAXUINT;
  found->max = 0;
  found->n_torn = 0;
  for (guint64 b = 0; b < n_pages; b++)
    {
      guint64 first;
      guint version;
      gboolean torn = FALSE;

      g_assert_true (bigfile_file_load_block_raw (file, b, buffer, PS, &error));
      g_assert_no_error (error);
      memcpy (&first, buffer, 8);
      for (gsize i = 8; i < PS && !torn; i += 8)
        torn = memcmp (buffer + i, &first, 8) != 0;
      version = first == 0 ? 0 : TEST_VERSION_OF (first);
      if (first != 0 && TEST_BLOCK_OF (first) != b)
        torn = TRUE;
      if (torn)
        {
          found->n_torn++;
          continue;
        }
      found->min = MIN (found->min, version);
      found->max = MAX (found->max, version);
    }
  g_object_unref (file);
}

static guint
env_uint (const char *name, guint fallback)
{
  const char *env = g_getenv (name);

  return env != NULL ? (guint)g_ascii_strtoull (env, NULL, 10) : fallback;
}

static guint
n_tries (void)
{
  return env_uint ("BIGFILE_TEST_CRASH_TRIES", RUNNING_ON_VALGRIND ? 10 : 50);
}

static void
test_crash (gconstpointer data)
{
  const char *mode = data;
  GError *error = NULL;
  g_autofree char *location = NULL;
  guint tries = n_tries ();
  guint n_mixed = 0, n_unreported = 0, next = 1;
  gdouble total_period = 0;
  GRand *rand = g_rand_new ();

  g_test_summary ("A writer killed with SIGKILL at random moments of its writeouts leaves the "
                  "storage with one version of every block, at least the last one it committed, "
                  "and for a transactional backend the same one in every block.");
  if (!backend->persistent)
    {
      g_test_skip_printf ("%s: the storage does not outlive the writer's process", backend->name);
      g_rand_free (rand);
      return;
    }

  location = backend->create (PS, &error);
  g_assert_no_error (error);

  for (guint t = 0; t < tries; t++)
    {
      Writer w;
      Found found;
      gint64 start, period, delay;
      guint last;

      writer_spawn (&w, location, next, mode);
      writer_expect (&w, "ready");
      /* The time from "start" to "committed" as this process sees them
       * (the delay of its own wake-ups is on both sides), the shortest of
       * three: the first versions of a new writer are slower (its pages
       * are new), and a kill past the commit tests nothing. */
      period = G_MAXINT64;
      for (guint i = 0; i < 3; i++)
        {
          writer_go (&w);
          writer_expect (&w, "start ");
          start = g_get_monotonic_time ();
          writer_expect (&w, "committed ");
          period = MIN (period, g_get_monotonic_time () - start);
        }
      total_period += (gdouble)period;
      delay = (gint64)g_rand_double_range (rand, 0, 2 * (gdouble)period);
      writer_go (&w);
      writer_expect (&w, "start ");
      start = g_get_monotonic_time ();
      /* A sleep, not a busy wait: on a loaded machine the writer may need
       * this CPU to get anywhere (timer slack is 1 ns: see main()). */
      delay -= g_get_monotonic_time () - start;
      if (delay > 0)
        g_usleep ((gulong)delay);
      writer_kill (&w);
      g_assert_true (w.have_committed);
      last = w.last_committed;

      check_storage (location, &found);
      if (found.n_torn > 0)
        {
          if (backend->transactional)
            g_error ("try %u: %u blocks torn (not one version of their own block)", t,
                     found.n_torn);
          n_mixed++;
          g_test_message ("try %u: %u blocks torn", t, found.n_torn);
          /* The next writer starts over from what it writes. */
          next = last + 2;
          continue;
        }
      if (found.min < last || found.max > last + 1)
        g_error ("try %u: the storage holds versions %u to %u, but the writer had committed "
                 "%u (and might have committed %u): %s",
                 t, found.min, found.max, last, last + 1,
                 found.min < last ? "a committed version was lost" : "a version from nowhere");
      if (found.min != found.max)
        {
          if (backend->transactional)
            g_error ("try %u: the storage holds a mix of versions %u and %u: a writeout of a "
                     "transactional file was not atomic",
                     t, found.min, found.max);
          n_mixed++;
        }
      else if (found.max == last + 1)
        n_unreported++;
      next = found.max + 1;
    }

  g_test_message ("%s, %s mode: %u tries of %u pages; %u left a mix of versions, %u were killed "
                  "after a whole commit they could not report; a version took %.2f ms",
                  backend->name, mode, tries, n_pages, n_mixed, n_unreported,
                  total_period / tries / 1000.0);
  backend->destroy (location);
  g_rand_free (rand);

  if (!backend->transactional)
    g_test_skip_printf ("%s is not atomic: %u of %u kills left a mix of versions (no block was "
                        "older than the last committed version)",
                        backend->name, n_mixed, tries);
}

int
main (int argc, char **argv)
{
  g_autofree char *handle_path = NULL;
  g_autofree char *file_path = NULL;

  backend = test_backends_from_args (&argc, &argv);
  g_test_init (&argc, &argv, NULL);
  n_pages = env_uint ("BIGFILE_TEST_CRASH_PAGES", n_pages);
  /* Sleeps of a fraction of a millisecond end on time, not 50 us late. */
  prctl (PR_SET_TIMERSLACK, 1UL);
  g_assert_cmpuint (n_pages, >, 0);

  handle_path = g_strdup_printf ("/crash/%s/handle", backend->name);
  file_path = g_strdup_printf ("/crash/%s/file", backend->name);
  g_test_add_data_func (handle_path, "handle", test_crash);
  g_test_add_data_func (file_path, "file", test_crash);
  return g_test_run ();
}
