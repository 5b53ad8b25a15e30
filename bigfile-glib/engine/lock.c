/* bigfile-glib - the engine lock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One mutex and one condition for the whole engine; engine-private.h says
 * why there is only one, and where it stands in the lock order.
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
