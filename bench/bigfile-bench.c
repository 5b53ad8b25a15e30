/* bigfile-bench - what the engine costs, next to what the kernel costs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Run it with no arguments, in a directory with 1.2 GiB free: it makes its
 * data files there (bigfile-bench-PID-*.dat) and removes them on every way
 * out (normal end, error exit, Ctrl-C, a crash signal).  A full run takes
 * about 45 s here.  Arguments, if any, name the rows to run, which is handy
 * to profile one of them (perf record -g bigfile-bench fault-read-4k).
 *
 * stdout gets one JSON object per line, one per measurement:
 *
 *   {"bench": NAME, "value": V, "unit": U, "baseline": B, "ratio": R}
 *
 * ratio is always value / baseline: for a cost ("us", microseconds; "ms",
 * milliseconds) lower is better, for a throughput ("GB/s", 10^9 bytes per
 * second) higher is better.
 * The program does not judge the numbers; stderr gets the details of each
 * measurement and a table for humans at the end.
 *
 * The rows:
 *
 *   fault-read-4k, -64k, -2m
 *       µs per read fault of a fresh mapping, one byte touched per page,
 *       through a file whose load does nothing (so the engine alone is
 *       measured).  The mapping is 4x-8x the RAM budget, so after the first
 *       pages every fault reclaims the least recently used page and reuses
 *       its memory: the steady state the engine is built for.  One warm-up
 *       round, then the median of the rounds' averages.
 *   fault-write-4k
 *       µs per write fault on a page already loaded and mapped read-only
 *       (dirty tracking), no-op file; between rounds, a writeout (to the
 *       no-op store) makes the pages clean and read-only again.
 *   baseline of the fault rows
 *       the kernel's first touch of a new memfd page: memfd_create +
 *       ftruncate + mmap(MAP_SHARED), read one byte per 4 KiB page, a fresh
 *       64 MiB memfd per round, µs per 4 KiB page.  The same number for all
 *       four rows, also for 64 KiB and 2 MiB pages: it is the unit cost of a
 *       page of memory the kernel has to find.  One baseline round runs
 *       before each measured round of every fault row, and the baseline is
 *       the median of all of them: a machine shared with other work (or a
 *       noisy host) then weighs on the rows and on their baseline alike.
 *   seqread-2m
 *       GB/s summing a warm 1 GiB BigfileLocalFile as 64-bit words through a
 *       2 MiB-page mapping with a 256 MiB budget (every page is loaded again
 *       on every pass: pages are recycled).  The first pass warms, the median
 *       of passes 2-4 is reported.  Baseline: the same loop over a kernel
 *       mmap(MAP_SHARED, PROT_READ) of the same file, same passes,
 *       alternating with the bigfile passes.
 *   seqread-2m-direct
 *       The same, over the same file, with the BigfileLocalFile opened with
 *       BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES: clean pages are shown
 *       straight from the page cache, so nothing is loaded or reclaimed and
 *       the budget is not used.  Baseline: the kernel mmap again, measured
 *       alongside it as for seqread-2m.
 *   writeout-2m
 *       GB/s of bigfile_handle_writeout(DEFAULT) of 512 MiB of dirty 2 MiB
 *       pages (every byte written by memset before the clock starts) to a
 *       BigfileLocalFile.  Baseline: pwrite() of 512 MiB from a malloc'ed,
 *       just-memset buffer in 2 MiB chunks to another file.  Both files
 *       already exist with their full size, written once before (so both
 *       measure overwriting cached blocks of an allocated file, not block
 *       allocation).  Five runs each, alternating which goes first; medians
 *       (a run is only ~0.1 s, and single runs vary by 30% here).
 *   writeout-local-durable, writeout-local-atomic
 *       GB/s of bigfile_handle_writeout(DEFAULT) of 512 MiB of dirty 2 MiB
 *       pages, as writeout-2m, to a BigfileLocalFile opened with
 *       BIGFILE_LOCAL_FILE_FLAGS_DURABLE (the pages, then fdatasync()), or
 *       with BIGFILE_LOCAL_FILE_FLAGS_ATOMIC (the pages into the journal,
 *       its syncs, then copied into the file, fdatasync(); see
 *       bigfile-local-journal.c).  Baseline: pwrite() of 512 MiB in 2 MiB
 *       chunks, then fdatasync(), to another file: what any durable save
 *       of that much costs on this disk.
 *   writeout-local-durable-vs-plain, writeout-local-atomic-vs-plain
 *       The same numbers, against the plain BigfileLocalFile writeout
 *       (to the page cache, no sync) of the same run: what durability and
 *       atomicity cost next to the default.
 *       All four files exist with their full size, written once before.
 *       Three runs of each of the four (plain, durable, atomic, pwrite +
 *       fdatasync), in rotating order; every run starts with nothing dirty
 *       in the page cache (syncfs() before it, off the clock), so that a
 *       run does not pay for the writeback of the one before.  Medians.
 *   mainloop-lateness-worst-c, mainloop-lateness-p99-c
 *   mainloop-lateness-worst-script, mainloop-lateness-p99-script
 *       ms by which a 10 ms g_timeout_add() timer of a GMainLoop runs late
 *       while bigfile_handle_writeout_async(DEFAULT) writes out 512 MiB of
 *       dirty 2 MiB pages (dirtied by memset before the loop starts), with a
 *       progress callback: the worst tick, and the 99th percentile (nearest
 *       rank).  How a tick's lateness is defined: see lateness_tick().
 *       -c: to a BigfileLocalFile, which is thread-safe, so the pages are
 *       stored in a worker thread.  -script: to a file made like one written
 *       in JavaScript or Python (GBytes methods only, not thread-safe), so
 *       the pages are stored in ~5 ms slices on the main loop itself.  Both
 *       overwrite a pre-existing file in the current directory.  A writeout
 *       to the page cache is short (~0.1 s: 10 ticks), so it is repeated
 *       until 3 s of writeout were measured (at least 3 runs), and the ticks
 *       of all runs are pooled.  Baseline: the same timer on the same loop,
 *       idle, for as long as each writeout took, right after it.  Note that
 *       10 ms is two of the ~5 ms slices of -script: ticks fall into step
 *       with the slices and wait only for a slice's overrun (median ~0.5
 *       ms); a 16 ms (frame) timer waits ~4.5 ms at every tick here.
 *
 * With BigfileSqliteFile (builds with the 'sqlite' option):
 *
 *   seqread-sqlite
 *       GB/s summing a 1 GiB bigfile of 2 MiB blocks stored in SQLite (in
 *       one transaction, then checkpointed: the data is in the database
 *       file, warm in the page cache), through a 2 MiB-page mapping with a
 *       256 MiB budget, as seqread-2m.  Baseline: the same passes over a
 *       BigfileLocalFile of the same data, in the same run.
 *   writeout-sqlite, writeout-sqlite-fsync
 *       GB/s of bigfile_handle_writeout(DEFAULT) of 512 MiB of dirty 2 MiB
 *       pages to a BigfileSqliteFile (durable, as by default: one commit,
 *       its WAL flushed), overwriting rows a first writeout made; the main
 *       loop runs 0.3 s between runs (the file checkpoints then).
 *       Baselines: the same writeout to a plain BigfileLocalFile (no
 *       fsync), and pwrite() of the same bytes to an allocated file plus
 *       fsync().  Three runs each, interleaved; medians.
 *   invalidate-latency-sqlite (p99), invalidate-latency-sqlite-p50
 *       ms from the start of another process's writeout of one 4 KiB page
 *       (durable) to this process's page-invalidated in its main loop, 200
 *       writeouts 20 ms apart.  The commit lies between the start of the
 *       writeout and its return, so this bounds commit-to-signal from
 *       above and includes the commit's own time.  Baseline: from the same
 *       start to the arrival in this main loop of a record the other
 *       process writes to a pipe when its writeout returned.
 *
 *   seqread-pg, writeout-pg, writeout-pg-vs-fsync, invalidate-latency-pg-*,
 *   fault-read-pg-64k, fault-read-pg-64k-unbatched
 *       BigfilePgFile over a PostgreSQL server (a throwaway one unless
 *       $BIGFILE_BENCH_PG_CONNINFO names one): see bench-pg.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

/* The static library: reaches the engine's statistics (reclaim counts). */
#include "bigfile-private.h"

#define KiB ((gsize)1 << 10)
#define MiB ((gsize)1 << 20)
#define GiB ((gsize)1 << 30)

/* Fault rows: one warm-up round, then this many measured ones. */
#define FAULT_ROUNDS 7
#define FIRST_TOUCH_SIZE (64 * MiB)

/* seqread-2m and writeout-2m: measured passes (after one warm-up pass for
 * seqread) and runs. */
#define SEQ_FILE_SIZE GiB
#define SEQ_BUDGET (256 * MiB)
#define SEQ_PASSES 3
#define WRITEOUT_SIZE (512 * MiB)
#define WRITEOUT_BUDGET (WRITEOUT_SIZE + 64 * MiB)
#define WRITEOUT_RUNS 5

/* Keeps the compiler from dropping the reads. */
static volatile guint64 sink;

/* -- data files, removed on every way out ------------------------------------
 *
 * A path goes in the table before its file is created, and leaves it after
 * the file is removed.  remove_data_files() runs from atexit() and from the
 * handler of fatal signals: it calls only g_unlink() (unlink(2), which is
 * async-signal-safe) on strings that are never freed while listed. */

#define MAX_DATA_FILES 8
static char *volatile data_files[MAX_DATA_FILES];

static void
remove_data_files (void)
{
  for (int i = 0; i < MAX_DATA_FILES; i++)
    {
      char *path = data_files[i];

      if (path != NULL)
        g_unlink (path);
    }
}

static void
on_fatal_signal (int sig)
{
  remove_data_files ();
  /* Die of the same signal, with the default action (a core for SIGSEGV). */
  signal (sig, SIG_DFL);
  raise (sig);
}

/* Before the first mapping: the engine's SIGSEGV handler chains faults that
 * are not its own to this one. */
