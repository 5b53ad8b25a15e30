/* bigfile-glib - export and availability macros
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(BIGFILE_INSIDE) && !defined(BIGFILE_COMPILATION)
#error "Only <bigfile-glib/bigfile.h> can be included directly."
#endif

#include <glib.h>

#if defined(_WIN32) || defined(__CYGWIN__)
#define _BIGFILE_EXTERN __declspec(dllexport) extern
#else
#define _BIGFILE_EXTERN __attribute__ ((visibility ("default"))) extern
#endif

/* Every public symbol carries this macro: the library is built with
 * -fvisibility=hidden, so anything without it stays private. */
#define BIGFILE_AVAILABLE_IN_ALL _BIGFILE_EXTERN
