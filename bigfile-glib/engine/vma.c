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
 * for good, per-page bitmap "hidden") when there is no other way.
 *
 * The rule: clean pages show the file as it is now.  A clean copy in RAM is
 * a snapshot that goes stale as the file changes, and a stale copy that a
 * write makes dirty takes its stale bytes to the file at writeout, over
 * another writer's changes.  So, where a VMA shows the file:
 *   - no clean copy is mapped: only dirty pages are (engine-private.h);
 *   - writeout drops the pages it marks clean; an API read drops the copy
 *     it loaded; a read populate or pin loads nothing: it has the kernel
 *     populate the file's pages (MADV_POPULATE_READ), and a read pin holds
 *     no page, only the promise that the range stays mapped and readable
 *     (the map-count flush does not hide it);
 *   - a write first drops a clean copy nobody holds (page_drop_stale_copy),
 *     so that the dirty page starts from the file as it is at that moment.
 *
 * Pages past the file's last complete page cannot show the file (reading a
 * file mapping past the end of the file is SIGBUS): the partial last page
 * and the pages after it are copies, loaded as without a base.  When the
 * file's size changes, every VMA follows (vma_set_base_size): pages that
 * became complete show the file, and the clean copies of the pages whose
 * data may have changed are dropped.  The handle looks at the size (fstat)
 * at map, at the end of a writeout, at an invalidation, and before a fault
 * or API access past the end it knew.  A clean copy of the partial last
 * page is also dropped when its last pin goes and before it is written.
 * A handle with a size shows the file only below the lowest size it was
 * given since the file was last resized (zero_from: bf_handle_set_size()
 * below the file's size, whose bytes past it read as zeros while the file
 * still has others there until writeout resizes it): the base size is the
 * smaller of the two (vma_base_size_now).
 *
 * The map-count flush hides whole VMAs (scattered dirty pages over a base
 * cost two kernel mappings each, whatever is unmapped), read-pinned pages
 * apart: such a VMA then works as one without a base, with clean copies
 * that are snapshots (but a write still starts from the file).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine-private.h"
#include "memcheck-hints.h"

/* A pin holds the pages themselves, not their indexes: a pinned page that
 * is discarded or invalidated leaves the table, but its slot (which the
 * kernel may be using for I/O on the program's behalf) is kept until the
 * pin goes, and a new page of the same index is not unpinned by mistake.
 * A read pin of a page that shows the base file holds no page at all (the
 * page cache holds the data): its entry is NULL, and the flush leaves the
 * page alone while the pin lasts (vma_base_pins). */
typedef struct
{
  gsize offset;
  gsize len;
  gboolean writable;
  GPtrArray *pages; /* one per page from the first: BfPage* with pin_count
                     * (and write_pins) raised, or NULL over the base */
} VmaPin;

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
  bf_assert_locked ();
  if (registry == NULL)
    registry = g_ptr_array_new ();
  g_ptr_array_insert (registry, (gint)registry_upper_bound (vma->start), vma);
}

static void
registry_remove (BfVma *vma)
{
  gboolean found;

  bf_assert_locked ();
  found = g_ptr_array_remove (registry, vma);
  g_assert (found);
}

GPtrArray *
bf_vma_registry_locked (void)
{
  bf_assert_locked ();
  return registry;
}

