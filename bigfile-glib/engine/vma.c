/* bigfile-glib - VMAs: mapping pages into address ranges
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The registry of VMAs, the mapping of pages into them, the accounting of
 * kernel mappings, the service of faults, and the API's copies and pins.
 * The structures and their invariants are in engine-private.h.  Every
 * static function here runs with the engine lock held.
 *
 * Mapping a page into a VMA
 * -------------------------
 * A VMA starts as one anonymous PROT_NONE mapping.  A page is mapped by
 * mmap(MAP_FIXED) of its memfd slot over its place, and unmapped by putting an
 * anonymous PROT_NONE mapping back.  Each VMA keeps two bitmaps, "mapped" and
 * "writable", one bit per page; a page may be mapped in several VMAs at once
 * (they all share its one slot of memory, so a write through one is seen
 * through the others at once).
 *
 *   not mapped --read fault--> mapped RO --write fault--> mapped RW
 *        ^                        |   ^                      |
 *        +--drop (reclaim, discard,   +---writeout (store or +
 *            invalidate)              |    mark stored)
 *
 * Read and write faults on a page that is not mapped map it RO or RW at once
 * (the fault tells which); a page that is already dirty is mapped RW even on a
 * read, since there is nothing left to track.
 *
 * Clean pages from the page cache
 * -------------------------------
 * A handle may have a base file (base_fd: a BigfileLocalFile opened with
 * MAP_CLEAN_PAGES).  Each VMA then maps the file's complete pages that it
 * covers, shared and read-only, where unloaded pages would be PROT_NONE:
 * reads are served by the kernel from its page cache, with no fault, no
 * copy and no RAM.  Only writes fault there.  A page that becomes dirty gets
 * a slot (loaded from the file) and is mapped over the base in *every* VMA
 * at once (page_set_dirty), since the base would show stale data.  Whenever a
 * page is unmapped the base shows through again (vma_unmap_range), which
 * is right for clean pages (the file has their data) and would be wrong for
 * dirty ones: those are never unmapped from a base, only hidden (PROT_NONE
 * for good, per-page bitmap "hidden") when there is no other way.  Clean
 * copies are not kept over a base (they would go stale as the file changes):
 * writeout drops the pages it marks clean, and an API read drops the copy it
 * loaded.  The map-count flush hides whole VMAs (scattered dirty pages over
 * a base cost two kernel mappings each, whatever is unmapped): such a VMA
 * then works as one without a base.  Pages past the file's last complete
 * page work as without a base.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine-private.h"

/* A pin holds the pages themselves, not their indexes: a pinned page that
 * is discarded or invalidated leaves the table, but its slot (which the
 * kernel may be using for I/O on the program's behalf) is kept until the
 * pin goes, and a new page of the same index is not unpinned by mistake. */
typedef struct
{
  gsize offset;
  gsize len;
  gboolean writable;
  GPtrArray *pages; /* BfPage*, each with pin_count (and write_pins) raised */
} VmaPin;

/* -- small helpers ----------------------------------------------------------- */

static inline gboolean
bit_get (const guint64 *map, guint64 i)
{
  return (map[i / 64] >> (i % 64)) & 1;
}

static inline void
bit_set (guint64 *map, guint64 i, gboolean v)
{
  if (v)
    map[i / 64] |= (guint64)1 << (i % 64);
  else
    map[i / 64] &= ~((guint64)1 << (i % 64));
}

/* -- the VMA registry ---------------------------------------------------------
 *
 * All mapped VMAs, sorted by start address; they never overlap (the kernel
 * gave each its own range).  Lookup is a bisection, O(log n); insertion and
 * removal move the tail, O(n), which only map and unmap pay. */

static GPtrArray *registry;

/* Index of the first VMA whose start is > addr. */
static guint
registry_upper_bound (const guint8 *addr)
{
  guint lo = 0, hi = registry->len;

  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;
      if (((BfVma *)g_ptr_array_index (registry, mid))->start <= addr)
        lo = mid + 1;
      else
        hi = mid;
    }
  return lo;
}

static void
registry_add (BfVma *vma)
{
  if (registry == NULL)
    registry = g_ptr_array_new ();
  g_ptr_array_insert (registry, (gint)registry_upper_bound (vma->start), vma);
}

static void
registry_remove (BfVma *vma)
{
  gboolean found = g_ptr_array_remove (registry, vma);
  g_assert (found);
}

