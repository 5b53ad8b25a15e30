/* bigfile-glib - error domains
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * This header needs only GLib: the engine reports its errors in these
 * domains too, and it must not pull in GObject.
 */
#pragma once

#if !defined(BIGFILE_INSIDE) && !defined(BIGFILE_COMPILATION)
#error "Only <bigfile-glib/bigfile.h> can be included directly."
#endif

#include <glib.h>
#include "bigfile-macros.h"

G_BEGIN_DECLS

/**
 * BIGFILE_RAM_ERROR:
 *
 * Error domain for page memory: see #BigfileRamError.
 *
 * Since: 1.0
 */
#define BIGFILE_RAM_ERROR (bigfile_ram_error_quark ())

/**
 * BigfileRamError:
 * @BIGFILE_RAM_ERROR_FULL: no page could be had within the budget, because
 *   every page in it is dirty (unsaved changes), pinned or busy loading or
 *   storing, or because the budget is smaller than one page. Write out or
 *   discard changes, unpin pages, or raise the budget.
 * @BIGFILE_RAM_ERROR_FAILED: the kernel refused page memory (memfd or mmap
 *   failed); the message holds the system error.
 *
 * Errors of #BigfileRam.
 *
 * Since: 1.0
 */
typedef enum
{
  BIGFILE_RAM_ERROR_FULL,
  BIGFILE_RAM_ERROR_FAILED,
} BigfileRamError;

/**
 * BIGFILE_HANDLE_ERROR:
 *
 * Error domain for handles: see #BigfileHandleError.
 *
 * Since: 1.0
 */
#define BIGFILE_HANDLE_ERROR (bigfile_handle_error_quark ())

/**
 * BigfileHandleError:
 * @BIGFILE_HANDLE_ERROR_INVALID_BLOCK_SIZE: the file's block size is not a
 *   power of two between 4 KiB and 2 MiB.
 * @BIGFILE_HANDLE_ERROR_CLOSED: the handle was closed.
 * @BIGFILE_HANDLE_ERROR_BUSY: another writeout of this handle is in progress.
 * @BIGFILE_HANDLE_ERROR_INVALID_RANGE: a page range is empty or too large
 *   for the address space.
 * @BIGFILE_HANDLE_ERROR_FORKED: the handle, mapping or #BigfileRam was
 *   made by the parent of this process, before fork(): a child process
 *   cannot use them (see [fork()][bigfile-fork]). Open the file again in
 *   the child, with a new #BigfileRam.
 * @BIGFILE_HANDLE_ERROR_CONFLICT: a writeout would store pages whose blocks
 *   another client changed in the storage after this handle read them (see
 *   [Conflicts][bigfile-conflicts]). Nothing was stored and nothing is
 *   lost: the message names the pages, bigfile_handle_get_conflicts() lists
 *   them, and the program either discards them (bigfile_handle_discard())
 *   to see the other client's data, or writes out with
 *   %BIGFILE_WRITEOUT_OVERWRITE to replace it.
 *
 * Errors of #BigfileHandle; the methods of its mappings report them too.
 *
 * Since: 1.0
 */
typedef enum
{
  BIGFILE_HANDLE_ERROR_INVALID_BLOCK_SIZE,
  BIGFILE_HANDLE_ERROR_CLOSED,
  BIGFILE_HANDLE_ERROR_BUSY,
  BIGFILE_HANDLE_ERROR_INVALID_RANGE,
  BIGFILE_HANDLE_ERROR_FORKED,
  BIGFILE_HANDLE_ERROR_CONFLICT,
} BigfileHandleError;

/**
 * BIGFILE_VMA_ERROR:
 *
 * Error domain for mappings: see #BigfileVmaError.
 *
 * Since: 1.0
 */
#define BIGFILE_VMA_ERROR (bigfile_vma_error_quark ())

