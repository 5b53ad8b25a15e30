/* bigfile-glib tests - page faults on raw mapped memory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * These tests touch the memory of a mapping directly, as a C program does,
 * and check what the fault handler made of each access: which page was
 * loaded (and how many times), its state, and how it is mapped. They also
 * cover the contract for faults that cannot be served (SIGBUS to the
 * faulting thread, with the reason kept for bigfile_vma_take_fault_error()
 * and errno kept for its handler), for faults that are not ours (passed on
 * to the handler installed before the library's, or to the default action),
 * for handlers the program installs after the library's, for threads with
 * an alternate signal stack, and for threads that block SIGSEGV.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"

#define PS ((gsize)4096)

/* Keeps the compiler from moving memory accesses (errno included) across
 * the raw accesses that fault. */
#define barrier() __asm__ __volatile__("" ::: "memory")

/* -- catching SIGBUS ---------------------------------------------------------- */

static sigjmp_buf bus_jump;
static volatile sig_atomic_t bus_count;
static void *volatile bus_addr;
static volatile int bus_code;
static volatile int bus_errno;

static void
on_sigbus (int sig, siginfo_t *si, void *uctx)
{
  bus_errno = errno;
  bus_count++;
  bus_addr = si->si_addr;
  bus_code = si->si_code;
  siglongjmp (bus_jump, 1);
}

/* Reads *@p (or writes @value to it, if @write) with a SIGBUS handler that
 * jumps back here, as bigfile_vma_take_fault_error()'s documentation shows.
 * Returns TRUE if the access completed (the byte read goes to @out), FALSE
 * if SIGBUS came instead; bus_count, bus_addr and bus_code tell about it. */
static gboolean
try_access (guint8 *p, gboolean write, guint8 value, guint8 *out)
{
  guint8 *volatile addr = p;
  volatile gboolean done = FALSE;
  volatile guint8 byte = 0;
  struct sigaction sa, old_sa;

  memset (&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset (&sa.sa_mask);
  g_assert_cmpint (sigaction (SIGBUS, &sa, &old_sa), ==, 0);

  bus_count = 0;
  bus_addr = NULL;
  bus_code = 0;
  if (sigsetjmp (bus_jump, 1) == 0)
    {
      if (write)
        raw_write (addr, value);
      else
        byte = raw_read (addr);
      done = TRUE;
    }

  g_assert_cmpint (sigaction (SIGBUS, &old_sa, NULL), ==, 0);
  if (out != NULL)
    *out = byte;
  return done;
}

/* -- faults that load and dirty ----------------------------------------------- */

/* A read of a page not in memory loads it, once, and maps it read-only, so
 * that the first write can still be seen. */
static void
test_fault_read (void)
{
  Mapping m;

  mapping_setup (&m, PS, 4, 4, 1 << 20);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_EMPTY);
  assert_mapping (m.vma, 1, FALSE, FALSE);

  g_assert_cmpuint (raw_read (m.data + PS + 123), ==, test_mem_file_pattern (1, 123));
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 1, TRUE, FALSE);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 1), ==, 1);

  /* Further reads anywhere in the page are plain memory accesses. */
  for (gsize i = 0; i < PS; i += 511)
    g_assert_cmpuint (raw_read (m.data + PS + i), ==, test_mem_file_pattern (1, i));
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 1), ==, 1);
  g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 1);

  /* Nothing else was touched. */
  for (guint64 p = 0; p < 4; p++)
    if (p != 1)
      {
        g_assert_cmpint (page_state (&m, p), ==, BIGFILE_PAGE_STATE_EMPTY);
        assert_mapping (m.vma, p, FALSE, FALSE);
      }
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 1);

  mapping_teardown (&m);
}

/* A write to a page not in memory loads it (the rest of the page must keep
 * the file's bytes) and makes it dirty, mapped writable at once. */
static void
test_fault_write (void)
{
  Mapping m;

  mapping_setup (&m, PS, 4, 4, 1 << 20);

  raw_write (m.data + 2 * PS + 10, 0xA5);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
  assert_mapping (m.vma, 2, TRUE, TRUE);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 1);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 1);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (m.ram), ==, 1);

  g_assert_cmpuint (raw_read (m.data + 2 * PS + 10), ==, 0xA5);
  g_assert_cmpuint (raw_read (m.data + 2 * PS + 11), ==, test_mem_file_pattern (2, 11));
  g_assert_cmpuint (raw_read (m.data + 2 * PS + 9), ==, test_mem_file_pattern (2, 9));

  /* The change is in memory only: storage is untouched until a writeout. */
  g_assert_cmpuint (test_mem_file_peek (m.file, 2)[10], ==, test_mem_file_pattern (2, 10));
  g_assert_cmpuint (test_mem_file_get_total_stores (m.file), ==, 0);

  mapping_teardown (&m);
}

/* Read, then write: the page goes LOADED -> DIRTY without a second load,
 * and from read-only to writable. */
static void
test_fault_upgrade (void)
{
  Mapping m;

  mapping_setup (&m, PS, 4, 4, 1 << 20);

  g_assert_cmpuint (raw_read (m.data + 3 * PS), ==, test_mem_file_pattern (3, 0));
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 3, TRUE, FALSE);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);

  raw_write (m.data + 3 * PS + PS - 1, 0x3C);
  g_assert_cmpint (page_state (&m, 3), ==, BIGFILE_PAGE_STATE_DIRTY);
  assert_mapping (m.vma, 3, TRUE, TRUE);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 3), ==, 1);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 1);

  g_assert_cmpuint (raw_read (m.data + 3 * PS + PS - 1), ==, 0x3C);
  g_assert_cmpuint (raw_read (m.data + 3 * PS), ==, test_mem_file_pattern (3, 0));

  mapping_teardown (&m);
}

/* -- errno -------------------------------------------------------------------- */

/* A load that does I/O may change errno, as a real one would. */
static void
clobber_errno_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  guint *calls = user_data;

  (*calls)++;
  errno = ENOENT;
}

/* The interrupted code may be between a syscall and its errno check: a
 * fault must leave errno as it found it, even when the load changed it. */
