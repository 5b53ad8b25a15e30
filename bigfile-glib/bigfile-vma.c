/* bigfile-glib - a range of a handle mapped into memory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "bigfile-private.h"

/**
 * SECTION:bigfile-vma
 * @title: BigfileVma
 * @short_description: A range of a handle's pages, mapped into memory
 * @include: bigfile-glib/bigfile.h
 * @see_also: #BigfileHandle
 *
 * A #BigfileVma is what bigfile_handle_map() returns: pages of a handle at
 * a range of addresses. C code reads and writes the memory at
 * bigfile_vma_get_data() directly, and pages load on the first touch.
 * Bindings, and code that wants errors rather than signals, copy bytes in
 * and out with bigfile_vma_read() and bigfile_vma_write(). A page that
 * cannot be loaded ends a direct access with `SIGBUS`:
 * bigfile_vma_take_fault_error() tells why, and [the overview][bigfile-sigbus]
 * shows how to recover.
 */

/**
 * BigfileVma:
 *
 * A range of pages of a #BigfileHandle, mapped at a range of addresses.
 *
 * Made by bigfile_handle_map(). In C, the memory at bigfile_vma_get_data()
 * is used like any other: a read of a page that is not in memory loads it
 * from the file (the reading thread stops on a page fault while it loads);
 * the first write to a page marks it dirty. From other languages, and
 * wherever a system call is to read or write the memory, use
 * bigfile_vma_read() and bigfile_vma_write(), or load the pages first with
 * bigfile_vma_populate() or bigfile_vma_pin(): the kernel does not fault
 * pages in for system calls, which fail with `EFAULT` on pages not in
 * memory.
 *
 * A page that cannot be loaded (the file's load failed, or the budget of
 * the #BigfileRam is full of dirty pages) cannot be shown to a plain memory
 * access: the faulting thread gets `SIGBUS`, see
 * bigfile_vma_take_fault_error(). The methods of #BigfileVma report the
 * same failures as a #GError instead.
 *
 * Pages load in the library's `SIGSEGV` handler, installed at the first
 * map: a program that installs its own `SIGSEGV` handler after that calls
 * bigfile_install_fault_handler(). A thread that blocks `SIGSEGV` cannot
 * take a page fault at all (the kernel kills the process): it touches only
 * pages it pinned with bigfile_vma_pin(), or copies with bigfile_vma_read()
 * and bigfile_vma_write(). [The overview][bigfile-threads-sigsegv] tells
 * the rules.
 *
 * A mapping keeps a reference on its handle. It stays mapped until
 * bigfile_vma_unmap() or its last reference is dropped.
 *
 * |[<!-- language="C" -->
 * g_autoptr(BigfileVma) vma = bigfile_handle_map (handle, 0, 16, &error);
 * g_autoptr(GBytes) head = NULL;
 * guint32 *counters;
 *
 * if (vma == NULL)
 *   return FALSE;
 *
 * // Raw memory: faults load pages as needed
 * counters = (guint32 *) bigfile_vma_get_data (vma);
 * counters[1000] += 1;
 *
 * // Checked copies, with errors instead of SIGBUS
 * head = bigfile_vma_read (vma, 0, 4096, &error);
 * if (head == NULL)
 *   return FALSE;
 *
 * bigfile_vma_unmap (vma);
 * ]|
 *
 * The methods of a mapping may be called from any thread; unmapping it
 * while other threads use its memory is a programmer error.
 *
 * A mapping belongs to the process that made it. In a child made by
 * fork() its memory is inaccessible: a touch raises `SIGBUS`, and
 * bigfile_vma_take_fault_error() then gives %BIGFILE_HANDLE_ERROR_FORKED,
 * as do bigfile_vma_read(), bigfile_vma_write(), bigfile_vma_populate()
 * and bigfile_vma_pin(). Unpinning, unmapping and dropping it there is safe
 * and leaves the parent's mapping as it is. See [fork()][bigfile-fork].
 *
 * Since: 1.0
 */