static BfVma *
registry_lookup (const void *addr)
{
  guint i;
  BfVma *vma;

  if (registry == NULL)
    return NULL;
  i = registry_upper_bound (addr);
  if (i == 0)
    return NULL;
  vma = g_ptr_array_index (registry, i - 1);
  if ((const guint8 *)addr < vma->start + vma->length)
    return vma;
  return NULL;
}

/* -- mapping pages into VMAs ------------------------------------------------- */

static inline guint8 *
vma_page_addr (BfVma *vma, guint64 index)
{
  return vma->start + ((index - vma->page_offset) << vma->handle->page_shift);
}

static inline gboolean
vma_covers (BfVma *vma, guint64 index)
{
  return index >= vma->page_offset && index - vma->page_offset < vma->n_pages;
}

/* Is @vma (registered) the parent's, in a child after fork()? */
static inline gboolean
vma_is_forked (BfVma *vma)
{
  return bf_ram_is_forked (vma->handle->ram);
}

/* -- kernel mappings: staying under vm.max_map_count ----------------------------
 *
 * Every run of pages with the same look (unmapped; or mapped with one
 * protection from consecutive slots) is one kernel VMA: the kernel merges
 * neighbours that are alike and splits them where they differ.  Pages whose
 * slots are not in order, or that are scattered by random access, cost one
 * kernel VMA each, plus one for the gap after them, and a process has only
 * vm.max_map_count (65530 by default) of them: past that, mmap and mprotect
 * fail with ENOMEM.
 *
 * So the engine keeps count.  A VMA costs 1 + its boundaries, where a
 * boundary lies between neighbours i and i+1 that the kernel cannot merge
 * (vma_boundary_after).  kernel_maps sums that over every VMA.  Before a
 * change that may add kernel VMAs, room is made: when kernel_maps is near the
 * cap (half the limit: the rest of the process maps things too), every
 * mapping of a page that is not pinned is dropped at once.  The pages stay in
 * RAM, loaded or dirty; the next access maps them again without loading.
 * Sequential access, which keeps slots in order, never gets there. */

static guint64 kernel_maps;
static guint64 kernel_maps_cap;

static guint64
kernel_maps_get_cap (void)
{
  if (kernel_maps_cap == 0)
    {
      gchar *text = NULL;
      guint64 limit = 65530;

      if (g_file_get_contents ("/proc/sys/vm/max_map_count", &text, NULL, NULL))
        {
          guint64 v = g_ascii_strtoull (text, NULL, 10);
          if (v >= 1024)
            limit = v;
          g_free (text);
        }
      kernel_maps_cap = limit / 2;
    }
  return kernel_maps_cap;
}

void
bf_set_kernel_maps_cap (guint64 cap)
{
  bf_lock ();
  kernel_maps_cap = cap;
  bf_unlock ();
}

guint64
bf_get_kernel_maps (void)
{
  guint64 n;

  bf_lock ();
  n = kernel_maps;
  bf_unlock ();
  return n;
}

/* Does page i of @vma (relative) show the base file when not mapped? */
static inline gboolean
vma_shows_base (BfVma *vma, guint64 i)
{
  return i < vma->base_end && !bit_get (vma->hidden, i);
}

/* Can the kernel not merge pages i and i+1 of @vma (relative indexes)? */
static gboolean
vma_boundary_after (BfVma *vma, guint64 i)
{
  gboolean m0 = bit_get (vma->mapped, i), m1 = bit_get (vma->mapped, i + 1);
  BfPage *p0, *p1;

  if (!m0 && !m1)
    return vma_shows_base (vma, i) != vma_shows_base (vma, i + 1); /* file, PROT_NONE */
  if (m0 != m1 || bit_get (vma->writable, i) != bit_get (vma->writable, i + 1))
    return TRUE;
  p0 = bf_handle_lookup (vma->handle, vma->page_offset + i);
  p1 = bf_handle_lookup (vma->handle, vma->page_offset + i + 1);
  return p0 == NULL || p1 == NULL || p1->slot != p0->slot + 1;
}

/* The boundaries next to pages [first, last] of @vma (relative indexes). */
static guint64
vma_boundaries_near (BfVma *vma, guint64 first, guint64 last)
{
  guint64 n = 0, end;

  if (vma->n_pages < 2)
    return 0;
  end = MIN (last, vma->n_pages - 2);
  for (guint64 j = first > 0 ? first - 1 : 0; j <= end; j++)
    n += vma_boundary_after (vma, j);
  return n;
}

static void
vma_account (BfVma *vma, guint64 before, guint64 after)
{
  vma->boundaries = vma->boundaries - before + after;
  kernel_maps = kernel_maps - before + after;
}

