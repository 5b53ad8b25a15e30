/* bigfile-glib - umbrella header
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#define BIGFILE_INSIDE
#include "bigfile-macros.h"
#include "bigfile-features.h"
#include "bigfile-error.h"
#include "bigfile-enum-types.h"
#include "bigfile-ram.h"
#include "bigfile-file.h"
#include "bigfile-handle.h"
#include "bigfile-vma.h"
#include "bigfile-local-file.h"
#if BIGFILE_HAS_SQLITE
#include "bigfile-sqlite-file.h"
#endif
#if BIGFILE_HAS_POSTGRESQL
#include "bigfile-pg-file.h"
#endif
#undef BIGFILE_INSIDE