struct _BigfileVma
{
  GObject parent_instance;

  BigfileHandle *handle; /* strong: the engine VMA lives in its engine handle */
  BfVma *engine;         /* owned: freed in finalize */

  /* Copied at creation: they never change. */
  guint8 *start;
  gsize length;
  guint64 first_page;
  guint64 n_pages;

  /* TRUE until unmapped; cleared atomically so that only one unmap runs. */
  gint mapped;
};

enum
{
  PROP_0,
  PROP_HANDLE,
  PROP_FIRST_PAGE,
  PROP_N_PAGES,
  PROP_LENGTH,
  PROP_MAPPED,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

G_DEFINE_TYPE (BigfileVma, bigfile_vma, G_TYPE_OBJECT)

static void
bigfile_vma_finalize (GObject *object)
{
  BigfileVma *self = BIGFILE_VMA (object);

  if (self->engine != NULL)
    {
      if (g_atomic_int_get (&self->mapped))
        bf_vma_unmap (self->engine);
      bf_vma_free (self->engine);
      self->engine = NULL;
    }

  /* Last: the handle may go with it, and its engine handle with it. */
  g_clear_object (&self->handle);

  G_OBJECT_CLASS (bigfile_vma_parent_class)->finalize (object);
}

static void
bigfile_vma_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  BigfileVma *self = BIGFILE_VMA (object);

