/* bigfile-bench - the rows of BigfilePgFile (PostgreSQL)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Included by bigfile-bench.c (when built with libpq), whose helpers it
 * uses: the benchmark is one program, one translation unit.
 *
 * The server: $BIGFILE_BENCH_PG_CONNINFO if set, else a throwaway cluster
 * of tools/pg-test-cluster.sh, reached through loopback TCP (127.0.0.1),
 * as a server on another host would be, only closer. Its data directory is
 * under $TMPDIR (or /tmp): it takes about 4 GiB there while the rows run.
 *
 *   seqread-pg
 *       GB/s summing a 1 GiB BigfilePgFile (2 MiB blocks, the pattern of
 *       the seqread rows) through a mapping with a 256 MiB budget, as
 *       seqread-2m does, median of 3 passes after a warm one.  Baseline:
 *       the same through a BigfileLocalFile of the same data (seqread-2m's
 *       value), passes alternating.
 *   writeout-pg, writeout-pg-vs-fsync
 *       GB/s of bigfile_handle_writeout(DEFAULT) of 512 MiB of dirty 2 MiB
 *       pages to a BigfilePgFile (durable: the commit waits for the WAL
 *       flush), 3 runs, medians.  Baselines: the same writeout to a plain
 *       BigfileLocalFile (writeout-pg), and pwrite() of 512 MiB plus
 *       fsync() (writeout-pg-vs-fsync), runs alternating.
 *   invalidate-latency-pg-p50, invalidate-latency-pg-p99
 *       ms from the start of a writeout of one 4 KiB page by one client
 *       (in a thread of its own, with its own connections) to the
 *       page-invalidated signal of that page in another client's main
 *       loop (the main thread), 200 commits.  The time includes the
 *       writeout's own commit.  Baseline: how long the writeout itself
 *       took (p50, p99): the ratio shows what the notification adds.
 *   fault-read-pg-64k, fault-read-pg-64k-unbatched
 *       µs per read fault of a 64 KiB block, one byte touched per page of
 *       a 64 MiB mapping in order with a 16 MiB budget (every fault loads
 *       from the server), with the default read-ahead (batched loads) and
 *       with read-ahead 0 (one query per fault).  Baseline: the same over
 *       a BigfileLocalFile of the same data (warm page cache).
 */

#include "test-pg-util.h"
#include "bigfile-pg-file-private.h"

#define PG_SEQ_BLOCK (2 * MiB)
#define PG_WRITEOUT_RUNS 3
#define PG_LATENCY_COMMITS 200
#define PG_FAULT_MAP (64 * MiB)
#define PG_FAULT_BUDGET (16 * MiB)
#define PG_FAULT_ROUNDS 3

static TestPgCluster *bench_cluster;
static const char *bench_conninfo;

static void
pg_stop_cluster (void)
{
  if (bench_cluster != NULL)
    test_pg_cluster_stop (g_steal_pointer (&bench_cluster));
}

static const char *
pg_conninfo (void)
{
  GError *error = NULL;
  const char *env = g_getenv ("BIGFILE_BENCH_PG_CONNINFO");

  if (bench_conninfo != NULL)
    return bench_conninfo;
  if (env != NULL && env[0] != '\0')
    return bench_conninfo = env;
  g_printerr ("pg: starting a throwaway PostgreSQL cluster...\n");
  bench_cluster = test_pg_cluster_start (&error);
  check_error (error, "starting a PostgreSQL cluster");
  atexit (pg_stop_cluster);
  return bench_conninfo = bench_cluster->conninfo_tcp;
}

/* @batched: with the default read-ahead, else none. */
static BigfilePgFile *
pg_open (const char *name, gsize block_size, gboolean batched)
{
  GError *error = NULL;
  BigfilePgFile *file
      = batched ? bigfile_pg_file_new (pg_conninfo (), name, block_size,
                                       BIGFILE_PG_FILE_FLAGS_CREATE, &error)
                : g_initable_new (BIGFILE_TYPE_PG_FILE, NULL, &error, "conninfo", pg_conninfo (),
                                  "name", name, "block-size", (guint64)block_size, "flags",
                                  BIGFILE_PG_FILE_FLAGS_CREATE, "read-ahead", (guint64)0, NULL);

  check_error (error, "bigfile_pg_file_new");
  return file;
}

