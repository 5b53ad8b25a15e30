/* bigfile-glib - the invariant walker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Checks every rule that engine-private.h writes down, as SQLite's
 * assert_pager_state() does for its pager: the page invariants, the lists
 * against the states, the dirty counts, the RAM's accounting, each VMA's
 * bitmaps against its pages, the kernel-map accounting and, on request, the
 * kernel's own view of every page (/proc/self/maps: protection, and which
 * memfd slot or file offset shows there).  The model and thread tests run
 * it after every step.  It only reads; it takes the engine lock itself.
 *
 * It sits above every other file of the engine (it looks at all of them)
 * and nothing in the engine calls it.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "engine-private.h"

/* Problems found, at most this many reported (the first ones). */
#define MAX_PROBLEMS 8

typedef struct
{
  GString *text;
  guint n;
} Problems;

static void problem (Problems *p, const char *format, ...) G_GNUC_PRINTF (2, 3);

static void
problem (Problems *p, const char *format, ...)
{
  va_list args;

  if (p->n++ >= MAX_PROBLEMS)
    return;
  if (p->text->len > 0)
    g_string_append (p->text, "; ");
  va_start (args, format);
  g_string_append_vprintf (p->text, format, args);
  va_end (args);
}

#define CHECK(p, cond, ...)                                                                        \
  G_STMT_START                                                                                     \
  {                                                                                                \
    if (!(cond))                                                                                   \
      problem ((p), __VA_ARGS__);                                                                  \
  }                                                                                                \
  G_STMT_END

/* -- pages and handles ------------------------------------------------------- */

static void
check_page (Problems *p, BfHandle *handle, guint64 key, BfPage *page)
{
  guint64 i = page->index;
  gboolean want_lru = page->state == BF_PAGE_LOADED && page->pin_count == 0 && page->io_refs == 0
                      && !page->orphaned;

  CHECK (p, page->index == key, "page %" G_GUINT64_FORMAT " is filed as %" G_GUINT64_FORMAT, i,
         key);
  CHECK (p, page->handle == handle, "page %" G_GUINT64_FORMAT " belongs to another handle", i);
  CHECK (p, !page->orphaned, "page %" G_GUINT64_FORMAT " is orphaned but in the table", i);
  CHECK (p,
         page->state == BF_PAGE_LOADING || page->state == BF_PAGE_LOADED
             || page->state == BF_PAGE_DIRTY,
         "page %" G_GUINT64_FORMAT " is in the table in state %d", i, page->state);
  CHECK (p, page->slot < handle->pool->n_slots,
         "page %" G_GUINT64_FORMAT " has slot %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT, i,
         page->slot, handle->pool->n_slots);
  CHECK (p, page->in_lru == want_lru, "page %" G_GUINT64_FORMAT " in_lru=%d, want %d", i,
         page->in_lru, want_lru);
  CHECK (p, page->in_dirty == (page->state == BF_PAGE_DIRTY),
         "page %" G_GUINT64_FORMAT " in_dirty=%d in state %d", i, page->in_dirty, page->state);
  CHECK (p, !page->storing || (page->state == BF_PAGE_DIRTY && page->writers == 0),
         "page %" G_GUINT64_FORMAT " is storing in state %d with %u writers", i, page->state,
         page->writers);
  CHECK (p, page->writers == 0 || page->state == BF_PAGE_DIRTY,
         "page %" G_GUINT64_FORMAT " has %u writers in state %d", i, page->writers, page->state);
  CHECK (p, page->write_pins <= page->pin_count,
         "page %" G_GUINT64_FORMAT " has %u write pins of %u pins", i, page->write_pins,
         page->pin_count);
  CHECK (p, page->write_pins == 0 || page->state == BF_PAGE_DIRTY,
         "page %" G_GUINT64_FORMAT " has write pins in state %d", i, page->state);
  CHECK (p,
         !page->store_intact
             || (page->state == BF_PAGE_DIRTY && page->write_pins == 0 && page->writers == 0
                 && !page->storing),
         "page %" G_GUINT64_FORMAT " is store_intact in state %d (%u write pins, %u writers)", i,
         page->state, page->write_pins, page->writers);
  CHECK (p, !page->conflict || page->state == BF_PAGE_DIRTY,
         "page %" G_GUINT64_FORMAT " is a conflict in state %d", i, page->state);
  /* In a transactional handle, what was stored is intact only while its
   * transaction is open (or its writeout is committing): otherwise a
   * MARKSTORED could clean a page the storage does not have. */
  CHECK (p,
         !page->store_intact || !bf_handle_is_transactional (handle) || handle->txn_open
             || handle->writeout_running,
         "page %" G_GUINT64_FORMAT " is store_intact with no transaction open", i);
  CHECK (p, page->state != BF_PAGE_LOADING || (page->io_refs > 0 && page->io_thread != NULL),
         "page %" G_GUINT64_FORMAT " is loading with no loader", i);

  /* A clean page shows zeros past the size ("Sizes" in page.c). */
  if (page->state == BF_PAGE_LOADED && handle->size != BF_NO_SIZE && page->writers == 0)
    {
      gsize from = bf_handle_offset_in_page (handle, i, handle->size);
      const guint8 *mem = bf_pool_slot_addr (handle->pool, page->slot);

      for (gsize b = from; b < handle->page_size; b++)
        if (mem[b] != 0)
          {
            problem (p,
                     "clean page %" G_GUINT64_FORMAT " has byte %" G_GSIZE_FORMAT
                     " = 0x%02x past the size of %" G_GUINT64_FORMAT " bytes",
                     i, b, mem[b], handle->size);
            break;
          }
    }
}

