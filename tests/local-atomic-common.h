/* bigfile-glib tests - versions of a file, for the crash tests of BigfileLocalFile
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Shared by test-local-atomic.c and its helper program (local-atomic-helper.c),
 * which writes version after version of a file until it is killed.  Version
 * v has a size of its own (so that size changes are part of each save), and
 * each of its blocks tells the version and the block it belongs to, so that
 * a file with blocks of two versions, or one version's blocks at another's
 * size, is seen for what it is.
 */
#pragma once

#include <string.h>

#include <glib.h>

/* The first 16 bytes of a block: the version, then the block number
 * (little-endian); the rest, a byte of both. */
#define VERSION_HEADER 16

static inline guint64
version_size (guint64 v, guint64 n_blocks, gsize block_size)
{
  return (n_blocks - (v % 2)) * block_size - (v % 3) * 777;
}

static inline guint8
version_byte (guint64 v, guint64 block)
{
  return (guint8)(v * 31 + block * 7 + 1);
}

/* Fills @len bytes of block @block of version @v. */
static inline void
version_fill (guint8 *buf, guint64 v, guint64 block, gsize len)
{
  guint64 le_v = GUINT64_TO_LE (v), le_b = GUINT64_TO_LE (block);

  memset (buf, version_byte (v, block), len);
  memcpy (buf, &le_v, MIN (len, 8));
  if (len > 8)
    memcpy (buf + 8, &le_b, MIN (len - 8, 8));
}

/* The whole file of version @v, version_size() bytes (g_free() it). */
static inline guint8 *
version_contents (guint64 v, guint64 n_blocks, gsize block_size, gsize *len)
{
  gsize size = version_size (v, n_blocks, block_size);
  guint8 *data = g_malloc (size);

  for (guint64 b = 0; b * block_size < size; b++)
    version_fill (data + b * block_size, v, b, MIN (block_size, size - b * block_size));
  *len = size;
  return data;
}

/* Whether @data (@len bytes) is exactly one version of the file: TRUE with
 * it in *@v, or FALSE with what is wrong in *@why (g_free() it). */
static inline gboolean
version_check (const guint8 *data, gsize len, guint64 n_blocks, gsize block_size, guint64 *v,
               char **why)
{
  guint64 le;
  guint8 *expected;
  gsize expected_len;
  gboolean ok;

  *why = NULL;
  if (len < 8)
    {
      *why = g_strdup_printf ("the file is %" G_GSIZE_FORMAT " bytes long", len);
      return FALSE;
    }
  memcpy (&le, data, 8);
  *v = GUINT64_FROM_LE (le);
  expected = version_contents (*v, n_blocks, block_size, &expected_len);
  ok = expected_len == len && memcmp (expected, data, len) == 0;
  if (!ok && expected_len != len)
    *why = g_strdup_printf ("block 0 is of version %" G_GUINT64_FORMAT ", which is %" G_GSIZE_FORMAT
                            " bytes long, but the file is %" G_GSIZE_FORMAT,
                            *v, expected_len, len);
  else if (!ok)
    {
      gsize i = 0;

      while (expected[i] == data[i])
        i++;
      *why = g_strdup_printf ("block 0 is of version %" G_GUINT64_FORMAT
                              ", but byte %" G_GSIZE_FORMAT " (block %" G_GSIZE_FORMAT ") is not",
                              *v, i, i / block_size);
    }
  g_free (expected);
  return ok;
}