  switch (prop_id)
    {
      case PROP_HANDLE:
        g_value_set_object (value, self->handle);
        break;

      case PROP_FIRST_PAGE:
        g_value_set_uint64 (value, self->first_page);
        break;

      case PROP_N_PAGES:
        g_value_set_uint64 (value, self->n_pages);
        break;

      case PROP_LENGTH:
        g_value_set_uint64 (value, self->length);
        break;

      case PROP_MAPPED:
        g_value_set_boolean (value, bigfile_vma_is_mapped (self));
        break;

      default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
bigfile_vma_class_init (BigfileVmaClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = bigfile_vma_finalize;
  object_class->get_property = bigfile_vma_get_property;

  /**
   * BigfileVma:handle:
   *
   * The #BigfileHandle whose pages are mapped.
   *
   * Since: 1.0
   */
  props[PROP_HANDLE] = g_param_spec_object ("handle", NULL, NULL, BIGFILE_TYPE_HANDLE,
                                            G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileVma:first-page:
   *
   * The index in the handle of the first page mapped.
   *
   * Since: 1.0
   */
  props[PROP_FIRST_PAGE] = g_param_spec_uint64 ("first-page", NULL, NULL, 0, G_MAXUINT64, 0,
                                                G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileVma:n-pages:
   *
   * The number of pages mapped.
   *
   * Since: 1.0
   */
  props[PROP_N_PAGES] = g_param_spec_uint64 ("n-pages", NULL, NULL, 0, G_MAXUINT64, 0,
                                             G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileVma:length:
   *
   * The length of the mapping in bytes: #BigfileVma:n-pages times the page
   * size.
   *
   * Since: 1.0
   */
  props[PROP_LENGTH] = g_param_spec_uint64 ("length", NULL, NULL, 0, G_MAXUINT64, 0,
                                            G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * BigfileVma:mapped:
   *
   * Whether the mapping is still mapped: %FALSE after bigfile_vma_unmap().
   *
   * Since: 1.0
   */
  props[PROP_MAPPED]
      = g_param_spec_boolean ("mapped", NULL, NULL, TRUE,
                              G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY);

  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
bigfile_vma_init (BigfileVma *self)
{
}

/* Made only by bigfile_handle_map(): takes ownership of @engine_vma and a
 * reference on @handle, which must be the handle it maps. */
BigfileVma *
_bigfile_vma_new (BigfileHandle *handle, BfVma *engine_vma)
{
  BigfileVma *self;
  gsize page_size;

  g_return_val_if_fail (BIGFILE_IS_HANDLE (handle), NULL);
  g_return_val_if_fail (engine_vma != NULL, NULL);

  page_size = bigfile_handle_get_page_size (handle);

  self = g_object_new (BIGFILE_TYPE_VMA, NULL);
  self->handle = g_object_ref (handle);
  self->engine = engine_vma;
  self->start = bf_vma_get_start (engine_vma);
  self->length = bf_vma_get_length (engine_vma);
  self->first_page = bf_vma_get_page_offset (engine_vma);
  self->n_pages = page_size > 0 ? self->length / page_size : 0;
  self->mapped = bf_vma_is_mapped (engine_vma);

  return self;
}

/* For tests: is page @page (an index in the handle) mapped in @vma, and
 * if so, writable? */
gboolean
_bigfile_vma_page_is_mapped (BigfileVma *vma, guint64 page, gboolean *writable)
{
  BfHandle *engine_handle;
  gboolean page_writable = FALSE;
  gboolean ret;

  g_return_val_if_fail (BIGFILE_IS_VMA (vma), FALSE);

  if (writable != NULL)
    *writable = FALSE;

  engine_handle = _bigfile_handle_get_engine (vma->handle);
  if (engine_handle == NULL)
    return FALSE;

  ret = bf_handle_get_page_mapped (engine_handle, vma->engine, page, &page_writable);
  if (writable != NULL)
    *writable = ret && page_writable;

  return ret;
}

/* The checks shared by the methods that take a range: the range lies in
 * the mapping (without overflow), and the mapping is mapped. The engine
 * checks the range too; these checks come first so that bigfile_vma_read()
 * allocates nothing for a bad range, and so that every method fails the
 * same way (unmapped before out of range, an empty range included). */
static gboolean
check_range (BigfileVma *vma, gsize offset, gsize length, GError **error)
{
  if (!g_atomic_int_get (&vma->mapped))
    {
      g_set_error_literal (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_UNMAPPED,
                           "The mapping was unmapped");
      return FALSE;
    }

  if (offset > vma->length || length > vma->length - offset)
    {
      g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_OUT_OF_RANGE,
                   "%" G_GSIZE_FORMAT " bytes at offset %" G_GSIZE_FORMAT
                   " do not lie within the mapping of %" G_GSIZE_FORMAT " bytes",
                   length, offset, vma->length);
      return FALSE;
    }

  return TRUE;
}

/* bigfile_vma_read_into() and bigfile_vma_write(): the checks, then the
 * engine's copy into or out of @buffer, if there is anything to copy. */
static gboolean
copy_range (BigfileVma *vma, gsize offset, guint8 *buffer, gsize length, gboolean write,
            GError **error)
{
  if (!check_range (vma, offset, length, error))
    return FALSE;

  if (length == 0)
    return TRUE;

  if (write)
    return bf_vma_write (vma->engine, offset, buffer, length, error);
  return bf_vma_read (vma->engine, offset, buffer, length, error);
}

/* bigfile_vma_populate() and bigfile_vma_pin(): the checks, then the
 * engine's pin of the pages, held (@hold) or not, if there is any. */
static gboolean
pin_range (BigfileVma *vma, gsize offset, gsize length, gboolean writable, gboolean hold,
           GError **error)
{
  if (!check_range (vma, offset, length, error))
    return FALSE;

  if (length == 0)
    return TRUE;

  return bf_vma_pin (vma->engine, offset, length, !!writable, hold, error);
}

/**
 * bigfile_vma_get_handle:
 * @vma: a #BigfileVma
 *
 * Gets the handle whose pages @vma maps.
 *
 * Returns: (transfer none): the #BigfileHandle of @vma
 *
 * Since: 1.0
 */
BigfileHandle *
bigfile_vma_get_handle (BigfileVma *vma)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), NULL);

  return vma->handle;
}

/**
 * bigfile_vma_get_data: (skip)
 * @vma: a #BigfileVma
 *
 * Gets the address where @vma maps its first page, to use as memory from C.
 * The mapping is bigfile_vma_get_length() bytes long. Touching a page that
 * cannot be loaded raises `SIGBUS`: see bigfile_vma_take_fault_error().
 *
 * The pointer is valid until @vma is unmapped.
 *
 * Returns: (nullable): the start of the mapping, or %NULL if @vma is
 *   unmapped
 *
 * Since: 1.0
 */
guint8 *
bigfile_vma_get_data (BigfileVma *vma)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), NULL);