static void
check_handle_pages (Problems *p, BfHandle *handle)
{
  GHashTableIter iter;
  gpointer key, value;
  guint64 n_dirty = 0;

  g_hash_table_iter_init (&iter, handle->pages);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      check_page (p, handle, *(guint64 *)key, value);
      n_dirty += ((BfPage *)value)->state == BF_PAGE_DIRTY;
    }

  CHECK (p, handle->n_dirty == handle->dirty.length,
         "the handle counts %" G_GUINT64_FORMAT " dirty pages, its list has %u", handle->n_dirty,
         handle->dirty.length);
  CHECK (p, n_dirty == handle->dirty.length,
         "the table has %" G_GUINT64_FORMAT " dirty pages, the list %u", n_dirty,
         handle->dirty.length);
  for (GList *l = handle->dirty.head; l != NULL; l = l->next)
    {
      BfPage *page = l->data;

      CHECK (p, bf_handle_lookup (handle, page->index) == page,
             "dirty page %" G_GUINT64_FORMAT " is not in the table", page->index);
      CHECK (p, page->in_dirty && page->state == BF_PAGE_DIRTY,
             "page %" G_GUINT64_FORMAT " in the dirty list is in state %d", page->index,
             page->state);
    }
  CHECK (p, !handle->closed || g_hash_table_size (handle->pages) == 0,
         "the handle is closed with %u pages", g_hash_table_size (handle->pages));
}

/* -- RAM --------------------------------------------------------------------- */

static void
check_ram (Problems *p, BfRam *ram)
{
  guint64 resident = 0, used = 0, n_populated = 0;

  for (guint i = 0; i < ram->pools->len; i++)
    {
      BfPool *pool = g_ptr_array_index (ram->pools, i);
      guint64 free_slots = pool->holes->len + pool->populated->len;

      CHECK (p, free_slots <= pool->n_slots,
             "pool of %" G_GSIZE_FORMAT "-byte pages has %" G_GUINT64_FORMAT
             " free slots of %" G_GUINT64_FORMAT,
             pool->page_size, free_slots, pool->n_slots);
      resident += (pool->n_slots - pool->holes->len) * pool->page_size;
      used += (pool->n_slots - free_slots) * pool->page_size;
      n_populated += pool->populated->len;
    }
  CHECK (p, resident == ram->resident_bytes,
         "RAM counts %" G_GUINT64_FORMAT " resident bytes, its pools hold %" G_GUINT64_FORMAT,
         ram->resident_bytes, resident);
  CHECK (p, used == ram->used_bytes,
         "RAM counts %" G_GUINT64_FORMAT " used bytes, its pools use %" G_GUINT64_FORMAT,
         ram->used_bytes, used);
  /* Over budget only when what is in use does not fit (the budget was
   * lowered under dirty or pinned pages): then no memory is kept spare. */
  CHECK (p, ram->resident_bytes <= ram->budget || n_populated == 0,
         "RAM keeps %" G_GUINT64_FORMAT " spare slots while over its budget (%" G_GUINT64_FORMAT
         " of %" G_GUINT64_FORMAT " bytes)",
         n_populated, ram->resident_bytes, ram->budget);
  CHECK (p, ram->n_dirty <= ram->n_pages,
         "RAM counts %" G_GUINT64_FORMAT " dirty of %" G_GUINT64_FORMAT " pages", ram->n_dirty,
         ram->n_pages);
  for (GList *l = ram->lru.head; l != NULL; l = l->next)
    {
      BfPage *page = l->data;

      CHECK (p, page->in_lru && page->state == BF_PAGE_LOADED && page->handle->ram == ram,
             "page %" G_GUINT64_FORMAT " in the LRU is in state %d", page->index, page->state);
    }
}