static void
install_cleanup (void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS };

  atexit (remove_data_files);
  for (guint i = 0; i < G_N_ELEMENTS (sigs); i++)
    {
      struct sigaction sa;

      memset (&sa, 0, sizeof sa);
      sa.sa_handler = on_fatal_signal;
      sigemptyset (&sa.sa_mask);
      sigaction (sigs[i], &sa, NULL);
    }
}

/* Lists @path (taken) among the files to remove. */
static char *
data_file_register (char *path)
{
  for (int i = 0; i < MAX_DATA_FILES; i++)
    if (data_files[i] == NULL)
      {
        data_files[i] = path;
        return path;
      }
  g_error ("too many data files");
}

static char *
data_file_add (const char *what)
{
  return data_file_register (g_strdup_printf ("bigfile-bench-%d-%s.dat", (int)getpid (), what));
}

static void
data_file_remove (char *path)
{
  g_unlink (path);
  for (int i = 0; i < MAX_DATA_FILES; i++)
    if (data_files[i] == path)
      data_files[i] = NULL;
  g_free (path);
}

/* -- helpers ------------------------------------------------------------------ */

static G_GNUC_NORETURN G_GNUC_PRINTF (1, 2) void die (const char *format, ...)
{
  va_list args;
  char *msg;

  va_start (args, format);
  msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_printerr ("bigfile-bench: %s\n", msg);
  g_free (msg);
  exit (1); /* atexit removes the data files */
}

static void
check_error (GError *error, const char *what)
{
  if (error != NULL)
    die ("%s: %s", what, error->message);
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return x < y ? -1 : x > y;
}

/* Sorts @v in place. */
static double
median (double *v, guint n)
{
  qsort (v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void
print_values (const char *label, const double *v, guint n, const char *unit)
{
  g_printerr ("  %-28s", label);
  for (guint i = 0; i < n; i++)
    g_printerr (" %8.3f", v[i]);
  g_printerr (" %s\n", unit);
}

/* The machine's 1-minute load average: wall-clock numbers mean little when
 * other work competes for the CPUs, so the summary shows it. */
static double
load_average (void)
{
  char *text = NULL;
  double load = -1;

  if (g_file_get_contents ("/proc/loadavg", &text, NULL, NULL))
    load = g_ascii_strtod (text, NULL);
  g_free (text);
  return load;
}

static guint64
ram_n_reclaimed (BigfileRam *ram)
{
  BfRamStats stats;

  bf_ram_get_stats (_bigfile_ram_get_engine (ram), &stats);
  return stats.n_reclaimed;
}

/* The one reading loop of the seqread rows, for both the bigfile mapping
 * and the kernel's: not inlined, so both run the very same code. */
static G_GNUC_NO_INLINE guint64
sum_words (const guint64 *p, gsize n_words)
{
  guint64 sum = 0;

  for (gsize i = 0; i < n_words; i++)
    sum += p[i];
  return sum;
}

static void
pwrite_all (int fd, const guint8 *buf, gsize len, off_t offset, const char *path)
{
  while (len > 0)
    {
      ssize_t n = pwrite (fd, buf, len, offset);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        die ("writing %s: %s", path, n < 0 ? g_strerror (errno) : "wrote nothing");
      buf += n;
      len -= (gsize)n;
      offset += n;
    }
}

/* Writes @size bytes of a pattern (not zeros: nothing can be sparse or
 * special-cased) to a new file at @path. */
static void
create_data_file (const char *path, gsize size)
{
  gsize chunk = 2 * MiB;
  guint64 *buf = g_malloc (chunk);
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

  if (fd < 0)
    die ("creating %s: %s", path, g_strerror (errno));
  for (gsize off = 0; off < size; off += chunk)
    {
      for (gsize i = 0; i < chunk / 8; i++)
        buf[i] = (off / 8 + i) * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15);
      pwrite_all (fd, (const guint8 *)buf, chunk, (off_t)off, path);
    }
  if (close (fd) != 0)
    die ("closing %s: %s", path, g_strerror (errno));
  g_free (buf);
}

static void
check_free_space (gsize need)
{
  struct statvfs st;

  if (statvfs (".", &st) == 0 && (guint64)st.f_bavail * st.f_frsize < need)
    die ("the current directory has %" G_GUINT64_FORMAT " MiB free; %" G_GSIZE_FORMAT
         " MiB are needed",
         (guint64)st.f_bavail * st.f_frsize / MiB, need / MiB);
}

/* -- rows ---------------------------------------------------------------------- */

typedef struct
{
  const char *bench;
  double value;
  const char *unit;
  double baseline;
  const char *target; /* for the human summary only */
} Row;

static const char *const row_names[] = {
  "fault-read-4k",
  "fault-read-64k",
  "fault-read-2m",
  "fault-write-4k",
  "seqread-2m",
  "seqread-2m-direct",
  "writeout-2m",
  "writeout-local-durable",
  "writeout-local-atomic",
  "writeout-local-durable-vs-plain",
  "writeout-local-atomic-vs-plain",
  "mainloop-lateness-worst-c",
  "mainloop-lateness-p99-c",
  "mainloop-lateness-worst-script",
  "mainloop-lateness-p99-script",
#ifdef HAVE_SQLITE
  "seqread-sqlite",
  "writeout-sqlite",
  "writeout-sqlite-fsync",
  "invalidate-latency-sqlite",
  "invalidate-latency-sqlite-p50",
#endif
#ifdef HAVE_POSTGRESQL
  "seqread-pg",
  "writeout-pg",
  "writeout-pg-vs-fsync",
  "invalidate-latency-pg-p50",
  "invalidate-latency-pg-p99",
  "fault-read-pg-64k",
  "fault-read-pg-64k-unbatched",
#endif
};

static Row rows[G_N_ELEMENTS (row_names)];
static guint n_rows;

static void
emit_row (const char *bench, double value, const char *unit, double baseline, const char *target)
{
  Row *row = &rows[n_rows++];

  row->bench = bench;
  row->value = value;
  row->unit = unit;
  row->baseline = baseline;
  row->target = target;
  printf ("{\"bench\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", \"baseline\": %.3f, "
          "\"ratio\": %.3f}\n",
          bench, value, unit, baseline, value / baseline);
  fflush (stdout);
}

static void
print_summary (void)
{
  g_printerr ("\n%-30s %10s %6s %10s %8s   %s\n", "bench", "value", "unit", "baseline", "ratio",
              "target (issue)");
  for (guint i = 0; i < n_rows; i++)
    g_printerr ("%-30s %10.3f %6s %10.3f %8.3f   %s\n", rows[i].bench, rows[i].value, rows[i].unit,
                rows[i].baseline, rows[i].value / rows[i].baseline, rows[i].target);
  g_printerr ("ratio = value / baseline (us, ms: lower is better; GB/s: higher is better)\n");
}

/* -- a BigfileFile whose load and store do nothing ----------------------------
 *
 * What the fault rows measure is the engine, not storage: loads leave the
 * page's memory as it is (stale bytes of a recycled page) and return TRUE.
 * It counts its calls, so a round can check that every touch loaded. */

#define BENCH_TYPE_NOOP_FILE (bench_noop_file_get_type ())
G_DECLARE_FINAL_TYPE (BenchNoopFile, bench_noop_file, BENCH, NOOP_FILE, GObject)

struct _BenchNoopFile
{
  GObject parent_instance;
  gsize block_size;
  guint64 n_loads; /* atomic: loads run on any faulting thread */
};

static void bench_noop_file_iface_init (BigfileFileInterface *iface);

G_DEFINE_TYPE_WITH_CODE (BenchNoopFile, bench_noop_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE, bench_noop_file_iface_init))

static gsize
bench_noop_file_get_block_size (BigfileFile *file)
{
  return BENCH_NOOP_FILE (file)->block_size;
}

static gboolean
bench_noop_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                                GError **error)
{
  /* No type check here: this is the hot path being measured. */
  g_atomic_pointer_add (&((BenchNoopFile *)file)->n_loads, 1);
  return TRUE;
}

static gboolean
bench_noop_file_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data, gsize length,
                                 GError **error)
{
  return TRUE;
}

static void
bench_noop_file_iface_init (BigfileFileInterface *iface)
{
  iface->get_block_size = bench_noop_file_get_block_size;
  iface->load_block_raw = bench_noop_file_load_block_raw;
  iface->store_block_raw = bench_noop_file_store_block_raw;
}

static void
bench_noop_file_class_init (BenchNoopFileClass *klass)
{
}

static void
bench_noop_file_init (BenchNoopFile *self)
{
}

static BenchNoopFile *
bench_noop_file_new (gsize block_size)
{
  BenchNoopFile *self = g_object_new (BENCH_TYPE_NOOP_FILE, NULL);

  self->block_size = block_size;
  return self;
}

static guint64
noop_file_n_loads (BenchNoopFile *file)
{
  return (guint64)g_atomic_pointer_get (&file->n_loads);
}

/* -- the kernel's first touch of a memfd page (baseline of the fault rows) ---
 *
 * One round per measured round of the fault rows, run just before it; all
 * rounds are pooled into one baseline. */

static GArray *first_touch_us; /* double, one per round */

