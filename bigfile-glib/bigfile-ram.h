/* bigfile-glib - page memory with a budget
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(BIGFILE_INSIDE) && !defined(BIGFILE_COMPILATION)
#error "Only <bigfile-glib/bigfile.h> can be included directly."
#endif

#include <glib-object.h>
#include "bigfile-macros.h"

G_BEGIN_DECLS

#define BIGFILE_TYPE_RAM (bigfile_ram_get_type ())
BIGFILE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (BigfileRam, bigfile_ram, BIGFILE, RAM, GObject)

BIGFILE_AVAILABLE_IN_ALL
BigfileRam *bigfile_ram_new (guint64 budget);
BIGFILE_AVAILABLE_IN_ALL
guint64 bigfile_ram_get_budget (BigfileRam *ram);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_ram_set_budget (BigfileRam *ram, guint64 budget);
BIGFILE_AVAILABLE_IN_ALL
guint64 bigfile_ram_get_used_bytes (BigfileRam *ram);
BIGFILE_AVAILABLE_IN_ALL
guint64 bigfile_ram_get_n_pages (BigfileRam *ram);
BIGFILE_AVAILABLE_IN_ALL
guint64 bigfile_ram_get_n_dirty_pages (BigfileRam *ram);
BIGFILE_AVAILABLE_IN_ALL
guint bigfile_ram_reclaim (BigfileRam *ram);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_ram_get_reclaim_on_low_memory (BigfileRam *ram);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_ram_set_reclaim_on_low_memory (BigfileRam *ram, gboolean reclaim);

G_END_DECLS
