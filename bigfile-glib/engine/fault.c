/* bigfile-glib - the engine lock, the VMA registry and the SIGSEGV handler
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * How a fault is served
 * ---------------------
 * Every VMA is an anonymous PROT_NONE reservation; pages are mapped into it
 * (read-only, or read-write once dirty) as they are needed.  An access to a
 * page that is not mapped, or a write to a read-only one, raises SIGSEGV in
 * the accessing thread, and on_sigsegv() below:
 *
 *   1. saves errno (the interrupted code may be between a syscall and its
 *      errno check) and restores it on every way out;
 *   2. gives up at once if this thread holds the engine lock: engine code
 *      never touches mapped memory, so such a fault is a bug -> crash;
 *   3. takes the lock, finds the VMA by bisection of the registry and lets
 *      bf_fault_locked() load/dirty/map the page (the lock is released
 *      while the file's load callback runs);
 *   4. on success returns: the kernel re-executes the access, which now
 *      succeeds;
 *   5. if the address is in none of our VMAs, passes the signal on to the
 *      handler that was installed before ours (or the default action, so a
 *      wild pointer still dumps core);
 *   6. if the page cannot be had (load error, RAM full of dirty pages) keeps
 *      the GError for this thread and sends SIGBUS to the thread, as the
 *      kernel does when the read behind a file mapping fails.
 *
 * The handler is installed with SA_NODEFER so that a load callback may itself
 * touch another bigfile mapping (a nested fault).
 *
 * Load callbacks run inside a signal handler.  That is the price of the
 * design (wendelin.core pays it too): the interrupted code was doing a plain
 * memory access, not holding malloc's or GLib's locks, so the callback may do
 * ordinary work, but it must not wait for anything the faulting thread itself
 * holds.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "engine-private.h"

/* -- the engine lock --------------------------------------------------------- */

static pthread_mutex_t engine_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t engine_cond = PTHREAD_COND_INITIALIZER;
static __thread gboolean lock_held;

void
bf_lock (void)
{
  g_assert (!lock_held);
  pthread_mutex_lock (&engine_lock);
  lock_held = TRUE;
}

void
bf_unlock (void)
{
  g_assert (lock_held);
  lock_held = FALSE;
  pthread_mutex_unlock (&engine_lock);
}

gboolean
bf_lock_held (void)
{
  return lock_held;
}

void
bf_wait (void)
{
  g_assert (lock_held);
  pthread_cond_wait (&engine_cond, &engine_lock);
}

void
bf_wake_all (void)
{
  pthread_cond_broadcast (&engine_cond);
}

/* A cheap identity for the calling thread: the address of a thread-local. */
gconstpointer
bf_thread_self (void)
{
  return &lock_held;
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
      if (bf_vma_start_locked (g_ptr_array_index (registry, mid)) <= addr)
        lo = mid + 1;
      else
        hi = mid;
    }
  return lo;
}

void
bf_registry_add (BfVma *vma)
{
  if (registry == NULL)
    registry = g_ptr_array_new ();
  g_ptr_array_insert (registry, (gint)registry_upper_bound (bf_vma_start_locked (vma)), vma);
}

void
bf_registry_remove (BfVma *vma)
{
  gboolean found = g_ptr_array_remove (registry, vma);
  g_assert (found);
}

GPtrArray *
bf_registry_get_all (void)
{
  return registry;
}

BfVma *
bf_registry_lookup (const void *addr)
{
  guint i;
  BfVma *vma;

  if (registry == NULL)
    return NULL;
  i = registry_upper_bound (addr);
  if (i == 0)
    return NULL;
  vma = g_ptr_array_index (registry, i - 1);
  if ((const guint8 *)addr < bf_vma_start_locked (vma) + bf_vma_length_locked (vma))
    return vma;
  return NULL;
}

/* -- fault errors, per thread ------------------------------------------------ */

static __thread GError *fault_error;
static __thread int fault_depth; /* > 0 while this thread runs on_sigsegv */

gboolean
bf_fault_in_handler (void)
{
  return fault_depth > 0;
}

GError *
bf_fault_take_error (void)
{
  GError *error = fault_error;
  fault_error = NULL;
  return error;
}

/* -- the handler ------------------------------------------------------------- */

static struct sigaction prev_sigsegv;