/* -- VMAs and the kernel's view of them ---------------------------------------- */

/* One line of /proc/self/maps. */
typedef struct
{
  guintptr start, end;
  char perms[5];
  guint64 offset;
  char path[256];
} KernelMap;

static GArray *
read_kernel_maps (void)
{
  GArray *maps = g_array_new (FALSE, FALSE, sizeof (KernelMap));
  FILE *f = fopen ("/proc/self/maps", "re");
  char line[512];

  if (f == NULL)
    return maps;
  while (fgets (line, sizeof line, f) != NULL)
    {
      KernelMap km = { 0 };
      unsigned long start, end;
      unsigned long long offset;
      int n = 0;

      if (sscanf (line, "%lx-%lx %4s %llx %*s %*s %n", &start, &end, km.perms, &offset, &n) < 4)
        continue;
      km.start = start;
      km.end = end;
      km.offset = offset;
      g_strlcpy (km.path, g_strchomp (line + n), sizeof km.path);
      g_array_append_val (maps, km);
    }
  fclose (f);
  return maps;
}

static const KernelMap *
kernel_map_at (GArray *maps, guintptr addr)
{
  guint lo = 0, hi = maps->len;

  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;
      const KernelMap *km = &g_array_index (maps, KernelMap, mid);

      if (addr < km->start)
        hi = mid;
      else if (addr >= km->end)
        lo = mid + 1;
      else
        return km;
    }
  return NULL;
}

/* What the kernel shows at page i of @vma must be what the bitmaps say:
 * the page's memfd slot (r-- or rw-, shared), the base file at the page's
 * offset (r--, shared), or nothing (---). */
static void
check_kernel_page (Problems *p, BfVma *vma, guint64 i, GArray *maps)
{
  BfHandle *handle = vma->handle;
  guintptr addr = (guintptr)vma->start + ((guintptr)i << handle->page_shift);
  const KernelMap *km = kernel_map_at (maps, addr);
  guint64 index = vma->page_offset + i;
  guint64 offset;

  if (km == NULL)
    {
      problem (p, "page %" G_GUINT64_FORMAT " of a VMA at %p is not mapped at all", index,
               vma->start);
      return;
    }
  offset = km->offset + (addr - km->start);
  if (bit_get (vma->mapped, i))
    {
      BfPage *page = bf_handle_lookup (handle, index);
      gboolean w = bit_get (vma->writable, i);

      CHECK (p, strncmp (km->perms, w ? "rw-s" : "r--s", 4) == 0,
             "page %" G_GUINT64_FORMAT " should be mapped %s, the kernel has %s", index,
             w ? "rw" : "r", km->perms);
      CHECK (p, strstr (km->path, "bigfile-ram") != NULL,
             "page %" G_GUINT64_FORMAT " shows %s, not its RAM slot", index, km->path);
      CHECK (p, page == NULL || offset == page->slot * handle->page_size,
             "page %" G_GUINT64_FORMAT " shows slot offset %" G_GUINT64_FORMAT
             ", its slot is %" G_GUINT64_FORMAT,
             index, offset, page != NULL ? page->slot : 0);
    }
  else if (vma_shows_base (vma, i))
    {
      CHECK (p, strncmp (km->perms, "r--s", 4) == 0 && strstr (km->path, "bigfile-ram") == NULL,
             "page %" G_GUINT64_FORMAT " should show the base file, the kernel has %s %s", index,
             km->perms, km->path);
      CHECK (p, offset == index << handle->page_shift,
             "page %" G_GUINT64_FORMAT " shows the file at offset %" G_GUINT64_FORMAT, index,
             offset);
    }
  else
    CHECK (p, strncmp (km->perms, "---", 3) == 0,
           "page %" G_GUINT64_FORMAT " should be inaccessible, the kernel has %s %s", index,
           km->perms, km->path);
}