static void
test_fault_errno (void)
{
  Mapping m;
  guint hook_calls = 0;
  int saved;
  guint8 byte;

  mapping_setup (&m, PS, 4, 4, 1 << 20);
  test_mem_file_set_load_hook (m.file, clobber_errno_hook, &hook_calls);

  /* Read fault. */
  errno = 4242;
  barrier ();
  byte = raw_read (m.data + 100);
  barrier ();
  saved = errno;
  g_assert_cmpint (saved, ==, 4242);
  g_assert_cmpuint (byte, ==, test_mem_file_pattern (0, 100));
  g_assert_cmpuint (hook_calls, ==, 1);

  /* Write fault on an unloaded page. */
  errno = EILSEQ;
  barrier ();
  raw_write (m.data + PS + 100, 1);
  barrier ();
  saved = errno;
  g_assert_cmpint (saved, ==, EILSEQ);
  g_assert_cmpuint (hook_calls, ==, 2);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);

  /* Write fault on a clean page (no load: the handler alone). */
  errno = EILSEQ;
  barrier ();
  raw_write (m.data + 100, 2);
  barrier ();
  saved = errno;
  g_assert_cmpint (saved, ==, EILSEQ);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (hook_calls, ==, 2);

  test_mem_file_set_load_hook (m.file, NULL, NULL);
  mapping_teardown (&m);
}

/* -- faults that cannot be served: SIGBUS ---------------------------------------- */

/* A load error on raw memory cannot be returned: the faulting thread gets
 * SIGBUS with BUS_ADRERR and the faulting address, as from the kernel for a
 * file mapping whose read failed, and the reason waits for
 * bigfile_vma_take_fault_error(). Nothing wrong is ever shown: once the
 * storage works again, the same access returns the right data. */
static void
test_fault_load_error_sigbus (void)
{
  Mapping m;
  GError *error;
  guint8 *p;
  guint8 byte = 0;

  mapping_setup (&m, PS, 4, 4, 1 << 20);
  g_assert_null (bigfile_vma_take_fault_error ());

  test_mem_file_set_fail_load (m.file, 2, TRUE, FALSE);
  p = m.data + 2 * PS + 77;

  g_assert_false (try_access (p, FALSE, 0, &byte));
  g_assert_cmpint (bus_count, ==, 1);
  g_assert_true (bus_addr == (void *)p);
  g_assert_cmpint (bus_code, ==, BUS_ADRERR);

  error = bigfile_vma_take_fault_error ();
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "block 2"));
  g_clear_error (&error);
  /* Taken: it is gone. */
  g_assert_null (bigfile_vma_take_fault_error ());

  /* The failed page left no trace: not in memory, not mapped, no budget. */
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  assert_mapping (m.vma, 2, FALSE, FALSE);
  g_assert_cmpuint (bigfile_ram_get_n_pages (m.ram), ==, 0);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 1);

  /* A write to the failing page: SIGBUS as well, nothing dirtied. */
  g_assert_false (try_access (p + 1, TRUE, 0x99, NULL));
  g_assert_cmpint (bus_count, ==, 1);
  g_assert_true (bus_addr == (void *)(p + 1));
  g_assert_cmpint (bus_code, ==, BUS_ADRERR);
  error = bigfile_vma_take_fault_error ();
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpuint (bigfile_handle_get_n_dirty_pages (m.handle), ==, 0);

  /* Other pages are not affected. */
  g_assert_true (try_access (m.data + PS, FALSE, 0, &byte));
  g_assert_cmpuint (byte, ==, test_mem_file_pattern (1, 0));

  /* Storage works again: the same access now succeeds, with the right data. */
  test_mem_file_set_fail_load (m.file, 2, FALSE, FALSE);
  g_assert_true (try_access (p, FALSE, 0, &byte));
  g_assert_cmpint (bus_count, ==, 0);
  g_assert_cmpuint (byte, ==, test_mem_file_pattern (2, 77));
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_LOADED);
  assert_mapping (m.vma, 2, TRUE, FALSE);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 3);
  g_assert_null (bigfile_vma_take_fault_error ());

  mapping_teardown (&m);
}

/* A load method that fails without saying why still gives an error. */
static void
test_fault_load_error_no_gerror (void)
{
  Mapping m;
  GError *error;

  mapping_setup (&m, PS, 4, 4, 1 << 20);
  test_mem_file_set_fail_load (m.file, 1, TRUE, TRUE);

  g_assert_false (try_access (m.data + PS + 5, FALSE, 0, NULL));
  g_assert_cmpint (bus_count, ==, 1);
  g_assert_true (bus_addr == (void *)(m.data + PS + 5));

  error = bigfile_vma_take_fault_error ();
  g_assert_error (error, BIGFILE_FILE_ERROR, BIGFILE_FILE_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "block 1"));
  g_clear_error (&error);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_EMPTY);

  mapping_teardown (&m);
}

/* A failed load makes SIGBUS, and the program's SIGBUS handler runs inside
 * the library's SIGSEGV handler: it must see errno as the interrupted code
 * left it, not as the failed load did, and the reason must still be there
 * to take. In a fresh process, with a load that changes errno before it
 * fails. */