static void
first_touch_round (void)
{
  const gsize ps = 4 * KiB;
  int fd = memfd_create ("bigfile-bench-baseline", MFD_CLOEXEC);
  const volatile guint8 *p;
  guint64 sum = 0;
  double t0, t1, us;

  if (fd < 0 || ftruncate (fd, (off_t)FIRST_TOUCH_SIZE) != 0)
    die ("memfd: %s", g_strerror (errno));
  p = mmap (NULL, FIRST_TOUCH_SIZE, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    die ("mmap of a memfd: %s", g_strerror (errno));

  t0 = now ();
  for (gsize off = 0; off < FIRST_TOUCH_SIZE; off += ps)
    sum += p[off];
  t1 = now ();
  sink += sum;

  munmap ((void *)p, FIRST_TOUCH_SIZE);
  close (fd);
  us = (t1 - t0) * 1e6 / (double)(FIRST_TOUCH_SIZE / ps);
  g_array_append_val (first_touch_us, us);
}

static double
first_touch_median (void)
{
  double m;

  g_printerr ("baseline: kernel first touch of a new memfd page (read), %" G_GSIZE_FORMAT
              " MiB per round, one round before each measured fault round\n",
              FIRST_TOUCH_SIZE / MiB);
  m = median ((double *)first_touch_us->data, first_touch_us->len); /* sorts */
  g_printerr ("  %-28s %8.3f %8.3f %8.3f us (min, median, max of %u)\n",
              "us per 4 KiB page:", g_array_index (first_touch_us, double, 0), m,
              g_array_index (first_touch_us, double, first_touch_us->len - 1), first_touch_us->len);
  return m;
}

/* -- read faults ----------------------------------------------------------------- */

static double
bench_fault_read (gsize page_size, gsize budget, gsize map_size)
{
  BenchNoopFile *file = bench_noop_file_new (page_size);
  BigfileRam *ram = bigfile_ram_new (budget);
  GError *error = NULL;
  BigfileHandle *handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  guint64 n_pages = map_size / page_size;
  guint64 reclaimed_before;
  double us[FAULT_ROUNDS];

  check_error (error, "bigfile_handle_new");

  for (guint r = 0; r < FAULT_ROUNDS + 1; r++)
    {
      BigfileVma *vma = bigfile_handle_map (handle, 0, n_pages, &error);
      const volatile guint8 *p;
      guint64 loads_before = noop_file_n_loads (file);
      guint64 sum = 0;
      double t0, t1;

      check_error (error, "bigfile_handle_map");
      p = bigfile_vma_get_data (vma);
      if (r > 0)
        first_touch_round ();
      reclaimed_before = ram_n_reclaimed (ram);

      t0 = now ();
      for (guint64 i = 0; i < n_pages; i++)
        sum += p[i * page_size];
      t1 = now ();
      sink += sum;

      /* The pages of the previous round were reclaimed on the way: every
       * touch must have been a fault that loaded. */
      if (noop_file_n_loads (file) - loads_before != n_pages)
        die ("fault-read: %" G_GUINT64_FORMAT " loads for %" G_GUINT64_FORMAT " pages",
             noop_file_n_loads (file) - loads_before, n_pages);

      bigfile_vma_unmap (vma);
      g_object_unref (vma);
      if (r > 0)
        us[r - 1] = (t1 - t0) * 1e6 / (double)n_pages;
    }

  g_printerr ("fault-read, %" G_GSIZE_FORMAT " KiB pages: budget %" G_GSIZE_FORMAT
              " MiB, mapping %" G_GSIZE_FORMAT " MiB, %" G_GUINT64_FORMAT
              " faults per round, %" G_GUINT64_FORMAT " reclaimed in the last round\n",
              page_size / KiB, budget / MiB, map_size / MiB, n_pages,
              ram_n_reclaimed (ram) - reclaimed_before);
  print_values ("us per fault, rounds:", us, FAULT_ROUNDS, "us");

  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  g_object_unref (file);
  return median (us, FAULT_ROUNDS);
}

/* -- write faults (dirty tracking) --------------------------------------------- */

static double
bench_fault_write_4k (void)
{
  const gsize ps = 4 * KiB, map_size = 64 * MiB;
  const guint64 n_pages = map_size / ps;
  BenchNoopFile *file = bench_noop_file_new (ps);
  BigfileRam *ram = bigfile_ram_new (2 * map_size);
  GError *error = NULL;
  BigfileHandle *handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  BigfileVma *vma;
  volatile guint8 *p;
  double us[FAULT_ROUNDS];

  check_error (error, "bigfile_handle_new");
  vma = bigfile_handle_map (handle, 0, n_pages, &error);
  check_error (error, "bigfile_handle_map");
  p = bigfile_vma_get_data (vma);

  for (guint r = 0; r < FAULT_ROUNDS + 1; r++)
    {
      guint64 sum = 0;
      double t0, t1;

      /* Loaded and mapped read-only: faults in the first round only. */
      for (guint64 i = 0; i < n_pages; i++)
        sum += p[i * ps];
      sink += sum;
      if (bigfile_handle_get_n_dirty_pages (handle) != 0)
        die ("fault-write: pages dirty before the round");
      if (r > 0)
        first_touch_round ();

      t0 = now ();
      for (guint64 i = 0; i < n_pages; i++)
        p[i * ps] = (guint8)r;
      t1 = now ();

      if (bigfile_handle_get_n_dirty_pages (handle) != n_pages)
        die ("fault-write: %" G_GUINT64_FORMAT " dirty pages, expected %" G_GUINT64_FORMAT,
             bigfile_handle_get_n_dirty_pages (handle), n_pages);
      /* Clean and read-only again (the no-op file stores nothing; MARK_STORED
       * alone would mark nothing: no page was stored). */
      bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error);
      check_error (error, "bigfile_handle_writeout");
      if (r > 0)
        us[r - 1] = (t1 - t0) * 1e6 / (double)n_pages;
    }
  if (noop_file_n_loads (file) != n_pages)
    die ("fault-write: pages were loaded more than once");

  g_printerr ("fault-write, 4 KiB pages: %" G_GUINT64_FORMAT
              " pages loaded and mapped read-only, budget %" G_GSIZE_FORMAT " MiB\n",
              n_pages, 2 * map_size / MiB);
  print_values ("us per write fault, rounds:", us, FAULT_ROUNDS, "us");

  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  g_object_unref (file);
  return median (us, FAULT_ROUNDS);
}

/* -- sequential read --------------------------------------------------------------- */

/* One seqread row: the file at @path (already written, SEQ_FILE_SIZE
 * bytes) read through a BigfileLocalFile opened with @flags, and through
 * the kernel's mmap of it.  @bench names the row in the report. */
static void
bench_seqread_2m (const char *bench, const char *path, BigfileLocalFileFlags flags, double *value,
                  double *baseline)
{
  const gsize ps = 2 * MiB, n_words = SEQ_FILE_SIZE / 8;
  GError *error = NULL;
  BigfileLocalFile *file;
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma;
  const guint64 *bp, *kp;
  guint64 bsum, ksum, reclaimed_before;
  double bgbs[SEQ_PASSES], kgbs[SEQ_PASSES], t0;
  int fd;

  file = bigfile_local_file_new (path, ps, flags, &error);
  check_error (error, "bigfile_local_file_new");
  ram = bigfile_ram_new (SEQ_BUDGET);
  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  check_error (error, "bigfile_handle_new");
  vma = bigfile_handle_map (handle, 0, SEQ_FILE_SIZE / ps, &error);
  check_error (error, "bigfile_handle_map");
  bp = (const guint64 *)bigfile_vma_get_data (vma);

  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    die ("opening %s: %s", path, g_strerror (errno));
  kp = mmap (NULL, SEQ_FILE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
  if (kp == MAP_FAILED)
    die ("mmap of %s: %s", path, g_strerror (errno));

  /* First passes: warm, and both must read the same data. */
  bsum = sum_words (bp, n_words);
  ksum = sum_words (kp, n_words);
  if (bsum != ksum)
    die ("%s: the bigfile mapping and the kernel's read different data", bench);

  reclaimed_before = ram_n_reclaimed (ram);
  for (guint i = 0; i < SEQ_PASSES; i++)
    {
      t0 = now ();
      bsum = sum_words (bp, n_words);
      bgbs[i] = (double)SEQ_FILE_SIZE / (now () - t0) / 1e9;

      t0 = now ();
      ksum = sum_words (kp, n_words);
      kgbs[i] = (double)SEQ_FILE_SIZE / (now () - t0) / 1e9;

      if (bsum != ksum)
        die ("%s: the bigfile mapping and the kernel's read different data", bench);
    }
  sink += bsum;

  g_printerr ("%s: %" G_GSIZE_FORMAT " MiB file, budget %" G_GSIZE_FORMAT " MiB, %" G_GUINT64_FORMAT
              " pages reclaimed over the timed passes, %" G_GUINT64_FORMAT " pages in RAM after\n",
              bench, SEQ_FILE_SIZE / MiB, SEQ_BUDGET / MiB,
              ram_n_reclaimed (ram) - reclaimed_before, bigfile_ram_get_n_pages (ram));
  print_values ("bigfile GB/s, passes 2-4:", bgbs, SEQ_PASSES, "GB/s");
  print_values ("kernel mmap GB/s, passes 2-4:", kgbs, SEQ_PASSES, "GB/s");

  munmap ((void *)kp, SEQ_FILE_SIZE);
  close (fd);
  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  g_object_unref (file);

  *value = median (bgbs, SEQ_PASSES);
  *baseline = median (kgbs, SEQ_PASSES);
}

/* -- writeout ----------------------------------------------------------------------- */

static double
run_bigfile_writeout (BigfileHandle *handle, guint8 *data, int fill)
{
  GError *error = NULL;
  guint64 n_pages = WRITEOUT_SIZE / (2 * MiB);
  double t0, t1;

  memset (data, fill, WRITEOUT_SIZE); /* write faults: every page dirty */
  if (bigfile_handle_get_n_dirty_pages (handle) != n_pages)
    die ("writeout: %" G_GUINT64_FORMAT " dirty pages, expected %" G_GUINT64_FORMAT,
         bigfile_handle_get_n_dirty_pages (handle), n_pages);

  t0 = now ();
  bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error);
  t1 = now ();
  check_error (error, "bigfile_handle_writeout");
  if (bigfile_handle_get_n_dirty_pages (handle) != 0)
    die ("writeout: pages still dirty after writeout");
  return (double)WRITEOUT_SIZE / (t1 - t0) / 1e9;
}

static double
run_pwrite (int fd, guint8 *buf, int fill, const char *path)
{
  const gsize chunk = 2 * MiB;
  double t0, t1;

  memset (buf, fill, WRITEOUT_SIZE);
  t0 = now ();
  for (gsize off = 0; off < WRITEOUT_SIZE; off += chunk)
    pwrite_all (fd, buf + off, chunk, (off_t)off, path);
  t1 = now ();
  return (double)WRITEOUT_SIZE / (t1 - t0) / 1e9;
}