  if (!g_atomic_int_get (&vma->mapped))
    return NULL;

  return vma->start;
}

/**
 * bigfile_vma_get_address:
 * @vma: a #BigfileVma
 *
 * Gets the address where @vma maps its first page, as a number: for
 * bindings that hand it to code that takes raw memory (ctypes, NumPy,
 * a foreign function interface). Such code gets `SIGBUS` on a page that
 * cannot be loaded, and the system calls it makes fail with `EFAULT` on
 * pages not in memory: populate or pin them first.
 *
 * Returns: the start address, or 0 if @vma is unmapped
 *
 * Since: 1.0
 */
guintptr
bigfile_vma_get_address (BigfileVma *vma)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), 0);

  return (guintptr)bigfile_vma_get_data (vma);
}

/**
 * bigfile_vma_get_length:
 * @vma: a #BigfileVma
 *
 * Gets the length of @vma in bytes: its number of pages times the page
 * size. It stays the same after unmapping.
 *
 * Returns: the length in bytes
 *
 * Since: 1.0
 */
gsize
bigfile_vma_get_length (BigfileVma *vma)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), 0);

  return vma->length;
}

/**
 * bigfile_vma_get_first_page:
 * @vma: a #BigfileVma
 *
 * Gets the index in the handle of the first page @vma maps: the byte at
 * offset 0 of @vma is the byte at @first_page times the page size in the
 * file.
 *
 * Returns: the index of the first page
 *
 * Since: 1.0
 */
guint64
bigfile_vma_get_first_page (BigfileVma *vma)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), 0);

  return vma->first_page;
}

/**
 * bigfile_vma_get_n_pages:
 * @vma: a #BigfileVma
 *
 * Gets the number of pages @vma maps.
 *
 * Returns: the number of pages
 *
 * Since: 1.0
 */
guint64
bigfile_vma_get_n_pages (BigfileVma *vma)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), 0);

  return vma->n_pages;
}

/**
 * bigfile_vma_is_mapped:
 * @vma: a #BigfileVma
 *
 * Tells whether @vma is still mapped.
 *
 * Returns: %FALSE once bigfile_vma_unmap() was called
 *
 * Since: 1.0
 */
gboolean
bigfile_vma_is_mapped (BigfileVma *vma)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), FALSE);

  return g_atomic_int_get (&vma->mapped);
}

/**
 * bigfile_vma_read:
 * @vma: a #BigfileVma
 * @offset: where to start, in bytes from the start of @vma
 * @length: how many bytes to read
 * @error: return location for a #GError
 *
 * Copies bytes out of @vma, loading the pages they lie in as needed. Unlike
 * a read of the memory itself, a page that cannot be loaded gives an error
 * (of the file, or %BIGFILE_RAM_ERROR_FULL), not `SIGBUS`.
 *
 * Fails with %BIGFILE_VMA_ERROR_OUT_OF_RANGE if the range does not lie
 * within @vma, and %BIGFILE_VMA_ERROR_UNMAPPED if @vma was unmapped.
 *
 * Returns: (transfer full): the bytes, or %NULL on error
 *
 * Since: 1.0
 */
