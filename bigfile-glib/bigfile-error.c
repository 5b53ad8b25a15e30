/* bigfile-glib - error domains
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bigfile-error.h"

/* The quark names are stringified by the macro: keep clang-format from
 * spacing out the dashes. */
/* clang-format off */
G_DEFINE_QUARK (bigfile-ram-error-quark, bigfile_ram_error)
G_DEFINE_QUARK (bigfile-handle-error-quark, bigfile_handle_error)
G_DEFINE_QUARK (bigfile-vma-error-quark, bigfile_vma_error)
G_DEFINE_QUARK (bigfile-file-error-quark, bigfile_file_error)
/* clang-format on */
