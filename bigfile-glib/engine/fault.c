/* bigfile-glib - the SIGSEGV handler
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

/* -- the handler -------------------------------------------------------------
 *
 * When it is installed
 * --------------------
 * The kernel runs the SIGSEGV handler installed last, and only that one.  A
 * handler installed over ours that takes every SIGSEGV for a crash (Python's
 * faulthandler, crash reporters) would turn the next first touch of a page
 * into a crash report.  So ours is put back in front with sigaction()
 * wherever that is cheap (one system call to look):
 *
 *   - at every map, which calls bf_fault_install() first (that installs it
 *     the first time);
 *   - when the program asks, with bigfile_install_fault_handler(), after
 *     installing a handler of its own;
 *
 * and only if the handler in front is not one of ours.  The handler it
 * displaces becomes the previous one: it gets the signals that are not ours.
 *
 * Chaining without cycles
 * -----------------------
 * A handler installed over ours keeps ours as *its* previous handler and
 * passes signals on to it: by a direct call, or by restoring it and raising
 * the signal again (faulthandler does that).  Were ours then put in front
 * again with that handler as its previous one, the chain would be a circle.
 * So each installation uses an entry point of its own, one of N_ENTRIES
 * trampolines, and each entry has its own previous handler, written once
 * (under install_lock) before the entry is first installed and never
 * changed after, so the handler reads it without a lock:
 *
 *   first map          kernel -> entry 0 -> H0 (what was there: SIG_DFL...)
 *   faulthandler       kernel -> F -> entry 0 -> H0
 *   next map           kernel -> entry 1 -> F -> entry 0 -> H0
 *
 * A signal that is not ours follows the handlers back in the order they
 * were installed and ends at H0, however each one calls its previous.  An
 * entry is used again when the handler to displace is the same (function,
 * flags and mask) as its previous one, so installing the same handler over
 * ours again and again takes one entry; N_ENTRIES different handlers
 * installed over ours make the next installation fail.
 *
 * Alternate signal stacks
 * -----------------------
 * Programs that report stack overflows, and runtimes (CPython's faulthandler,
 * Rust, Go), give threads an alternate signal stack (sigaltstack()) and
 * install their SIGSEGV handler with SA_ONSTACK: an overflowed stack has no
 * room for a handler's frame.  Ours needs SA_ONSTACK too, or the kernel
 * kills the process on an overflow before the program's handler, which ours
 * passes the signal to, can run.  But then every fault of such a thread is
 * served on the alternate stack, a few KiB, and a load callback (Python or
 * JavaScript code, a decompressor) may need far more.  So a fault that is
 * ours (a stack overflow never is: its address is in no VMA) is served on
 * the interrupted thread's own stack, just below the interrupted code's stack
 * pointer, where the kernel would have run the handler without SA_ONSTACK:
 *
 *          thread stack                        alternate stack
 *   +-------------------------+          +---------------------------+
 *   | interrupted code        |          | kernel's signal frame     | in use
 *   +-------------------------+ <- SP    | handle_sigsegv()          | by the
 *   | red zone, 128 bytes     |          | serve_switched()          | handler
 *   | SwitchFrame (contexts)  |          +---------------------------+ <- saved SP
 *   | serve_on_thread_stack() |          |                           | shrunk
 *   |   bf_fault_locked()     |          | free for nested signals   | alternate
 *   |     load callback       |          |                           | stack
 *   v     (as deep as needed) v          +---------------------------+
 *
 * How, and why so:
 *
 *   - Whether the handler runs on the alternate stack is told by the
 *     ucontext: uc_stack is the alternate stack as it was when the signal
 *     came, with SS_ONSTACK if the interrupted code ran on it already, and
 *     the handler is on it if its own frame lies inside.  sigaltstack(NULL)
 *     would not do: with SS_AUTODISARM it says "disabled" inside the
 *     handler, and a handler called directly by another one that runs on
 *     the thread stack gets the kernel's ucontext without being on the
 *     alternate stack.
 *   - If the interrupted code ran on the alternate stack already (a signal
 *     handler touching a mapping), the fault is served where it is: there
 *     is no other stack to go back to, as without SA_ONSTACK.
 *   - The switch is getcontext()/makecontext()/swapcontext(): glibc has them
 *     on every architecture, and AddressSanitizer and valgrind know them
 *     (ASan clears the shadow of the stack swapcontext() enters).  Only
 *     reading the interrupted stack pointer is per architecture: x86-64 and
 *     aarch64; elsewhere the handler is installed without SA_ONSTACK, as it
 *     was before.  The contexts live on the thread stack, not in the
 *     handler's frame: on aarch64 a ucontext_t takes 4.5 KiB, more than a
 *     small alternate stack can spare.
 *   - The region starts 128 bytes below the stack pointer: the x86-64 ABI
 *     lets a leaf function keep data there (the red zone), and the kernel
 *     skips it too.  Below is the thread's own stack, mapped (pthread
 *     stacks) or grown on demand (the main thread), with its guard page: the
 *     load gets the stack it would have had without an alternate stack.  If
 *     that is used up, writing the contexts faults while still on the
 *     alternate stack, and the fault goes to the program's handler.
 *   - While the fault is served on the thread stack, the kernel would put a
 *     nested signal (a fault of the load callback on another mapping, a
 *     timer) at the top of the alternate stack, over the frames still in use
 *     there.  So the alternate stack is shrunk to the part below them while
 *     the load runs: below the stack pointer swapcontext() saved, which is
 *     exact, whatever the compiler or a sanitizer's interceptors put in
 *     between.  sigaltstack() allows that only once the thread runs off it.
 *     A nested fault is served the same way, one level down.  If too little
 *     is left for a signal stack, it is disabled while the load runs
 *     instead; a stack overflow inside the load then kills the thread
 *     without the program's report.  With SS_AUTODISARM the kernel disarmed
 *     it already.
 *   - Back on the alternate stack, the handler puts it back whole.  The
 *     kernel may refuse (EPERM) if the call goes below the saved stack
 *     pointer, into the shrunk stack, as a sanitizer's interceptor of
 *     sigaltstack() does; that is safe (a signal meanwhile lands below the
 *     stack pointer either way), and the kernel's sigreturn puts it back as
 *     uc_stack says anyway (SS_AUTODISARM works that way).  The explicit
 *     call is for valgrind, whose sigreturn does not, and for handlers that
 *     call ours directly and go on after it returns.
 *   - Asynchronous signals stay blocked from the switch until the stack is
 *     shrunk (swapcontext() sets the mask before it jumps), so none comes
 *     in between.  Synchronous ones (SIGSEGV, SIGBUS, ...) are not blocked:
 *     the kernel forces them anyway.
 *   - The outcome is acted on after switching back: SIGBUS for a failed
 *     load is raised on the alternate stack.  A program's SIGBUS handler
 *     that jumps out with siglongjmp() skips our sigreturn, so for a failed
 *     load the alternate stack is put back whole before switching back,
 *     from the thread stack, with asynchronous signals blocked until the
 *     handler is on it again.
 *
 * The price is six system calls (two sigaltstack(), four signal masks) per
 * fault served this way, on threads with an alternate stack only.
 */

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31) /* Linux 4.7; not in glibc's headers */
#endif

