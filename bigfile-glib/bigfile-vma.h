/* bigfile-glib - a range of a handle mapped into memory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(BIGFILE_INSIDE) && !defined(BIGFILE_COMPILATION)
#error "Only <bigfile-glib/bigfile.h> can be included directly."
#endif

#include <glib-object.h>
#include "bigfile-macros.h"
#include "bigfile-handle.h"

G_BEGIN_DECLS

#define BIGFILE_TYPE_VMA (bigfile_vma_get_type ())
BIGFILE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (BigfileVma, bigfile_vma, BIGFILE, VMA, GObject)

BIGFILE_AVAILABLE_IN_ALL
BigfileHandle *bigfile_vma_get_handle (BigfileVma *vma);
BIGFILE_AVAILABLE_IN_ALL
guint8 *bigfile_vma_get_data (BigfileVma *vma);
BIGFILE_AVAILABLE_IN_ALL
guintptr bigfile_vma_get_address (BigfileVma *vma);
BIGFILE_AVAILABLE_IN_ALL
gsize bigfile_vma_get_length (BigfileVma *vma);
BIGFILE_AVAILABLE_IN_ALL
guint64 bigfile_vma_get_first_page (BigfileVma *vma);
BIGFILE_AVAILABLE_IN_ALL
guint64 bigfile_vma_get_n_pages (BigfileVma *vma);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_vma_is_mapped (BigfileVma *vma);

BIGFILE_AVAILABLE_IN_ALL
GBytes *bigfile_vma_read (BigfileVma *vma, gsize offset, gsize length, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_vma_read_into (BigfileVma *vma, gsize offset, guint8 *buffer, gsize length,
                                GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_vma_write (BigfileVma *vma, gsize offset, GBytes *data, GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_vma_populate (BigfileVma *vma, gsize offset, gsize length, gboolean writable,
                               GError **error);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_vma_pin (BigfileVma *vma, gsize offset, gsize length, gboolean writable,
                          GError **error);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_vma_unpin (BigfileVma *vma, gsize offset, gsize length);
BIGFILE_AVAILABLE_IN_ALL
void bigfile_vma_unmap (BigfileVma *vma);

BIGFILE_AVAILABLE_IN_ALL
GError *bigfile_vma_take_fault_error (void);
BIGFILE_AVAILABLE_IN_ALL
gboolean bigfile_install_fault_handler (GError **error);

G_END_DECLS