/**
 * BigfileVmaError:
 * @BIGFILE_VMA_ERROR_UNMAPPED: the mapping was unmapped.
 * @BIGFILE_VMA_ERROR_OUT_OF_RANGE: an offset or length lies outside the mapping.
 * @BIGFILE_VMA_ERROR_MAP_FAILED: the kernel refused to map memory (for
 *   example vm.max_map_count was reached); the message holds the system error.
 * @BIGFILE_VMA_ERROR_FAULT_HANDLER: the library's page fault (`SIGSEGV`)
 *   handler could not be installed in front of the process's other
 *   handlers; see bigfile_install_fault_handler().
 *
 * Errors of #BigfileVma.
 *
 * Since: 1.0
 */
typedef enum
{
  BIGFILE_VMA_ERROR_UNMAPPED,
  BIGFILE_VMA_ERROR_OUT_OF_RANGE,
  BIGFILE_VMA_ERROR_MAP_FAILED,
  BIGFILE_VMA_ERROR_FAULT_HANDLER,
} BigfileVmaError;

/**
 * BIGFILE_FILE_ERROR:
 *
 * Error domain for #BigfileFile implementations: see #BigfileFileError.
 *
 * Since: 1.0
 */
#define BIGFILE_FILE_ERROR (bigfile_file_error_quark ())

/**
 * BigfileFileError:
 * @BIGFILE_FILE_ERROR_FAILED: a load or store failed and its implementation
 *   gave no reason.
 * @BIGFILE_FILE_ERROR_INVALID_DATA: a load returned more bytes than a block holds.
 * @BIGFILE_FILE_ERROR_READ_ONLY: a store was asked of a file opened read-only.
 * @BIGFILE_FILE_ERROR_NOT_SUPPORTED: the implementation lacks the method.
 * @BIGFILE_FILE_ERROR_WRONG_THREAD: a block of a file that is not
 *   thread-safe (see bigfile_file_is_thread_safe()) was needed on a thread
 *   other than the one that opened the handle.
 * @BIGFILE_FILE_ERROR_DEADLOCK: a load or store needed a page whose own
 *   load or store waits, directly or through other threads, for it (for
 *   example, two files whose loads read each other's mappings): the access
 *   failed instead of waiting forever.
 * @BIGFILE_FILE_ERROR_BUSY: the storage stayed locked by another client
 *   (another transaction of the same file, or a database lock) for longer
 *   than the file waits; a retry may succeed.
 * @BIGFILE_FILE_ERROR_DISCONNECTED: the connection to the storage (a
 *   database server) was lost, and the transaction with it; the file
 *   connects again on its next call, and a retry may succeed.
 * @BIGFILE_FILE_ERROR_CORRUPT: the storage holds data that is not a valid
 *   file of this kind (a damaged journal or database, a block of the wrong
 *   size, a record the file cannot read).
 * @BIGFILE_FILE_ERROR_INVALID_ARGUMENT: the file cannot be opened as asked
 *   (a block size other than the stored one, a bad name or path).
 *
 * Errors of #BigfileFile and its implementations. Implementations may also
 * report errors of other domains (#G_IO_ERROR for system errors).
 *
 * Since: 1.0
 */
typedef enum
{
  BIGFILE_FILE_ERROR_FAILED,
  BIGFILE_FILE_ERROR_INVALID_DATA,
  BIGFILE_FILE_ERROR_READ_ONLY,
  BIGFILE_FILE_ERROR_NOT_SUPPORTED,
  BIGFILE_FILE_ERROR_WRONG_THREAD,
  BIGFILE_FILE_ERROR_DEADLOCK,
  BIGFILE_FILE_ERROR_BUSY,
  BIGFILE_FILE_ERROR_DISCONNECTED,
  BIGFILE_FILE_ERROR_CORRUPT,
  BIGFILE_FILE_ERROR_INVALID_ARGUMENT,
} BigfileFileError;

BIGFILE_AVAILABLE_IN_ALL
GQuark bigfile_ram_error_quark (void);
BIGFILE_AVAILABLE_IN_ALL
GQuark bigfile_handle_error_quark (void);
BIGFILE_AVAILABLE_IN_ALL
GQuark bigfile_vma_error_quark (void);
BIGFILE_AVAILABLE_IN_ALL
GQuark bigfile_file_error_quark (void);

G_END_DECLS