static void
bench_writeout_2m (double *value, double *baseline)
{
  char *bpath = data_file_add ("writeout-bigfile");
  char *kpath = data_file_add ("writeout-pwrite");
  GError *error = NULL;
  BigfileLocalFile *file;
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma;
  guint8 *data, *buf;
  double bgbs[WRITEOUT_RUNS], kgbs[WRITEOUT_RUNS];
  int fd;

  g_printerr ("writeout-2m: writing two %" G_GSIZE_FORMAT " MiB files...\n", WRITEOUT_SIZE / MiB);
  create_data_file (bpath, WRITEOUT_SIZE);
  create_data_file (kpath, WRITEOUT_SIZE);

  file = bigfile_local_file_new (bpath, 2 * MiB, BIGFILE_LOCAL_FILE_FLAGS_NONE, &error);
  check_error (error, "bigfile_local_file_new");
  ram = bigfile_ram_new (WRITEOUT_BUDGET);
  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  check_error (error, "bigfile_handle_new");
  vma = bigfile_handle_map (handle, 0, WRITEOUT_SIZE / (2 * MiB), &error);
  check_error (error, "bigfile_handle_map");
  data = bigfile_vma_get_data (vma);

  fd = open (kpath, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    die ("opening %s: %s", kpath, g_strerror (errno));
  buf = g_malloc (WRITEOUT_SIZE);

  for (guint i = 0; i < WRITEOUT_RUNS; i++)
    {
      int fill = 'a' + (int)i;

      /* Alternate which goes first, so that neither always pays for the
       * other's leftovers (writeback, cache state). */
      if (i % 2 == 0)
        {
          bgbs[i] = run_bigfile_writeout (handle, data, fill);
          kgbs[i] = run_pwrite (fd, buf, fill, kpath);
        }
      else
        {
          kgbs[i] = run_pwrite (fd, buf, fill, kpath);
          bgbs[i] = run_bigfile_writeout (handle, data, fill);
        }
    }

  g_printerr ("writeout-2m: %" G_GSIZE_FORMAT " MiB of dirty 2 MiB pages, budget %" G_GSIZE_FORMAT
              " MiB, both files pre-existing with their full size\n",
              WRITEOUT_SIZE / MiB, WRITEOUT_BUDGET / MiB);
  print_values ("bigfile writeout GB/s, runs:", bgbs, WRITEOUT_RUNS, "GB/s");
  print_values ("pwrite GB/s, runs:", kgbs, WRITEOUT_RUNS, "GB/s");

  g_free (buf);
  close (fd);
  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  g_object_unref (file);
  data_file_remove (bpath);
  data_file_remove (kpath);

  *value = median (bgbs, WRITEOUT_RUNS);
  *baseline = median (kgbs, WRITEOUT_RUNS);
}

/* -- durable and atomic writeouts ---------------------------------------------------- */

typedef enum
{
  SAVE_PLAIN,
  SAVE_DURABLE,
  SAVE_ATOMIC,
  SAVE_PWRITE_SYNC,
  N_SAVES
} SaveKind;

typedef struct
{
  char *path;
  BigfileLocalFile *file;
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma;
  guint8 *data; /* SAVE_PWRITE_SYNC: the malloc'ed buffer */
  int fd;       /* SAVE_PWRITE_SYNC */
} Save;

static void
save_open (Save *save, SaveKind kind)
{
  static const char *const names[N_SAVES]
      = { "local-plain", "local-durable", "local-atomic", "pwrite-sync" };
  static const BigfileLocalFileFlags flags[N_SAVES]
      = { BIGFILE_LOCAL_FILE_FLAGS_NONE, BIGFILE_LOCAL_FILE_FLAGS_DURABLE,
          BIGFILE_LOCAL_FILE_FLAGS_ATOMIC };
  GError *error = NULL;

  save->path = data_file_add (names[kind]);
  create_data_file (save->path, WRITEOUT_SIZE);
  if (kind == SAVE_PWRITE_SYNC)
    {
      save->fd = open (save->path, O_WRONLY | O_CLOEXEC);
      if (save->fd < 0)
        die ("opening %s: %s", save->path, g_strerror (errno));
      save->data = g_malloc (WRITEOUT_SIZE);
      return;
    }
  save->file = bigfile_local_file_new (save->path, 2 * MiB, flags[kind], &error);
  check_error (error, "bigfile_local_file_new");
  save->ram = bigfile_ram_new (WRITEOUT_BUDGET);
  save->handle = bigfile_handle_new (BIGFILE_FILE (save->file), save->ram, &error);
  check_error (error, "bigfile_handle_new");
  save->vma = bigfile_handle_map (save->handle, 0, WRITEOUT_SIZE / (2 * MiB), &error);
  check_error (error, "bigfile_handle_map");
  save->data = bigfile_vma_get_data (save->vma);
}

static void
save_close (Save *save)
{
  if (save->handle == NULL)
    {
      g_free (save->data);
      close (save->fd);
    }
  else
    {
      bigfile_vma_unmap (save->vma);
      g_object_unref (save->vma);
      bigfile_handle_close (save->handle);
      g_object_unref (save->handle);
      g_object_unref (save->ram);
      g_object_unref (save->file);
    }
  data_file_remove (save->path);
}

static double
run_save (Save *save, SaveKind kind, int fill)
{
  const gsize chunk = 2 * MiB;
  double t0, t1;
  int fd;

  /* Nothing dirty from the run before (of any kind) left to write back
   * during this one. */
  fd = open (".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || syncfs (fd) != 0)
    die ("syncfs: %s", g_strerror (errno));
  close (fd);

  if (kind != SAVE_PWRITE_SYNC)
    return run_bigfile_writeout (save->handle, save->data, fill);

  memset (save->data, fill, WRITEOUT_SIZE);
  t0 = now ();
  for (gsize off = 0; off < WRITEOUT_SIZE; off += chunk)
    pwrite_all (save->fd, save->data + off, chunk, (off_t)off, save->path);
  if (fdatasync (save->fd) != 0)
    die ("fdatasync %s: %s", save->path, g_strerror (errno));
  t1 = now ();
  return (double)WRITEOUT_SIZE / (t1 - t0) / 1e9;
}

#define SAVE_RUNS 3

/* Medians of SAVE_RUNS runs of each kind, in GB/s, into @gbs. */
static void
bench_writeout_local (double gbs[N_SAVES])
{
  static const char *const labels[N_SAVES]
      = { "plain writeout GB/s, runs:", "durable writeout GB/s, runs:",
          "atomic writeout GB/s, runs:", "pwrite+fdatasync GB/s, runs:" };
  Save saves[N_SAVES] = { 0 };
  double runs[N_SAVES][SAVE_RUNS];

  g_printerr ("writeout-local: writing four %" G_GSIZE_FORMAT " MiB files...\n",
              WRITEOUT_SIZE / MiB);
  for (int k = 0; k < N_SAVES; k++)
    save_open (&saves[k], k);

  for (guint i = 0; i < SAVE_RUNS; i++)
    for (int j = 0; j < N_SAVES; j++)
      {
        /* Rotate the order, so that no kind always follows the same one. */
        int k = (int)((i + j) % N_SAVES);

        runs[k][i] = run_save (&saves[k], k, 'a' + (int)i);
      }

  g_printerr ("writeout-local: %" G_GSIZE_FORMAT " MiB of dirty 2 MiB pages, files pre-existing "
              "with their full size, page cache clean before each run\n",
              WRITEOUT_SIZE / MiB);
  for (int k = 0; k < N_SAVES; k++)
    {
      print_values (labels[k], runs[k], SAVE_RUNS, "GB/s");
      gbs[k] = median (runs[k], SAVE_RUNS);
      save_close (&saves[k]);
    }
}

/* -- main-loop lateness during an async writeout ---------------------------------
 *
 * First a "script-like" file: what a BigfileFile written in JavaScript or
 * Python looks like to the engine.  It implements only the GBytes methods
 * (load_block, store_block), not is_thread_safe, so the handle calls it on
 * its owner thread only and writes out in slices on the owner's main
 * context.  Under it is a plain file (pread, pwrite), as a script would use. */

#define BENCH_TYPE_SCRIPT_FILE (bench_script_file_get_type ())
G_DECLARE_FINAL_TYPE (BenchScriptFile, bench_script_file, BENCH, SCRIPT_FILE, GObject)

struct _BenchScriptFile
{
  GObject parent_instance;
  gsize block_size;
  int fd;
  char *path;
};

static void bench_script_file_iface_init (BigfileFileInterface *iface);

G_DEFINE_TYPE_WITH_CODE (BenchScriptFile, bench_script_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE, bench_script_file_iface_init))

static gsize
bench_script_file_get_block_size (BigfileFile *file)
{
  return BENCH_SCRIPT_FILE (file)->block_size;
}

static void
set_io_error (GError **error, int errsv, const char *what, guint64 block, BenchScriptFile *self)
{
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errsv),
               "%s block %" G_GUINT64_FORMAT " of %s: %s", what, block, self->path,
               g_strerror (errsv));
}

static GBytes *
bench_script_file_load_block (BigfileFile *file, guint64 block, GError **error)
{
  BenchScriptFile *self = BENCH_SCRIPT_FILE (file);
  guint8 *buf = g_malloc (self->block_size);
  gsize got = 0;

  /* Stops short at the end of the file: the caller pads with zeros. */
  while (got < self->block_size)
    {
      ssize_t n = pread (self->fd, buf + got, self->block_size - got,
                         (off_t)(block * self->block_size + got));

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          set_io_error (error, errno, "Reading", block, self);
          g_free (buf);
          return NULL;
        }
      if (n == 0)
        break;
      got += (gsize)n;
    }
  return g_bytes_new_take (buf, got);
}