static void flush_mappings (void);

/* Called before a change that can add up to two kernel VMAs. */
static void
ensure_kernel_maps_room (void)
{
  if (kernel_maps + 2 > kernel_maps_get_cap ())
    flush_mappings ();
}

/* Replace pages [i, i+count) of @vma (relative indexes) with the base file
 * (@base) or with PROT_NONE.  If the kernel refuses (it may need a new
 * kernel VMA to split a mapping), the old mapping would keep showing slots
 * that are about to be reused for other data: that must never happen, so
 * fall back to PROT_NONE, then to mprotect and, failing all, stop the
 * process.  The room kept under vm.max_map_count makes this practically
 * impossible.  (A page of the base left PROT_NONE is still right: a fault
 * there loads a copy.) */
static void
vma_replace (BfVma *vma, guint64 i, guint64 count, gboolean base)
{
  BfHandle *handle = vma->handle;
  guint8 *addr = vma->start + (i << handle->page_shift);
  gsize len = (gsize)count << handle->page_shift;

  if (base
      && mmap (addr, len, PROT_READ, MAP_SHARED | MAP_FIXED, handle->base_fd,
               (off_t)((vma->page_offset + i) << handle->page_shift))
             != MAP_FAILED)
    return;
  if (mmap (addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0)
          == MAP_FAILED
      && mprotect (addr, len, PROT_NONE) != 0)
    g_error ("Could not unmap bigfile pages at %p: %s", addr, g_strerror (errno));
}

/* Unmap pages [i, i+count) of @vma: what shows there again is the base file
 * where there is one (and it is not hidden), PROT_NONE elsewhere.  @hide
 * first hides the range: PROT_NONE everywhere, for good (a dirty page must
 * never show the file's stale data; the flush hides whole VMAs). */
static void
vma_unmap_range_full (BfVma *vma, guint64 i, guint64 count, gboolean hide)
{
  guint64 end = i + count;
  guint64 before = vma_boundaries_near (vma, i, end - 1);

  for (guint64 j = i; j < end; j++)
    {
      bit_set (vma->mapped, j, FALSE);
      bit_set (vma->writable, j, FALSE);
      if (hide && j < vma->base_end)
        bit_set (vma->hidden, j, TRUE);
    }
  /* One call per run of pages that show the same thing. */
  for (guint64 j = i; j < end;)
    {
      gboolean base = vma_shows_base (vma, j);
      guint64 k = j + 1;

      while (k < end && vma_shows_base (vma, k) == base)
        k++;
      vma_replace (vma, j, k - j, base);
      j = k;
    }
  vma_account (vma, before, vma_boundaries_near (vma, i, end - 1));
}

static void
vma_unmap_range (BfVma *vma, guint64 i, guint64 count)
{
  vma_unmap_range_full (vma, i, count, FALSE);
}

static void
vma_unmap_page (BfVma *vma, guint64 index)
{
  guint64 i = index - vma->page_offset;

  if (bit_get (vma->mapped, i))
    vma_unmap_range (vma, i, 1);
}

/* Drop every mapping of a page that is not pinned, in all VMAs.  Over a
 * base file that is not enough (each scattered dirty page needs two kernel
 * mappings, and the base one around it), so a VMA with a base is hidden
 * whole, pinned pages apart: it then works as one without a base (clean
 * pages load as copies) and costs one kernel mapping. */
static void
flush_mappings (void)
{
  GPtrArray *vmas = registry;

  for (guint v = 0; vmas != NULL && v < vmas->len; v++)
    {
      BfVma *vma = g_ptr_array_index (vmas, v);
      gboolean hide = vma->base_end > 0;
      guint64 i = 0;

      /* One PROT_NONE mapping, whatever its stale bitmaps say. */
      if (vma_is_forked (vma))
        continue;

      while (i < vma->n_pages)
        {
          guint64 j;

          /* Skip what needs nothing done, a word at a time. */
          if (i % 64 == 0 && vma->mapped[i / 64] == 0
              && (!hide || i >= vma->base_end || vma->hidden[i / 64] == ~(guint64)0))
            {
              i += 64;
              continue;
            }
          for (j = i; j < vma->n_pages; j++)
            {
              BfPage *page;

              if (!bit_get (vma->mapped, j))
                {
                  if (hide && vma_shows_base (vma, j))
                    continue;
                  break;
                }
              page = bf_handle_lookup (vma->handle, vma->page_offset + j);
              if (page != NULL && page->pin_count > 0)
                break;
            }
          if (j > i)
            vma_unmap_range_full (vma, i, j - i, hide);
          i = j + 1; /* j is pinned, needs nothing, or is the end */
        }
    }
}

