/* bigfile-glib - internals shared by the GObject layer and the tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "bigfile.h"
#include "engine/engine.h"

G_BEGIN_DECLS

/* The engine objects behind the public ones. */
BfRam *_bigfile_ram_get_engine (BigfileRam *ram);
BfHandle *_bigfile_handle_get_engine (BigfileHandle *handle);

/* Made by BigfileHandle: the VMA takes a reference on @handle. */
BigfileVma *_bigfile_vma_new (BigfileHandle *handle, BfVma *engine_vma);

/* Hooks for tests: is @page of @vma's handle mapped in @vma, and writable? */
gboolean _bigfile_vma_page_is_mapped (BigfileVma *vma, guint64 page, gboolean *writable);

/* A source on @context that runs @callback (@object) after
 * _bigfile_wake_source_wake(), which any thread may call, also with the
 * engine lock held or inside the fault handler.  @object is held weakly. */
GSource *_bigfile_wake_source_new (GMainContext *context, const char *name, GObject *object,
                                   void (*callback) (GObject *object));
void _bigfile_wake_source_wake (GSource *source);
void _bigfile_wake_source_free (GSource *source);

gboolean _bigfile_can_emit_now (GThread *owner);

/* For tests: bf_handle_check() of the handle's engine (NULL if closed or
 * if every invariant holds). */
char *_bigfile_handle_check (BigfileHandle *handle, gboolean kernel);

/* page-invalidated emissions pending for @handle (invalidations made off
 * its owner thread) are kept as at most this many runs of consecutive
 * pages; one more collapses them into one emission for "any page". */
#define BIGFILE_HANDLE_MAX_PENDING_RUNS 4096

/* Hook for tests: the number of runs pending, and in *@many (if not NULL)
 * whether they collapsed into the "any page" emission. */
guint _bigfile_handle_get_n_pending_runs (BigfileHandle *handle, gboolean *many);

int _bigfile_local_file_get_map_fd (BigfileLocalFile *file);

G_END_DECLS