GBytes *
bigfile_vma_read (BigfileVma *vma, gsize offset, gsize length, GError **error)
{
  guint8 *buffer;

  g_return_val_if_fail (BIGFILE_IS_VMA (vma), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_range (vma, offset, length, error))
    return NULL;

  if (length == 0)
    return g_bytes_new (NULL, 0);

  buffer = g_malloc (length);
  if (!bf_vma_read (vma->engine, offset, buffer, length, error))
    {
      g_free (buffer);
      return NULL;
    }

  return g_bytes_new_take (buffer, length);
}

/**
 * bigfile_vma_read_into: (skip)
 * @vma: a #BigfileVma
 * @offset: where to start, in bytes from the start of @vma
 * @buffer: (array length=length) (out caller-allocates): where to copy the bytes
 * @length: (in): how many bytes to read: the size of @buffer
 * @error: return location for a #GError
 *
 * Copies bytes out of @vma into @buffer, like bigfile_vma_read() but without
 * allocating. C only.
 *
 * @buffer may itself lie in a mapping of bigfile-glib (the copy runs with
 * the engine's lock released, so its page faults are served); a page of it
 * that cannot be loaded gives `SIGBUS` there, as any raw access does. On
 * error the contents of @buffer are undefined.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_vma_read_into (BigfileVma *vma, gsize offset, guint8 *buffer, gsize length, GError **error)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), FALSE);
  g_return_val_if_fail (buffer != NULL || length == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return copy_range (vma, offset, buffer, length, FALSE, error);
}

/**
 * bigfile_vma_write:
 * @vma: a #BigfileVma
 * @offset: where to start, in bytes from the start of @vma
 * @data: the bytes to write
 * @error: return location for a #GError
 *
 * Copies @data into @vma at @offset, loading the pages it lies in as needed
 * and marking them dirty. Unlike a write to the memory itself, a page that
 * cannot be loaded gives an error, not `SIGBUS`. If an error comes midway,
 * the pages before it were written.
 *
 * The data of @data may itself lie in a mapping of bigfile-glib: the copy
 * runs with the engine's lock released, so its page faults are served.
 *
 * Fails with %BIGFILE_VMA_ERROR_OUT_OF_RANGE if the data does not fit
 * within @vma at @offset, and %BIGFILE_VMA_ERROR_UNMAPPED if @vma was
 * unmapped.
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_vma_write (BigfileVma *vma, gsize offset, GBytes *data, GError **error)
{
  gconstpointer src;
  gsize length;

  g_return_val_if_fail (BIGFILE_IS_VMA (vma), FALSE);
  g_return_val_if_fail (data != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  src = g_bytes_get_data (data, &length);

  /* For a write copy_range() only reads the buffer (bf_vma_write() takes
   * it const). */
  return copy_range (vma, offset, (guint8 *)src, length, TRUE, error);
}

/**
 * bigfile_vma_populate:
 * @vma: a #BigfileVma
 * @offset: where the range starts, in bytes from the start of @vma
 * @length: the length of the range in bytes
 * @writable: whether to make the pages writable (and so dirty) too
 * @error: return location for a #GError
 *
 * Loads the pages that the range touches, and maps them readable, or
 * writable when @writable is %TRUE (which marks them dirty). Do it before
 * handing the memory to a system call (`write()`, `read()`, `send()`...),
 * which fails with `EFAULT` on pages not in memory, or to find out about a
 * page that cannot be loaded as a #GError rather than `SIGBUS`.
 *
 * The pages may be reclaimed again afterwards (clean ones, when the budget
 * needs room); to keep them, use bigfile_vma_pin().
 *
 * Returns: %TRUE on success, %FALSE on error
 *
 * Since: 1.0
 */
gboolean
bigfile_vma_populate (BigfileVma *vma, gsize offset, gsize length, gboolean writable,
                      GError **error)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return pin_range (vma, offset, length, writable, FALSE, error);
}