static gboolean
vma_map_page (BfVma *vma, BfPage *page, gboolean writable, GError **error)
{
  guint64 i = page->index - vma->page_offset;
  guint8 *addr = vma_page_addr (vma, page->index);
  BfHandle *handle = vma->handle;
  gsize ps = handle->page_size;
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  guint64 before;

  if (vma_is_forked (vma))
    {
      /* Reached only by a fault whose load callback forked (see "fork()"):
       * the slot is the parent's. */
      bf_set_forked_error (error, handle->ram, "Cannot map a page");
      return FALSE;
    }
  if (bit_get (vma->mapped, i) && bit_get (vma->writable, i) == writable)
    return TRUE;

  ensure_kernel_maps_room ();
  before = vma_boundaries_near (vma, i, i);
  if (bit_get (vma->mapped, i))
    {
      if (mprotect (addr, ps, prot) != 0)
        goto fail;
    }
  else
    {
      /* MAP_POPULATE fills the page tables now, in one go, instead of one
       * minor fault per 4 KiB when the program touches the page. */
      if (mmap (addr, ps, prot, MAP_SHARED | MAP_FIXED | MAP_POPULATE, handle->pool->memfd,
                (off_t)(page->slot * ps))
          == MAP_FAILED)
        goto fail;
      bit_set (vma->mapped, i, TRUE);
    }
  bit_set (vma->writable, i, writable);
  vma_account (vma, before, vma_boundaries_near (vma, i, i));
  return TRUE;

fail:
  {
    int errsv = errno;
    g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_MAP_FAILED,
                 "Could not map page %" G_GUINT64_FORMAT " at %p: %s%s", page->index, addr,
                 g_strerror (errsv),
                 errsv == ENOMEM ? " (the process may have reached vm.max_map_count mappings)"
                                 : "");
    return FALSE;
  }
}

/* Make @page read-only wherever it is mapped writable. */
static void
vma_write_protect_page (BfPage *page)
{
  BfHandle *handle = page->handle;

  for (GList *l = handle->vmas.head; l != NULL; l = l->next)
    {
      BfVma *vma = l->data;
      guint64 i, before;

      if (!vma_covers (vma, page->index))
        continue;
      i = page->index - vma->page_offset;
      if (!bit_get (vma->writable, i))
        continue;

      ensure_kernel_maps_room ();
      if (!bit_get (vma->writable, i)) /* the flush unmapped it */
        continue;
      before = vma_boundaries_near (vma, i, i);
      if (mprotect (vma_page_addr (vma, page->index), handle->page_size, PROT_READ) != 0)
        {
          /* Could only be ENOMEM from splitting; keeping it writable would
           * let a write slip past dirty tracking.  Hiding always works or
           * stops the process. */
          vma_unmap_range_full (vma, i, 1, TRUE);
          continue;
        }
      bit_set (vma->writable, i, FALSE);
      vma_account (vma, before, vma_boundaries_near (vma, i, i));
    }
}

static void
vma_unmap_page_all (BfPage *page)
{
  for (GList *l = page->handle->vmas.head; l != NULL; l = l->next)
    {
      BfVma *vma = l->data;
      if (vma_covers (vma, page->index))
        vma_unmap_page (vma, page->index);
    }
}

/* Show @page (dirty) in @vma where the base file would show its stale
 * data: map it, or failing that hide the base (PROT_NONE), so that an
 * access faults and maps it then. */
static void
vma_show_over_base (BfVma *vma, BfPage *page)
{
  guint64 i = page->index - vma->page_offset;

  if (i >= vma->base_end || bit_get (vma->mapped, i))
    return;
  if (!vma_map_page (vma, page, bf_page_map_writable (page), NULL))
    vma_unmap_range_full (vma, i, 1, TRUE);
}

/* Reclaim @page (clean, in the LRU).  Reclaim goes in LRU order, and in a
 * sequential scan the pages after this one in the LRU are its next indexes,
 * to be reclaimed next: unmap them too, in the same call, so that their own
 * reclaim costs no system call.  They stay loaded; an access before their
 * turn maps them again without loading. */
#define RECLAIM_UNMAP_AHEAD 16