static void
check_vma (Problems *p, BfVma *vma, GArray *kernel)
{
  BfHandle *handle = vma->handle;
  guint64 boundaries;

  CHECK (p, vma->registered, "a VMA of the handle at %p is not registered", vma->start);
  CHECK (p, vma->base_end <= vma->n_pages, "the VMA at %p shows the base past its end", vma->start);
  for (guint64 i = 0; i < vma->n_pages; i++)
    {
      guint64 index = vma->page_offset + i;
      gboolean mapped = bit_get (vma->mapped, i), writable = bit_get (vma->writable, i);
      BfPage *page;

      /* Skip what is plainly empty, a word at a time. */
      if (i % 64 == 0 && vma->mapped[i / 64] == 0 && vma->writable[i / 64] == 0
          && (vma->hidden[i / 64] == 0 || i >= vma->base_end) && kernel == NULL)
        {
          i += 63;
          continue;
        }

      CHECK (p, !writable || mapped, "page %" G_GUINT64_FORMAT " is writable but not mapped",
             index);
      CHECK (p, !bit_get (vma->hidden, i) || i < vma->base_end,
             "page %" G_GUINT64_FORMAT " is hidden past the base", index);
      if (mapped)
        {
          page = bf_handle_lookup (handle, index);
          CHECK (p, page != NULL && (page->state == BF_PAGE_LOADED || page->state == BF_PAGE_DIRTY),
                 "page %" G_GUINT64_FORMAT " is mapped but %s", index,
                 page == NULL ? "not in the table" : "not loaded");
          if (writable && page != NULL)
            CHECK (p, bf_page_map_writable (page) || page->write_pins > 0,
                   "page %" G_GUINT64_FORMAT " is mapped writable in state %d%s%s", index,
                   page->state, page->storing ? ", storing" : "",
                   page->store_intact ? ", intact after its store" : "");
        }
      else if (handle->base_fd >= 0 && vma_shows_base (vma, i))
        {
          /* Where the base file shows, a dirty page would be hidden by it. */
          page = bf_handle_lookup (handle, index);
          CHECK (p, page == NULL || page->state != BF_PAGE_DIRTY,
                 "dirty page %" G_GUINT64_FORMAT " is under the base file", index);
        }
      if (kernel != NULL)
        check_kernel_page (p, vma, i, kernel);
    }

  boundaries = bf_vma_count_boundaries (vma);
  CHECK (p, boundaries == vma->boundaries,
         "the VMA at %p counts %" G_GUINT64_FORMAT
         " kernel-map boundaries, it has %" G_GUINT64_FORMAT,
         vma->start, vma->boundaries, boundaries);
}

static void
check_kernel_maps_total (Problems *p)
{
  GPtrArray *registry = bf_vma_registry_locked ();
  guint64 total = 0;

  for (guint i = 0; registry != NULL && i < registry->len; i++)
    {
      BfVma *vma = g_ptr_array_index (registry, i);

      total += 1 + vma->boundaries;
      CHECK (p, i == 0 || ((BfVma *)g_ptr_array_index (registry, i - 1))->start < vma->start,
             "the VMA registry is not sorted at %u", i);
    }
  CHECK (p, total == bf_kernel_maps_locked (),
         "the engine counts %" G_GUINT64_FORMAT " kernel maps, its VMAs %" G_GUINT64_FORMAT,
         bf_kernel_maps_locked (), total);
}

char *
bf_handle_check (BfHandle *handle, gboolean kernel)
{
  Problems p = { g_string_new (NULL), 0 };
  GArray *maps = kernel ? read_kernel_maps () : NULL;

  bf_lock ();
  check_handle_pages (&p, handle);
  check_ram (&p, handle->ram);
  for (GList *l = handle->vmas.head; l != NULL; l = l->next)
    {
      BfVma *vma = l->data;

      CHECK (&p, vma->handle == handle, "a VMA of the handle belongs to another");
      check_vma (&p, vma, maps);
    }
  check_kernel_maps_total (&p);
  bf_unlock ();

  if (maps != NULL)
    g_array_unref (maps);
  if (p.n > MAX_PROBLEMS)
    g_string_append_printf (p.text, "; and %u more", p.n - MAX_PROBLEMS);
  return g_string_free (p.text, p.n == 0);
}