static char *
pg_bench_name (const char *what)
{
  return g_strdup_printf ("bench-%d-%s-%" G_GINT64_FORMAT, (int)getpid (), what,
                          g_get_real_time ());
}

/* Copies @size bytes of the file at @path into @file, in one transaction
 * (not durable: this is setup, not what is measured). */
static void
pg_fill_from (BigfilePgFile *file, const char *path, gsize size)
{
  gsize bs = bigfile_file_get_block_size (BIGFILE_FILE (file));
  guint8 *buf = g_malloc (bs);
  GError *error = NULL;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    die ("opening %s: %s", path, g_strerror (errno));
  bigfile_pg_file_set_durable (file, FALSE);
  if (!bigfile_file_begin_transaction (BIGFILE_FILE (file), &error)
      || !bigfile_file_set_size (BIGFILE_FILE (file), size, &error))
    check_error (error, "pg: filling a file");
  for (gsize off = 0; off < size; off += bs)
    {
      if (pread (fd, buf, bs, (off_t)off) != (ssize_t)bs)
        die ("reading %s", path);
      if (!bigfile_file_store_block_raw (BIGFILE_FILE (file), off / bs, buf, bs, &error))
        check_error (error, "pg: filling a file");
    }
  if (!bigfile_file_commit_transaction (BIGFILE_FILE (file), BIGFILE_COMMIT_FLAGS_NONE, &error))
    check_error (error, "pg: filling a file");
  bigfile_pg_file_set_durable (file, TRUE);
  close (fd);
  g_free (buf);
}

/* One pass summing a mapping of @handle: GB/s, and the sum in *@sum. */
static double
pg_sum_pass (BigfileHandle *handle, gsize size, guint64 *sum)
{
  GError *error = NULL;
  BigfileVma *vma = bigfile_handle_map (handle, 0, size / PG_SEQ_BLOCK, &error);
  double t0, t;

  check_error (error, "bigfile_handle_map");
  t0 = now ();
  *sum = sum_words ((const guint64 *)bigfile_vma_get_data (vma), size / 8);
  t = now () - t0;
  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  return (double)size / t / 1e9;
}

static void
bench_seqread_pg (const char *path, double *value, double *baseline)
{
  g_autofree char *name = pg_bench_name ("seqread");
  BigfilePgFile *pfile;
  BigfileLocalFile *lfile;
  BigfileRam *ram = bigfile_ram_new (SEQ_BUDGET);
  BigfileHandle *ph, *lh;
  GError *error = NULL;
  double pgbs[SEQ_PASSES], lgbs[SEQ_PASSES], t0;
  guint64 psum, lsum;

  pfile = pg_open (name, PG_SEQ_BLOCK, TRUE);
  g_printerr ("seqread-pg: storing the %" G_GSIZE_FORMAT " MiB file in PostgreSQL...\n",
              SEQ_FILE_SIZE / MiB);
  t0 = now ();
  pg_fill_from (pfile, path, SEQ_FILE_SIZE);
  g_printerr ("  stored in %.1f s (%.2f GB/s, not durable, one transaction)\n", now () - t0,
              (double)SEQ_FILE_SIZE / (now () - t0) / 1e9);
  lfile = bigfile_local_file_new (path, PG_SEQ_BLOCK, BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, &error);
  check_error (error, "bigfile_local_file_new");
  ph = bigfile_handle_new (BIGFILE_FILE (pfile), ram, &error);
  check_error (error, "bigfile_handle_new");
  lh = bigfile_handle_new (BIGFILE_FILE (lfile), ram, &error);
  check_error (error, "bigfile_handle_new");

  /* Warm passes: both must read the same data. */
  pg_sum_pass (ph, SEQ_FILE_SIZE, &psum);
  pg_sum_pass (lh, SEQ_FILE_SIZE, &lsum);
  if (psum != lsum)
    die ("seqread-pg: PostgreSQL and the local file read different data");
  for (guint i = 0; i < SEQ_PASSES; i++)
    {
      pgbs[i] = pg_sum_pass (ph, SEQ_FILE_SIZE, &psum);
      lgbs[i] = pg_sum_pass (lh, SEQ_FILE_SIZE, &lsum);
      if (psum != lsum)
        die ("seqread-pg: PostgreSQL and the local file read different data");
    }
  g_printerr ("seqread-pg: %" G_GSIZE_FORMAT " MiB, 2 MiB blocks, budget %" G_GSIZE_FORMAT
              " MiB, %" G_GUINT64_FORMAT " load queries in all\n",
              SEQ_FILE_SIZE / MiB, SEQ_BUDGET / MiB, _bigfile_pg_file_get_n_load_queries (pfile));
  print_values ("PostgreSQL GB/s, passes 2-4:", pgbs, SEQ_PASSES, "GB/s");
  print_values ("LocalFile GB/s, passes 2-4:", lgbs, SEQ_PASSES, "GB/s");

  bigfile_handle_close (ph);
  bigfile_handle_close (lh);
  g_object_unref (ph);
  g_object_unref (lh);
  g_object_unref (ram);
  g_object_unref (pfile);
  g_object_unref (lfile);
  *value = median (pgbs, SEQ_PASSES);
  *baseline = median (lgbs, SEQ_PASSES);
}

