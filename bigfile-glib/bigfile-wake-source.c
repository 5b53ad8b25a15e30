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

/* The callback's object is held weakly: the source may dispatch while its
 * object is being disposed on another thread (the last reference can go on
 * a GTask worker), and must then do nothing. */
typedef struct
{
  GWeakRef object;
  void (*callback) (GObject *object);
} WakeData;

static void
wake_data_free (gpointer user_data)
{
  WakeData *data = user_data;

  g_weak_ref_clear (&data->object);
  g_free (data);
}

static gboolean
wake_source_run (gpointer user_data)
{
  WakeData *data = user_data;
  GObject *object = g_weak_ref_get (&data->object);

  if (object != NULL)
    {
      data->callback (object);
      g_object_unref (object);
    }
  return G_SOURCE_CONTINUE;
}

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
_bigfile_wake_source_new (GMainContext *context, const char *name, GObject *object,
                          void (*callback) (GObject *object))
{
  GSource *source = g_source_new (&wake_source_funcs, sizeof (GSource));
  WakeData *data = g_new0 (WakeData, 1);

  g_weak_ref_init (&data->object, object);
  data->callback = callback;
  g_source_set_static_name (source, name);
  g_source_set_callback (source, wake_source_run, data, wake_data_free);
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

/* May a signal be emitted right here, for an object owned by @owner? Only
 * on the owner thread, and never from inside a page fault (a load callback
 * runs in the SIGSEGV handler and may call the API). */
gboolean
_bigfile_can_emit_now (GThread *owner)
{
  return g_thread_self () == owner && !bf_fault_in_handler ();
}
