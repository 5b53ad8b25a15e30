/* bigfile-glib - a BigfileFile over a regular local file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bigfile-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

/**
 * SECTION:bigfile-local-file
 * @title: BigfileLocalFile
 * @short_description: A #BigfileFile over a regular local file
 * @include: bigfile-glib/bigfile.h
 * @see_also: #BigfileFile, #BigfileHandle
 *
 * #BigfileLocalFile reads and writes the blocks of a regular file with
 * `pread()` and `pwrite()`: the #BigfileFile to use when the data is a file
 * on a local disk. It is thread-safe, so its pages load on the thread that
 * touches them, and bigfile_handle_writeout_async() stores them from a
 * worker thread.
 */

/**
 * BigfileLocalFile:
 *
 * A #BigfileFile over a regular file of the local file system.
 *
 * Block N of a #BigfileLocalFile is the bytes of its file from N times the
 * block size on. The file needs no particular length: blocks past its end
 * load as zeros.
 *
 * Its size is the file's length (`fstat()`), which a #BigfileHandle keeps
 * (#BigfileHandle:size): saving a 5000-byte file with 4 KiB blocks leaves a
 * 5000-byte file, whatever was changed below byte 5000. Writing past the
 * end makes the file as long as what was written, up to the last byte that
 * is not zero (the file grows with `ftruncate()`, with a hole on file
 * systems that have them for what lies between, then the block is
 * stored); bigfile_handle_set_size() truncates or extends it at the next
 * writeout, with `ftruncate()`. A read-only file fails those with
 * %BIGFILE_FILE_ERROR_READ_ONLY.
 *
 * A store writes to the file with `pwrite()` and leaves durability to the
 * system, like write() does: the data reaches the disk when the kernel
 * flushes it, or when the program calls `fsync()` on the file.
 *
 * Loads and stores use `pread()` and `pwrite()` on one file descriptor, so
 * they may run on any thread, concurrently: #BigfileLocalFile is
 * thread-safe.
 *
 * ## Clean pages straight from the page cache
 *
 * Opened with %BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, the file lets its
 * handles show the complete pages it has (those wholly below its size)
 * straight from the kernel's page cache, through a shared read-only
 * mapping of the file: reading them is as fast as reading a plain mmap() of
 * the file, and takes nothing from the #BigfileRam. The first write to a
 * page copies it into the #BigfileRam, from the file as it is at that
 * moment (it is dirty from then on, in every mapping of the handle), and
 * writeout stores it back; once stored, the file shows there again.
 *
 * What changes: clean pages always show the file as it is now, so another
 * writer's changes show at once, in raw memory, in bigfile_vma_read() and
 * in new mappings alike (the handle is no longer a snapshot of them);
 * bigfile_handle_get_page_state() reports such pages as empty; and a read
 * error of the disk comes to the program as the kernel's `SIGBUS`, without
 * a reason for bigfile_vma_take_fault_error() (bigfile_vma_populate()
 * reports it as a #GError). Populating or pinning such pages for reading
 * loads no copy: the kernel reads them into its page cache, and a read pin
 * keeps them mapped and readable from the file (showing its current data)
 * without taking anything from the budget.
 *
 * The end of the file: a mapping of a file cannot show past the file's end,
 * so the last page of a file whose size is not a multiple of the block size,
 * and the pages past it, are copies in the #BigfileRam, as without this
 * flag. When the file grows (a writeout that stores pages past its end, or
 * another writer), the pages that became complete show the file, and the
 * copies of the pages whose data changed are dropped, at the handle's next
 * look at the file's size: when a mapping is made, after a writeout that
 * stored pages, at bigfile_handle_invalidate_page(), and at a page fault or
 * an API call (read, write, populate, pin) on a page past the end it knew.
 * Until then, pages of an existing mapping past that end show what they
 * showed. The copy of the partial last page is also dropped when its last
 * pin goes, and before a write changes it; a change another writer makes
 * within it, leaving the size alone, shows once the copy goes (invalidate
 * the page to make it go). Truncating the file under a mapping makes reads
 * past its new end fail with `SIGBUS`, as with any mmap() of a file, until
 * the handle next looks at the size (bigfile_handle_invalidate_page() makes
 * it look): then they read zeros. bigfile_handle_set_size() does not: the
 * handle's mappings stop showing the file from the page that holds the new
 * size at once, before writeout truncates the file.
 *
 * Scattered changes cost the kernel two mappings each: past half of
 * `vm.max_map_count` of them, a mapping goes back to loading copies of clean
 * pages, as without this flag (pages pinned for reading apart), though a
 * write still starts from the file as it is.
 *
 * It implements #GInitable: bindings create it with bigfile_local_file_new()
 * or, through its properties, with g_initable_new().
 *
 * |[<!-- language="C" -->
 * g_autoptr(GError) error = NULL;
 * g_autoptr(BigfileLocalFile) file =
 *     bigfile_local_file_new ("/var/lib/app/matrix.bin", 2 * 1024 * 1024,
 *                             BIGFILE_LOCAL_FILE_FLAGS_CREATE, &error);
 *
 * if (file == NULL)
 *   g_error ("%s", error->message);
 * ]|
 *
 * Since: 1.0
 */

