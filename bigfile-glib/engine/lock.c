/* bigfile-glib - the engine lock, and what fork() does to it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One mutex and one condition for the whole engine; engine-private.h says
 * why there is only one, and where it stands in the lock order.  The fork()
 * handlers live here because the lock is what they must get right first;
 * engine-private.h ("fork()") states the rule they implement.
 */
#include "config.h"

#include <pthread.h>

#include "engine-private.h"

static pthread_mutex_t engine_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t engine_cond = PTHREAD_COND_INITIALIZER;
static __thread gboolean lock_held;

void
bf_lock (void)
{
  g_assert (!lock_held);
  pthread_mutex_lock (&engine_lock);
  lock_held = TRUE;
}

void
bf_unlock (void)
{
  g_assert (lock_held);
  lock_held = FALSE;
  pthread_mutex_unlock (&engine_lock);
}

gboolean
bf_lock_held (void)
{
  return lock_held;
}

void
bf_wait (void)
{
  g_assert (lock_held);
  pthread_cond_wait (&engine_cond, &engine_lock);
}

void
bf_wake_all (void)
{
  bf_assert_locked ();
  pthread_cond_broadcast (&engine_cond);
}

static __thread BfThread thread_self;

/* The calling thread's record: its address is also its identity. */
BfThread *
bf_thread_self (void)
{
  return &thread_self;
}

/* -- fork() -------------------------------------------------------------------- */

/* Bumped in each forked child: objects made before are the parent's.
 * Written only by the child handler, while the child has one thread. */
static guint fork_generation;

/* The child hooks, in the order they were added; a fixed array, since
 * the child handler must not allocate.  Written under the engine lock. */
#define FORK_HOOKS_MAX 4
static void (*fork_hooks[FORK_HOOKS_MAX]) (void);
static guint n_fork_hooks;

/* Did the prepare handler take the lock (on this thread)?  It does not
 * when the forking thread holds it already. */
static __thread gboolean fork_took_lock;

guint
bf_fork_generation (void)
{
  return fork_generation;
}

/* Every other thread is out of the engine, or waiting, while fork() copies
 * the process: the child's copy of every structure is whole. */
static void
fork_prepare (void)
{
  if (lock_held)
    return;
  bf_lock ();
  fork_took_lock = TRUE;
}

static void
fork_parent (void)
{
  if (!fork_took_lock)
    return;
  fork_took_lock = FALSE;
  bf_unlock ();
}

/* Runs in the child, before fork() returns there: one thread, no user code
 * yet.  Only async-signal-safe work (g_spawn's child runs no more before
 * exec). */
static void
fork_child (void)
{
  /* Threads that held or waited on the lock and the condition do not exist
   * here: start both afresh, held again if this thread held them. */
  pthread_mutex_init (&engine_lock, NULL);
  pthread_cond_init (&engine_cond, NULL);
  if (lock_held)
    pthread_mutex_lock (&engine_lock);

  fork_generation++;
  for (guint i = 0; i < n_fork_hooks; i++)
    fork_hooks[i]();

  if (fork_took_lock)
    {
      fork_took_lock = FALSE;
      bf_unlock ();
    }
}

static int fork_register_err;

static void
fork_register (void)
{
  fork_register_err = pthread_atfork (fork_prepare, fork_parent, fork_child);
}

gboolean
bf_fork_watch (GError **error)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;

  /* Not under the engine lock: fork() holds the C library's atfork lock
   * while fork_prepare() takes ours, so registering with ours held could
   * deadlock against a fork() in another thread. */
  g_assert (!lock_held);
  pthread_once (&once, fork_register);
  if (fork_register_err != 0)
    {
      /* Only ENOMEM.  Without the handlers a child would share the page
       * memory of the parent: refuse to make any. */
      g_set_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FAILED,
                   "Could not register the fork() handlers (pthread_atfork): %s",
                   g_strerror (fork_register_err));
      return FALSE;
    }
  return TRUE;
}

void
bf_fork_add_child_hook (void (*hook) (void))
{
  bf_assert_locked ();
  for (guint i = 0; i < n_fork_hooks; i++)
    if (fork_hooks[i] == hook)
      return;
  g_assert (n_fork_hooks < FORK_HOOKS_MAX);
  fork_hooks[n_fork_hooks++] = hook;
}