#if defined(__x86_64__)
#define INTERRUPTED_SP(uc) ((guintptr)(uc)->uc_mcontext.gregs[REG_RSP])
#elif defined(__aarch64__)
#define INTERRUPTED_SP(uc) ((guintptr)(uc)->uc_mcontext.sp)
#endif

#ifdef INTERRUPTED_SP
#define SWITCH_STACKS 1
#define HANDLER_ONSTACK SA_ONSTACK
#else
#define SWITCH_STACKS 0
#define HANDLER_ONSTACK 0
#endif

#define N_ENTRIES 16

/* The previous handler of each entry: see "Chaining without cycles". */
static struct sigaction prev_sigsegv[N_ENTRIES];

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

/* Pass a signal that is not ours to the handler @entry displaced. */
static void
chain_sigsegv (guint entry, int sig, siginfo_t *si, void *uctx)
{
  const struct sigaction *prev = &prev_sigsegv[entry];

  if (prev->sa_flags & SA_SIGINFO)
    {
      prev->sa_sigaction (sig, si, uctx);
      return;
    }
  if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN)
    {
      prev->sa_handler (sig);
      return;
    }
  if (si->si_code <= 0)
    {
      /* Sent by kill() or raise(): nothing will run again.  Ignored before
       * us, it stays ignored; by default, it must still kill. */
      if (prev->sa_handler == SIG_DFL)
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

/* One fault to serve, and how it went. */
typedef struct
{
  void *addr;
  int write;
  BfFaultResult result;
  GError *error;
} FaultCall;

static void
serve_fault (FaultCall *call)
{
  fault_depth++;
  bf_lock ();
  call->result = bf_fault_locked (call->addr, call->write, &call->error);
  bf_unlock ();
  fault_depth--;
}

#if SWITCH_STACKS

#define RED_ZONE 128
/* What a nested fault needs of the shrunk alternate stack beyond the
 * kernel's signal frame, to get to its own switch: the handler's frames,
 * getcontext() and swapcontext() (and their ASan interceptors, 2 KiB), with
 * room to spare.  A smaller remainder is not kept as a signal stack: the
 * kernel would accept it (MINSIGSTKSZ is 2 KiB) and then fail to fit a
 * frame in it, and kill the process. */
#define HANDLER_NEEDS 4096
/* The size makecontext() is told the thread stack has below the contexts.
 * Only a hint (the load may go deeper: it is the thread's whole stack);
 * ASan clears the shadow of that much. */
#define STACK_HINT (64 * 1024)

/* The kernel's signal frame on this machine (it grows with the CPU's
 * register state: AVX-512, AMX); set before the first installation. */
static gsize signal_frame_size = 2048;

/* On the thread stack, just below the red zone. */
typedef struct
{
  ucontext_t back;  /* the handler on the alternate stack, to go back to */
  ucontext_t serve; /* serve_on_thread_stack() */
  FaultCall *call;  /* in the handler's frame, on the alternate stack */
  stack_t alt;      /* the alternate stack when the signal came */
  gboolean shrunk;  /* the alternate stack was shrunk or disabled */
  gboolean blocked; /* back's mask was changed to block asynchronous signals */
  sigset_t mask;    /* back's mask before that */
} SwitchFrame;

/* Every signal but the synchronous ones, which the kernel forces anyway:
 * blocking those would only turn a crash into a kill. */
static void
fill_async_signals (sigset_t *set)
{
  sigfillset (set);
  sigdelset (set, SIGSEGV);
  sigdelset (set, SIGBUS);
  sigdelset (set, SIGILL);
  sigdelset (set, SIGFPE);
  sigdelset (set, SIGTRAP);
  sigdelset (set, SIGSYS);
}

/* Runs on the thread stack, entered by swapcontext() with asynchronous
 * signals blocked; leaves by setcontext(), never returns.  makecontext()
 * passes int arguments: the frame's address comes in two halves. */
static void
serve_on_thread_stack (int hi, int lo)
{
  SwitchFrame *frame = (SwitchFrame *)(((guintptr)(guint32)hi << 32) | (guint32)lo);

  if (!(frame->alt.ss_flags & SS_AUTODISARM))
    {
      /* Off the alternate stack now: shrink it to the part below what the
       * handler still uses there, which ends at the stack pointer that
       * swapcontext() saved. */
      guintptr live = (INTERRUPTED_SP (&frame->back) - RED_ZONE) & ~(guintptr)15;
      stack_t below;

      memset (&below, 0, sizeof below);
      below.ss_sp = frame->alt.ss_sp;
      if (live > (guintptr)frame->alt.ss_sp)
        below.ss_size = live - (guintptr)frame->alt.ss_sp;
      if (below.ss_size < signal_frame_size + HANDLER_NEEDS || sigaltstack (&below, NULL) != 0)
        {
          /* Too small to be a signal stack. */
          below.ss_flags = SS_DISABLE;
          sigaltstack (&below, NULL);
        }
      frame->shrunk = TRUE;
    }
  pthread_sigmask (SIG_SETMASK, &frame->back.uc_sigmask, NULL);

  serve_fault (frame->call);

  /* The kernel's sigreturn puts the alternate stack back as the signal found
   * it (uc_stack), so that is left to it.  But a failed load raises SIGBUS
   * next, and a handler that jumps out of it skips that sigreturn: then put
   * it back now, while off it (sigaltstack() refuses on it), with
   * asynchronous signals blocked until the handler is back on it (one would
   * land on top of the frames there). */
  if (frame->shrunk && frame->call->result == BF_FAULT_ERROR)
    {
      stack_t whole = frame->alt;

      frame->mask = frame->back.uc_sigmask;
      fill_async_signals (&frame->back.uc_sigmask);
      frame->blocked = TRUE;
      pthread_sigmask (SIG_SETMASK, &frame->back.uc_sigmask, NULL);
      whole.ss_flags = 0;
      sigaltstack (&whole, NULL);
    }

  setcontext (&frame->back);
}

/* If the handler runs on an alternate stack the interrupted code was not
 * on, and the fault is ours: serves it on the thread stack and returns TRUE.
 * Otherwise returns FALSE, and the fault is to be served where the handler
 * is. */
static gboolean
serve_switched (FaultCall *call, ucontext_t *uc)
{
  const stack_t alt = uc->uc_stack;
  const guintptr alt_lo = (guintptr)alt.ss_sp, alt_hi = alt_lo + alt.ss_size;
  const guintptr sp = INTERRUPTED_SP (uc);
  guintptr here = (guintptr)&here, top, region_lo;
  SwitchFrame *frame;
  gboolean ours;

  if (alt.ss_size == 0 || (alt.ss_flags & (SS_DISABLE | SS_ONSTACK)) || here < alt_lo
      || here >= alt_hi)
    return FALSE;

  if (sp < RED_ZONE + sizeof (SwitchFrame) + STACK_HINT + 64)
    return FALSE;
  top = (sp - RED_ZONE) & ~(guintptr)63;
  region_lo = top - sizeof (SwitchFrame) - 64 - STACK_HINT;
  if (region_lo < alt_hi && top > alt_lo)
    return FALSE; /* the interrupted stack pointer is not on a stack we can use */

  bf_lock ();
  ours = bf_vma_lookup_locked (call->addr) != NULL;
  bf_unlock ();
  if (!ours)
    return FALSE;

  frame = (SwitchFrame *)((top - sizeof (SwitchFrame)) & ~(guintptr)63);
  frame->call = call;
  frame->alt = alt;
  frame->shrunk = FALSE;
  frame->blocked = FALSE;

  if (getcontext (&frame->serve) != 0)
    return FALSE;
  frame->serve.uc_stack.ss_sp = (guint8 *)frame - STACK_HINT;
  frame->serve.uc_stack.ss_size = STACK_HINT;
  frame->serve.uc_stack.ss_flags = 0;
  frame->serve.uc_link = NULL;
  fill_async_signals (&frame->serve.uc_sigmask);
  makecontext (&frame->serve, (void (*) (void))serve_on_thread_stack, 2,
               (int)(guint32)((guintptr)frame >> 32), (int)(guint32)(guintptr)frame);

  if (swapcontext (&frame->back, &frame->serve) != 0)
    return FALSE;

  /* Back on the alternate stack: put it back whole, if the kernel lets us
   * (see above); its sigreturn does it otherwise. */
  if (frame->blocked)
    pthread_sigmask (SIG_SETMASK, &frame->mask, NULL);
  else if (frame->shrunk)
    {
      stack_t whole = alt;
      whole.ss_flags = 0;
      sigaltstack (&whole, NULL);
    }
  return TRUE;
}

#endif /* SWITCH_STACKS */

static void
handle_sigsegv (guint entry, int sig, siginfo_t *si, void *uctx)
{
  int saved_errno = errno;
  FaultCall call = { si->si_addr, 0, BF_FAULT_NOT_OURS, NULL };

  /* si_code > 0: raised by the kernel for a real access, not sent by kill(). */
  if (si->si_code > 0 && !bf_lock_held ())
    {
      call.write = fault_is_write (uctx);
#if SWITCH_STACKS
      if (!serve_switched (&call, uctx))
#endif
        serve_fault (&call);
    }

  switch (call.result)
    {
      case BF_FAULT_HANDLED:
        break;
      case BF_FAULT_ERROR:
        g_clear_error (&fault_error);
        fault_error = call.error;
        raise_sigbus (si->si_addr, saved_errno);
        break;
      case BF_FAULT_NOT_OURS:
      default:
        errno = saved_errno;
        chain_sigsegv (entry, sig, si, uctx);
        break;
    }

  errno = saved_errno;
}

/* The entries: each knows its number, which tells its previous handler. */
#define DEFINE_ENTRY(n)                                                                            \
  static void on_sigsegv_##n (int sig, siginfo_t *si, void *uctx)                                  \
  {                                                                                                \
    handle_sigsegv (n, sig, si, uctx);                                                             \
  }
DEFINE_ENTRY (0)
DEFINE_ENTRY (1)
DEFINE_ENTRY (2)
DEFINE_ENTRY (3)
DEFINE_ENTRY (4)
DEFINE_ENTRY (5)
DEFINE_ENTRY (6)
DEFINE_ENTRY (7)
DEFINE_ENTRY (8)
DEFINE_ENTRY (9)
DEFINE_ENTRY (10)
DEFINE_ENTRY (11)
DEFINE_ENTRY (12)
DEFINE_ENTRY (13)
DEFINE_ENTRY (14)
DEFINE_ENTRY (15)

typedef void (*SigactionFunc) (int sig, siginfo_t *si, void *uctx);

static const SigactionFunc entries[N_ENTRIES] = {
  on_sigsegv_0,  on_sigsegv_1,  on_sigsegv_2,  on_sigsegv_3,  on_sigsegv_4,  on_sigsegv_5,
  on_sigsegv_6,  on_sigsegv_7,  on_sigsegv_8,  on_sigsegv_9,  on_sigsegv_10, on_sigsegv_11,
  on_sigsegv_12, on_sigsegv_13, on_sigsegv_14, on_sigsegv_15,
};

/* Serializes installations (never taken in the handler; a leaf lock). */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static guint n_entries_used; /* install_lock: prev_sigsegv[0, n) are set */

static gboolean
is_ours (const struct sigaction *sa)
{
  if (!(sa->sa_flags & SA_SIGINFO))
    return FALSE;
  for (guint i = 0; i < N_ENTRIES; i++)
    if (sa->sa_sigaction == entries[i])
      return TRUE;
  return FALSE;
}

/* Same handler, flags and mask.  The masks are compared signal by signal:
 * glibc copies a whole sigset_t out of a kernel one that is only partly
 * filled in, so the bytes past the kernel's signals are garbage.
 * sa_handler and sa_sigaction share their storage. */
static gboolean
same_action (const struct sigaction *a, const struct sigaction *b)
{
  if (a->sa_handler != b->sa_handler || a->sa_flags != b->sa_flags)
    return FALSE;
  for (int sig = 1; sig < NSIG; sig++)
    if (sigismember (&a->sa_mask, sig) != sigismember (&b->sa_mask, sig))
      return FALSE;
  return TRUE;
}

static gboolean
install_locked (GError **error)
{
  struct sigaction cur;

#if SWITCH_STACKS && defined(_SC_MINSIGSTKSZ)
  /* Before the first installation: no handler reads it yet. */
  if (n_entries_used == 0 && sysconf (_SC_MINSIGSTKSZ) > (long)signal_frame_size)
    signal_frame_size = (gsize)sysconf (_SC_MINSIGSTKSZ);
#endif

  if (sigaction (SIGSEGV, NULL, &cur) != 0)
    {
      int errsv = errno;
      g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_FAULT_HANDLER,
                   "Could not look up the SIGSEGV handler: sigaction: %s", g_strerror (errsv));
      return FALSE;
    }

  while (!is_ours (&cur))
    {
      struct sigaction sa, old;
      guint i;

      for (i = 0; i < n_entries_used; i++)
        if (same_action (&prev_sigsegv[i], &cur))
          break;
      if (i == n_entries_used)
        {
          if (i == N_ENTRIES)
            {
              g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_FAULT_HANDLER,
                           "Could not put the page fault (SIGSEGV) handler in front again: %d "
                           "different handlers were installed over it already",
                           N_ENTRIES);
              return FALSE;
            }
          prev_sigsegv[i] = cur;
          n_entries_used++;
        }

      memset (&sa, 0, sizeof sa);
      sa.sa_sigaction = entries[i];
      sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART | HANDLER_ONSTACK;
      sigemptyset (&sa.sa_mask);
      if (sigaction (SIGSEGV, &sa, &old) != 0)
        {
          int errsv = errno;
          g_set_error (error, BIGFILE_VMA_ERROR, BIGFILE_VMA_ERROR_FAULT_HANDLER,
                       "Could not install the page fault (SIGSEGV) handler: sigaction: %s",
                       g_strerror (errsv));
          return FALSE;
        }
      if (same_action (&old, &cur))
        break;
      /* Another thread installed a handler since we looked: ours displaced
       * it, so put ours in front again with that one behind. */
      cur = old;
    }
  return TRUE;
}

gboolean
bf_fault_install_handler (GError **error)
{
  gboolean ok;

  pthread_mutex_lock (&install_lock);
  ok = install_locked (error);
  pthread_mutex_unlock (&install_lock);
  return ok;
}

/* For callers with no GError to give (tests, benchmarks): install the
 * handler, or put it in front again, warning once if that fails (it cannot,
 * short of N_ENTRIES other handlers). */
void
bf_fault_install (void)
{
  GError *error = NULL;

  if (!bf_fault_install_handler (&error))
    {
      g_warning_once ("%s", error->message);
      g_error_free (error);
    }
}