struct _BigfileLocalFile
{
  GObject parent_instance;

  /* Set at construction, never changed: no lock needed. */
  char *path;
  gsize block_size;
  BigfileLocalFileFlags flags;

  /* -1 until initialized */
  int fd;
};

enum
{
  PROP_0,
  PROP_PATH,
  PROP_BLOCK_SIZE,
  PROP_FLAGS,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

#define DEFAULT_BLOCK_SIZE ((gsize)2 * 1024 * 1024)

static void bigfile_local_file_file_iface_init (BigfileFileInterface *iface);
static void bigfile_local_file_initable_iface_init (GInitableIface *iface);

G_DEFINE_TYPE_WITH_CODE (BigfileLocalFile, bigfile_local_file, G_TYPE_OBJECT,
                         G_IMPLEMENT_INTERFACE (BIGFILE_TYPE_FILE,
                                                bigfile_local_file_file_iface_init)
                             G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                    bigfile_local_file_initable_iface_init))

static void
bigfile_local_file_finalize (GObject *object)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (object);

  /* Handles hold a reference on their file, so no load or store runs. */
  if (self->fd >= 0)
    {
      g_close (self->fd, NULL);
      self->fd = -1;
    }
  g_clear_pointer (&self->path, g_free);

  G_OBJECT_CLASS (bigfile_local_file_parent_class)->finalize (object);
}

static void
bigfile_local_file_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (object);

  switch (prop_id)
    {
      case PROP_PATH:
        g_value_set_string (value, self->path);
        break;

      case PROP_BLOCK_SIZE:
        g_value_set_uint64 (value, self->block_size);
        break;

      case PROP_FLAGS:
        g_value_set_flags (value, self->flags);
        break;

      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_local_file_set_property (GObject *object, guint prop_id, const GValue *value,
                                 GParamSpec *pspec)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (object);

  switch (prop_id)
    {
      case PROP_PATH:
        g_free (self->path);
        self->path = g_value_dup_string (value);
        break;

      case PROP_BLOCK_SIZE:
        {
          guint64 block_size = g_value_get_uint64 (value);

          /* An oversized value (on a 32-bit system) must not wrap into a valid
           * size: make it one that init() rejects. */
          self->block_size = block_size <= G_MAXSIZE ? (gsize)block_size : 0;
        }
        break;

      case PROP_FLAGS:
        self->flags = g_value_get_flags (value);
        break;

      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_local_file_class_init (BigfileLocalFileClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = bigfile_local_file_finalize;
  object_class->get_property = bigfile_local_file_get_property;
  object_class->set_property = bigfile_local_file_set_property;

  /**
   * BigfileLocalFile:path:
   *
   * The path of the file, in the GLib file name encoding.
   *
   * Since: 1.0
   */
  props[PROP_PATH] = g_param_spec_string ("path", NULL, NULL, NULL,
                                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY
                                              | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileLocalFile:block-size:
   *
   * The size of a block in bytes: a power of two from 4 KiB to 2 MiB. It is
   * the page size of the handles of the file. Larger blocks mean fewer page
   * faults and larger I/O; smaller ones, less memory and I/O per change.
   *
   * Since: 1.0
   */
  props[PROP_BLOCK_SIZE]
      = g_param_spec_uint64 ("block-size", NULL, NULL, 0, G_MAXUINT64, DEFAULT_BLOCK_SIZE,
                             G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS
                                 | G_PARAM_EXPLICIT_NOTIFY);

  /**
   * BigfileLocalFile:flags:
   *
   * How the file is opened.
   *
   * Since: 1.0
   */
  props[PROP_FLAGS] = g_param_spec_flags ("flags", NULL, NULL, BIGFILE_TYPE_LOCAL_FILE_FLAGS,
                                          BIGFILE_LOCAL_FILE_FLAGS_NONE,
                                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY
                                              | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
bigfile_local_file_init (BigfileLocalFile *self)
{
  self->fd = -1;
  self->block_size = DEFAULT_BLOCK_SIZE;
}

static gboolean
bigfile_local_file_initable_init (GInitable *initable, GCancellable *cancellable, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (initable);
  struct stat st;
  int open_flags;
  int fd;

  /* A second init of an initialized file has nothing to do. */
  if (self->fd >= 0)
    return TRUE;

  if (self->path == NULL || self->path[0] == '\0')
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "No path was given for the file");
      return FALSE;
    }

  /* Before opening, so that a bad size creates no file. */
  if (!bf_page_size_is_valid (self->block_size))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Block size %" G_GSIZE_FORMAT
                   " for “%s” is not a power of two from 4 KiB to 2 MiB",
                   self->block_size, self->path);
      return FALSE;
    }

  open_flags = (self->flags & BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY) ? O_RDONLY : O_RDWR;
  if (self->flags & BIGFILE_LOCAL_FILE_FLAGS_CREATE)
    open_flags |= O_CREAT;
  open_flags |= O_CLOEXEC;

  do
    fd = open (self->path, open_flags, 0666);
  while (fd < 0 && errno == EINTR);

  if (fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not open “%s”: %s", self->path, g_strerror (saved_errno));
      return FALSE;
    }

  /* A directory opens read-only; refuse it here rather than at the first load. */
  if (fstat (fd, &st) == 0 && S_ISDIR (st.st_mode))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_IS_DIRECTORY, "Could not open “%s”: %s",
                   self->path, g_strerror (EISDIR));
      g_close (fd, NULL);
      return FALSE;
    }

  self->fd = fd;

  return TRUE;
}