/**
 * bigfile_vma_pin:
 * @vma: a #BigfileVma
 * @offset: where the range starts, in bytes from the start of @vma
 * @length: the length of the range in bytes
 * @writable: whether to make the pages writable (and so dirty) too
 * @error: return location for a #GError
 *
 * Like bigfile_vma_populate(), and then keeps the pages in memory and
 * mapped until bigfile_vma_unpin() is called with the same range: for
 * system calls that use the memory for a long time (asynchronous I/O,
 * io_uring, a buffer handed to a device) or for code that must not fault
 * (a thread that blocks `SIGSEGV`: pin @writable the pages it writes).
 * Pins nest: each pin needs its unpin.
 *
 * Pinned pages count in the budget of the #BigfileRam and cannot be
 * reclaimed, like dirty ones: pin only what you need. (Over a
 * #BigfileLocalFile opened with %BIGFILE_LOCAL_FILE_FLAGS_MAP_CLEAN_PAGES, a
 * read pin of clean pages holds no copy: they stay mapped from the file's
 * page cache, and show its current data.)
 *
 * A page pinned @writable stays writable and dirty through writeouts: they
 * store it as it is at that moment and leave it dirty, since the holder of
 * the pin may go on writing it. Discarding or invalidating a pinned page
 * still drops it from the handle (the next access loads it again, at the
 * same address), but its memory is kept, unused, until the pin goes, so
 * I/O the kernel still does into it lands nowhere else. Unmapping @vma
 * drops its pins.
 *
 * Returns: %TRUE on success, %FALSE on error (no page is left pinned then)
 *
 * Since: 1.0
 */
