/* bigfile-glib - a GSource that other threads, and the fault handler, wake
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The engine reports changes (a page became dirty, pages were reclaimed) with
 * its lock held, on whatever thread caused them, often inside the SIGSEGV
 * handler.  Signals must instead be emitted on the owner's main context.  So
 * the change is only noted (an atomic) and this source is woken: waking is
 * g_source_set_ready_time (0), which allocates nothing and only takes the
 * context's lock for a moment (never held while user code runs).  The source
 * then dispatches on its context and runs its callback, which reads the
 * notes.  Many wakes before a dispatch make one dispatch.
 */
#include "config.h"

#include "bigfile-private.h"

static gboolean
wake_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  /* Re-arm first: a wake during the callback dispatches again. */
  g_source_set_ready_time (source, -1);
  if (callback == NULL)
    return G_SOURCE_CONTINUE;
  return callback (user_data);
}

static GSourceFuncs wake_source_funcs = {
  .dispatch = wake_source_dispatch,
};

GSource *
_bigfile_wake_source_new (GMainContext *context, const char *name, GSourceFunc callback,
                          gpointer user_data)
{
  GSource *source = g_source_new (&wake_source_funcs, sizeof (GSource));

  g_source_set_static_name (source, name);
  g_source_set_callback (source, callback, user_data, NULL);
  g_source_set_ready_time (source, -1);
  g_source_attach (source, context);
  return source;
}

void
_bigfile_wake_source_wake (GSource *source)
{
  g_source_set_ready_time (source, 0);
}

void
_bigfile_wake_source_free (GSource *source)
{
  if (source == NULL)
    return;
  g_source_destroy (source);
  g_source_unref (source);
}