static void
bigfile_local_file_initable_iface_init (GInitableIface *iface)
{
  iface->init = bigfile_local_file_initable_init;
}

/* Offsets are checked against G_MAXINT64, so off_t must be 64 bits; on
 * 32-bit systems the build must define _FILE_OFFSET_BITS=64. */
G_STATIC_ASSERT (sizeof (off_t) == sizeof (gint64));

/* Computes the offset in the file of @length bytes of block @block; FALSE
 * with an error if it cannot be represented as an off_t. */
static gboolean
block_offset (BigfileLocalFile *self, guint64 block, gsize length, gint64 *offset, GError **error)
{
  if (block > (guint64)G_MAXINT64 / self->block_size
      || block * self->block_size > (guint64)G_MAXINT64 - length)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "Block %" G_GUINT64_FORMAT " of “%s” lies beyond the largest file offset", block,
                   self->path);
      return FALSE;
    }

  *offset = (gint64)(block * self->block_size);

  return TRUE;
}

static gboolean
check_open (BigfileLocalFile *self, GError **error)
{
  if (self->fd >= 0)
    return TRUE;

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED,
               "“%s” is not open: the BigfileLocalFile was not initialized",
               self->path != NULL ? self->path : "");
  return FALSE;
}

static gsize
bigfile_local_file_get_block_size (BigfileFile *file)
{
  return BIGFILE_LOCAL_FILE (file)->block_size;
}

static gboolean
bigfile_local_file_load_block_raw (BigfileFile *file, guint64 block, guint8 *buffer, gsize length,
                                   GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  gint64 offset;
  gsize done = 0;

  if (!check_open (self, error) || !block_offset (self, block, length, &offset, error))
    return FALSE;

  while (done < length)
    {
      ssize_t n = pread (self->fd, buffer + done, length - done, (off_t)(offset + (gint64)done));

      if (n < 0)
        {
          int saved_errno = errno;

          if (saved_errno == EINTR)
            continue;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       "Could not read block %" G_GUINT64_FORMAT
                       " of “%s” at offset %" G_GINT64_FORMAT ": %s",
                       block, self->path, offset + (gint64)done, g_strerror (saved_errno));
          return FALSE;
        }

      if (n == 0)
        {
          /* End of file: the rest of the block reads as zeros. */
          memset (buffer + done, 0, length - done);
          break;
        }

      done += n;
    }

  return TRUE;
}

static gboolean
bigfile_local_file_store_block_raw (BigfileFile *file, guint64 block, const guint8 *data,
                                    gsize length, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  gint64 offset;
  gsize done = 0;

  if (self->flags & BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY)
    {
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY,
                   "Could not store block %" G_GUINT64_FORMAT " of “%s”: it was opened read-only",
                   block, self->path);
      return FALSE;
    }

  if (!check_open (self, error) || !block_offset (self, block, length, &offset, error))
    return FALSE;

  while (done < length)
    {
      ssize_t n = pwrite (self->fd, data + done, length - done, (off_t)(offset + (gint64)done));

      if (n < 0)
        {
          int saved_errno = errno;

          if (saved_errno == EINTR)
            continue;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                       "Could not write block %" G_GUINT64_FORMAT
                       " of “%s” at offset %" G_GINT64_FORMAT ": %s",
                       block, self->path, offset + (gint64)done, g_strerror (saved_errno));
          return FALSE;
        }

      if (n == 0)
        {
          /* pwrite() of a nonzero count does not return 0 on a regular file;
           * should it, looping would never end. */
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                       "Could not write block %" G_GUINT64_FORMAT
                       " of “%s” at offset %" G_GINT64_FORMAT ": nothing was written",
                       block, self->path, offset + (gint64)done);
          return FALSE;
        }

      done += n;
    }

  return TRUE;
}