gboolean
bigfile_vma_pin (BigfileVma *vma, gsize offset, gsize length, gboolean writable, GError **error)
{
  g_return_val_if_fail (BIGFILE_IS_VMA (vma), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  /* The engine keeps the pin with the mapping and undoes it at unmap. */
  return pin_range (vma, offset, length, writable, TRUE, error);
}

/**
 * bigfile_vma_unpin:
 * @vma: a #BigfileVma
 * @offset: the offset given to bigfile_vma_pin()
 * @length: the length given to bigfile_vma_pin()
 *
 * Undoes one successful bigfile_vma_pin() of @vma with the same range: its
 * pages can be reclaimed again once no other pin holds them. Unpinning a
 * range that holds no pin of @vma is a programmer error. Unmapping @vma
 * drops its pins, so there is nothing to undo after that.
 *
 * Pins of the same range nest: if @vma holds several pins of exactly this
 * @offset and @length, the most recent one is undone (last in, first out),
 * so that a writable pin taken over a read-only one is the first to go.
 * Pins of other ranges, even overlapping ones, are not touched: each pin
 * is undone only by an unpin of its own range.
 *
 * Since: 1.0
 */
void
bigfile_vma_unpin (BigfileVma *vma, gsize offset, gsize length)
{
  g_return_if_fail (BIGFILE_IS_VMA (vma));
  g_return_if_fail (offset <= vma->length && length <= vma->length - offset);

  if (length == 0 || !g_atomic_int_get (&vma->mapped))
    return;

  if (!bf_vma_unpin (vma->engine, offset, length))
    g_critical ("%s: no pin of %" G_GSIZE_FORMAT " bytes at offset %" G_GSIZE_FORMAT " to undo",
                G_STRFUNC, length, offset);
}

/**
 * bigfile_vma_unmap:
 * @vma: a #BigfileVma
 *
 * Unmaps @vma: its addresses are given back, and its pins dropped. The
 * pages stay in the handle (dirty ones keep their changes) for other
 * mappings and later writeout. Does nothing if @vma is already unmapped.
 *
 * Dropping the last reference to @vma unmaps it too; call this to unmap at
 * a known time, as bindings with a garbage collector should.
 *
 * Since: 1.0
 */
void
bigfile_vma_unmap (BigfileVma *vma)
{
  g_return_if_fail (BIGFILE_IS_VMA (vma));

  if (!g_atomic_int_compare_and_exchange (&vma->mapped, TRUE, FALSE))
    return;

  bf_vma_unmap (vma->engine);

  g_object_notify_by_pspec (G_OBJECT (vma), props[PROP_MAPPED]);
}

/**
 * bigfile_vma_take_fault_error:
 *
 * Takes the reason why the last page fault of the calling thread on a
 * mapping failed.
 *
 * A read or write of raw mapped memory (through bigfile_vma_get_data())
 * on a page that cannot be loaded, because the file's load failed or
 * the #BigfileRam budget is full of dirty or pinned pages, has no way to
 * return an error: the engine sends `SIGBUS` to the faulting thread,
 * as the kernel does when a read through mmap() of a file fails. By
 * default that ends the process. A program that wants to survive it
 * catches `SIGBUS` with a handler that jumps out with siglongjmp() to a
 * sigsetjmp() point set before the access, and there calls this function
 * to learn why. The error is kept per thread until taken, and a new
 * failure replaces it.
 *
 * Where that is too much machinery, use bigfile_vma_read(),
 * bigfile_vma_write() or bigfile_vma_populate(), which report the same
 * failures as a #GError.
 *
 * |[<!-- language="C" -->
 * static __thread sigjmp_buf fault_jump;
 *
 * static void
 * on_sigbus (int sig)
 * {
 *   siglongjmp (fault_jump, 1);
 * }
 *
 * // struct sigaction sa = { .sa_handler = on_sigbus };
 * // sigaction (SIGBUS, &sa, NULL);
 *
 * if (sigsetjmp (fault_jump, 1) == 0)
 *   sum = add_up (bigfile_vma_get_data (vma), bigfile_vma_get_length (vma));
 * else
 *   {
 *     g_autoptr(GError) error = bigfile_vma_take_fault_error ();
 *     g_printerr ("Could not read: %s\n", error ? error->message : "unknown");
 *   }
 * ]|
 *
 * Returns: (transfer full) (nullable): the error of the calling thread's
 *   last failed fault, or %NULL if there was none since the last call
 *
 * Since: 1.0
 */
GError *
bigfile_vma_take_fault_error (void)
{
  return bf_fault_take_error ();
}

/**
 * bigfile_install_fault_handler:
 * @error: return location for a #GError
 *
 * Puts the library's `SIGSEGV` handler, which loads pages on the first
 * touch, in front of the process's other `SIGSEGV` handlers again.
 *
 * The kernel gives a signal to the handler installed last, and pages load
 * only if the library's handler sees every fault first. It is installed
 * at the first bigfile_handle_map(), and every later map checks that it
 * is still in front. A handler found in front of it, installed since, is
 * put behind it: it gets every `SIGSEGV` that is not a fault on a mapping,
 * and the handlers installed before go on getting theirs, in the order they
 * were installed. Handlers installed before the first map (Python's
 * `faulthandler.enable()`, a crash reporter) need nothing more. A program
 * that installs one after mapping calls this function right after it, or
 * maps again before touching any page: otherwise the next first touch of a
 * page goes to that handler, which takes it for a crash (faulthandler prints
 * a traceback and the process dies).
 *
 * Calling it before any map installs the handler early; calling it when the
 * handler is in front does nothing. On Linux x86-64 and aarch64 the handler
 * runs on an alternate signal stack if the thread has one (`SA_ONSTACK`),
 * so that a program's stack-overflow handler still runs, and loads pages on
 * the faulting thread's own stack.
 *
 * Returns: %TRUE if the handler is in front, %FALSE with @error set to
 *   %BIGFILE_VMA_ERROR_FAULT_HANDLER if it could not be put there (more
 *   than 16 different handlers were installed over it)
 *
 * Since: 1.0
 */
gboolean
bigfile_install_fault_handler (GError **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return bf_fault_install_handler (error);
}