static void
test_fault_load_error_errno (void)
{
  if (g_test_subprocess ())
    {
      Mapping m;
      struct sigaction sa, old_sa;
      guint hook_calls = 0;
      guint8 *volatile p;
      GError *error;
      int after;

      mapping_setup (&m, PS, 4, 4, 1 << 20);
      test_mem_file_set_load_hook (m.file, clobber_errno_hook, &hook_calls);
      test_mem_file_set_fail_load (m.file, 1, TRUE, FALSE);
      p = m.data + PS + 3;

      memset (&sa, 0, sizeof sa);
      sa.sa_sigaction = on_sigbus;
      sa.sa_flags = SA_SIGINFO;
      sigemptyset (&sa.sa_mask);
      g_assert_cmpint (sigaction (SIGBUS, &sa, &old_sa), ==, 0);

      bus_count = 0;
      bus_errno = 0;
      if (sigsetjmp (bus_jump, 1) == 0)
        {
          errno = EILSEQ;
          barrier ();
          raw_read (p);
          g_assert_not_reached ();
        }
      after = errno;
      g_assert_cmpint (sigaction (SIGBUS, &old_sa, NULL), ==, 0);

      g_assert_cmpint (bus_count, ==, 1);
      g_assert_cmpint (hook_calls, ==, 1);
      g_assert_cmpint (bus_errno, ==, EILSEQ);
      g_assert_cmpint (after, ==, EILSEQ);
      g_assert_true (bus_addr == (void *)p);

      error = bigfile_vma_take_fault_error ();
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
      g_assert_nonnull (strstr (error->message, "block 1"));
      g_clear_error (&error);

      mapping_teardown (&m);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* A budget full of dirty pages cannot give a page to a raw access: SIGBUS,
 * with BIGFILE_RAM_ERROR_FULL. The dirty pages are kept, intact. */
static void
test_fault_budget_full_sigbus (void)
{
  Mapping m;
  GError *error;
  guint8 byte = 0;

  mapping_setup (&m, PS, 4, 4, 2 * PS);

  raw_write (m.data + 0 * PS + 1, 0x11);
  raw_write (m.data + 1 * PS + 1, 0x22);
  g_assert_cmpuint (bigfile_ram_get_n_dirty_pages (m.ram), ==, 2);

  g_assert_false (try_access (m.data + 2 * PS + 3, TRUE, 0x33, NULL));
  g_assert_cmpint (bus_count, ==, 1);
  g_assert_true (bus_addr == (void *)(m.data + 2 * PS + 3));
  g_assert_cmpint (bus_code, ==, BUS_ADRERR);
  error = bigfile_vma_take_fault_error ();
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_clear_error (&error);

  /* A read cannot have a page either. */
  g_assert_false (try_access (m.data + 3 * PS, FALSE, 0, NULL));
  error = bigfile_vma_take_fault_error ();
  g_assert_error (error, BIGFILE_RAM_ERROR, BIGFILE_RAM_ERROR_FULL);
  g_clear_error (&error);

  /* Nothing was loaded for the failed accesses, nothing dirty was lost. */
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 2), ==, 0);
  g_assert_cmpuint (test_mem_file_get_n_loads (m.file, 3), ==, 0);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_EMPTY);
  g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_cmpuint (raw_read (m.data + 0 * PS + 1), ==, 0x11);
  g_assert_cmpuint (raw_read (m.data + 1 * PS + 1), ==, 0x22);

  /* Once written out, the pages are clean and can make room. */
  g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, NULL));
  g_assert_true (try_access (m.data + 2 * PS + 3, TRUE, 0x33, NULL));
  g_assert_true (try_access (m.data + 2 * PS + 3, FALSE, 0, &byte));
  g_assert_cmpuint (byte, ==, 0x33);
  g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
  g_assert_null (bigfile_vma_take_fault_error ());

  mapping_teardown (&m);
}

/* -- faults that are not ours --------------------------------------------------- */

static sigjmp_buf segv_jump;
static volatile sig_atomic_t prev_handler_count;
static void *volatile prev_handler_addr;
static volatile int prev_handler_code;

static void
on_prev_sigsegv (int sig, siginfo_t *si, void *uctx)
{
  prev_handler_count++;
  prev_handler_addr = si->si_addr;
  prev_handler_code = si->si_code;
  siglongjmp (segv_jump, 1);
}

/* Installs on_prev_sigsegv() as the program's SIGSEGV handler, and returns
 * a page of its own that no access may touch. */