static void
vma_unmap_for_reclaim (BfPage *page)
{
  BfHandle *handle = page->handle;

  for (GList *l = handle->vmas.head; l != NULL; l = l->next)
    {
      BfVma *vma = l->data;
      guint64 count = 1;

      if (!vma_covers (vma, page->index))
        continue;
      for (GList *n = page->lru_link.next; n != NULL && count < RECLAIM_UNMAP_AHEAD; n = n->next)
        {
          BfPage *next = n->data;
          if (next->handle != handle || next->index != page->index + count
              || !vma_covers (vma, next->index))
            break;
          count++;
        }
      /* Not mapped: an earlier reclaim unmapped it ahead, nothing to do. */
      if (bit_get (vma->mapped, page->index - vma->page_offset))
        vma_unmap_range (vma, page->index - vma->page_offset, count);
    }
}

/* A dirty page must show over the base file in every VMA that covers it. */
static void
vma_show_dirty_all (BfPage *page)
{
  for (GList *l = page->handle->vmas.head; l != NULL; l = l->next)
    if (vma_covers (l->data, page->index))
      vma_show_over_base (l->data, page);
}

/* The reverse map that page.c calls through handle->rmap. */
static const BfRmapOps vma_rmap_ops = {
  .unmap = vma_unmap_page_all,
  .write_protect = vma_write_protect_page,
  .show_dirty = vma_show_dirty_all,
  .unmap_for_reclaim = vma_unmap_for_reclaim,
};

BfFaultResult
bf_fault_locked (void *addr, int write, GError **error)
{
  for (;;)
    {
      BfVma *vma = registry_lookup (addr);
      BfPage *page = NULL;
      guint64 index, i;
      gboolean mapped, writable, want_write;

      if (vma == NULL)
        return BF_FAULT_NOT_OURS;

      i = (guint64)((guint8 *)addr - vma->start) >> vma->handle->page_shift;
      index = vma->page_offset + i;

      /* Before the bitmaps, which are stale in a forked VMA. */
      if (vma_is_forked (vma))
        {
          char *what
              = g_strdup_printf ("Cannot access page %" G_GUINT64_FORMAT " at %p", index, addr);
          bf_set_forked_error (error, vma->handle->ram, what);
          g_free (what);
          return BF_FAULT_ERROR;
        }

      mapped = bit_get (vma->mapped, i);
      writable = bit_get (vma->writable, i);

      /* Unknown direction: a fault on a readable page (mapped, or showing
       * the base file) can only be a write. */
      want_write = write > 0 || (write < 0 && (mapped || i < vma->base_end));

      /* Another thread may have mapped the page since this fault was raised. */
      if (mapped && (writable || !want_write))
        return BF_FAULT_HANDLED;

      switch (bf_page_get (vma->handle, index, want_write, &page, error))
        {
          case BF_GET_RETRY:
            continue;
          case BF_GET_ERROR:
            return BF_FAULT_ERROR;
          case BF_GET_OK:
            break;
        }

      if (!vma_map_page (vma, page, bf_page_map_writable (page), error))
        return BF_FAULT_ERROR;
      return BF_FAULT_HANDLED;
    }
}

gboolean
bf_handle_get_page_mapped (BfHandle *handle, BfVma *vma, guint64 index, gboolean *writable)
{
  gboolean mapped = FALSE, w = FALSE;

  bf_lock ();
  /* Nothing is mapped in a forked VMA. */
  if (vma->registered && vma->handle == handle && vma_covers (vma, index) && !vma_is_forked (vma))
    {
      mapped = bit_get (vma->mapped, index - vma->page_offset);
      w = bit_get (vma->writable, index - vma->page_offset);
    }
  bf_unlock ();
  if (writable != NULL)
    *writable = w;
  return mapped;
}

/* -- VMAs ---------------------------------------------------------------------- */

/* The page indexes [first, end) that bytes [offset, offset+len) of @vma touch
 * (len > 0). */
static inline guint64
vma_first_index (BfVma *vma, gsize offset)
{
  return vma->page_offset + (offset >> vma->handle->page_shift);
}

static inline guint64
vma_end_index (BfVma *vma, gsize offset, gsize len)
{
  return vma->page_offset + ((offset + len - 1) >> vma->handle->page_shift) + 1;
}

static void
vma_pin_release (VmaPin *pin)
{
  for (guint i = 0; i < pin->pages->len; i++)
    bf_page_unpin (g_ptr_array_index (pin->pages, i), pin->writable);
  g_ptr_array_unref (pin->pages);
}