static BfVma *
registry_lookup (const void *addr)
{
  guint i;
  BfVma *vma;

  bf_assert_locked ();

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

BfVma *
bf_vma_lookup_locked (const void *addr)
{
  return registry_lookup (addr);
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

guint64
bf_count_kernel_maps (void)
{
  guint64 n = 0;

  bf_lock ();
  for (guint v = 0; registry != NULL && v < registry->len; v++)
    n += 1 + bf_vma_count_boundaries (g_ptr_array_index (registry, v));
  bf_unlock ();
  return n;
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

/* Do the 64 pages of word @w of @vma's bitmaps all look alike when not
 * mapped, and is none mapped?  Then there is no boundary among them (a
 * word past n_pages has no bit set). */
static inline gboolean
vma_word_alike (BfVma *vma, guint64 w)
{
  if (vma->mapped[w] != 0)
    return FALSE;
  if (w * 64 >= vma->base_end)
    return TRUE; /* all PROT_NONE */
  return w * 64 + 64 <= vma->base_end && (vma->hidden[w] == 0 || vma->hidden[w] == ~(guint64)0);
}

/* The boundaries next to pages [first, last] of @vma (relative indexes):
 * after pages first - 1 to last.  Words of pages that look alike are
 * skipped, so that a change to a long run of unmapped pages (the file
 * grew) costs a word, not 64 lookups. */
static guint64
vma_boundaries_near (BfVma *vma, guint64 first, guint64 last)
{
  guint64 n = 0, end;

  if (vma->n_pages < 2)
    return 0;
  end = MIN (last, vma->n_pages - 2);
  for (guint64 j = first > 0 ? first - 1 : 0; j <= end;)
    {
      /* None after pages j to j + 62; the one after j + 63 is counted next. */
      if (j % 64 == 0 && j + 63 <= end && vma_word_alike (vma, j / 64))
        {
          j += 63;
          continue;
        }
      n += vma_boundary_after (vma, j);
      j++;
    }
  return n;
}

guint64
bf_vma_count_boundaries (BfVma *vma)
{
  return vma->n_pages > 0 ? vma_boundaries_near (vma, 0, vma->n_pages - 1) : 0;
}

guint64
bf_kernel_maps_locked (void)
{
  bf_assert_locked ();
  return kernel_maps;
}

static void
vma_account (BfVma *vma, guint64 before, guint64 after)
{
  bf_assert_locked ();
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
 * (@base) or with PROT_NONE.  The kernel may refuse (ENOMEM) when the
 * change splits one of its mappings and the process is at vm.max_map_count,
 * which the rest of the process may have used up whatever the engine
 * counts.  Returns FALSE then, changing nothing. */
static gboolean
vma_replace (BfVma *vma, guint64 i, guint64 count, gboolean base)
{
  BfHandle *handle = vma->handle;
  guint8 *addr = vma->start + (i << handle->page_shift);
  gsize len = (gsize)count << handle->page_shift;

  bf_assert_locked ();

  if (base
      && mmap (addr, len, PROT_READ, MAP_SHARED | MAP_FIXED, handle->base_fd,
               (off_t)((vma->page_offset + i) << handle->page_shift))
             != MAP_FAILED)
    return TRUE;
  /* A page of the base left PROT_NONE is still right: a fault there loads
   * a copy. */
  if (mmap (addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0)
      == MAP_FAILED)
    return FALSE;
  bf_memcheck_vma_addressable (addr, len);
  return TRUE;
}

static gboolean
vma_page_pinned (BfVma *vma, guint64 i)
{
  BfPage *page = bf_handle_lookup (vma->handle, vma->page_offset + i);

  return page != NULL && page->pin_count > 0;
}

/* The run of pages around page i of @vma that the kernel sees as one
 * mapping, as far as the engine can tell: [*first, *end). */
static void
vma_run (BfVma *vma, guint64 i, guint64 *first, guint64 *end)
{
  guint64 a = i, b = i + 1;

  while (a > 0 && !vma_boundary_after (vma, a - 1))
    a--;
  while (b < vma->n_pages && !vma_boundary_after (vma, b - 1))
    b++;
  *first = a;
  *end = b;
}

static gboolean
vma_range_has_pin (BfVma *vma, guint64 first, guint64 end)
{
  for (guint64 j = first; j < end; j++)
    if (vma_page_pinned (vma, j))
      return TRUE;
  return FALSE;
}

static void
vma_forget_range (BfVma *vma, guint64 first, guint64 end)
{
  for (guint64 j = first; j < end; j++)
    {
      bit_set (vma->mapped, j, FALSE);
      bit_set (vma->writable, j, FALSE);
      if (j < vma->base_end)
        bit_set (vma->hidden, j, TRUE);
    }
}

/* The last resorts of an unmap of [i, i+count) that the kernel refused
 * (ENOMEM at vm.max_map_count: a change that splits a kernel mapping needs
 * a new one).  Unmap more instead, so that less needs splitting: every page
 * around the range that is not pinned (pinned pages must stay mapped: the
 * kernel may be doing I/O into them), up to the VMA's ends, becomes
 * PROT_NONE,
 *
 *  1. in one mmap: its ends cut at most one side of a kernel mapping, which
 *     munmap allows (it may go over the limit briefly to free resources);
 *     but mmap refuses everything once the process is over the limit;
 *  2. or else with mprotect, which needs no new mapping where it changes
 *     whole kernel mappings, and changes nothing (so splits nothing) where
 *     they are PROT_NONE already: without a pinned page in the VMA, it
 *     splits nothing at all.  The slots stay mapped, out of reach, until
 *     their pages are mapped again (always with a fresh mmap, since the
 *     bitmaps say they are not mapped).
 *
 * The pages unmapped on the way stay in RAM: the next access maps them
 * again.  Only pinned pages next to the range, inside one kernel mapping
 * with it, defeat both.  Updates the bitmaps; returns where it stopped
 * unmapping in *end (>= i + count) on success. */
static gboolean
vma_replace_wider (BfVma *vma, guint64 i, guint64 count, guint64 *end)
{
  BfHandle *handle = vma->handle;
  guint64 a = i, b = i + count;

  while (a > 0 && !vma_page_pinned (vma, a - 1))
    a--;
  while (b < vma->n_pages && !vma_page_pinned (vma, b))
    b++;
  if (!vma_replace (vma, a, b - a, FALSE)
      && mprotect (vma->start + (a << handle->page_shift), (gsize)(b - a) << handle->page_shift,
                   PROT_NONE)
             != 0)
    return FALSE;
  vma_forget_range (vma, a, b);
  *end = b;
  return TRUE;
}

/* Unmap pages [i, i+count) of @vma: what shows there again is the base file
 * where there is one (and it is not hidden), PROT_NONE elsewhere.  @hide
 * first hides the range: PROT_NONE everywhere, for good (a dirty page must
 * never show the file's stale data; the flush hides whole VMAs).
 *
 * A page that stayed mapped must never be reused for other data while the
 * mapping shows its slot, so this either unmaps every page of the range
 * (and perhaps more: vma_replace_wider) and returns TRUE, or leaves the
 * pages it could not unmap mapped as they were and returns FALSE: the
 * caller then keeps them. */
static gboolean
vma_unmap_range_full (BfVma *vma, guint64 i, guint64 count, gboolean hide)
{
  guint64 end = i + count;
  guint64 before = vma_boundaries_near (vma, i, end - 1);
  gboolean ok = TRUE, widened = FALSE;

  bf_assert_locked ();
  g_assert (count > 0 && end <= vma->n_pages);

  /* A hidden page that stays mapped is still right: hidden only says what
   * shows once it is unmapped. */
  if (hide)
    for (guint64 j = i; j < MIN (end, vma->base_end); j++)
      bit_set (vma->hidden, j, TRUE);

  /* One call per run of pages that will show the same thing. */
  for (guint64 j = i; j < end;)
    {
      gboolean base = vma_shows_base (vma, j);
      guint64 k = j + 1, wide_end;

      while (k < end && vma_shows_base (vma, k) == base)
        k++;
      if (vma_replace (vma, j, k - j, base))
        for (guint64 n = j; n < k; n++)
          {
            bit_set (vma->mapped, n, FALSE);
            bit_set (vma->writable, n, FALSE);
          }
      else if (vma_replace_wider (vma, j, k - j, &wide_end))
        {
          widened = TRUE;
          k = MAX (k, MIN (wide_end, end));
        }
      else
        ok = FALSE;
      j = k;
    }

  /* The wider replacement changed pages outside the range: count again. */
  if (widened)
    vma_account (vma, vma->boundaries, bf_vma_count_boundaries (vma));
  else
    vma_account (vma, before, vma_boundaries_near (vma, i, end - 1));
  return ok;
}

static gboolean
vma_unmap_range (BfVma *vma, guint64 i, guint64 count)
{
  return vma_unmap_range_full (vma, i, count, FALSE);
}

static gboolean
vma_unmap_page (BfVma *vma, guint64 index)
{
  guint64 i = index - vma->page_offset;

  return !bit_get (vma->mapped, i) || vma_unmap_range (vma, i, 1);
}

/* The pages of @vma that a read pin holds over the base file (NULL
 * entries), as a bitmap to free; NULL if there are none. */
static guint64 *
vma_base_pins (BfVma *vma)
{
  guint64 *map = NULL;

  for (guint p = 0; p < vma->pins->len; p++)
    {
      VmaPin *pin = &g_array_index (vma->pins, VmaPin, p);
      guint64 first = pin->offset >> vma->handle->page_shift;

      for (guint k = 0; k < pin->pages->len; k++)
        if (g_ptr_array_index (pin->pages, k) == NULL)
          {
            if (map == NULL)
              map = g_new0 (guint64, (vma->n_pages + 63) / 64);
            bit_set (map, first + k, TRUE);
          }
    }
  return map;
}

/* Drop every mapping of a page that is not pinned, in all VMAs.  Over a
 * base file that is not enough (each scattered dirty page needs two kernel
 * mappings, and the base one around it), so a VMA with a base is hidden
 * whole, pinned pages apart: it then works as one without a base (clean
 * pages load as copies) and costs one kernel mapping.  A page read-pinned
 * over the base is pinned too: its pin promised that it stays readable
 * without a fault.
 *
 * @all also replaces what is not mapped: after the kernel refused changes
 * at vm.max_map_count, some pages that count as unmapped may still be
 * separate kernel mappings (made PROT_NONE by mprotect, see
 * vma_replace_wider), which only a fresh mapping over them gives back. */
static void
flush_mappings_full (gboolean all)
{
  GPtrArray *vmas = registry;

  bf_assert_locked ();

  for (guint v = 0; vmas != NULL && v < vmas->len; v++)
    {
      BfVma *vma = g_ptr_array_index (vmas, v);
      gboolean hide = vma->base_end > 0 || all;
      g_autofree guint64 *base_pins = vma->base_end > 0 ? vma_base_pins (vma) : NULL;
      guint64 i = 0;

      /* One PROT_NONE mapping, whatever its stale bitmaps say. */
      if (vma_is_forked (vma))
        continue;

      while (i < vma->n_pages)
        {
          guint64 j;

          /* Skip what needs nothing done, a word at a time. */
          if (!all && i % 64 == 0 && vma->mapped[i / 64] == 0
              && (!hide || i >= vma->base_end || vma->hidden[i / 64] == ~(guint64)0))
            {
              i += 64;
              continue;
            }
          for (j = i; j < vma->n_pages; j++)
            {
              BfPage *page;

              if (base_pins != NULL && bit_get (base_pins, j))
                break;
              if (!bit_get (vma->mapped, j))
                {
                  if (all || (hide && vma_shows_base (vma, j)))
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

static void
flush_mappings (void)
{
  flush_mappings_full (FALSE);
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

  bf_assert_locked ();

  if (vma_is_forked (vma))
    {
      /* Reached only by a fault whose load callback forked (see "fork()"):
       * the slot is the parent's. */
      bf_set_forked_error (error, handle->ram, "Cannot map a page");
      return FALSE;
    }
  if (bit_get (vma->mapped, i) && bit_get (vma->writable, i) == writable)
    return TRUE;

  g_assert (!writable || bf_page_map_writable (page));
  ensure_kernel_maps_room ();
  for (gboolean flushed = FALSE;; flushed = TRUE)
    {
      gboolean done;

      before = vma_boundaries_near (vma, i, i);
      if (bit_get (vma->mapped, i))
        done = mprotect (addr, ps, prot) == 0;
      else
        /* MAP_POPULATE fills the page tables now, in one go, instead of
         * one minor fault per 4 KiB when the program touches the page. */
        done = mmap (addr, ps, prot, MAP_SHARED | MAP_FIXED | MAP_POPULATE, handle->pool->memfd,
                     (off_t)(page->slot * ps))
               != MAP_FAILED;
      if (done)
        break;
      /* At vm.max_map_count (the rest of the process may have used it up,
       * whatever the engine counts): give back the kernel mappings of every
       * page that is not pinned, once, and try again. */
      if (errno != ENOMEM || flushed)
        goto fail;
      flush_mappings_full (TRUE);
    }
  bit_set (vma->mapped, i, TRUE);
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

/* Make @page read-only wherever it is mapped writable.  FALSE if some
 * mapping could be neither protected nor unmapped (at vm.max_map_count):
 * it stays writable, and the caller must not count on seeing writes. */
static gboolean
vma_write_protect_page (BfPage *page)
{
  BfHandle *handle = page->handle;
  gboolean ok = TRUE;

  bf_assert_locked ();

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
          guint64 first, end;

          /* Could only be ENOMEM from splitting (at vm.max_map_count);
           * keeping it writable would let a write slip past dirty
           * tracking.  Protect its whole kernel mapping, which splits
           * nothing (the other pages there are dirty too, and fault once
           * more when written), or else hide the page. */
          vma_run (vma, i, &first, &end);
          if (vma_range_has_pin (vma, first, end)
              || mprotect (vma->start + (first << handle->page_shift),
                           (gsize)(end - first) << handle->page_shift, PROT_READ)
                     != 0)
            {
              ok &= vma_unmap_range_full (vma, i, 1, TRUE);
              continue;
            }
          before = vma_boundaries_near (vma, first, end - 1);
          for (guint64 j = first; j < end; j++)
            bit_set (vma->writable, j, FALSE);
          vma_account (vma, before, vma_boundaries_near (vma, first, end - 1));
          continue;
        }
      bit_set (vma->writable, i, FALSE);
      vma_account (vma, before, vma_boundaries_near (vma, i, i));
    }
  return ok;
}

static gboolean
vma_unmap_page_all (BfPage *page)
{
  gboolean ok = TRUE;

  bf_assert_locked ();
  for (GList *l = page->handle->vmas.head; l != NULL; l = l->next)
    {
      BfVma *vma = l->data;
      if (vma_covers (vma, page->index))
        ok &= vma_unmap_page (vma, page->index);
    }
  return ok;
}

/* Show @page (dirty) in @vma where the base file would show its stale
 * data: map it, or failing that hide the base (PROT_NONE), so that an
 * access faults and maps it then.  FALSE if neither could be done (at
 * vm.max_map_count): the base still shows there. */
static gboolean
vma_show_over_base (BfVma *vma, BfPage *page)
{
  guint64 i = page->index - vma->page_offset;

  bf_assert_locked ();

  if (!vma_shows_base (vma, i) || bit_get (vma->mapped, i))
    return TRUE;
  /* Read-only: the page may have to become clean again (page_set_dirty)
   * if another VMA fails; a write faults once more and maps it writable. */
  return vma_map_page (vma, page, FALSE, NULL) || vma_unmap_range_full (vma, i, 1, TRUE);
}

/* Reclaim @page (clean, in the LRU).  Reclaim goes in LRU order, and in a
 * sequential scan the pages after this one in the LRU are its next indexes,
 * to be reclaimed next: unmap them too, in the same call, so that their own
 * reclaim costs no system call.  They stay loaded; an access before their
 * turn maps them again without loading. */
#define RECLAIM_UNMAP_AHEAD 16

static gboolean
vma_unmap_for_reclaim (BfPage *page)
{
  BfHandle *handle = page->handle;
  gboolean ok = TRUE;

  bf_assert_locked ();

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
      /* Not mapped: an earlier reclaim unmapped it ahead, nothing to do.
       * What counts is that this page goes; the ones ahead may stay. */
      if (bit_get (vma->mapped, page->index - vma->page_offset)
          && !vma_unmap_range (vma, page->index - vma->page_offset, count))
        ok &= vma_unmap_page (vma, page->index);
    }
  return ok;
}

/* A dirty page must show over the base file in every VMA that covers it. */
static gboolean
vma_show_dirty_all (BfPage *page)
{
  gboolean ok = TRUE;

  for (GList *l = page->handle->vmas.head; l != NULL; l = l->next)
    if (vma_covers (l->data, page->index))
      ok &= vma_show_over_base (l->data, page);
  return ok;
}

/* -- following the base file's size ---------------------------------------- */

/* The pages of the base file that hold data: the complete ones and the
 * partial last one, as the handle last saw them. */
static inline guint64
base_data_pages (BfHandle *handle)
{
  return (handle->base_size + handle->page_size - 1) >> handle->page_shift;
}

/* Drop page @index if it is a clean copy of file data that nothing holds
 * (no pin, no I/O): it was loaded at some earlier time, and the file may
 * have changed since.  Called before a write makes the page dirty, so that
 * the dirty page starts from the file as it is now (else writeout would
 * store the copy's stale bytes over another writer's change), and before an
 * API read where the VMA shows the file. */
static void
page_drop_stale_copy (BfHandle *handle, guint64 index)
{
  BfPage *page = bf_handle_lookup (handle, index);

  if (page != NULL && page->state == BF_PAGE_LOADED && page->pin_count == 0 && page->io_refs == 0
      && index < base_data_pages (handle))
    bf_page_drop (page);
}

/* Where the run of unmapped pages of @vma that look like page @j (the
 * file, or PROT_NONE) ends, at most at @end. */
static guint64
vma_unmapped_run_end (BfVma *vma, guint64 j, guint64 end)
{
  gboolean base = vma_shows_base (vma, j);
  guint64 k = j + 1;

  while (k < end)
    {
      if (k % 64 == 0 && k + 64 <= end && vma_word_alike (vma, k / 64)
          && vma_shows_base (vma, k) == base)
        {
          k += 64;
          continue;
        }
      if (bit_get (vma->mapped, k) || vma_shows_base (vma, k) != base)
        break;
      k++;
    }
  return k;
}

/* Clear the bits [lo, hi) of @map. */
static void
bits_clear (guint64 *map, guint64 lo, guint64 hi)
{
  for (guint64 j = lo; j < hi;)
    {
      if (j % 64 == 0 && j + 64 <= hi)
        {
          map[j / 64] = 0;
          j += 64;
          continue;
        }
      bit_set (map, j, FALSE);
      j++;
    }
}

/* Make pages [0, @base_end) of @vma (relative) the ones that show the base
 * file.  The pages in between change look where nothing is mapped: the file
 * shows there from now on, or PROT_NONE.  Dirty pages that come to lie over
 * the file are mapped first (hidden if that fails), so that the file's data
 * never shows in their place; what is mapped stays (the clean copies there
 * are for the caller to drop).  The kernel-map accounting is redone over the
 * pages that change. */
static void
vma_set_base_end (BfVma *vma, guint64 base_end)
{
  BfHandle *handle = vma->handle;
  guint64 lo = MIN (vma->base_end, base_end), hi = MAX (vma->base_end, base_end);
  gboolean grow = base_end > vma->base_end;
  guint64 before;

  if (lo == hi)
    return;
  if (grow)
    for (GList *l = handle->dirty.head; l != NULL; l = l->next)
      {
        BfPage *page = l->data;

        if (vma_covers (vma, page->index) && page->index - vma->page_offset >= lo
            && page->index - vma->page_offset < hi)
          vma_map_page (vma, page, bf_page_map_writable (page), NULL);
      }

  ensure_kernel_maps_room ();
  before = vma_boundaries_near (vma, lo, hi - 1);
  vma->base_end = base_end;
  if (grow)
    {
      for (GList *l = handle->dirty.head; l != NULL; l = l->next)
        {
          BfPage *page = l->data;
          guint64 i = page->index - vma->page_offset;

          if (vma_covers (vma, page->index) && i >= lo && i < hi && !bit_get (vma->mapped, i))
            bit_set (vma->hidden, i, TRUE);
        }
    }
  else
    bits_clear (vma->hidden, lo, hi); /* hidden[i] => i < base_end */

  for (guint64 j = lo; j < hi;)
    {
      guint64 k;

      if (bit_get (vma->mapped, j))
        {
          j++;
          continue;
        }
      k = vma_unmapped_run_end (vma, j, hi);
      if (!vma_replace (vma, j, k - j, vma_shows_base (vma, j)))
        {
          guint64 end;

          /* At vm.max_map_count.  Growing, PROT_NONE where the file would
           * show is still right once hidden (a fault loads a copy);
           * shrinking, the file must not show past its end (SIGBUS). */
          if (!vma_replace_wider (vma, j, k - j, &end))
            g_warning ("Could not follow the file's new size in a mapping at %p: the "
                       "process has reached vm.max_map_count mappings",
                       vma->start);
          else
            k = MAX (k, MIN (end, hi));
        }
      j = k;
    }
  vma_account (vma, before, vma_boundaries_near (vma, lo, hi - 1));
}

/* Drop the clean copies of pages [from, to) of @handle (pinned ones and
 * ones in use become orphans, as with an invalidation), and the loads in
 * flight there, whose data may be stale. */
static void
handle_drop_copies (BfHandle *handle, guint64 from, guint64 to)
{
  g_autoptr (GPtrArray) pages = g_ptr_array_new ();

  if (to - from <= g_hash_table_size (handle->pages))
    {
      for (guint64 index = from; index < to; index++)
        {
          BfPage *page = bf_handle_lookup (handle, index);
          if (page != NULL)
            g_ptr_array_add (pages, page);
        }
    }
  else
    {
      GHashTableIter iter;
      gpointer value;

      g_hash_table_iter_init (&iter, handle->pages);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        if (((BfPage *)value)->index >= from && ((BfPage *)value)->index < to)
          g_ptr_array_add (pages, value);
    }
  for (guint k = 0; k < pages->len; k++)
    {
      BfPage *page = g_ptr_array_index (pages, k);
      if (page->state == BF_PAGE_LOADED || page->state == BF_PAGE_LOADING)
        bf_page_drop (page);
    }
}

/* The base file of @handle is @size bytes long now: make every VMA show it.
 * This is the one place where a VMA's base_end changes after map; it is fed
 * by fstat (vma_notice_base), and could be by a size the handle knows.
 *
 * Pages that became complete show the file (dirty ones stay over it);
 * pages that are no longer complete stop showing it (they load as copies:
 * zeros past the end).  The clean copies of the pages whose data the change
 * may have changed (from the first page that was or is incomplete to the
 * end of the file, old or new) are dropped: they load afresh, or the file
 * shows, on the next access. */
static void
vma_set_base_size (BfHandle *handle, guint64 size)
{
  guint64 old = handle->base_size, pages = size >> handle->page_shift;
  guint64 ps = handle->page_size;

  bf_assert_locked ();
  if (size == old)
    return;
  handle->base_size = size;
  for (GList *l = handle->vmas.head; l != NULL; l = l->next)
    {
      BfVma *vma = l->data;

      vma_set_base_end (vma, pages > vma->page_offset ? MIN (pages - vma->page_offset, vma->n_pages)
                                                      : 0);
    }
  handle_drop_copies (handle, MIN (old, size) >> handle->page_shift,
                      (MAX (old, size) + ps - 1) >> handle->page_shift);
}

/* How much of the base file @handle may show, given the file's length:
 * not past the lowest size the handle was given since the file was last
 * resized (its bytes past that read as zeros, whatever the file has). */
static guint64
vma_base_size_now (BfHandle *handle, guint64 file_length)
{
  bf_handle_follow_file_size (handle, file_length);
  return MIN (file_length, handle->zero_from);
}

/* Look at the size of the base file again (an fstat: cheap next to a load,
 * and it does not wait for the disk) and show what the file has now.  If
 * fstat fails, the handle keeps the size it knew. */
static void
vma_notice_base (BfHandle *handle)
{
  struct stat st;

  bf_assert_locked ();
  if (handle->base_fd >= 0 && fstat (handle->base_fd, &st) == 0 && st.st_size >= 0)
    vma_set_base_size (handle, vma_base_size_now (handle, (guint64)st.st_size));
}

/* One API access (a copy, a populate or a pin) over a base file. */
typedef struct
{
  gboolean noticed; /* the base file's size was looked at */
  guint64 prepared; /* the last page vma_before_access() ran for */
} VmaAccess;

/* Before page @index of @vma is got from RAM for an access: past the end
 * of the file as last seen, the file may have grown over it (looked at once
 * per access); a clean copy that may be stale goes before a write, or a
 * read where the VMA shows the file.  Once per page: after a retry, the
 * copy there is the one just loaded. */
static void
vma_before_access (BfVma *vma, guint64 index, gboolean write, VmaAccess *acc)
{
  BfHandle *handle = vma->handle;
  guint64 i = index - vma->page_offset;

  if (handle->base_fd < 0 || acc->prepared == index)
    return;
  acc->prepared = index;
  if (!acc->noticed && i >= vma->base_end)
    {
      acc->noticed = TRUE;
      vma_notice_base (handle);
    }
  if (write || vma_shows_base (vma, i))
    page_drop_stale_copy (handle, index);
}

/* Pages from @first_page on stop showing the base file: the handle's size
 * went below the file's there (zero_from), so the file's bytes past it are
 * not what the handle shows.  Pages mapped from slots stay; the others
 * become PROT_NONE and fault, to load (and clear past the size) as without
 * a base. */
static void
vma_clip_base_all (BfHandle *handle, guint64 first_page)
{
  bf_assert_locked ();
  if (handle->base_fd >= 0)
    vma_set_base_size (handle, MIN (handle->base_size, first_page << handle->page_shift));
}

/* The reverse map that page.c calls through handle->rmap. */
static const BfRmapOps vma_rmap_ops = {
  .unmap = vma_unmap_page_all,
  .write_protect = vma_write_protect_page,
  .show_dirty = vma_show_dirty_all,
  .unmap_for_reclaim = vma_unmap_for_reclaim,
  .base_changed = vma_notice_base,
  .clip_base = vma_clip_base_all,
};

BfFaultResult
bf_fault_locked (void *addr, int write, GError **error)
{
  gboolean noticed = FALSE, prepared = FALSE;

  bf_assert_locked ();
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
      want_write = write > 0 || (write < 0 && (mapped || vma_shows_base (vma, i)));

      /* Another thread may have mapped the page since this fault was raised. */
      if (mapped && (writable || !want_write))
        return BF_FAULT_HANDLED;

      /* Past the end of the base file as last seen: the file may have
       * grown over the page.  If it now shows there, a read is served (a
       * write, or an access of unknown direction that was one, faults
       * again on the file's read-only page). */
      if (!noticed && vma->handle->base_fd >= 0 && i >= vma->base_end)
        {
          noticed = TRUE;
          vma_notice_base (vma->handle);
          if (write <= 0 && !bit_get (vma->mapped, i) && vma_shows_base (vma, i))
            return BF_FAULT_HANDLED;
          continue;
        }
      /* The dirty page must start from the file as it is now (once: after
       * a retry, the copy there is the one just loaded). */
      if (want_write && !prepared && vma->handle->base_fd >= 0)
        page_drop_stale_copy (vma->handle, index);
      prepared = TRUE;

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
  bf_assert_locked ();
  for (guint i = 0; i < pin->pages->len; i++)
    {
      BfPage *page = g_ptr_array_index (pin->pages, i);
      BfHandle *handle;
      gboolean orphaned;

      if (page == NULL)
        continue; /* over the base file: nothing was held */
      handle = page->handle;
      orphaned = page->orphaned;
      bf_page_unpin (page, pin->writable);
      /* A clean copy of file data, pinned where the file could not show
       * (the partial last page, a hidden VMA), goes with its last pin, as
       * an API read's copy does: kept, it would go stale. */
      if (!orphaned && handle->base_fd >= 0)
        page_drop_stale_copy (handle, page->index);
    }
  g_ptr_array_unref (pin->pages);
}

/* Does every page that @pin holds over the base file (NULL entries, from
 * page @first on) still show it in @vma? */
static gboolean
vma_pin_base_holds (BfVma *vma, VmaPin *pin, guint64 first)
{
  for (guint k = 0; k < pin->pages->len; k++)
    if (g_ptr_array_index (pin->pages, k) == NULL
        && !vma_shows_base (vma, first + k - vma->page_offset))
      return FALSE;
  return TRUE;
}

/* A run of pages of a VMA (relative) to populate from the base file. */
typedef struct
{
  guint64 i, count;
} VmaRun;

/* Does the kernel know MADV_POPULATE_READ (Linux 5.14)?  Asked once, on a
 * page of our own: an EINVAL on a VMA could also mean a page was hidden. */
static gboolean
populate_read_supported (void)
{
  static gint supported = -1; /* atomic: -1 not known yet */
  gint s = g_atomic_int_get (&supported);

  if (s < 0)
    {
      gsize sys = (gsize)sysconf (_SC_PAGESIZE);
      void *p = mmap (NULL, sys, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

      s = p != MAP_FAILED && madvise (p, sys, MADV_POPULATE_READ) == 0;
      if (p != MAP_FAILED)
        munmap (p, sys);
      g_atomic_int_set (&supported, s);
    }
  return s;
}

/* Have the kernel read the pages of @runs from @vma's base file into its
 * page cache and map them, as faults would, for a read populate or pin.
 * Runs with the engine lock RELEASED: it may wait for the disk.  A read
 * error, or a file cut short under the pages, comes back as a GError here
 * rather than as SIGBUS later. */
static gboolean
vma_populate_base (BfVma *vma, GArray *runs, GError **error)
{
  guint shift = vma->handle->page_shift; /* immutable, as vma->start */

  for (guint r = 0; r < runs->len; r++)
    {
      VmaRun *run = &g_array_index (runs, VmaRun, r);
      guint8 *addr = vma->start + (run->i << shift);
      gsize len = (gsize)run->count << shift;
      int rc, errsv;

      do
        rc = madvise (addr, len, MADV_POPULATE_READ);
      while (rc != 0 && errno == EINTR);
      if (rc == 0)
        continue;
      errsv = errno;
      if (errsv == EINVAL)
        {
          /* Hidden since the lock was released (PROT_NONE): nothing to
           * populate, the caller looks again.  On an old kernel, touch
           * every page, as the program would. */
          if (!populate_read_supported ())
            {
              gsize sys = (gsize)sysconf (_SC_PAGESIZE);
              for (gsize off = 0; off < len; off += sys)
                (void)*(volatile const guint8 *)(addr + off);
            }
          continue;
        }
      g_set_error (
          error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED,
          "Could not read pages %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT " from the file: %s%s",
          vma->page_offset + run->i, vma->page_offset + run->i + run->count - 1, g_strerror (errsv),
          errsv == EFAULT ? " (a read error, or the file is shorter than it was)" : "");
      return FALSE;
    }
  return TRUE;
}

/* Show the handle's base file in @vma, not yet registered: look at its
 * size (bringing the other VMAs up to date, vma_set_base_size), then map
 * the complete pages that @vma covers, read-only and shared: the kernel's
 * page cache, no copy, no fault. */
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
  vma_set_base_size (handle, vma_base_size_now (handle, (guint64)MAX (st.st_size, 0)));

  /* Only whole pages: reading past the end of a file mapping is SIGBUS. */
  file_pages = handle->base_size >> handle->page_shift;
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
      vma->base_end = 0;
      return FALSE;
    }
  return TRUE;
}

static void
vma_free_unregistered (BfVma *vma)
{
  munmap (vma->start, vma->length);
  g_array_unref (vma->pins);
  g_free (vma->mapped);
  g_free (vma->writable);
  g_free (vma->hidden);
  g_free (vma);
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
          /* Practically impossible: the mprotect of a whole VMA splits no
           * kernel mapping (those at its ends are PROT_NONE already, or
           * ours alone), so even at vm.max_map_count it goes through.
           * But a child that can still write to the parent's pages must not
           * run.  Only async-signal-safe calls here. */
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
  bf_memcheck_vma_addressable (addr, length);

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

  bf_lock ();
  if (handle->closed)
    {
      bf_unlock ();
      vma_free_unregistered (vma);
      g_set_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_CLOSED,
                   "Cannot map: the handle is closed");
      return NULL;
    }
  /* Over a base file, its complete pages show through at once.  Under the
   * lock, since the size the other VMAs show is brought up to date. */
  if (handle->base_fd >= 0 && !vma_map_base (vma, handle, error))
    {
      bf_unlock ();
      vma_free_unregistered (vma);
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

  /* Changed pages must show over the file.  If one cannot (at
   * vm.max_map_count), hide the whole file in this VMA, which then works
   * as one without a base, or give up. */
  if (handle->base_fd >= 0)
    {
      gboolean shown = TRUE;

      for (GList *l = handle->dirty.head; l != NULL; l = l->next)
        if (vma_covers (vma, ((BfPage *)l->data)->index))
          shown &= vma_show_over_base (vma, l->data);
      if (!shown && !vma_unmap_range_full (vma, 0, vma->base_end, TRUE))
        {
          bf_unlock ();
          bf_vma_free (vma);
          g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_MAP_FAILED,
                       "Could not show the changed pages over the file: the process has "
                       "reached vm.max_map_count mappings");
          return NULL;
        }
    }
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
      /* munmap can only fail (ENOMEM) if the whole range lies inside one
       * kernel mapping merged with both neighbours, which only a range of
       * one look can be; still, never leave slots visible that will be
       * reused: put PROT_NONE there instead. */
      if (munmap (vma->start, vma->length) != 0
          && mmap (vma->start, vma->length, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0)
                 == MAP_FAILED)
        g_warning ("Could not unmap a bigfile mapping at %p: %s", vma->start, g_strerror (errno));
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

  bf_assert_locked ();

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
  VmaAccess acc = { FALSE, G_MAXUINT64 };
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
      vma_before_access (vma, index, write, &acc);
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
  VmaAccess acc = { FALSE, G_MAXUINT64 };
  g_autoptr (GArray) runs = g_array_new (FALSE, FALSE, sizeof (VmaRun));
  guint64 first, end, index;

  if (!vma_check_range (vma, offset, len, error))
    return FALSE;
  if (len == 0)
    return TRUE;
  first = vma_first_index (vma, offset);
  end = vma_end_index (vma, offset, len);

  bf_lock ();
again:
  if (hold)
    pin.pages = g_ptr_array_new ();
  g_array_set_size (runs, 0);
  for (index = first; index < end;)
    {
      guint64 i = index - vma->page_offset;
      BfPage *page = NULL;

      if (!vma_check_mapped (vma, error))
        goto fail;
      vma_before_access (vma, index, write, &acc);
      /* A read of a page that shows the file: the page cache has it.
       * Nothing to load (a copy would go stale), nothing to hold. */
      if (!write && vma_shows_base (vma, i) && !bit_get (vma->mapped, i))
        {
          VmaRun *last = runs->len > 0 ? &g_array_index (runs, VmaRun, runs->len - 1) : NULL;

          if (last != NULL && last->i + last->count == i)
            last->count++;
          else
            g_array_append_val (runs, ((VmaRun){ i, 1 }));
          if (hold)
            g_ptr_array_add (pin.pages, NULL);
          index++;
          continue;
        }
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

  if (runs->len > 0)
    {
      gboolean ok;

      bf_unlock ();
      ok = vma_populate_base (vma, runs, error);
      bf_lock ();
      if (!ok || !vma_check_mapped (vma, error))
        goto fail;
      /* While the lock was released, the flush may have hidden pages that
       * the pin holds over the file (it leaves alone only the pins it
       * knows of): start again, those pages load as copies now. */
      if (hold && !vma_pin_base_holds (vma, &pin, first))
        {
          vma_pin_release (&pin);
          acc.prepared = G_MAXUINT64;
          goto again;
        }
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