static gboolean
bigfile_local_file_get_size (BigfileFile *file, guint64 *size, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  struct stat st;

  if (!check_open (self, error))
    return FALSE;

  if (fstat (self->fd, &st) != 0)
    {
      int saved_errno = errno;
      g_autofree char *name = g_filename_display_name (self->path);

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not get the size of “%s”: fstat() failed: %s", name,
                   g_strerror (saved_errno));
      return FALSE;
    }

  *size = (guint64)st.st_size;
  return TRUE;
}

static gboolean
bigfile_local_file_set_size (BigfileFile *file, guint64 size, GError **error)
{
  BigfileLocalFile *self = BIGFILE_LOCAL_FILE (file);
  g_autofree char *name = NULL;
  int saved_errno;

  if (self->flags & BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY)
    {
      name = g_filename_display_name (self->path);
      g_set_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_READ_ONLY,
                   "Could not make “%s” %" G_GUINT64_FORMAT " bytes long: it was opened read-only",
                   name, size);
      return FALSE;
    }

  if (!check_open (self, error))
    return FALSE;

  /* bigfile_file_set_size() lets no size past G_MAXINT64 through. */
  while (ftruncate (self->fd, (off_t)size) != 0)
    {
      saved_errno = errno;
      if (saved_errno == EINTR)
        continue;

      name = g_filename_display_name (self->path);
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not make “%s” %" G_GUINT64_FORMAT " bytes long: ftruncate() failed: %s",
                   name, size, g_strerror (saved_errno));
      return FALSE;
    }

  return TRUE;
}

/* pread and pwrite on one descriptor: safe from any thread at once. */
static gboolean
bigfile_local_file_is_thread_safe (BigfileFile *file)
{
  return TRUE;
}

static void
bigfile_local_file_file_iface_init (BigfileFileInterface *iface)
{
  /* Only the raw methods: the interface's invokers give bindings the GBytes
   * ones on top of them. */
  iface->get_block_size = bigfile_local_file_get_block_size;
  iface->load_block_raw = bigfile_local_file_load_block_raw;
  iface->store_block_raw = bigfile_local_file_store_block_raw;
  iface->is_thread_safe = bigfile_local_file_is_thread_safe;
  iface->get_size = bigfile_local_file_get_size;
  iface->set_size = bigfile_local_file_set_size;
}

/**
 * bigfile_local_file_new:
 * @path: (type filename): the path of the file
 * @block_size: the size of a block in bytes: a power of two from 4 KiB to
 *   2 MiB
 * @flags: how to open the file
 * @error: return location for a #GError
 *
 * Opens the file at @path as a #BigfileFile, for reading and writing, or
 * only reading with %BIGFILE_LOCAL_FILE_FLAGS_READ_ONLY. With
 * %BIGFILE_LOCAL_FILE_FLAGS_CREATE a missing file is created empty. With
 * %BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, handles show its clean pages
 * from the page cache (see the description of #BigfileLocalFile).
 *
 * Fails with a #G_IO_ERROR: the error of open() (for example
 * %G_IO_ERROR_NOT_FOUND), or %G_IO_ERROR_INVALID_ARGUMENT for a bad
 * @block_size.
 *
 * Returns: (transfer full): a new #BigfileLocalFile, or %NULL on error
 *
 * Since: 1.0
 */
BigfileLocalFile *
bigfile_local_file_new (const char *path, gsize block_size, BigfileLocalFileFlags flags,
                        GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_initable_new (BIGFILE_TYPE_LOCAL_FILE, NULL, error, "path", path, "block-size",
                         (guint64)block_size, "flags", flags, NULL);
}

/**
 * bigfile_local_file_get_path:
 * @file: a #BigfileLocalFile
 *
 * Gets the path @file was opened with.
 *
 * Returns: (transfer none) (type filename): the path
 *
 * Since: 1.0
 */
const char *
bigfile_local_file_get_path (BigfileLocalFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_LOCAL_FILE (file), NULL);

  return file->path;
}

/**
 * bigfile_local_file_get_flags:
 * @file: a #BigfileLocalFile
 *
 * Gets the flags @file was opened with.
 *
 * Returns: the flags
 *
 * Since: 1.0
 */
BigfileLocalFileFlags
bigfile_local_file_get_flags (BigfileLocalFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_LOCAL_FILE (file), BIGFILE_LOCAL_FILE_FLAGS_NONE);

  return file->flags;
}

/* The descriptor handles map clean pages from, or -1 when the file was not
 * opened with BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES. */
int
_bigfile_local_file_get_map_fd (BigfileLocalFile *file)
{
  g_return_val_if_fail (BIGFILE_IS_LOCAL_FILE (file), -1);

  if (!(file->flags & BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES))
    return -1;
  return file->fd;
}