/* Map the complete pages of the handle's base file that @vma covers,
 * read-only and shared: the kernel's page cache, no copy, no fault. */
static gboolean
vma_map_base (BfVma *vma, BfHandle *handle, GError **error)
{
  struct stat st;
  guint64 file_pages;

  if (fstat (handle->base_fd, &st) != 0)
    {
      int errsv = errno;
      g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_MAP_FAILED,
                   "Could not find the size of the file to map: %s", g_strerror (errsv));
      return FALSE;
    }
  /* Only whole pages: reading past the end of a file mapping is SIGBUS. */
  file_pages = (guint64)st.st_size >> handle->page_shift;
  vma->base_end
      = file_pages > vma->page_offset ? MIN (file_pages - vma->page_offset, vma->n_pages) : 0;
  if (vma->base_end == 0)
    return TRUE;

  if (mmap (vma->start, (gsize)vma->base_end << handle->page_shift, PROT_READ,
            MAP_SHARED | MAP_FIXED, handle->base_fd,
            (off_t)(vma->page_offset << handle->page_shift))
      == MAP_FAILED)
    {
      int errsv = errno;
      g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_MAP_FAILED,
                   "Could not map %" G_GUINT64_FORMAT " pages of the file: %s", vma->base_end,
                   g_strerror (errsv));
      return FALSE;
    }
  return TRUE;
}

/* The fork child hook (engine-private.h, "fork()"): every registered VMA
 * is the parent's.  One PROT_NONE mapping over each, so that no slot of
 * the parent's page memory and no page of a base file stays visible; its
 * handle then maps nothing.  The bitmaps are left as they are (clearing
 * them would copy their pages): nothing reads them in a forked VMA. */
static void
vma_fork_child (void)
{
  static const char msg[]
      = "bigfile-glib: a forked child could not unmap the mappings of its parent\n";

  for (guint v = 0; registry != NULL && v < registry->len; v++)
    {
      BfVma *vma = g_ptr_array_index (registry, v);

      if (mmap (vma->start, vma->length, PROT_NONE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0)
              == MAP_FAILED
          && mprotect (vma->start, vma->length, PROT_NONE) != 0)
        {
          /* Practically impossible (vm.max_map_count, kept at bay): but a
           * child that can still write to the parent's pages must not run.
           * Only async-signal-safe calls here. */
          if (write (STDERR_FILENO, msg, sizeof msg - 1) < 0)
            {
            }
          abort ();
        }
      kernel_maps -= vma->boundaries;
      vma->boundaries = 0;
      vma->handle->rmap = NULL;
    }
}

BfVma *
bf_vma_map (BfHandle *handle, guint64 page_offset, guint64 n_pages, GError **error)
{
  BfVma *vma;
  void *addr;
  gsize length;

  /* Before the base file is mapped.  (A RAM's fork_gen never changes, and
   * the generation changes only in a child with one thread: no lock
   * needed.) */
  if (bf_ram_is_forked (handle->ram))
    {
      bf_set_forked_error (error, handle->ram, "Cannot map");
      return NULL;
    }
  if (n_pages == 0 || n_pages > (G_MAXSIZE >> handle->page_shift)
      || page_offset > G_MAXUINT64 - n_pages)
    {
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_INVALID_RANGE,
                   "Cannot map %" G_GUINT64_FORMAT " pages from page %" G_GUINT64_FORMAT, n_pages,
                   page_offset);
      return NULL;
    }
  length = (gsize)n_pages << handle->page_shift;

  addr = mmap (NULL, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (addr == MAP_FAILED)
    {
      int errsv = errno;
      g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_MAP_FAILED,
                   "Could not reserve %" G_GSIZE_FORMAT " bytes of address space: %s", length,
                   g_strerror (errsv));
      return NULL;
    }

  vma = g_new0 (BfVma, 1);
  vma->start = addr;
  vma->length = length;
  vma->page_offset = page_offset;
  vma->n_pages = n_pages;
  /* Large bitmaps come from calloc's mmap: untouched parts cost nothing. */
  vma->mapped = g_new0 (guint64, (n_pages + 63) / 64);
  vma->writable = g_new0 (guint64, (n_pages + 63) / 64);
  vma->hidden = g_new0 (guint64, (n_pages + 63) / 64);
  vma->handle_link.data = vma;
  vma->pins = g_array_new (FALSE, FALSE, sizeof (VmaPin));

  /* Over a base file, its complete pages show through at once.  (The
   * handle's base_fd never changes, so it is read without the lock.) */
  if (handle->base_fd >= 0 && !vma_map_base (vma, handle, error))
    {
      munmap (addr, length);
      g_array_unref (vma->pins);
      g_free (vma->mapped);
      g_free (vma->writable);
      g_free (vma->hidden);
      g_free (vma);
      return NULL;
    }

  bf_lock ();
  if (handle->closed)
    {
      bf_unlock ();
      munmap (addr, length);
      g_array_unref (vma->pins);
      g_free (vma->mapped);
      g_free (vma->writable);
      g_free (vma->hidden);
      g_free (vma);
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CLOSED,
                   "Cannot map: the handle is closed");
      return NULL;
    }
  bf_fork_add_child_hook (vma_fork_child);
  vma->handle = handle;
  handle->refs++;
  handle->rmap = &vma_rmap_ops;
  g_queue_push_tail_link (&handle->vmas, &vma->handle_link);
  registry_add (vma);
  vma->registered = TRUE;
  vma->boundaries = vma->base_end > 0 && vma->base_end < n_pages;
  kernel_maps += 1 + vma->boundaries;

  /* Changed pages must show over the file. */
  if (handle->base_fd >= 0)
    for (GList *l = handle->dirty.head; l != NULL; l = l->next)
      if (vma_covers (vma, ((BfPage *)l->data)->index))
        vma_show_over_base (vma, l->data);
  bf_unlock ();
  return vma;
}