static double
run_pwrite_fsync (int fd, guint8 *buf, int fill, const char *path)
{
  double t0 = now ();

  run_pwrite (fd, buf, fill, path);
  if (fsync (fd) != 0)
    die ("fsync of %s: %s", path, g_strerror (errno));
  return (double)WRITEOUT_SIZE / (now () - t0) / 1e9;
}

static void
bench_writeout_pg (double *value, double *local, double *fsynced)
{
  g_autofree char *name = pg_bench_name ("writeout");
  char *lpath = data_file_add ("writeout-pg-local");
  char *kpath = data_file_add ("writeout-pg-pwrite");
  BigfilePgFile *pfile = pg_open (name, 2 * MiB, TRUE);
  BigfileLocalFile *lfile;
  BigfileRam *ram = bigfile_ram_new (2 * WRITEOUT_BUDGET);
  BigfileHandle *ph, *lh;
  BigfileVma *pv, *lv;
  GError *error = NULL;
  double pgbs[PG_WRITEOUT_RUNS], lgbs[PG_WRITEOUT_RUNS], kgbs[PG_WRITEOUT_RUNS];
  guint8 *buf;
  int fd;

  create_data_file (lpath, WRITEOUT_SIZE);
  create_data_file (kpath, WRITEOUT_SIZE);
  lfile = bigfile_local_file_new (lpath, 2 * MiB, BIGFILE_LOCAL_FILE_FLAGS_NONE, &error);
  check_error (error, "bigfile_local_file_new");
  ph = bigfile_handle_new (BIGFILE_FILE (pfile), ram, &error);
  check_error (error, "bigfile_handle_new");
  lh = bigfile_handle_new (BIGFILE_FILE (lfile), ram, &error);
  check_error (error, "bigfile_handle_new");
  pv = bigfile_handle_map (ph, 0, WRITEOUT_SIZE / (2 * MiB), &error);
  check_error (error, "bigfile_handle_map");
  lv = bigfile_handle_map (lh, 0, WRITEOUT_SIZE / (2 * MiB), &error);
  check_error (error, "bigfile_handle_map");
  fd = open (kpath, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    die ("opening %s: %s", kpath, g_strerror (errno));
  buf = g_malloc (WRITEOUT_SIZE);

  /* A first writeout makes the rows exist: the runs overwrite, as the
   * baselines do. */
  run_bigfile_writeout (ph, bigfile_vma_get_data (pv), 'z');
  for (guint i = 0; i < PG_WRITEOUT_RUNS; i++)
    {
      int fill = 'a' + (int)i;

      if (i % 2 == 0)
        {
          pgbs[i] = run_bigfile_writeout (ph, bigfile_vma_get_data (pv), fill);
          lgbs[i] = run_bigfile_writeout (lh, bigfile_vma_get_data (lv), fill);
          kgbs[i] = run_pwrite_fsync (fd, buf, fill, kpath);
        }
      else
        {
          kgbs[i] = run_pwrite_fsync (fd, buf, fill, kpath);
          lgbs[i] = run_bigfile_writeout (lh, bigfile_vma_get_data (lv), fill);
          pgbs[i] = run_bigfile_writeout (ph, bigfile_vma_get_data (pv), fill);
        }
    }
  g_printerr ("writeout-pg: %" G_GSIZE_FORMAT " MiB of dirty 2 MiB pages, durable commits\n",
              WRITEOUT_SIZE / MiB);
  print_values ("PostgreSQL GB/s, runs:", pgbs, PG_WRITEOUT_RUNS, "GB/s");
  print_values ("LocalFile GB/s, runs:", lgbs, PG_WRITEOUT_RUNS, "GB/s");
  print_values ("pwrite+fsync GB/s, runs:", kgbs, PG_WRITEOUT_RUNS, "GB/s");

  g_free (buf);
  close (fd);
  bigfile_vma_unmap (pv);
  bigfile_vma_unmap (lv);
  g_object_unref (pv);
  g_object_unref (lv);
  bigfile_handle_close (ph);
  bigfile_handle_close (lh);
  g_object_unref (ph);
  g_object_unref (lh);
  g_object_unref (ram);
  g_object_unref (pfile);
  g_object_unref (lfile);
  data_file_remove (lpath);
  data_file_remove (kpath);
  *value = median (pgbs, PG_WRITEOUT_RUNS);
  *local = median (lgbs, PG_WRITEOUT_RUNS);
  *fsynced = median (kgbs, PG_WRITEOUT_RUNS);
}

/* -- invalidation latency -- */

typedef struct
{
  const char *name;
  GMutex lock;
  GCond cond;
  gint64 started;    /* protected by lock: when the writeout began, µs */
  guint n_seen;      /* protected by lock: invalidations seen by the reader */
  GArray *latency;   /* double ms, the reader's (main thread) */
  GArray *writeouts; /* double ms, the writer's */
  GMainLoop *loop;
} PgLatency;

static void
pg_latency_invalidated (BigfileHandle *handle, guint64 page, PgLatency *l)
{
  gint64 t = g_get_monotonic_time ();
  double ms;

  g_mutex_lock (&l->lock);
  ms = (double)(t - l->started) / 1000.0;
  g_array_append_val (l->latency, ms);
  l->n_seen++;
  g_cond_signal (&l->cond);
  if (l->n_seen == PG_LATENCY_COMMITS)
    g_main_loop_quit (l->loop);
  g_mutex_unlock (&l->lock);
}

/* The writer: another client, with a main context of its own that nobody
 * runs (it needs no signals). */
static gpointer
pg_latency_writer (gpointer data)
{
  PgLatency *l = data;
  GMainContext *context = g_main_context_new ();
  BigfilePgFile *file;
  BigfileRam *ram = bigfile_ram_new (16 * 4096);
  BigfileHandle *handle;
  BigfileVma *vma;
  GError *error = NULL;
  volatile guint8 *p;

  g_main_context_push_thread_default (context);
  file = pg_open (l->name, 4096, TRUE);
  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  check_error (error, "bigfile_handle_new");
  bigfile_handle_set_auto_refresh (handle, FALSE);
  vma = bigfile_handle_map (handle, 0, 1, &error);
  check_error (error, "bigfile_handle_map");
  p = bigfile_vma_get_data (vma);

  for (guint i = 0; i < PG_LATENCY_COMMITS; i++)
    {
      gint64 t0;
      double ms;

      p[0] = (guint8)(i + 1);
      g_mutex_lock (&l->lock);
      l->started = t0 = g_get_monotonic_time ();
      g_mutex_unlock (&l->lock);
      if (!bigfile_handle_writeout (handle, BIGFILE_WRITEOUT_DEFAULT, &error))
        check_error (error, "invalidate-latency-pg: writeout");
      ms = (double)(g_get_monotonic_time () - t0) / 1000.0;
      g_array_append_val (l->writeouts, ms);
      /* The next commit once the reader saw this one. */
      g_mutex_lock (&l->lock);
      while (l->n_seen < i + 1)
        g_cond_wait (&l->cond, &l->lock);
      g_mutex_unlock (&l->lock);
      /* Spread the commits out a little, as edits would be. */
      g_usleep (2000);
    }

  bigfile_vma_unmap (vma);
  g_object_unref (vma);
  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  g_object_unref (file);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return NULL;
}

static void
bench_invalidate_latency_pg (LatenessStats *latency, LatenessStats *writeout)
{
  g_autofree char *name = pg_bench_name ("latency");
  PgLatency l = { .name = name };
  BigfilePgFile *file = pg_open (name, 4096, TRUE);
  BigfileRam *ram = bigfile_ram_new (16 * 4096);
  BigfileHandle *handle;
  GError *error = NULL;
  GThread *writer;

  g_mutex_init (&l.lock);
  g_cond_init (&l.cond);
  l.latency = g_array_new (FALSE, FALSE, sizeof (double));
  l.writeouts = g_array_new (FALSE, FALSE, sizeof (double));
  l.loop = g_main_loop_new (NULL, FALSE);
  handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
  check_error (error, "bigfile_handle_new");
  g_signal_connect (handle, "page-invalidated", G_CALLBACK (pg_latency_invalidated), &l);

  writer = g_thread_new ("pg-writer", pg_latency_writer, &l);
  g_main_loop_run (l.loop);
  g_thread_join (writer);

  g_printerr ("invalidate-latency-pg: %u commits of one 4 KiB page by one client, each seen "
              "as page-invalidated in another's main loop\n",
              l.latency->len);
  *latency = lateness_stats (l.latency);
  *writeout = lateness_stats (l.writeouts);
  print_values ("latency: median, p99, worst:",
                (double[]){ latency->median, latency->p99, latency->worst }, 3, "ms");
  print_values ("writeout: median, p99, worst:",
                (double[]){ writeout->median, writeout->p99, writeout->worst }, 3, "ms");

  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  g_object_unref (file);
  g_main_loop_unref (l.loop);
  g_array_unref (l.latency);
  g_array_unref (l.writeouts);
  g_mutex_clear (&l.lock);
  g_cond_clear (&l.cond);
}

/* -- faults of 64 KiB blocks -- */

/* µs per fault reading one byte of each page of @file in order, median of
 * PG_FAULT_ROUNDS after a warm-up round. */
static double
pg_fault_rounds (BigfileFile *file, const char *what)
{
  const gsize ps = 64 * KiB;
  const guint64 n_pages = PG_FAULT_MAP / ps;
  BigfileRam *ram = bigfile_ram_new (PG_FAULT_BUDGET);
  GError *error = NULL;
  BigfileHandle *handle = bigfile_handle_new (file, ram, &error);
  double us[PG_FAULT_ROUNDS];

  check_error (error, "bigfile_handle_new");
  for (guint r = 0; r < PG_FAULT_ROUNDS + 1; r++)
    {
      BigfileVma *vma = bigfile_handle_map (handle, 0, n_pages, &error);
      const volatile guint8 *p;
      guint64 sum = 0;
      double t0, t1;

      check_error (error, "bigfile_handle_map");
      p = bigfile_vma_get_data (vma);
      t0 = now ();
      for (guint64 i = 0; i < n_pages; i++)
        sum += p[i * ps];
      t1 = now ();
      sink += sum;
      bigfile_vma_unmap (vma);
      g_object_unref (vma);
      if (r > 0)
        us[r - 1] = (t1 - t0) * 1e6 / (double)n_pages;
    }
  print_values (what, us, PG_FAULT_ROUNDS, "us");
  bigfile_handle_close (handle);
  g_object_unref (handle);
  g_object_unref (ram);
  return median (us, PG_FAULT_ROUNDS);
}

static void
bench_fault_read_pg_64k (double *batched, double *unbatched, double *local)
{
  g_autofree char *name = pg_bench_name ("fault64k");
  char *path = data_file_add ("fault-pg-64k");
  BigfilePgFile *pfile, *single;
  BigfileLocalFile *lfile;
  GError *error = NULL;
  guint64 q0;

  create_data_file (path, PG_FAULT_MAP);
  pfile = pg_open (name, 64 * KiB, TRUE);
  pg_fill_from (pfile, path, PG_FAULT_MAP);
  single = pg_open (name, 64 * KiB, FALSE);
  lfile = bigfile_local_file_new (path, 64 * KiB, BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY, &error);
  check_error (error, "bigfile_local_file_new");

  g_printerr ("fault-read-pg-64k: %" G_GSIZE_FORMAT " MiB mapping of 64 KiB pages in order, "
              "budget %" G_GSIZE_FORMAT " MiB (every touch faults and loads)\n",
              PG_FAULT_MAP / MiB, PG_FAULT_BUDGET / MiB);
  q0 = _bigfile_pg_file_get_n_load_queries (pfile);
  *batched = pg_fault_rounds (BIGFILE_FILE (pfile), "batched, us per fault:");
  g_printerr ("  batched: %.1f blocks per query\n",
              (double)(PG_FAULT_MAP / (64 * KiB)) * (PG_FAULT_ROUNDS + 1)
                  / (double)(_bigfile_pg_file_get_n_load_queries (pfile) - q0));
  *unbatched = pg_fault_rounds (BIGFILE_FILE (single), "one query each, us per fault:");
  *local = pg_fault_rounds (BIGFILE_FILE (lfile), "LocalFile, us per fault:");

  g_object_unref (pfile);
  g_object_unref (single);
  g_object_unref (lfile);
  data_file_remove (path);
}

static void
run_pg_rows (char **names)
{
  double value, baseline, other;
  gboolean want_writeout = want (names, "writeout-pg") || want (names, "writeout-pg-vs-fsync");
  gboolean want_latency
      = want (names, "invalidate-latency-pg-p50") || want (names, "invalidate-latency-pg-p99");
  gboolean want_fault
      = want (names, "fault-read-pg-64k") || want (names, "fault-read-pg-64k-unbatched");

  if (want (names, "seqread-pg"))
    {
      char *path = data_file_add ("seqread-pg");

      g_printerr ("seqread-pg: writing a %" G_GSIZE_FORMAT " MiB file...\n", SEQ_FILE_SIZE / MiB);
      create_data_file (path, SEQ_FILE_SIZE);
      bench_seqread_pg (path, &value, &baseline);
      data_file_remove (path);
      emit_row ("seqread-pg", value, "GB/s", baseline, "");
    }
  if (want_writeout)
    {
      bench_writeout_pg (&value, &baseline, &other);
      if (want (names, "writeout-pg"))
        emit_row ("writeout-pg", value, "GB/s", baseline, "");
      if (want (names, "writeout-pg-vs-fsync"))
        emit_row ("writeout-pg-vs-fsync", value, "GB/s", other, "");
    }
  if (want_latency)
    {
      LatenessStats latency, writeout;

      bench_invalidate_latency_pg (&latency, &writeout);
      if (want (names, "invalidate-latency-pg-p50"))
        emit_row ("invalidate-latency-pg-p50", latency.median, "ms", writeout.median, "");
      if (want (names, "invalidate-latency-pg-p99"))
        emit_row ("invalidate-latency-pg-p99", latency.p99, "ms", writeout.p99, "< 50 ms");
    }
  if (want_fault)
    {
      bench_fault_read_pg_64k (&value, &other, &baseline);
      if (want (names, "fault-read-pg-64k"))
        emit_row ("fault-read-pg-64k", value, "us", baseline, "");
      if (want (names, "fault-read-pg-64k-unbatched"))
        emit_row ("fault-read-pg-64k-unbatched", other, "us", baseline, "");
    }
}