static gboolean
bench_script_file_store_block (BigfileFile *file, guint64 block, GBytes *data, GError **error)
{
  BenchScriptFile *self = BENCH_SCRIPT_FILE (file);
  gsize len;
  const guint8 *p = g_bytes_get_data (data, &len);
  off_t off = (off_t)(block * self->block_size);

  while (len > 0)
    {
      ssize_t n = pwrite (self->fd, p, len, off);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          set_io_error (error, n < 0 ? errno : EIO, "Writing", block, self);
          return FALSE;
        }
      p += n;
      len -= (gsize)n;
      off += n;
    }
  return TRUE;
}

static void
bench_script_file_iface_init (BigfileFileInterface *iface)
{
  iface->get_block_size = bench_script_file_get_block_size;
  iface->load_block = bench_script_file_load_block;
  iface->store_block = bench_script_file_store_block;
}

static void
bench_script_file_finalize (GObject *object)
{
  BenchScriptFile *self = BENCH_SCRIPT_FILE (object);

  if (self->fd >= 0)
    close (self->fd);
  g_free (self->path);
  G_OBJECT_CLASS (bench_script_file_parent_class)->finalize (object);
}

static void
bench_script_file_class_init (BenchScriptFileClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = bench_script_file_finalize;
}

static void
bench_script_file_init (BenchScriptFile *self)
{
  self->fd = -1;
}

static BenchScriptFile *
bench_script_file_new (const char *path, gsize block_size)
{
  BenchScriptFile *self = g_object_new (BENCH_TYPE_SCRIPT_FILE, NULL);

  self->block_size = block_size;
  self->path = g_strdup (path);
  self->fd = open (path, O_RDWR | O_CLOEXEC);
  if (self->fd < 0)
    die ("opening %s: %s", path, g_strerror (errno));
  return self;
}

/* Then the measurement: a timer ticking on the main loop. */

#define LATENESS_TICK_MS 10
/* Writeouts are repeated until this much writeout time was measured, and
 * at least LATENESS_MIN_RUNS times (a p99 wants a few hundred ticks). */
#define LATENESS_MIN_USEC (3 * G_USEC_PER_SEC)
#define LATENESS_MIN_RUNS 3
#define LATENESS_MAX_RUNS 100
/* The clock counts whole µs, so a baseline of 0 means "under 1 µs": the
 * baseline is reported (and divided by) as 1 µs at least, which keeps the
 * ratio finite. */
#define LATENESS_FLOOR_MS 0.001

typedef struct
{
  GMainLoop *loop;
  GArray *lateness_ms; /* double, one per tick */
  gint64 due;          /* when the next tick is due, monotonic µs */
  gint64 quit_at;      /* idle rounds: the first tick from then on quits */

  /* Writeout rounds. */
  GError *error;
  guint n_progress;
  guint64 bytes_done, bytes_total;
} Lateness;

/* A tick's lateness is how long after it was due it ran, and it is due
 * LATENESS_TICK_MS after the main-loop iteration that ran the previous tick
 * (the first: after the timer was added).  That is how GLib re-arms a
 * g_timeout_add() source, from the iteration's time (g_source_get_time()),
 * not from when the tick was due: this is how late GLib ran the timer
 * against the time it armed it for.  In other words: the interval since the previous
 * tick minus 10 ms (never below 0), with the previous tick's time taken as
 * GLib took it.  Against a fixed schedule (start + n * 10 ms) instead, the
 * small delay of every tick (poll() sleeps in whole ms) would add up along
 * a run, and after one stall every later tick would count as late too. */
static gboolean
lateness_tick (gpointer user_data)
{
  Lateness *l = user_data;
  gint64 t = g_get_monotonic_time ();
  double ms = (double)MAX (t - l->due, 0) / 1000.0;

  g_array_append_val (l->lateness_ms, ms);
  l->due = g_source_get_time (g_main_current_source ()) + LATENESS_TICK_MS * 1000;
  if (l->quit_at != 0 && t >= l->quit_at)
    g_main_loop_quit (l->loop);
  return G_SOURCE_CONTINUE;
}

/* What a progress bar would do, on the main loop. */
static void
lateness_progress (guint64 bytes_done, guint64 bytes_total, gpointer user_data)
{
  Lateness *l = user_data;

  l->n_progress++;
  l->bytes_done = bytes_done;
  l->bytes_total = bytes_total;
}

static void
lateness_writeout_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Lateness *l = user_data;

  bigfile_handle_writeout_finish (BIGFILE_HANDLE (source), result, &l->error);
  g_main_loop_quit (l->loop);
}

/* Runs @loop with the ticking timer and appends the lateness of its ticks
 * to @lateness_ms: with @handle, from the start of its writeout until the
 * writeout's callback; without, for @duration µs.  Returns how long it
 * ran, µs; *n_progress gets the progress callbacks of the writeout. */
static gint64
lateness_round (GMainLoop *loop, BigfileHandle *handle, gint64 duration, GArray *lateness_ms,
                guint *n_progress)
{
  Lateness l = { .loop = loop, .lateness_ms = lateness_ms };
  guint timer;
  gint64 t0;

  timer = g_timeout_add (LATENESS_TICK_MS, lateness_tick, &l);
  t0 = g_get_monotonic_time ();
  l.due = t0 + LATENESS_TICK_MS * 1000;
  if (handle != NULL)
    bigfile_handle_writeout_async (handle, BIGFILE_WRITEOUT_DEFAULT, G_PRIORITY_DEFAULT, NULL,
                                   lateness_progress, &l, NULL, lateness_writeout_done, &l);
  else
    l.quit_at = t0 + duration;
  g_main_loop_run (loop);
  duration = g_get_monotonic_time () - t0;
  g_source_remove (timer);

  if (handle != NULL)
    {
      check_error (l.error, "bigfile_handle_writeout_async");
      if (l.bytes_done != WRITEOUT_SIZE || l.bytes_total != WRITEOUT_SIZE)
        die ("mainloop-lateness: last progress %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
             " bytes, expected %" G_GSIZE_FORMAT,
             l.bytes_done, l.bytes_total, WRITEOUT_SIZE);
      if (bigfile_handle_get_n_dirty_pages (handle) != 0)
        die ("mainloop-lateness: pages still dirty after the writeout");
      *n_progress = l.n_progress;
    }
  return duration;
}

typedef struct
{
  double median, p99, worst; /* ms */
} LatenessStats;

/* Sorts @lateness_ms.  p99 by nearest rank: the smallest value that at
 * least 99% of the ticks do not exceed. */
static LatenessStats
lateness_stats (GArray *lateness_ms)
{
  double *v = (double *)lateness_ms->data;
  guint n = lateness_ms->len;
  LatenessStats s;

  if (n == 0)
    die ("mainloop-lateness: the timer never fired");
  s.median = median (v, n); /* sorts */
  s.p99 = v[(99 * n + 99) / 100 - 1];
  s.worst = v[n - 1];
  return s;
}

/* Writes out 512 MiB of dirty pages of @file again and again with the
 * timer running, then lets the loop idle with the timer as long again. */
static void
bench_mainloop_lateness (BigfileFile *file, const char *what, LatenessStats *busy,
                         LatenessStats *idle)
{
  const guint64 n_pages = WRITEOUT_SIZE / (2 * MiB);
  GError *error = NULL;
  BigfileRam *ram = bigfile_ram_new (WRITEOUT_BUDGET);
  BigfileHandle *handle = bigfile_handle_new (file, ram, &error);
  BigfileVma *vma;
  GMainLoop *loop = g_main_loop_new (NULL, FALSE); /* the handle's owner context */
  GArray *busy_ms = g_array_new (FALSE, FALSE, sizeof (double));
  GArray *idle_ms = g_array_new (FALSE, FALSE, sizeof (double));
  gint64 busy_usec = 0;
  guint64 n_progress = 0;
  guint8 *data;
  guint runs;

  check_error (error, "bigfile_handle_new");
  vma = bigfile_handle_map (handle, 0, n_pages, &error);
  check_error (error, "bigfile_handle_map");
  data = bigfile_vma_get_data (vma);

  for (runs = 0;
       runs < LATENESS_MAX_RUNS && (runs < LATENESS_MIN_RUNS || busy_usec < LATENESS_MIN_USEC);
       runs++)
    {
      gint64 usec;
      guint n;

      /* Write faults (the first run loads the pages, too): every page
       * dirty before the loop runs. */
      memset (data, 'a' + (int)(runs % 26), WRITEOUT_SIZE);
      if (bigfile_handle_get_n_dirty_pages (handle) != n_pages)
        die ("mainloop-lateness: %" G_GUINT64_FORMAT " dirty pages, expected %" G_GUINT64_FORMAT,
             bigfile_handle_get_n_dirty_pages (handle), n_pages);

      usec = lateness_round (loop, handle, 0, busy_ms, &n);
      busy_usec += usec;
      n_progress += n;
      lateness_round (loop, NULL, usec, idle_ms, NULL);
    }

  g_printerr ("mainloop-lateness, %s: %u writeouts of %" G_GSIZE_FORMAT
              " MiB of dirty 2 MiB pages, %.2f s in all (%.2f GB/s), %.0f progress calls per "
              "writeout, budget %" G_GSIZE_FORMAT " MiB; %u ticks of %d ms during writeouts, %u "
              "idle\n",
              what, runs, WRITEOUT_SIZE / MiB, (double)busy_usec / 1e6,
              (double)WRITEOUT_SIZE * runs / ((double)busy_usec / 1e6) / 1e9,
              (double)n_progress / runs, WRITEOUT_BUDGET / MiB, busy_ms->len, LATENESS_TICK_MS,
              idle_ms->len);
  *busy = lateness_stats (busy_ms);
  *idle = lateness_stats (idle_ms);
  print_values ("writeout: median, p99, worst:", (double[]){ busy->median, busy->p99, busy->worst },
                3, "ms late");
  print_values ("idle: median, p99, worst:", (double[]){ idle->median, idle->p99, idle->worst }, 3,
                "ms late");

  g_array_unref (busy_ms);
  g_array_unref (idle_ms);
  g_main_loop_unref (loop);
  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
}