static guint8 *
install_prev_handler (void)
{
  struct sigaction sa;
  guint8 *own;

  memset (&sa, 0, sizeof sa);
  sa.sa_sigaction = on_prev_sigsegv;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset (&sa.sa_mask);
  g_assert_cmpint (sigaction (SIGSEGV, &sa, NULL), ==, 0);

  own = mmap (NULL, PS, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  g_assert_true (own != MAP_FAILED);
  return own;
}

/* The library installs its SIGSEGV handler at the first map, on top of
 * whatever the program had (a crash reporter, a JIT, a language runtime):
 * faults outside bigfile mappings must still reach that handler. Runs in a
 * fresh process, so that the handler installed first really is ours. */
static void
test_fault_chain_previous_handler (void)
{
  if (g_test_subprocess ())
    {
      struct sigaction cur;
      Mapping m;
      guint8 *volatile own;

      own = install_prev_handler ();
      mapping_setup (&m, PS, 4, 4, 1 << 20);

      /* The library's handler is now in front of ours... */
      g_assert_cmpint (sigaction (SIGSEGV, NULL, &cur), ==, 0);
      g_assert_true (cur.sa_sigaction != on_prev_sigsegv);

      /* ...and serves faults on its own mappings without bothering ours. */
      g_assert_cmpuint (raw_read (m.data + PS + 1), ==, test_mem_file_pattern (1, 1));
      g_assert_cmpint (prev_handler_count, ==, 0);

      if (sigsetjmp (segv_jump, 1) == 0)
        {
          raw_read (own + 10);
          g_assert_not_reached ();
        }
      g_assert_cmpint (prev_handler_count, ==, 1);
      g_assert_true (prev_handler_addr == (void *)(own + 10));

      /* A write, too. */
      if (sigsetjmp (segv_jump, 1) == 0)
        {
          raw_write (own + 20, 1);
          g_assert_not_reached ();
        }
      g_assert_cmpint (prev_handler_count, ==, 2);
      g_assert_true (prev_handler_addr == (void *)(own + 20));

      /* Both keep working afterwards. */
      raw_write (m.data + 2 * PS, 7);
      g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
      g_assert_cmpint (prev_handler_count, ==, 2);

      munmap (own, PS);
      mapping_teardown (&m);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* With no handler before the library's (the default disposition), a wild
 * access must still kill the process with SIGSEGV, as it would without the
 * library: not loop, not be swallowed, not turn into another signal. A fresh
 * process (g_test_trap_subprocess) forks a child that does the access, and
 * checks exactly how the child died. */
static void
test_fault_wild_access_kills (void)
{
  if (g_test_subprocess ())
    {
      struct sigaction cur;
      Mapping m;
      guint8 *wild;
      int fds[2];
      pid_t pid;
      int status = 0;
      char reached = 0;

      g_assert_cmpint (sigaction (SIGSEGV, NULL, &cur), ==, 0);
      g_assert_true (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL);

      mapping_setup (&m, PS, 4, 4, 1 << 20);
      wild = mmap (NULL, PS, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      g_assert_true (wild != MAP_FAILED);
      g_assert_cmpint (pipe (fds), ==, 0);

      pid = fork ();
      g_assert_cmpint (pid, >=, 0);
      if (pid == 0)
        {
          struct rlimit no_core = { 0, 0 };
          char ok = 'y';

          setrlimit (RLIMIT_CORE, &no_core);
          close (fds[0]);
          /* The library's handler is installed here (inherited).  The child
           * makes no objects of its own: GLib is not fork-safe in a child of
           * a threaded parent (the RAM's GMemoryMonitor has threads), and a
           * child that did sometimes hung in GLib's own locks. */
          if (write (fds[1], &ok, 1) != 1)
            _exit (3);
          raw_write (wild + 1, 1);
          _exit (0); /* survived the wild access: wrong */
        }

      close (fds[1]);
      g_assert_cmpint (read (fds[0], &reached, 1), ==, 1);
      g_assert_cmpint (reached, ==, 'y');
      close (fds[0]);
      g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
      g_assert_true (WIFSIGNALED (status));
      g_assert_cmpint (WTERMSIG (status), ==, SIGSEGV);

      munmap (wild, PS);
      mapping_teardown (&m);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* SIGSEGV sent with kill() is not a fault and will not run again: with the
 * default disposition before the library's handler it must still kill the
 * process; ignored before, it must stay ignored and leave the library's
 * handler in place. */
static void
test_fault_kill_sigsegv (void)
{
  if (g_test_subprocess ())
    {
      Mapping m;
      pid_t pid;
      int status = 0;

      mapping_setup (&m, PS, 4, 4, 1 << 20);

      /* Default disposition: kill() kills. */
      pid = fork ();
      g_assert_cmpint (pid, >=, 0);
      if (pid == 0)
        {
          struct rlimit no_core = { 0, 0 };

          /* The library's handler is installed (inherited); no objects of
           * the child's own (see test_fault_wild_access_kills). */
          setrlimit (RLIMIT_CORE, &no_core);
          kill (getpid (), SIGSEGV);
          _exit (0); /* survived: wrong */
        }
      g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
      g_assert_true (WIFSIGNALED (status));
      g_assert_cmpint (WTERMSIG (status), ==, SIGSEGV);

      mapping_teardown (&m);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

static void
test_fault_kill_sigsegv_ignored (void)
{
  if (g_test_subprocess ())
    {
      Mapping m;

      /* Ignored before the library installs its handler (at first map). */
      signal (SIGSEGV, SIG_IGN);
      mapping_setup (&m, PS, 4, 4, 1 << 20);
      kill (getpid (), SIGSEGV);
      /* Still ignored, and faults are still served. */
      g_assert_cmpuint (raw_read (m.data + 2 * PS + 5), ==, test_mem_file_pattern (2, 5));
      mapping_teardown (&m);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* -- alternate signal stacks --------------------------------------------------- */

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31) /* Linux 4.7; not in glibc's headers */
#endif

/* An alternate signal stack with a guard page on each side: running off it
 * faults at once instead of corrupting what lies next to it. */
typedef struct
{
  guint8 *mem;
  guint8 *base;
  gsize size;
} AltStack;

static void
alt_stack_init (AltStack *alt, gsize size)
{
  alt->size = size;
  alt->mem = mmap (NULL, size + 2 * PS, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  g_assert_true (alt->mem != MAP_FAILED);
  alt->base = alt->mem + PS;
  g_assert_cmpint (mprotect (alt->base, size, PROT_READ | PROT_WRITE), ==, 0);
}

static void
alt_stack_clear (AltStack *alt)
{
  munmap (alt->mem, alt->size + 2 * PS);
}

/* Makes @alt this thread's alternate stack (@flags: 0 or SS_AUTODISARM). */
static void
alt_stack_set (AltStack *alt, int flags)
{
  stack_t ss;

  memset (&ss, 0, sizeof ss);
  ss.ss_sp = alt->base;
  ss.ss_size = alt->size;
  ss.ss_flags = flags;
  g_assert_cmpint (sigaltstack (&ss, NULL), ==, 0);
}

/* Asserts that @alt is this thread's alternate stack, whole, as set. */
static void
assert_alt_stack (AltStack *alt, int flags)
{
  stack_t ss;

  g_assert_cmpint (sigaltstack (NULL, &ss), ==, 0);
  g_assert_true (ss.ss_sp == alt->base);
  g_assert_cmpuint (ss.ss_size, ==, alt->size);
  g_assert_cmpint (ss.ss_flags, ==, flags);
}

static gboolean
alt_stack_contains (AltStack *alt, guintptr addr)
{
  return addr >= (guintptr)alt->mem && addr < (guintptr)alt->mem + alt->size + 2 * PS;
}

/* A load hook that needs far more stack than a signal stack has, as a load
 * written in Python or JavaScript may: it says where its array was, and how
 * the alternate stack looked while it ran. */
typedef struct
{
  guint calls;
  guintptr low, high; /* the array's first and last byte */
  stack_t during;     /* sigaltstack() as the hook saw it */
  guint8 *nested;     /* a byte of another mapping to read from the hook */
  guint8 nested_value;
} DeepHook;

#define DEEP_HOOK_STACK (256 * 1024)

static void
deep_stack_hook (TestMemFile *file, guint64 block, gpointer user_data)
{
  DeepHook *hook = user_data;
  volatile guint8 big[DEEP_HOOK_STACK];

  /* From the top down, as the stack grows: off a small stack, the first
   * write past it hits a guard page. */
  for (gsize i = sizeof big; i >= 256; i -= 256)
    big[i - 1] = (guint8)i;
  big[0] = 1;
  hook->low = (guintptr)&big[0];
  hook->high = (guintptr)&big[sizeof big - 1];
  hook->calls++;
  g_assert_cmpint (sigaltstack (NULL, &hook->during), ==, 0);

  if (hook->nested != NULL)
    {
      guint8 *p = hook->nested;
      hook->nested = NULL;
      hook->nested_value = raw_read (p);
    }
}

typedef struct
{
  Mapping m, m2; /* the hook of m's loads reads from m2 */
  AltStack alt, small;
} AltStackTest;

static gpointer
alt_stack_thread (gpointer data)
{
  AltStackTest *t = data;
  /* 16 KiB is shrunk for a load and again for a nested one; 8 KiB leaves
   * too little to keep. */
  struct
  {
    AltStack *alt;
    int flags;
  } rounds[] = {
    { &t->alt, 0 },
    { &t->alt, (int)SS_AUTODISARM },
    { &t->small, 0 },
  };
  DeepHook hook, hook2;

  for (guint round = 0; round < G_N_ELEMENTS (rounds); round++)
    {
      AltStack *alt = rounds[round].alt;
      const int flags = rounds[round].flags;
      guint64 page = round * 3; /* this round's pages: page to page + 2 */
      GError *error;

      g_test_message ("alternate stack of %" G_GSIZE_FORMAT " bytes, flags %#x", alt->size,
                      (guint)flags);
      alt_stack_set (alt, flags);

      /* A load that needs 256 KiB of stack, from a fault taken on a small
       * alternate stack: it runs on the thread's own stack. */
      memset (&hook, 0, sizeof hook);
      test_mem_file_set_load_hook (t->m.file, deep_stack_hook, &hook);
      g_assert_cmpuint (raw_read (t->m.data + page * PS + 9), ==, test_mem_file_pattern (page, 9));
      g_assert_cmpuint (hook.calls, ==, 1);
      g_assert_false (alt_stack_contains (alt, hook.low));
      g_assert_false (alt_stack_contains (alt, hook.high));
      /* Meanwhile the alternate stack was shrunk below the handler's frames
       * (disabled if too little was left; disarmed by the kernel, with
       * SS_AUTODISARM)... */
      if (flags & SS_AUTODISARM)
        g_assert_true (hook.during.ss_flags & SS_DISABLE);
      else if (alt == &t->small)
        g_assert_cmpint (hook.during.ss_flags, ==, SS_DISABLE); /* too small to keep */
      else
        {
          g_assert_true (hook.during.ss_sp == alt->base);
          g_assert_cmpuint (hook.during.ss_size, <, alt->size);
          g_assert_cmpint (hook.during.ss_flags, ==, 0);
        }
      /* ...and it is whole again. */
      assert_alt_stack (alt, flags);

      /* A load that faults on another mapping: the nested fault is served
       * the same way, one level down. */
      memset (&hook, 0, sizeof hook);
      memset (&hook2, 0, sizeof hook2);
      hook.nested = t->m2.data + page * PS + 100;
      test_mem_file_set_load_hook (t->m2.file, deep_stack_hook, &hook2);
      g_assert_cmpuint (raw_read (t->m.data + (page + 1) * PS), ==,
                        test_mem_file_pattern (page + 1, 0));
      g_assert_cmpuint (hook.calls, ==, 1);
      g_assert_cmpuint (hook2.calls, ==, 1);
      g_test_message ("signal stack during the load: %" G_GSIZE_FORMAT " bytes, flags %#x;"
                      " during the nested load: %" G_GSIZE_FORMAT " bytes, flags %#x",
                      hook.during.ss_size, (guint)hook.during.ss_flags, hook2.during.ss_size,
                      (guint)hook2.during.ss_flags);
      g_assert_cmpuint (hook.nested_value, ==, test_mem_file_pattern (page, 100));
      g_assert_false (alt_stack_contains (alt, hook2.low));
      g_assert_true (hook2.high < hook.low); /* below the outer load, on the same stack */
      if ((flags & SS_AUTODISARM) || alt == &t->small)
        g_assert_true (hook2.during.ss_flags & SS_DISABLE);
      else
        {
          g_assert_true (hook2.during.ss_sp == alt->base);
          g_assert_cmpuint (hook2.during.ss_size, <, hook.during.ss_size);
          g_assert_cmpint (hook2.during.ss_flags, ==, 0);
        }
      assert_alt_stack (alt, flags);
      test_mem_file_set_load_hook (t->m2.file, NULL, NULL);

      /* A load that fails: SIGBUS comes after the switch back, so a handler
       * that jumps out leaves the alternate stack whole; errno is kept.
       * (Not on the small stack: two signal frames and siglongjmp() do not
       * fit in 8 KiB under AddressSanitizer.) */
      if (alt == &t->small)
        continue;
      memset (&hook, 0, sizeof hook);
      test_mem_file_set_fail_load (t->m.file, page + 2, TRUE, FALSE);
      errno = EILSEQ;
      g_assert_false (try_access (t->m.data + (page + 2) * PS, FALSE, 0, NULL));
      g_assert_cmpint (bus_count, ==, 1);
      g_assert_cmpint (bus_errno, ==, EILSEQ);
      error = bigfile_vma_take_fault_error ();
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
      g_clear_error (&error);
      g_assert_cmpuint (hook.calls, ==, 1);
      /* (With SS_AUTODISARM, only a return from the handler re-arms it:
       * jumping out leaves it disarmed, by the kernel's rule.) */
      if (!(flags & SS_AUTODISARM))
        assert_alt_stack (alt, flags);
      test_mem_file_set_fail_load (t->m.file, page + 2, FALSE, FALSE);
      test_mem_file_set_load_hook (t->m.file, NULL, NULL);
    }

  return NULL;
}

/* The handler runs on the alternate stack of a thread that has one (so that
 * a program's stack overflow handler can run, below), but loads need the
 * stack they would have had without it. In a fresh process: the
 * alternate stack is left to the thread that set it. */
static void
test_fault_alt_stack_load (void)
{
  if (g_test_subprocess ())
    {
      AltStackTest t;
      GThread *thread;

      mapping_setup (&t.m, PS, 9, 9, 1 << 20);
      mapping_setup (&t.m2, PS, 9, 9, 1 << 20);
      alt_stack_init (&t.alt, 16 * 1024);
      alt_stack_init (&t.small, 8 * 1024);

      thread = g_thread_new ("alt-stack", alt_stack_thread, &t);
      g_thread_join (thread);

      alt_stack_clear (&t.small);
      alt_stack_clear (&t.alt);
      mapping_teardown (&t.m2);
      mapping_teardown (&t.m);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

static volatile gboolean stop_recursing;

/* Recurses until the stack runs out (stop_recursing is never set). */
static G_NO_INLINE guint
recurse (guint depth)
{
  volatile guint8 pad[512];

  pad[0] = (guint8)depth;
  if (stop_recursing)
    return pad[0];
  return recurse (depth + 1) + pad[0];
}

static void
on_overflow (int sig, siginfo_t *si, void *uctx)
{
  static const char msg[] = "stack overflow reported\n";

  /* Only async-signal-safe calls: the stack is gone. */
  if (write (STDOUT_FILENO, msg, sizeof msg - 1) < 0)
    _exit (3);
  _exit (0);
}

typedef struct
{
  Mapping m;
  AltStack alt;
} OverflowTest;

static void *
overflow_thread (void *data)
{
  OverflowTest *t = data;

  alt_stack_set (&t->alt, 0);
  /* Faults on the mapping work on this thread... */
  g_assert_cmpuint (raw_read (t->m.data + PS + 1), ==, test_mem_file_pattern (1, 1));
  /* ...and a stack overflow reaches the program's handler. */
  recurse (0);
  g_assert_not_reached ();
  return NULL;
}

/* A program that reports stack overflows installs its SIGSEGV handler with
 * SA_ONSTACK and gives threads an alternate stack. The library's handler,
 * installed over it at the first map, must run on that stack too and pass
 * the overflow on: otherwise the kernel finds no room for the handler on
 * the overflowed stack and kills the process silently. */
static void
test_fault_alt_stack_overflow (void)
{
  if (g_test_subprocess ())
    {
      OverflowTest t;
      struct sigaction sa;
      pthread_attr_t attr;
      pthread_t thread;

      memset (&sa, 0, sizeof sa);
      sa.sa_sigaction = on_overflow;
      sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
      sigemptyset (&sa.sa_mask);
      g_assert_cmpint (sigaction (SIGSEGV, &sa, NULL), ==, 0);

      mapping_setup (&t.m, PS, 4, 4, 1 << 20);
      alt_stack_init (&t.alt, 16 * 1024);

      /* A small thread stack, so that it overflows at once. */
      g_assert_cmpint (pthread_attr_init (&attr), ==, 0);
      g_assert_cmpint (pthread_attr_setstacksize (&attr, 256 * 1024), ==, 0);
      g_assert_cmpint (pthread_create (&thread, &attr, overflow_thread, &t), ==, 0);
      pthread_join (thread, NULL);
      g_assert_not_reached ();
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("*stack overflow reported*");
}

/* -- handlers installed after the library's -------------------------------------- */

static struct sigaction later_prev;
static volatile sig_atomic_t later_count;
static volatile int later_code;

/* Like Python's faulthandler: takes every SIGSEGV for a crash, reports it,
 * puts back the handler it displaced and raises the signal again. */
static void
on_later_reraise (int sig, siginfo_t *si, void *uctx)
{
  later_count++;
  later_code = si->si_code;
  sigaction (SIGSEGV, &later_prev, NULL);
  raise (sig);
}

/* Like a crash reporter: reports, then calls the handler it displaced. */
static void
on_later_call (int sig, siginfo_t *si, void *uctx)
{
  later_count++;
  later_code = si->si_code;
  if (later_prev.sa_flags & SA_SIGINFO)
    later_prev.sa_sigaction (sig, si, uctx);
}

static void
install_later (void (*handler) (int, siginfo_t *, void *))
{
  struct sigaction sa;

  memset (&sa, 0, sizeof sa);
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset (&sa.sa_mask);
  memset (&later_prev, 0, sizeof later_prev);
  g_assert_cmpint (sigaction (SIGSEGV, &sa, &later_prev), ==, 0);
  later_count = 0;
}

/* A wild access, from which on_prev_sigsegv() jumps back. */
static void
wild_access (guint8 *wild)
{
  prev_handler_count = 0;
  if (sigsetjmp (segv_jump, 1) == 0)
    {
      raw_read (wild);
      g_assert_not_reached ();
    }
  g_assert_cmpint (prev_handler_count, ==, 1);
}

/* A handler installed after the first map would get the first touch of
 * every page; the next map puts the library's in front again, with the
 * later one behind it: it gets what is not ours, and passes it on to the
 * handler it displaced. In a fresh process, with a handler of the program
 * installed before the first map too. */
static void
test_fault_handler_later_map (void)
{
  if (g_test_subprocess ())
    {
      struct sigaction cur;
      Mapping m, m2;
      guint8 *wild;

      wild = install_prev_handler ();

      mapping_setup (&m, PS, 4, 4, 1 << 20);
      g_assert_cmpuint (raw_read (m.data + 1), ==, test_mem_file_pattern (0, 1));

      install_later (on_later_reraise);
      g_assert_true (later_prev.sa_sigaction != on_prev_sigsegv); /* it displaced ours */

      /* Mapping again puts the library's handler in front again. */
      mapping_setup (&m2, PS, 4, 4, 1 << 20);
      g_assert_cmpint (sigaction (SIGSEGV, NULL, &cur), ==, 0);
      g_assert_true (cur.sa_sigaction != on_later_reraise);
      g_assert_true (cur.sa_flags & SA_ONSTACK);

      /* First touches of both mappings are served, the later handler never
       * sees them. */
      g_assert_cmpuint (raw_read (m.data + PS + 2), ==, test_mem_file_pattern (1, 2));
      g_assert_cmpuint (raw_read (m2.data + 2 * PS + 3), ==, test_mem_file_pattern (2, 3));
      g_assert_cmpint (later_count, ==, 0);

      /* A wild access goes to the later handler, which puts back the one it
       * displaced (the library's first) and raises: that passes the
       * re-raised signal on to the program's first handler, not back to the
       * later one. */
      wild_access (wild + 7);
      g_assert_cmpint (later_count, ==, 1);
      g_assert_cmpint (later_code, ==, SEGV_ACCERR);
      g_assert_cmpint (prev_handler_code, ==, SI_TKILL);

      /* The library's first handler is in front now, and still works. */
      g_assert_cmpuint (raw_read (m.data + 3 * PS), ==, test_mem_file_pattern (3, 0));
      wild_access (wild + 8);
      g_assert_true (prev_handler_addr == (void *)(wild + 8));
      g_assert_cmpint (later_count, ==, 1);

      munmap (wild, PS);
      mapping_teardown (&m2);
      mapping_teardown (&m);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* bigfile_install_fault_handler() does the same on request, for a program
 * that installs its handler after mapping and does not map again. The
 * handler calls the one it displaced directly, as crash reporters do. */
static void
test_fault_handler_later_install (void)
{
  if (g_test_subprocess ())
    {
      GError *error = NULL;
      Mapping m;
      guint8 *wild;
      guint n_distinct = 0;

      wild = install_prev_handler ();

      mapping_setup (&m, PS, 4, 4, 1 << 20);

      install_later (on_later_call);
      g_assert_true (bigfile_install_fault_handler (&error));
      g_assert_no_error (error);
      /* Asking again when it is in front does nothing. */
      g_assert_true (bigfile_install_fault_handler (&error));
      g_assert_no_error (error);

      g_assert_cmpuint (raw_read (m.data + PS + 2), ==, test_mem_file_pattern (1, 2));
      g_assert_cmpint (later_count, ==, 0);

      /* Not ours: to the later handler, then to the first one through it. */
      wild_access (wild + 9);
      g_assert_cmpint (later_count, ==, 1);
      g_assert_cmpint (later_code, ==, SEGV_ACCERR);
      g_assert_cmpint (prev_handler_code, ==, SEGV_ACCERR);
      g_assert_true (prev_handler_addr == (void *)(wild + 9));

      /* The program removes its handler, putting back the one it found:
       * the library's first, which passes on to the first handler. */
      g_assert_cmpint (sigaction (SIGSEGV, &later_prev, NULL), ==, 0);
      later_count = 0;
      wild_access (wild + 10);
      g_assert_cmpint (later_count, ==, 0);

      /* The same handler installed and removed again and again: every time
       * a chain in installation order, and no entry used up. */
      for (guint i = 0; i < 100; i++)
        {
          install_later (on_later_call);
          g_assert_true (bigfile_install_fault_handler (&error));
          g_assert_no_error (error);
          g_assert_cmpuint (raw_read (m.data + 3 * PS + i), ==, test_mem_file_pattern (3, i));
          bigfile_handle_invalidate_page (m.handle, 3); /* the next read faults */
          g_assert_cmpint (later_count, ==, 0);
          if (i % 10 == 0)
            {
              wild_access (wild + 11);
              g_assert_cmpint (later_count, ==, 1);
            }
          g_assert_cmpint (sigaction (SIGSEGV, &later_prev, NULL), ==, 0);
        }

      /* Too many different handlers over it: an error, not a crash. */
      for (guint i = 0;; i++, n_distinct++)
        {
          struct sigaction other;

          g_assert_cmpuint (i, <, 64);
          memset (&other, 0, sizeof other);
          other.sa_sigaction = on_later_call;
          other.sa_flags = SA_SIGINFO | SA_NODEFER;
          sigemptyset (&other.sa_mask);
          sigaddset (&other.sa_mask, SIGRTMIN + (int)(i % 16));
          if (i >= 16)
            sigaddset (&other.sa_mask, SIGUSR1);
          g_assert_cmpint (sigaction (SIGSEGV, &other, &later_prev), ==, 0);
          if (!bigfile_install_fault_handler (&error))
            break;
          g_assert_no_error (error);
        }
      g_assert_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_FAULT_HANDLER);
      g_clear_error (&error);
      /* 16 entries: one for what was there at the first map, one for
       * on_later_call, however often it came back, and 14 for these. */
      g_assert_cmpuint (n_distinct, ==, 14);

      munmap (wild, PS);
      mapping_teardown (&m);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* -- threads with SIGSEGV blocked ------------------------------------------------ */

typedef struct
{
  Mapping m;
  guint8 values[3];
} BlockedTest;

static gpointer
blocked_thread (gpointer data)
{
  BlockedTest *t = data;
  GError *error = NULL;
  sigset_t set;

  sigemptyset (&set);
  sigaddset (&set, SIGSEGV);
  g_assert_cmpint (pthread_sigmask (SIG_BLOCK, &set, NULL), ==, 0);

  /* Populated pages are mapped: reading them raises no fault. */
  g_assert_true (bigfile_vma_populate (t->m.vma, 0, 2 * PS, FALSE, &error));
  g_assert_no_error (error);
  t->values[0] = raw_read (t->m.data + 5);
  t->values[1] = raw_read (t->m.data + PS + 6);

  /* Pinned writable: written without a fault, and it stays so. */
  g_assert_true (bigfile_vma_pin (t->m.vma, 2 * PS, PS, TRUE, &error));
  g_assert_no_error (error);
  raw_write (t->m.data + 2 * PS + 7, 0x5A);
  t->values[2] = raw_read (t->m.data + 2 * PS + 7);
  bigfile_vma_unpin (t->m.vma, 2 * PS, PS);

  return NULL;
}

/* A fault's SIGSEGV cannot wait: the kernel unblocks it and takes the
 * default action, so a thread that blocks SIGSEGV dies on a first touch.
 * Such a thread loads and maps pages first with bigfile_vma_populate() or
 * bigfile_vma_pin(). Both in a fresh process: the first in a child, which
 * must die of SIGSEGV. */
static void
test_fault_sigsegv_blocked (void)
{
  if (g_test_subprocess ())
    {
      BlockedTest t;
      GThread *thread;
      pid_t pid;
      int status = 0;

      mapping_setup (&t.m, PS, 4, 4, 1 << 20);

      pid = fork ();
      g_assert_cmpint (pid, >=, 0);
      if (pid == 0)
        {
          struct rlimit no_core = { 0, 0 };
          sigset_t set;

          setrlimit (RLIMIT_CORE, &no_core);
          sigemptyset (&set);
          sigaddset (&set, SIGSEGV);
          pthread_sigmask (SIG_BLOCK, &set, NULL);
          raw_read (t.m.data + 3 * PS);
          _exit (0); /* survived: the kernel changed its rules */
        }
      g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
      g_assert_true (WIFSIGNALED (status));
      g_assert_cmpint (WTERMSIG (status), ==, SIGSEGV);

      thread = g_thread_new ("sigsegv-blocked", blocked_thread, &t);
      g_thread_join (thread);
      g_assert_cmpuint (t.values[0], ==, test_mem_file_pattern (0, 5));
      g_assert_cmpuint (t.values[1], ==, test_mem_file_pattern (1, 6));
      g_assert_cmpuint (t.values[2], ==, 0x5A);
      g_assert_cmpint (page_state (&t.m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);
      g_assert_cmpint (page_state (&t.m, 3), ==, BIGFILE_PAGE_STATE_EMPTY);

      mapping_teardown (&t.m);
      return;
    }

  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
}

/* -- block sizes ------------------------------------------------------------------ */

/* Every valid block size, 4 KiB to 2 MiB: faults load whole pages at the
 * right place, writes land in the right block, writeout stores them. */
static void
test_fault_block_sizes (void)
{
  for (gsize bs = 4096; bs <= (gsize)2 << 20; bs *= 2)
    {
      Mapping m;
      GError *error = NULL;
      guint8 *expected;
      GArray *log;
      const gsize offsets[] = { 0, 1, bs / 2, bs - 1 };

      g_test_message ("block size %" G_GSIZE_FORMAT, bs);
      mapping_setup (&m, bs, 3, 3, 16 << 20);
      g_assert_cmpuint (bigfile_handle_get_page_size (m.handle), ==, bs);

      for (guint64 p = 0; p < 3; p++)
        for (guint i = 0; i < G_N_ELEMENTS (offsets); i++)
          g_assert_cmpuint (raw_read (m.data + p * bs + offsets[i]), ==,
                            test_mem_file_pattern (p, offsets[i]));
      g_assert_cmpuint (test_mem_file_get_total_loads (m.file), ==, 3);
      g_assert_cmpuint (bigfile_ram_get_used_bytes (m.ram), ==, 3 * bs);

      raw_write (m.data + 1 * bs + 7, 0xAB);
      raw_write (m.data + 2 * bs + bs - 1, 0xCD);
      g_assert_cmpint (page_state (&m, 0), ==, BIGFILE_PAGE_STATE_LOADED);
      g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_DIRTY);
      g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_DIRTY);

      g_assert_true (bigfile_handle_writeout (m.handle, BIGFILE_WRITEOUT_DEFAULT, &error));
      g_assert_no_error (error);
      log = test_mem_file_get_store_log (m.file);
      g_assert_cmpuint (log->len, ==, 2);
      g_assert_cmpuint (g_array_index (log, guint64, 0), ==, 1);
      g_assert_cmpuint (g_array_index (log, guint64, 1), ==, 2);

      expected = g_malloc (bs);
      for (guint64 p = 0; p < 3; p++)
        {
          for (gsize i = 0; i < bs; i++)
            expected[i] = test_mem_file_pattern (p, i);
          if (p == 1)
            expected[7] = 0xAB;
          if (p == 2)
            expected[bs - 1] = 0xCD;
          g_assert_cmpmem (test_mem_file_peek (m.file, p), bs, expected, bs);
          /* And the memory agrees with the storage. */
          g_assert_cmpint (memcmp (m.data + p * bs, expected, bs), ==, 0);
        }
      g_free (expected);

      g_assert_cmpint (page_state (&m, 1), ==, BIGFILE_PAGE_STATE_LOADED);
      g_assert_cmpint (page_state (&m, 2), ==, BIGFILE_PAGE_STATE_LOADED);
      mapping_teardown (&m);
    }
}

static void
test_fault_invalid_block_sizes (void)
{
  const gsize sizes[] = { 0, 1000, 2048, 3 * 4096, (gsize)4 << 20, ((gsize)2 << 20) + 4096 };
  BigfileRam *ram = bigfile_ram_new (1 << 20);

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      TestMemFile *file = test_mem_file_new (sizes[i], 0);
      GError *error = NULL;
      BigfileHandle *handle;

      g_test_message ("block size %" G_GSIZE_FORMAT, sizes[i]);
      handle = bigfile_handle_new (BIGFILE_FILE (file), ram, &error);
      g_assert_error (error, BIGFILE_HANDLE_ERROR, BIGFILE_HANDLE_ERROR_INVALID_BLOCK_SIZE);
      g_assert_null (handle);
      g_clear_error (&error);
      g_object_unref (file);
    }

  g_object_unref (ram);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/fault/read", test_fault_read);
  g_test_add_func ("/fault/write", test_fault_write);
  g_test_add_func ("/fault/upgrade-clean-to-dirty", test_fault_upgrade);
  g_test_add_func ("/fault/errno-preserved", test_fault_errno);
  g_test_add_func ("/fault/load-error/sigbus", test_fault_load_error_sigbus);
  g_test_add_func ("/fault/load-error/no-gerror", test_fault_load_error_no_gerror);
  g_test_add_func ("/fault/load-error/errno-in-sigbus-handler", test_fault_load_error_errno);
  g_test_add_func ("/fault/budget-full/sigbus", test_fault_budget_full_sigbus);
  g_test_add_func ("/fault/not-ours/previous-handler", test_fault_chain_previous_handler);
  g_test_add_func ("/fault/not-ours/default-kills", test_fault_wild_access_kills);
  g_test_add_func ("/fault/not-ours/kill-default", test_fault_kill_sigsegv);
  g_test_add_func ("/fault/not-ours/kill-ignored", test_fault_kill_sigsegv_ignored);
  g_test_add_func ("/fault/alt-stack/load-on-thread-stack", test_fault_alt_stack_load);
  g_test_add_func ("/fault/alt-stack/overflow-handler-runs", test_fault_alt_stack_overflow);
  g_test_add_func ("/fault/later-handler/next-map", test_fault_handler_later_map);
  g_test_add_func ("/fault/later-handler/install-function", test_fault_handler_later_install);
  g_test_add_func ("/fault/sigsegv-blocked/populate-pin", test_fault_sigsegv_blocked);
  g_test_add_func ("/fault/block-sizes/valid", test_fault_block_sizes);
  g_test_add_func ("/fault/block-sizes/invalid", test_fault_invalid_block_sizes);

  return g_test_run ();
}
