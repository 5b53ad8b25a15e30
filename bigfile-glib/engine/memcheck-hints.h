/* bigfile-glib - what valgrind's memcheck must be told about VMA memory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Memcheck follows mmap() itself: it takes a new PROT_NONE mapping as
 * unaddressable (and a readable one as defined); mprotect() only ever makes
 * memory addressable in its eyes, never the reverse.  A VMA's unloaded pages
 * are PROT_NONE mappings (the VMA's reservation, and what vma_replace() puts
 * back over a page that is dropped), so without a word from us memcheck
 * reports the first access to each such page as an "Invalid read" or
 * "Invalid write" ("is in a --- anonymous segment") before the real fault
 * reaches the SIGSEGV handler, which then maps the page, and the access is
 * retried and succeeds.
 *
 * For the program, though, every byte of a VMA is memory it may use: an
 * access loads the page or fails with SIGBUS, never touches something else.
 * So right after each PROT_NONE mmap() over a VMA's range we tell memcheck
 * that the range is addressable and defined (its bytes are the file's, once
 * they show).  Accesses outside a VMA, and to a VMA after bigfile_vma_unmap()
 * (munmap), are still reported.  Suppressions could not do this: they match
 * the stack of the access (the program's own code, memcpy, a system call),
 * never its address, so they would hide real errors in the same code.
 *
 * Outside valgrind the client request is a few instructions that do
 * nothing; without <valgrind/memcheck.h> at build time
 * (HAVE_VALGRIND_MEMCHECK_H, see the top-level meson.build) it compiles to
 * nothing.  It needs no lock.
 */
#pragma once

#include <glib.h>

#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/memcheck.h>
#endif

static inline void
bf_memcheck_vma_addressable (void *addr, gsize len)
{
#ifdef HAVE_VALGRIND_MEMCHECK_H
  (void)VALGRIND_MAKE_MEM_DEFINED (addr, len);
#else
  (void)addr;
  (void)len;
#endif
}