/* -- SQLite storage (BigfileSqliteFile) ------------------------------------------ */

#ifdef HAVE_SQLITE

#include <sqlite3.h>

/* A database in the current directory, listed for removal with its -wal
 * and -shm files. */
static char *
sqlite_db_add (const char *what)
{
  char *db = data_file_add (what);

  data_file_register (g_strconcat (db, "-wal", NULL));
  data_file_register (g_strconcat (db, "-shm", NULL));
  return db;
}

static void
sqlite_db_remove (char *db)
{
  for (int i = MAX_DATA_FILES - 1; i >= 0; i--)
    {
      char *path = data_files[i];

      if (path != NULL && path != db && g_str_has_prefix (path, db))
        data_file_remove (path);
    }
  data_file_remove (db);
}

/* Copies the whole WAL into the database file, so that readers opened
 * afterwards read the database file alone (as a database at rest is). */
static void
sqlite_checkpoint (const char *db)
{
  sqlite3 *conn = NULL;

  if (sqlite3_open_v2 (db, &conn, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK
      || sqlite3_exec (conn, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) != SQLITE_OK)
    die ("checkpoint of %s: %s", db, sqlite3_errmsg (conn));
  sqlite3_close (conn);
}

/* Median GB/s of SEQ_PASSES passes over SEQ_FILE_SIZE bytes of @file
 * through a 2 MiB-page mapping, after one warm-up pass; the sum of the
 * words in *@sum. */
static double
seqread_passes (BigfileFile *file, const char *what, guint64 *sum)
{
  const gsize ps = 2 * MiB;
  GError *error = NULL;
  BigfileRam *ram = bigfile_ram_new (SEQ_BUDGET);
  BigfileHandle *handle = bigfile_handle_new (file, ram, &error);
  BigfileVma *vma;
  const guint64 *p;
  double gbs[SEQ_PASSES], t0;

  check_error (error, "bigfile_handle_new");
  vma = bigfile_handle_map (handle, 0, SEQ_FILE_SIZE / ps, &error);
  check_error (error, "bigfile_handle_map");
  p = (const guint64 *)bigfile_vma_get_data (vma);
  *sum = sum_words (p, SEQ_FILE_SIZE / 8);
  for (guint i = 0; i < SEQ_PASSES; i++)
    {
      t0 = now ();
      if (sum_words (p, SEQ_FILE_SIZE / 8) != *sum)
        die ("seqread-sqlite: %s read different data in two passes", what);
      gbs[i] = (double)SEQ_FILE_SIZE / (now () - t0) / 1e9;
    }
  print_values (what, gbs, SEQ_PASSES, "GB/s");
  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  return median (gbs, SEQ_PASSES);
}

static void
bench_seqread_sqlite (double *value, double *baseline)
{
  const gsize ps = 2 * MiB;
  char *path = data_file_add ("seqread-local");
  char *db = sqlite_db_add ("seqread-sqlite");
  guint64 *buf = g_malloc (ps);
  GError *error = NULL;
  BigfileSqliteFile *sq;
  BigfileLocalFile *local;
  guint64 lsum, ssum;
  double t0;

  g_printerr ("seqread-sqlite: writing a %" G_GSIZE_FORMAT " MiB file and the same bigfile in "
              "SQLite...\n",
              SEQ_FILE_SIZE / MiB);
  create_data_file (path, SEQ_FILE_SIZE);
  sq = bigfile_sqlite_file_new (db, "seqread", ps, BIGFILE_SQLITE_FILE_FLAGS_CREATE, &error);
  check_error (error, "bigfile_sqlite_file_new");
  bigfile_sqlite_file_set_durable (sq, FALSE);
  t0 = now ();
  bigfile_file_begin_transaction (BIGFILE_FILE (sq), &error);
  check_error (error, "bigfile_file_begin_transaction");
  for (gsize off = 0; off < SEQ_FILE_SIZE && error == NULL; off += ps)
    {
      /* The pattern of create_data_file(). */
      for (gsize i = 0; i < ps / 8; i++)
        buf[i] = (off / 8 + i) * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15);
      bigfile_file_store_block_raw (BIGFILE_FILE (sq), off / ps, (const guint8 *)buf, ps, &error);
    }
  check_error (error, "bigfile_file_store_block_raw");
  bigfile_file_commit_transaction (BIGFILE_FILE (sq), BIGFILE_COMMIT_FLAGS_NONE, &error);
  check_error (error, "bigfile_file_commit_transaction");
  g_object_unref (sq);
  sqlite_checkpoint (db);
  g_printerr ("  stored %" G_GSIZE_FORMAT
              " MiB in SQLite in one transaction, checkpointed: %.1f s\n",
              SEQ_FILE_SIZE / MiB, now () - t0);
  g_free (buf);

  local = bigfile_local_file_new (path, ps, BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, &error);
  check_error (error, "bigfile_local_file_new");
  sq = bigfile_sqlite_file_new (db, "seqread", 0, BIGFILE_SQLITE_FILE_FLAGS_READ_ONLY, &error);
  check_error (error, "bigfile_sqlite_file_new");
  g_printerr ("seqread-sqlite: 2 MiB pages, budget %" G_GSIZE_FORMAT
              " MiB (every page loaded again on every pass)\n",
              SEQ_BUDGET / MiB);
  *baseline = seqread_passes (BIGFILE_FILE (local), "LocalFile GB/s, passes 2-4:", &lsum);
  *value = seqread_passes (BIGFILE_FILE (sq), "SqliteFile GB/s, passes 2-4:", &ssum);
  if (lsum != ssum)
    die ("seqread-sqlite: the SQLite bigfile and the local file read different data");
  g_object_unref (sq);
  g_object_unref (local);
  sqlite_db_remove (db);
  data_file_remove (path);
}

/* The writeout rows: 512 MiB of dirty 2 MiB pages written out to a
 * BigfileSqliteFile (durable, as by default), to a plain BigfileLocalFile,
 * and pwrite() + fsync() of the same bytes. */
#define SQLITE_WRITEOUT_RUNS 3

static void
bench_writeout_sqlite (double *value, double *local_gbs, double *fsync_gbs)
{
  const guint64 n_pages = WRITEOUT_SIZE / (2 * MiB);
  char *db = sqlite_db_add ("writeout-sqlite");
  char *lpath = data_file_add ("writeout-local");
  char *kpath = data_file_add ("writeout-fsync");
  double sgbs[SQLITE_WRITEOUT_RUNS], lgbs[SQLITE_WRITEOUT_RUNS], kgbs[SQLITE_WRITEOUT_RUNS];
  GError *error = NULL;
  BigfileSqliteFile *sq;
  BigfileLocalFile *local;
  BigfileRam *sram, *lram;
  BigfileHandle *sh, *lh;
  BigfileVma *svma, *lvma;
  guint8 *buf = g_malloc (WRITEOUT_SIZE);
  int fd;

  create_data_file (lpath, WRITEOUT_SIZE);
  create_data_file (kpath, WRITEOUT_SIZE);
  sq = bigfile_sqlite_file_new (db, "writeout", 2 * MiB, BIGFILE_SQLITE_FILE_FLAGS_CREATE, &error);
  check_error (error, "bigfile_sqlite_file_new");
  local = bigfile_local_file_new (lpath, 2 * MiB, BIGFILE_LOCAL_FILE_FLAGS_NONE, &error);
  check_error (error, "bigfile_local_file_new");
  sram = bigfile_ram_new (WRITEOUT_BUDGET);
  lram = bigfile_ram_new (WRITEOUT_BUDGET);
  sh = bigfile_handle_new (BIGFILE_FILE (sq), sram, &error);
  check_error (error, "bigfile_handle_new");
  lh = bigfile_handle_new (BIGFILE_FILE (local), lram, &error);
  check_error (error, "bigfile_handle_new");
  svma = bigfile_handle_map (sh, 0, n_pages, &error);
  check_error (error, "bigfile_handle_map");
  lvma = bigfile_handle_map (lh, 0, n_pages, &error);
  check_error (error, "bigfile_handle_map");
  fd = open (kpath, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    die ("opening %s: %s", kpath, g_strerror (errno));

  /* A first writeout makes the bigfile's rows (the others overwrite
   * them, as the baselines overwrite allocated files). */
  run_bigfile_writeout (sh, bigfile_vma_get_data (svma), 'a');
  for (guint r = 0; r < SQLITE_WRITEOUT_RUNS; r++)
    {
      double t0;

      /* The main loop runs between saves, as in a program: the file's
       * checkpoint after a commit needs it. */
      for (double end = now () + 0.3; now () < end;)
        g_main_context_iteration (NULL, FALSE), g_usleep (1000);
      sgbs[r] = run_bigfile_writeout (sh, bigfile_vma_get_data (svma), 'b' + (int)r);
      lgbs[r] = run_bigfile_writeout (lh, bigfile_vma_get_data (lvma), 'b' + (int)r);
      t0 = now ();
      run_pwrite (fd, buf, 'b' + (int)r, kpath);
      if (fsync (fd) != 0)
        die ("fsync of %s: %s", kpath, g_strerror (errno));
      kgbs[r] = (double)WRITEOUT_SIZE / (now () - t0) / 1e9;
    }
  g_printerr ("writeout-sqlite: %" G_GSIZE_FORMAT " MiB of dirty 2 MiB pages, %d runs each "
              "(after a first writeout that made the rows)\n",
              WRITEOUT_SIZE / MiB, SQLITE_WRITEOUT_RUNS);
  print_values ("SqliteFile (durable) GB/s:", sgbs, SQLITE_WRITEOUT_RUNS, "GB/s");
  print_values ("LocalFile (plain) GB/s:", lgbs, SQLITE_WRITEOUT_RUNS, "GB/s");
  print_values ("pwrite + fsync GB/s:", kgbs, SQLITE_WRITEOUT_RUNS, "GB/s");
  *value = median (sgbs, SQLITE_WRITEOUT_RUNS);
  *local_gbs = median (lgbs, SQLITE_WRITEOUT_RUNS);
  *fsync_gbs = median (kgbs, SQLITE_WRITEOUT_RUNS);

  close (fd);
  bigfile_vma_unmap (svma);
  bigfile_vma_unmap (lvma);
  g_object_unref (svma);
  g_object_unref (lvma);
  bigfile_handle_close (sh);
  bigfile_handle_close (lh);
  g_object_unref (sh);
  g_object_unref (lh);
  g_object_unref (sram);
  g_object_unref (lram);
  g_object_unref (sq);
  g_object_unref (local);
  g_free (buf);
  sqlite_db_remove (db);
  data_file_remove (lpath);
  data_file_remove (kpath);
}

/* invalidate-latency-sqlite: another process (this program, run with
 * --sqlite-committer) writes out one page of the bigfile every
 * INVALIDATE_INTERVAL_MS through a handle, and right after each writeout
 * returns writes its number and the time (CLOCK_MONOTONIC, which both
 * processes share) to a pipe.  This process's handle of the bigfile gets
 * page-invalidated in its main loop; the page holds the commit's number.
 * Latency: from the start of the writeout (the commit lies between its
 * start and its return, so this bounds commit-to-signal from above) to the
 * signal.  Baseline: from the same start to this main loop's reading of
 * the record from the pipe, which the other process writes once its
 * writeout returned: a notification sent by hand after the save. */
#define INVALIDATE_COMMITS 200
#define INVALIDATE_INTERVAL_MS 20
#define INVALIDATE_PAGES 8

typedef struct
{
  guint64 number;
  gint64 start, end; /* µs, g_get_monotonic_time(): the writeout's call and return */
} CommitRecord;

static int
sqlite_committer_main (const char *db)
{
  GError *error = NULL;
  BigfileSqliteFile *file = bigfile_sqlite_file_new (db, "latency", 0, 0, &error);
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma;
  guint8 *data;

  check_error (error, "bigfile_sqlite_file_new");
  ram = bigfile_ram_new (INVALIDATE_PAGES * 4096 * 2);
  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  check_error (error, "bigfile_handle_new");
  vma = bigfile_handle_map (handle, 0, INVALIDATE_PAGES, &error);
  check_error (error, "bigfile_handle_map");
  data = bigfile_vma_get_data (vma);
  for (guint64 k = 1; k <= INVALIDATE_COMMITS; k++)
    {
      CommitRecord rec = { .number = k };

      g_usleep (INVALIDATE_INTERVAL_MS * 1000);
      memcpy (data + (k % INVALIDATE_PAGES) * 4096, &k, sizeof k);
      rec.start = g_get_monotonic_time ();
      bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error);
      check_error (error, "bigfile_handle_writeout");
      rec.end = g_get_monotonic_time ();
      if (write (1, &rec, sizeof rec) != sizeof rec)
        die ("writing to the pipe: %s", g_strerror (errno));
    }
  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  g_object_unref (file);
  return 0;
}

