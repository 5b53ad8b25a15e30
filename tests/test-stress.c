/* bigfile-glib tests - a long stress run: writable pins, writes, writeouts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Writer threads write their own pages through raw memory, some of the
 * time through writable pins that they take and release at random (so a
 * pin often goes while its page is being stored), while the main thread
 * saves in a loop, in one step and in two (STORE, then MARK_STORED), and
 * reclaims everything clean.  A page wrongly marked clean would be
 * reclaimed and loaded again from the file, losing bytes: each writer
 * checks its pages against what it wrote, all the time, and at the end the
 * file must hold every last byte.
 *
 * Suite "slow": it runs for BIGFILE_TEST_STRESS_SECONDS (default 30).
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "test-util.h"

#define N_WRITERS 2
#define PAGES_PER_WRITER 8

typedef struct
{
  Mapping *m;
  guint id;
  guint32 seed;
  guint8 *expected; /* what its pages must hold */
  gint stop;
  guint n_writes, n_pins, n_lost;
} Writer;

static guint8 *
page_of (Writer *w, guint k)
{
  return w->m->data + (w->id * PAGES_PER_WRITER + k) * w->m->ps;
}

static gpointer
writer_thread (gpointer user_data)
{
  Writer *w = user_data;
  gsize ps = w->m->ps;
  GRand *rand = g_rand_new_with_seed (w->seed);
  gint pinned = -1;

  while (!g_atomic_int_get (&w->stop))
    {
      guint k = g_rand_int_range (rand, 0, PAGES_PER_WRITER);
      gsize at = g_rand_int_range (rand, 0, (gint32)ps);
      guint8 value = (guint8)g_rand_int (rand);

      /* Take or release the one writable pin now and then. */
      if (g_rand_int_range (rand, 0, 8) == 0)
        {
          GError *error = NULL;

          if (pinned >= 0)
            {
              bigfile_vma_unpin (w->m->vma, (w->id * PAGES_PER_WRITER + pinned) * ps, ps);
              pinned = -1;
            }
          else
            {
              pinned = (gint)k;
              g_assert_true (bigfile_vma_pin (w->m->vma, (w->id * PAGES_PER_WRITER + k) * ps, ps,
                                              TRUE, &error));
              g_assert_no_error (error);
              w->n_pins++;
            }
        }
      if (pinned >= 0 && g_rand_boolean (rand))
        k = (guint)pinned; /* write where the pin is, often */

      raw_write (page_of (w, k) + at, value);
      w->expected[k * ps + at] = value;
      w->n_writes++;

      /* Every byte written so far must still be there. */
      at = g_rand_int_range (rand, 0, (gint32)ps);
      if (raw_read (page_of (w, k) + at) != w->expected[k * ps + at])
        w->n_lost++;
    }
  if (pinned >= 0)
    bigfile_vma_unpin (w->m->vma, (w->id * PAGES_PER_WRITER + pinned) * ps, ps);
  g_rand_free (rand);
  return NULL;
}

static void
test_pins_writes_writeouts (void)
{
  Mapping m;
  Writer writers[N_WRITERS];
  GThread *threads[N_WRITERS];
  const char *env = g_getenv ("BIGFILE_TEST_STRESS_SECONDS");
  guint seconds = env != NULL ? (guint)g_ascii_strtoull (env, NULL, 10) : 30;
  gint64 end;
  guint n_saves = 0, n_two_step = 0;
  GError *error = NULL;

  g_test_summary ("Threads writing through raw memory and writable pins, under writeouts "
                  "(one- and two-step) and reclaim, lose no byte");
  mapping_setup (&m, 4096, N_WRITERS * PAGES_PER_WRITER, N_WRITERS * PAGES_PER_WRITER,
                 (N_WRITERS * PAGES_PER_WRITER + 4) * 4096);
  for (guint i = 0; i < N_WRITERS; i++)
    {
      writers[i] = (Writer){ .m = &m, .id = i, .seed = g_test_rand_int () };
      writers[i].expected = g_malloc (PAGES_PER_WRITER * m.ps);
      for (guint k = 0; k < PAGES_PER_WRITER; k++)
        for (gsize b = 0; b < m.ps; b++)
          writers[i].expected[k * m.ps + b] = test_mem_file_pattern (i * PAGES_PER_WRITER + k, b);
      threads[i] = g_thread_new ("writer", writer_thread, &writers[i]);
    }

  end = g_get_monotonic_time () + (gint64)seconds * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < end)
    {
      if (n_saves % 3 == 2)
        {
          g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_STORE, &error));
          g_usleep (100);
          g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_MARK_STORED, &error));
          n_two_step++;
        }
      else
        g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
      g_assert_no_error (error);
      bigfile_ram_reclaim (m.ram);
      assert_engine_invariants (m.handle, FALSE);
      n_saves++;
    }

  for (guint i = 0; i < N_WRITERS; i++)
    {
      g_atomic_int_set (&writers[i].stop, TRUE);
      g_thread_join (threads[i]);
    }
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
  g_assert_no_error (error);

  for (guint i = 0; i < N_WRITERS; i++)
    {
      g_test_message ("writer %u: %u writes, %u pins, %u lost bytes seen", i, writers[i].n_writes,
                      writers[i].n_pins, writers[i].n_lost);
      g_assert_cmpuint (writers[i].n_lost, ==, 0);
      for (guint k = 0; k < PAGES_PER_WRITER; k++)
        g_assert_cmpmem (test_mem_file_peek (m.file, i * PAGES_PER_WRITER + k), m.ps,
                         writers[i].expected + k * m.ps, m.ps);
      g_free (writers[i].expected);
    }
  g_test_message ("%u saves (%u in two steps) in %u s", n_saves, n_two_step, seconds);
  mapping_teardown (&m);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/stress/pins-writes-writeouts", test_pins_writes_writeouts);
  return g_test_run ();
}