void
bf_vma_unmap (BfVma *vma)
{
  bf_lock ();
  if (vma->registered)
    {
      /* Pins are taken through a mapping and end with it: a binding whose
       * garbage collector drops a pinned mapping must not leak its pages. */
      for (guint i = 0; i < vma->pins->len; i++)
        vma_pin_release (&g_array_index (vma->pins, VmaPin, i));
      g_array_set_size (vma->pins, 0);

      /* Out of the registry first: from now on a fault here is not ours. */
      registry_remove (vma);
      g_queue_unlink (&vma->handle->vmas, &vma->handle_link);
      vma->registered = FALSE;
      kernel_maps -= 1 + vma->boundaries;
      vma->boundaries = 0;
      munmap (vma->start, vma->length);
      memset (vma->mapped, 0, (vma->n_pages + 63) / 64 * sizeof (guint64));
      memset (vma->writable, 0, (vma->n_pages + 63) / 64 * sizeof (guint64));
    }
  bf_unlock ();
}

void
bf_vma_free (BfVma *vma)
{
  bf_vma_unmap (vma);
  bf_lock ();
  bf_handle_unref_locked (vma->handle);
  bf_unlock ();
  g_array_unref (vma->pins);
  g_free (vma->mapped);
  g_free (vma->writable);
  g_free (vma->hidden);
  g_free (vma);
}

gboolean
bf_vma_is_mapped (BfVma *vma)
{
  gboolean mapped;

  bf_lock ();
  mapped = vma->registered;
  bf_unlock ();
  return mapped;
}

void *
bf_vma_get_start (BfVma *vma)
{
  return vma->start;
}

gsize
bf_vma_get_length (BfVma *vma)
{
  return vma->length;
}

guint64
bf_vma_get_page_offset (BfVma *vma)
{
  return vma->page_offset;
}

static gboolean
vma_check_range (BfVma *vma, gsize offset, gsize len, GError **error)
{
  if (offset > vma->length || len > vma->length - offset)
    {
      g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_OUT_OF_RANGE,
                   "Range of %" G_GSIZE_FORMAT " bytes at offset %" G_GSIZE_FORMAT
                   " is outside the mapping of %" G_GSIZE_FORMAT " bytes",
                   len, offset, vma->length);
      return FALSE;
    }
  return TRUE;
}

static gboolean
vma_check_mapped (BfVma *vma, GError **error)
{
  if (!vma->registered)
    {
      g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_UNMAPPED,
                   "The mapping was unmapped");
      return FALSE;
    }
  return TRUE;
}

/* Drop the clean copy of page @index if nothing uses it: loaded, not
 * mapped anywhere, not pinned, no I/O. */
static void
page_drop_unused_copy (BfHandle *handle, guint64 index)
{
  BfPage *page = bf_handle_lookup (handle, index);

  if (page == NULL || page->state != BF_PAGE_LOADED || page->pin_count > 0 || page->io_refs > 0)
    return;
  for (GList *l = handle->vmas.head; l != NULL; l = l->next)
    {
      BfVma *vma = l->data;
      if (vma_covers (vma, index) && bit_get (vma->mapped, index - vma->page_offset))
        return;
    }
  bf_page_drop (page);
}

