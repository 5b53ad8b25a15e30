/* bigfile-glib - error domains
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bigfile-error.h"

/**
 * SECTION:bigfile-error
 * @title: Errors
 * @short_description: The error domains of bigfile-glib
 * @include: bigfile-glib/bigfile.h
 *
 * bigfile-glib reports runtime failures as #GError, in one domain per
 * area: %BIGFILE_RAM_ERROR for page memory, %BIGFILE_HANDLE_ERROR for
 * handles, %BIGFILE_VMA_ERROR for mappings and %BIGFILE_FILE_ERROR for
 * files. A #BigfileFile implementation may also report errors of other
 * domains, such as %G_IO_ERROR for system errors. The messages say what
 * failed and where: the block, the offset, the file.
 *
 * Storage failures never abort the program. A page that cannot be loaded
 * for a direct memory access is reported with `SIGBUS` instead: see
 * bigfile_vma_take_fault_error().
 */

/* The quark names are stringified by the macro: keep clang-format from
 * spacing out the dashes. */
/* clang-format off */
G_DEFINE_QUARK (bigfile-ram-error-quark, bigfile_ram_error)
G_DEFINE_QUARK (bigfile-handle-error-quark, bigfile_handle_error)
G_DEFINE_QUARK (bigfile-vma-error-quark, bigfile_vma_error)
G_DEFINE_QUARK (bigfile-file-error-quark, bigfile_file_error)
/* clang-format on */