/* Was the faulting access a write?  1 yes, 0 no, -1 cannot tell. */
static int
fault_is_write (void *uctx)
{
#if defined(__x86_64__) && defined(REG_ERR)
  const ucontext_t *uc = uctx;
  /* Page-fault error code: bit 1 is set for a write access. */
  return (uc->uc_mcontext.gregs[REG_ERR] & 0x2) ? 1 : 0;
#elif defined(__aarch64__)
  /* The kernel appends an esr_context record (ESR_MAGIC) to the signal frame;
   * for a data abort, bit 6 of the syndrome (WnR) tells a write. */
  const ucontext_t *uc = uctx;
  const guint8 *p = (const guint8 *)uc->uc_mcontext.__reserved;
  const guint8 *end = p + sizeof uc->uc_mcontext.__reserved;

  while (p + 8 <= end)
    {
      guint32 magic, size;
      memcpy (&magic, p, 4);
      memcpy (&size, p + 4, 4);
      if (magic == 0 || size < 8)
        break;
      if (magic == 0x45535201 /* ESR_MAGIC */ && size >= 16)
        {
          guint64 esr, ec;
          memcpy (&esr, p + 8, 8);
          ec = (esr >> 26) & 0x3f;
          if (ec == 0x24 || ec == 0x25) /* data abort, lower or same EL */
            return (esr >> 6) & 1;
          return -1;
        }
      p += size;
    }
  return -1;
#else
  (void)uctx;
  return -1;
#endif
}

/* Pass a signal that is not ours to whoever had SIGSEGV before us. */
static void
chain_sigsegv (int sig, siginfo_t *si, void *uctx)
{
  if (prev_sigsegv.sa_flags & SA_SIGINFO)
    {
      prev_sigsegv.sa_sigaction (sig, si, uctx);
      return;
    }
  if (prev_sigsegv.sa_handler != SIG_DFL && prev_sigsegv.sa_handler != SIG_IGN)
    {
      prev_sigsegv.sa_handler (sig);
      return;
    }
  if (si->si_code <= 0)
    {
      /* Sent by kill() or raise(): nothing will run again.  Ignored before
       * us, it stays ignored; by default, it must still kill. */
      if (prev_sigsegv.sa_handler == SIG_DFL)
        {
          signal (SIGSEGV, SIG_DFL);
          raise (SIGSEGV);
        }
      return;
    }
  /* A real fault: let the access happen again with the default action
   * (the kernel forces it for a fault even if SIGSEGV was ignored), so the
   * process dies with SIGSEGV and a core dump at the faulting instruction. */
  signal (SIGSEGV, SIG_DFL);
}

/* Deliver SIGBUS for @addr to this thread, as the kernel's force_sig does for
 * a failed file-backed fault: with BUS_ADRERR and the address, and such that
 * it cannot be lost (a blocked or ignored SIGBUS would make the access retry
 * forever).  The program's SIGBUS handler runs inside the system calls that
 * unblock and send it, and must see errno as the interrupted code left it:
 * @saved_errno. */
static void
raise_sigbus (void *addr, int saved_errno)
{
  siginfo_t info;
  struct sigaction cur;
  sigset_t set;

  if (sigaction (SIGBUS, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO)
      && cur.sa_handler == SIG_IGN)
    signal (SIGBUS, SIG_DFL);

  memset (&info, 0, sizeof info);
  info.si_signo = SIGBUS;
  info.si_code = BUS_ADRERR;
  info.si_addr = addr;
  sigemptyset (&set);
  sigaddset (&set, SIGBUS);

  errno = saved_errno;
  pthread_sigmask (SIG_UNBLOCK, &set, NULL);
  errno = saved_errno;
  if (syscall (SYS_rt_tgsigqueueinfo, getpid (), (pid_t)syscall (SYS_gettid), SIGBUS, &info) != 0)
    {
      /* Cannot fail for our own thread; still, never loop silently. */
      errno = saved_errno;
      pthread_kill (pthread_self (), SIGBUS);
    }
}

static void
on_sigsegv (int sig, siginfo_t *si, void *uctx)
{
  int saved_errno = errno;
  BfFaultResult result = BF_FAULT_NOT_OURS;
  GError *error = NULL;

  /* si_code > 0: raised by the kernel for a real access, not sent by kill(). */
  if (si->si_code > 0 && !lock_held)
    {
      fault_depth++;
      bf_lock ();
      result = bf_fault_locked (si->si_addr, fault_is_write (uctx), &error);
      bf_unlock ();
      fault_depth--;
    }

  switch (result)
    {
      case BF_FAULT_HANDLED:
        break;
      case BF_FAULT_ERROR:
        g_clear_error (&fault_error);
        fault_error = error;
        raise_sigbus (si->si_addr, saved_errno);
        break;
      case BF_FAULT_NOT_OURS:
      default:
        errno = saved_errno;
        chain_sigsegv (sig, si, uctx);
        break;
    }

  errno = saved_errno;
}

static void
install_handler (void)
{
  struct sigaction sa;

  memset (&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigsegv;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
  sigemptyset (&sa.sa_mask);
  if (sigaction (SIGSEGV, &sa, &prev_sigsegv) != 0)
    g_error ("Could not install the SIGSEGV handler: %s", g_strerror (errno));
}

/* Install the handler once, before the first VMA is mapped. */
void
bf_fault_install (void)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once (&once, install_handler);
}