/* Copy between @buf and the pages of [offset, offset+len) of @vma, page by
 * page, through the RAM window: no signal is involved, so a load error comes
 * back as a GError.  The copy itself runs with the lock released (@buf may
 * lie in another bigfile mapping and fault), holding an I/O reference so the
 * slot cannot be reused meanwhile; a write also counts as a writer, which
 * keeps writeout from storing or cleaning the page under the copy. */
static gboolean
vma_copy (BfVma *vma, gsize offset, guint8 *buf, gsize len, gboolean write, GError **error)
{
  gsize ps;

  if (!vma_check_range (vma, offset, len, error))
    return FALSE;
  ps = vma->handle->page_size;

  bf_lock ();
  while (len > 0)
    {
      guint64 index = vma->page_offset + (offset >> vma->handle->page_shift);
      gsize in_page = offset & (ps - 1);
      gsize n = MIN (len, ps - in_page);
      BfPage *page = NULL;
      guint8 *mem;

      if (!vma_check_mapped (vma, error))
        goto fail;
      switch (bf_page_get (vma->handle, index, write, &page, error))
        {
          case BF_GET_RETRY:
            continue;
          case BF_GET_ERROR:
            goto fail;
          case BF_GET_OK:
            break;
        }

      mem = bf_pool_slot_addr (vma->handle->pool, page->slot) + in_page;
      page->io_refs++;
      bf_page_update_lru (page, FALSE);
      if (write)
        page->writers++;
      bf_unlock ();

      if (write)
        memcpy (mem, buf, n);
      else
        memcpy (buf, mem, n);

      bf_lock ();
      if (write && --page->writers == 0)
        bf_wake_all ();
      bf_page_io_unref (page);
      /* Over a base file, a clean copy loaded just for this read would go
       * stale as the file changes: let the file show instead. */
      if (!write && vma->handle->base_fd >= 0)
        page_drop_unused_copy (vma->handle, index);

      buf += n;
      offset += n;
      len -= n;
    }
  bf_unlock ();
  return TRUE;

fail:
  bf_unlock ();
  return FALSE;
}

gboolean
bf_vma_read (BfVma *vma, gsize offset, void *dest, gsize len, GError **error)
{
  return vma_copy (vma, offset, dest, len, FALSE, error);
}

gboolean
bf_vma_write (BfVma *vma, gsize offset, const void *src, gsize len, GError **error)
{
  return vma_copy (vma, offset, (guint8 *)src, len, TRUE, error);
}

gboolean
bf_vma_pin (BfVma *vma, gsize offset, gsize len, gboolean write, gboolean hold, GError **error)
{
  VmaPin pin = { offset, len, write, NULL };
  guint64 end, index;

  if (!vma_check_range (vma, offset, len, error))
    return FALSE;
  if (len == 0)
    return TRUE;
  end = vma_end_index (vma, offset, len);
  if (hold)
    pin.pages = g_ptr_array_new ();

  bf_lock ();
  for (index = vma_first_index (vma, offset); index < end;)
    {
      BfPage *page = NULL;

      if (!vma_check_mapped (vma, error))
        goto fail;
      switch (bf_page_get (vma->handle, index, write, &page, error))
        {
          case BF_GET_RETRY:
            continue;
          case BF_GET_ERROR:
            goto fail;
          case BF_GET_OK:
            break;
        }
      if (!vma_map_page (vma, page, bf_page_map_writable (page), error))
        goto fail;
      if (hold)
        {
          bf_page_pin (page, write);
          g_ptr_array_add (pin.pages, page);
        }
      index++;
    }
  if (hold)
    g_array_append_val (vma->pins, pin);
  bf_unlock ();
  return TRUE;

fail:
  if (hold)
    vma_pin_release (&pin);
  bf_unlock ();
  return FALSE;
}

gboolean
bf_vma_unpin (BfVma *vma, gsize offset, gsize len)
{
  gboolean found = FALSE;

  bf_lock ();
  /* The latest matching pin, so nested pins of one range unwind in order. */
  for (guint i = vma->pins->len; i > 0 && vma->registered; i--)
    {
      VmaPin *pin = &g_array_index (vma->pins, VmaPin, i - 1);

      if (pin->offset == offset && pin->len == len)
        {
          vma_pin_release (pin);
          g_array_remove_index (vma->pins, i - 1);
          found = TRUE;
          break;
        }
    }
  bf_unlock ();
  return found;
}