typedef struct
{
  const guint8 *data;
  gint64 start_time[INVALIDATE_COMMITS + 1]; /* 0: not yet read */
  gint64 end_time[INVALIDATE_COMMITS + 1];
  gint64 pipe_time[INVALIDATE_COMMITS + 1];
  gint64 signal_time[INVALIDATE_COMMITS + 1];
  guint n_records;
  gboolean eof;
} Latency;

static void
latency_invalidated (BigfileHandle *handle, guint64 page, gpointer user_data)
{
  Latency *l = user_data;
  gint64 t = g_get_monotonic_time ();
  guint64 k;

  /* The page loads again here, with the commit's number. */
  memcpy (&k, l->data + page * 4096, sizeof k);
  if (k >= 1 && k <= INVALIDATE_COMMITS && l->signal_time[k] == 0)
    l->signal_time[k] = t;
}

static gboolean
latency_pipe (int fd, GIOCondition condition, gpointer user_data)
{
  Latency *l = user_data;
  gint64 t = g_get_monotonic_time ();
  CommitRecord rec;
  ssize_t n;

  while ((n = read (fd, &rec, sizeof rec)) == sizeof rec)
    if (rec.number >= 1 && rec.number <= INVALIDATE_COMMITS)
      {
        l->start_time[rec.number] = rec.start;
        l->end_time[rec.number] = rec.end;
        l->pipe_time[rec.number] = t;
        l->n_records++;
      }
  if (n == 0)
    {
      l->eof = TRUE;
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

/* p50 and p99 (nearest rank) of @v, ms; sorts it. */
static void
percentiles (GArray *v, double *p50, double *p99)
{
  double *d = (double *)v->data;

  if (v->len == 0)
    die ("invalidate-latency-sqlite: nothing measured");
  qsort (d, v->len, sizeof *d, cmp_double);
  *p50 = d[(50 * v->len + 99) / 100 - 1];
  *p99 = d[(99 * v->len + 99) / 100 - 1];
}

static void
bench_invalidate_latency_sqlite (const char *argv0, double stats[4])
{
  char *db = sqlite_db_add ("latency-sqlite");
  Latency *l = g_new0 (Latency, 1);
  GError *error = NULL;
  BigfileSqliteFile *file;
  BigfileRam *ram;
  BigfileHandle *handle;
  BigfileVma *vma;
  char *child_argv[] = { NULL, "--sqlite-committer", NULL, NULL };
  GPid child;
  int status;
  GArray *signal_ms = g_array_new (FALSE, FALSE, sizeof (double));
  GArray *pipe_ms = g_array_new (FALSE, FALSE, sizeof (double));
  GArray *writeout_ms = g_array_new (FALSE, FALSE, sizeof (double));
  double wstats[2];
  guint n_missed = 0, n_early = 0;
  int fd;

  file = bigfile_sqlite_file_new (db, "latency", 4096, BIGFILE_SQLITE_FILE_FLAGS_CREATE, &error);
  check_error (error, "bigfile_sqlite_file_new");
  ram = bigfile_ram_new (INVALIDATE_PAGES * 4096 * 2);
  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  check_error (error, "bigfile_handle_new");
  /* A size that holds every page: no page changes by a size change. */
  bigfile_handle_set_size (handle, INVALIDATE_PAGES * 4096, &error);
  bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error);
  check_error (error, "bigfile_handle_writeout");
  vma = bigfile_handle_map (handle, 0, INVALIDATE_PAGES, &error);
  check_error (error, "bigfile_handle_map");
  l->data = bigfile_vma_get_data (vma);
  g_signal_connect (handle, "page-invalidated", G_CALLBACK (latency_invalidated), l);

  child_argv[0] = (char *)argv0;
  child_argv[2] = db;
  g_spawn_async_with_pipes (NULL, child_argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &child,
                            NULL, &fd, NULL, &error);
  check_error (error, "starting the committer");
  g_unix_set_fd_nonblocking (fd, TRUE, NULL);
  g_unix_fd_add (fd, G_IO_IN | G_IO_HUP, latency_pipe, l);
  while (!l->eof)
    g_main_context_iteration (NULL, TRUE);
  /* The last signals. */
  for (double end = now () + 0.2; now () < end;)
    g_main_context_iteration (NULL, FALSE), g_usleep (1000);
  if (waitpid (child, &status, 0) != child || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
    die ("invalidate-latency-sqlite: the committer failed");
  g_spawn_close_pid (child);
  close (fd);

  for (guint k = 1; k <= INVALIDATE_COMMITS; k++)
    {
      /* From the start of the other process's writeout: its commit lies
       * between that and the writeout's return, so this is an upper bound
       * of commit-to-signal, and the writeout's own time is in it. */
      double sms = (double)(l->signal_time[k] - l->start_time[k]) / 1000.0;
      double pms = (double)(l->pipe_time[k] - l->start_time[k]) / 1000.0;
      double wms = (double)(l->end_time[k] - l->start_time[k]) / 1000.0;

      if (l->start_time[k] == 0 || l->signal_time[k] == 0)
        {
          n_missed++;
          continue;
        }
      if (l->signal_time[k] < l->end_time[k])
        n_early++;
      g_array_append_val (signal_ms, sms);
      g_array_append_val (pipe_ms, pms);
      g_array_append_val (writeout_ms, wms);
    }
  if (n_missed > INVALIDATE_COMMITS / 100)
    die ("invalidate-latency-sqlite: %u of %d commits were never signalled", n_missed,
         INVALIDATE_COMMITS);
  percentiles (signal_ms, &stats[0], &stats[1]);
  percentiles (pipe_ms, &stats[2], &stats[3]);
  percentiles (writeout_ms, &wstats[0], &wstats[1]);
  g_printerr ("invalidate-latency-sqlite: %d writeouts of one 4 KiB page by another process, "
              "%d ms apart (durable commits); %u not signalled, %u signalled before the "
              "writeout returned there; ms from the start of the writeout\n",
              INVALIDATE_COMMITS, INVALIDATE_INTERVAL_MS, n_missed, n_early);
  print_values ("page-invalidated p50, p99:", stats, 2, "ms");
  print_values ("pipe after writeout p50, p99:", stats + 2, 2, "ms");
  print_values ("the writeout itself p50, p99:", wstats, 2, "ms");
  g_array_unref (writeout_ms);
  g_array_unref (signal_ms);
  g_array_unref (pipe_ms);
  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  g_object_unref (file);
  g_free (l);
  sqlite_db_remove (db);
}

static gboolean want (char **names, const char *name);

static void
run_sqlite_rows (char **names, const char *argv0)
{
  double value, baseline, local_gbs, fsync_gbs, stats[4];

  if (want (names, "seqread-sqlite"))
    {
      bench_seqread_sqlite (&value, &baseline);
      emit_row ("seqread-sqlite", value, "GB/s", baseline, "");
    }
  if (want (names, "writeout-sqlite") || want (names, "writeout-sqlite-fsync"))
    {
      bench_writeout_sqlite (&value, &local_gbs, &fsync_gbs);
      if (want (names, "writeout-sqlite"))
        emit_row ("writeout-sqlite", value, "GB/s", local_gbs, "");
      if (want (names, "writeout-sqlite-fsync"))
        emit_row ("writeout-sqlite-fsync", value, "GB/s", fsync_gbs, "");
    }
  if (want (names, "invalidate-latency-sqlite") || want (names, "invalidate-latency-sqlite-p50"))
    {
      bench_invalidate_latency_sqlite (argv0, stats);
      if (want (names, "invalidate-latency-sqlite"))
        emit_row ("invalidate-latency-sqlite", stats[1], "ms", MAX (stats[3], LATENESS_FLOOR_MS),
                  "p99 < 100 ms");
      if (want (names, "invalidate-latency-sqlite-p50"))
        emit_row ("invalidate-latency-sqlite-p50", stats[0], "ms",
                  MAX (stats[2], LATENESS_FLOOR_MS), "");
    }
}

#endif /* HAVE_SQLITE */

/* -- main ---------------------------------------------------------------------------- */

/* With no arguments every row runs; otherwise only the rows named (for
 * profiling one of them under perf). */
static gboolean
want (char **names, const char *name)
{
  if (names[0] == NULL)
    return TRUE;
  for (guint i = 0; names[i] != NULL; i++)
    if (g_str_equal (names[i], name))
      return TRUE;
  return FALSE;
}

/* The fault rows share their baseline, so they are printed once all have
 * run. */
static void
run_fault_rows (char **names)
{
  static const struct
  {
    const char *bench;
    gsize page_size, budget, map_size; /* map_size 0: the write-fault row */
    const char *target;
  } fault_rows[] = {
    { "fault-read-4k", 4 * KiB, 64 * MiB, 256 * MiB, "<= 3x" },
    { "fault-read-64k", 64 * KiB, 64 * MiB, 256 * MiB, "" },
    { "fault-read-2m", 2 * MiB, 64 * MiB, 512 * MiB, "" },
    { "fault-write-4k", 4 * KiB, 0, 0, "" },
  };
  double us[G_N_ELEMENTS (fault_rows)] = { 0 };
  double first_touch;
  gboolean ran = FALSE;

  first_touch_us = g_array_new (FALSE, FALSE, sizeof (double));
  for (guint i = 0; i < G_N_ELEMENTS (fault_rows); i++)
    if (want (names, fault_rows[i].bench))
      {
        if (fault_rows[i].map_size > 0)
          us[i] = bench_fault_read (fault_rows[i].page_size, fault_rows[i].budget,
                                    fault_rows[i].map_size);
        else
          us[i] = bench_fault_write_4k ();
        ran = TRUE;
      }

  if (ran)
    {
      first_touch = first_touch_median ();
      for (guint i = 0; i < G_N_ELEMENTS (fault_rows); i++)
        if (want (names, fault_rows[i].bench))
          emit_row (fault_rows[i].bench, us[i], "us", first_touch, fault_rows[i].target);
    }
  g_array_unref (first_touch_us);
}

/* The seqread rows share one file, written once. */
static void
run_seqread_rows (char **names)
{
  static const struct
  {
    const char *bench;
    BigfileLocalFileFlags flags;
    const char *target;
  } seqread_rows[] = {
    { "seqread-2m", BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, ">= 0.5x" },
    { "seqread-2m-direct",
      BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY | BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, "" },
  };
  char *path = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (seqread_rows); i++)
    {
      double value, baseline;

      if (!want (names, seqread_rows[i].bench))
        continue;
      if (path == NULL)
        {
          path = data_file_add ("seqread");
          g_printerr ("seqread: writing a %" G_GSIZE_FORMAT " MiB file...\n", SEQ_FILE_SIZE / MiB);
          create_data_file (path, SEQ_FILE_SIZE);
        }
      bench_seqread_2m (seqread_rows[i].bench, path, seqread_rows[i].flags, &value, &baseline);
      emit_row (seqread_rows[i].bench, value, "GB/s", baseline, seqread_rows[i].target);
    }
  if (path != NULL)
    data_file_remove (path);
}

static void
run_lateness_rows (char **names)
{
  gboolean want_c
      = want (names, "mainloop-lateness-worst-c") || want (names, "mainloop-lateness-p99-c");
  gboolean want_script = want (names, "mainloop-lateness-worst-script")
                         || want (names, "mainloop-lateness-p99-script");
  LatenessStats busy, idle;
  GError *error = NULL;
  char *path;

  if (!want_c && !want_script)
    return;

  path = data_file_add ("lateness");
  g_printerr ("mainloop-lateness: writing a %" G_GSIZE_FORMAT " MiB file...\n",
              WRITEOUT_SIZE / MiB);
  create_data_file (path, WRITEOUT_SIZE);

  if (want_c)
    {
      BigfileLocalFile *file
          = bigfile_local_file_new (path, 2 * MiB, BIGFILE_LOCAL_FILE_FLAGS_NONE, &error);

      check_error (error, "bigfile_local_file_new");
      if (!bigfile_file_is_thread_safe (BIGFILE_FILE (file)))
        die ("mainloop-lateness: BigfileLocalFile is not thread-safe: no worker thread");
      bench_mainloop_lateness (BIGFILE_FILE (file), "C (BigfileLocalFile, worker thread)", &busy,
                               &idle);
      g_object_unref (file);
      if (want (names, "mainloop-lateness-worst-c"))
        emit_row ("mainloop-lateness-worst-c", busy.worst, "ms",
                  MAX (idle.worst, LATENESS_FLOOR_MS), "< 50 ms");
      if (want (names, "mainloop-lateness-p99-c"))
        emit_row ("mainloop-lateness-p99-c", busy.p99, "ms", MAX (idle.p99, LATENESS_FLOOR_MS), "");
    }

  if (want_script)
    {
      BenchScriptFile *file = bench_script_file_new (path, 2 * MiB);

      if (bigfile_file_is_thread_safe (BIGFILE_FILE (file)))
        die ("mainloop-lateness: the script-like file claims to be thread-safe");
      bench_mainloop_lateness (BIGFILE_FILE (file), "script-like (GBytes, slices on the loop)",
                               &busy, &idle);
      g_object_unref (file);
      if (want (names, "mainloop-lateness-worst-script"))
        emit_row ("mainloop-lateness-worst-script", busy.worst, "ms",
                  MAX (idle.worst, LATENESS_FLOOR_MS), "< 50 ms");
      if (want (names, "mainloop-lateness-p99-script"))
        emit_row ("mainloop-lateness-p99-script", busy.p99, "ms", MAX (idle.p99, LATENESS_FLOOR_MS),
                  "");
    }

  data_file_remove (path);
}

#ifdef HAVE_POSTGRESQL
/* The rows of BigfilePgFile, which use the helpers above: see there. */
#include "bench-pg.c"
#endif

int
main (int argc, char **argv)
{
  double t_start = now (), load_start = load_average ();
  double value, baseline;
  char **names = argv + 1;

#ifdef HAVE_SQLITE
  if (argc == 3 && g_str_equal (argv[1], "--sqlite-committer"))
    return sqlite_committer_main (argv[2]);
#endif

  for (guint i = 0; names[i] != NULL; i++)
    {
      gboolean known = FALSE;

      for (guint j = 0; j < G_N_ELEMENTS (row_names); j++)
        known = known || g_str_equal (names[i], row_names[j]);
      if (!known)
        {
          g_printerr ("Usage: %s [ROW...]\n"
                      "Measures bigfile-glib against the kernel and prints one JSON object per\n"
                      "row on stdout; with no ROW, all rows. Makes (and removes) about 1 GiB of\n"
                      "data files in the current directory. Rows:",
                      argv[0]);
          for (guint j = 0; j < G_N_ELEMENTS (row_names); j++)
            g_printerr (" %s", row_names[j]);
          g_printerr ("\n");
          return 2;
        }
    }

  install_cleanup ();
  check_free_space (SEQ_FILE_SIZE + 256 * MiB);

  run_fault_rows (names);
  run_seqread_rows (names);
  if (want (names, "writeout-2m"))
    {
      bench_writeout_2m (&value, &baseline);
      emit_row ("writeout-2m", value, "GB/s", baseline, ">= 0.8x");
    }
  if (want (names, "writeout-local-durable") || want (names, "writeout-local-atomic")
      || want (names, "writeout-local-durable-vs-plain")
      || want (names, "writeout-local-atomic-vs-plain"))
    {
      double gbs[N_SAVES];

      check_free_space (4 * WRITEOUT_SIZE + 256 * MiB);
      bench_writeout_local (gbs);
      if (want (names, "writeout-local-durable"))
        emit_row ("writeout-local-durable", gbs[SAVE_DURABLE], "GB/s", gbs[SAVE_PWRITE_SYNC],
                  "vs pwrite+fdatasync");
      if (want (names, "writeout-local-atomic"))
        emit_row ("writeout-local-atomic", gbs[SAVE_ATOMIC], "GB/s", gbs[SAVE_PWRITE_SYNC],
                  "vs pwrite+fdatasync");
      if (want (names, "writeout-local-durable-vs-plain"))
        emit_row ("writeout-local-durable-vs-plain", gbs[SAVE_DURABLE], "GB/s", gbs[SAVE_PLAIN],
                  "vs plain writeout");
      if (want (names, "writeout-local-atomic-vs-plain"))
        emit_row ("writeout-local-atomic-vs-plain", gbs[SAVE_ATOMIC], "GB/s", gbs[SAVE_PLAIN],
                  "vs plain writeout");
    }
  run_lateness_rows (names);
#ifdef HAVE_SQLITE
  run_sqlite_rows (names, argv[0]);
#endif
#ifdef HAVE_POSTGRESQL
  run_pg_rows (names);
#endif

  print_summary ();
  g_printerr ("baseline of the fault rows: kernel first touch of a new memfd page, us per 4 KiB\n"
              "total time: %.0f s; load average %.2f at start, %.2f at end (%ld CPUs)\n",
              now () - t_start, load_start, load_average (), sysconf (_SC_NPROCESSORS_ONLN));
  return 0;
}
