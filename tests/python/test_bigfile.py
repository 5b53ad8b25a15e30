#!/usr/bin/python3
# bigfile-glib binding tests: the library as PyGObject users see it
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# These run against the freshly built typelib: meson sets GI_TYPELIB_PATH and
# LD_LIBRARY_PATH (bigfile_gi_env).  Run by hand the same way:
#
#   meson devenv -C BUILD /usr/bin/python3 tests/python/test_bigfile.py -v
#
# What they cover, in the order of the classes below:
#   - a BigfileFile written in Python (do_get_block_size, do_load_block
#     returning GLib.Bytes, do_store_block taking GLib.Bytes) behind a handle:
#     reads, writes, synchronous writeout;
#   - writeout_async on a real GLib.MainLoop: progress, the thread stores run
#     on, cancellation, writes made between its slices, BUSY;
#   - signals to Python handlers: page-invalidated, notify::n-dirty-pages,
#     BigfileRam::reclaimed, and the GMemoryMonitor hook;
#   - errors raised in Python vfuncs, and the thread rule for files that are
#     not thread-safe (WRONG_THREAD);
#   - sizes: a Python file with one (do_get_size returning (True, size),
#     do_set_size) keeps it, grows over what was written past it, is
#     resized by set_size; files without one behave as before;
#   - BigfileLocalFile from Python;
#   - fork(): a multiprocessing worker cannot use the parent's mappings.
#
# Callbacks from C swallow Python exceptions (PyGObject prints them), so the
# callbacks here only record what happened; the assertions come after the
# main loop returns.
#
# Last, TestFaultHandler: raw memory (ctypes) with faulthandler enabled before
# or after the first map, in a fresh interpreter each. The library's SIGSEGV
# handler must stay in front, serve Python loads on the thread's own stack,
# and pass real crashes on to faulthandler.

import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import gi

gi.require_version('GLib', '2.0')
gi.require_version('GObject', '2.0')
gi.require_version('Gio', '2.0')
gi.require_version('Bigfile', '1.0')
from gi.repository import GLib, GObject, Gio, Bigfile  # noqa: E402

BLOCK = 4096
MAIN_THREAD = threading.get_ident()

# How long a test may wait for the main loop before it fails.
LOOP_TIMEOUT = 30


def pattern(block, size=BLOCK):
    """The computed contents of a block that was never stored: every block
    differs from every other, so a page loaded from the wrong block shows."""
    start = (block * 7 + 1) & 0xFF
    period = bytes((start + i) & 0xFF for i in range(256))
    return period * (size // 256)


def spin(predicate, timeout=5.0):
    """Iterates the default main context until predicate() holds or the
    timeout passes; returns predicate()."""
    context = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        if not context.iteration(False):
            time.sleep(0.001)
    return predicate()


def drain(seconds=0.1):
    """Iterates the default main context for a while, for checks that
    something does NOT happen."""
    context = GLib.MainContext.default()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not context.iteration(False):
            time.sleep(0.001)


class ComputedFile(GObject.Object, Bigfile.File):
    """A file whose unstored blocks are computed, and whose stored blocks
    live in a dict; it logs every call with the thread it came on."""

    __gtype_name__ = 'TestPyComputedFile'

    def __init__(self, block_size=BLOCK, store_delay=0.0):
        super().__init__()
        self.block_size = block_size
        self.store_delay = store_delay
        self.stored = {}  # block -> bytes
        self.loads = []  # (block, thread ident)
        self.stores = []  # (block, thread ident)
        self.load_exception = None  # raised by do_load_block when set
        self.store_exception = None  # raised by do_store_block when set
        self.on_store = None  # called after each store, with the block

    def do_get_block_size(self):
        return self.block_size

    def do_load_block(self, block):
        self.loads.append((block, threading.get_ident()))
        if self.load_exception is not None:
            raise self.load_exception
        data = self.stored.get(block)
        if data is None:
            data = pattern(block, self.block_size)
        return GLib.Bytes.new(data)

    def do_store_block(self, block, data):
        if self.store_exception is not None:
            raise self.store_exception
        if self.store_delay:
            # Longer than one slice of an asynchronous writeout, so that
            # each slice stores one block.
            time.sleep(self.store_delay)
        self.stored[block] = data.get_data()
        self.stores.append((block, threading.get_ident()))
        if self.on_store is not None:
            self.on_store(block)
        return True

    def stored_blocks(self):
        return [block for block, _ in self.stores]


class FixedFile(GObject.Object, Bigfile.File):
    """A read-only file whose every block loads as the same bytes, which may
    be of the wrong size.

    Not a subclass of ComputedFile: a Python subclass that overrides a vfunc
    of an interface its parent implements replaces it in the vtable the two
    classes share (GObject copies an interface's vtable only for a class
    that adds the interface itself), for the parent's instances too."""

    __gtype_name__ = 'TestPyFixedFile'

    def __init__(self, data):
        super().__init__()
        self.data = data

    def do_get_block_size(self):
        return BLOCK

    def do_load_block(self, block):
        return GLib.Bytes.new(self.data)


class SizedFile(GObject.Object, Bigfile.File):
    """A file with a size (do_get_size, do_set_size), its bytes in a
    bytearray. Its loads give junk (0xa5) past the size, which a handle must
    not show; it records stores that reach past the size, which a handle
    must never make."""

    __gtype_name__ = 'TestPySizedFile'

    def __init__(self, data):
        super().__init__()
        self.data = bytearray(data)
        self.set_sizes = []
        self.stores = []  # (block, length)
        self.past_size = []  # stores that reached past the size

    def do_get_block_size(self):
        return BLOCK

    def do_get_size(self):
        return True, len(self.data)

    def do_set_size(self, size):
        self.set_sizes.append(size)
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data.extend(bytes(size - len(self.data)))
        return True

    def do_load_block(self, block):
        data = bytes(self.data[block * BLOCK:(block + 1) * BLOCK])
        return GLib.Bytes.new(data + b'\xa5' * (BLOCK - len(data)))

    def do_store_block(self, block, data):
        data = data.get_data()
        start = block * BLOCK
        self.stores.append((block, len(data)))
        if start + len(data) > len(self.data):
            self.past_size.append((block, len(data), len(self.data)))
            return True
        self.data[start:start + len(data)] = data
        return True


class NoSizeFile(GObject.Object, Bigfile.File):
    """A file that implements get_size to say it has no size, or fails in
    it without a GLib.Error: either way a file without a size."""

    __gtype_name__ = 'TestPyNoSizeFile'

    def __init__(self, fail=False):
        super().__init__()
        self.fail = fail

    def do_get_block_size(self):
        return BLOCK

    def do_get_size(self):
        if self.fail:
            raise ValueError('no size today')
        return False, 0

    def do_load_block(self, block):
        return GLib.Bytes.new(pattern(block))


class BigfileTestCase(unittest.TestCase):
    """Opens a ComputedFile and maps it; unmaps and closes at the end."""

    n_pages = 16

    def open(self, file=None, budget=1 << 20, n_pages=None):
        file = file if file is not None else ComputedFile()
        ram = Bigfile.Ram.new(budget)
        handle = Bigfile.Handle.new(file, ram)
        vma = handle.map(0, n_pages or self.n_pages)
        self.addCleanup(handle.close)
        self.addCleanup(vma.unmap)
        return file, ram, handle, vma

    def assertGError(self, error, domain, code, message=None):
        self.assertIsInstance(error, GLib.Error)
        self.assertTrue(error.matches(domain, code),
                        'expected %s %d, got %s %d: %s' % (
                            GLib.quark_to_string(domain), int(code),
                            error.domain, error.code, error.message))
        if message is not None:
            self.assertEqual(error.message, message)

    def dirty(self, vma, pages, fill=b'\xee'):
        """Writes a marker at the start of each of @pages; returns the
        marker bytes of each page."""
        written = {}
        for page in pages:
            marker = fill + b'page %d' % page
            vma.write(page * BLOCK, GLib.Bytes.new(marker))
            written[page] = marker
        return written

    def run_writeout_async(self, handle, cancellable=None, progress=None, progress_data=None,
                           io_priority=GLib.PRIORITY_DEFAULT):
        """Runs writeout_async on a GLib.MainLoop until its callback comes.
        Returns (finish's return value or None, the GLib.Error or None,
        the thread the callback ran on).

        PyGObject 3.42 calls @progress with (bytes_done, bytes_total, data):
        data is None when @progress_data is not given, and the one item of
        @progress_data otherwise, which must be a tuple: seeing that the
        last user_data of the method (that of @callback) takes the rest of
        the arguments, PyGObject expects every user_data to be a tuple."""
        loop = GLib.MainLoop()
        outcome = {}

        def on_done(source, result):
            outcome['thread'] = threading.get_ident()
            outcome['source'] = source
            try:
                outcome['ok'] = source.writeout_finish(result)
            except GLib.Error as error:
                outcome['error'] = error
            loop.quit()

        def on_timeout():
            outcome['timed_out'] = True
            loop.quit()
            return GLib.SOURCE_REMOVE

        timeout_id = GLib.timeout_add_seconds(LOOP_TIMEOUT, on_timeout)
        # By keyword: PyGObject lists progress_data (the closure of
        # progress_callback) as a parameter of its own, before callback;
        # an explicit None there is refused like any other non-tuple.
        extra = {} if progress_data is None else {'progress_data': progress_data}
        handle.writeout_async(Bigfile.WriteoutFlags.DEFAULT, io_priority, cancellable,
                              progress_callback=progress, callback=on_done, **extra)
        loop.run()
        if 'timed_out' in outcome:
            self.fail('writeout_async did not finish within %d s' % LOOP_TIMEOUT)
        GLib.source_remove(timeout_id)
        self.assertIs(outcome['source'], handle)
        return outcome.get('ok'), outcome.get('error'), outcome['thread']


class TestPythonFile(BigfileTestCase):
    """A BigfileFile implemented in Python, read and written through a
    mapping."""

    def test_interface(self):
        file = ComputedFile()
        self.assertTrue(isinstance(file, Bigfile.File))
        self.assertEqual(file.get_block_size(), BLOCK)
        self.assertFalse(file.is_thread_safe())
        self.assertEqual(file.load_block(5).get_data(), pattern(5))
        self.assertTrue(file.store_block(5, GLib.Bytes.new(b'\x01' * BLOCK)))
        self.assertEqual(file.load_block(5).get_data(), b'\x01' * BLOCK)

    def test_read_loads_lazily(self):
        file, ram, handle, vma = self.open()
        self.assertEqual(handle.get_page_size(), BLOCK)
        self.assertEqual(vma.get_length(), self.n_pages * BLOCK)
        self.assertEqual(file.loads, [])
        self.assertEqual(handle.get_page_state(3), Bigfile.PageState.EMPTY)

        data = vma.read(3 * BLOCK + 10, 100).get_data()
        self.assertEqual(data, pattern(3)[10:110])
        self.assertEqual(file.loads, [(3, MAIN_THREAD)])
        self.assertEqual(handle.get_page_state(3), Bigfile.PageState.LOADED)
        self.assertEqual(ram.get_n_pages(), 1)

        # A read across a page boundary loads both pages, each once.
        data = vma.read(3 * BLOCK + BLOCK - 2, 4).get_data()
        self.assertEqual(data, pattern(3)[-2:] + pattern(4)[:2])
        self.assertEqual([b for b, _ in file.loads], [3, 4])

    def test_write_and_writeout(self):
        file, ram, handle, vma = self.open()
        vma.write(2 * BLOCK + 100, GLib.Bytes.new(b'hello'))
        vma.write(9 * BLOCK, GLib.Bytes.new(b'world'))
        self.assertEqual(handle.get_n_dirty_pages(), 2)
        self.assertEqual(handle.props.n_dirty_pages, 2)
        self.assertEqual(ram.get_n_dirty_pages(), 2)
        self.assertEqual(handle.get_page_state(2), Bigfile.PageState.DIRTY)
        # The unchanged rest of the page is what was loaded.
        self.assertEqual(vma.read(2 * BLOCK, BLOCK).get_data(),
                         pattern(2)[:100] + b'hello' + pattern(2)[105:])
        self.assertEqual(file.stores, [])

        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(file.stores, [(2, MAIN_THREAD), (9, MAIN_THREAD)])
        self.assertEqual(file.stored[2], pattern(2)[:100] + b'hello' + pattern(2)[105:])
        self.assertEqual(file.stored[9], b'world' + pattern(9)[5:])
        self.assertEqual(handle.get_n_dirty_pages(), 0)
        self.assertEqual(handle.get_page_state(2), Bigfile.PageState.LOADED)

        # A fresh handle of the same file sees the stored data.
        other = Bigfile.Handle.new(file, Bigfile.Ram.new(1 << 20))
        self.addCleanup(other.close)
        other_vma = other.map(0, self.n_pages)
        self.addCleanup(other_vma.unmap)
        self.assertEqual(other_vma.read(9 * BLOCK, 5).get_data(), b'world')
        self.assertEqual(other_vma.read(2 * BLOCK + 100, 5).get_data(), b'hello')

    def test_discard(self):
        file, ram, handle, vma = self.open()
        self.dirty(vma, [1, 5])
        self.assertEqual(handle.discard(), 2)
        self.assertEqual(handle.get_n_dirty_pages(), 0)
        self.assertEqual(vma.read(BLOCK, 8).get_data(), pattern(1)[:8])
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(file.stores, [])

    def test_store_only_then_mark(self):
        file, ram, handle, vma = self.open()
        self.dirty(vma, [4])
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.STORE))
        self.assertEqual(file.stored_blocks(), [4])
        self.assertEqual(handle.get_n_dirty_pages(), 1)
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.MARK_STORED))
        self.assertEqual(file.stored_blocks(), [4])
        self.assertEqual(handle.get_n_dirty_pages(), 0)

    def test_budget_reclaims_clean_pages(self):
        # Four pages of budget, sixteen pages read: clean pages come and go,
        # and a page read again is loaded again.
        file, ram, handle, vma = self.open(budget=4 * BLOCK)
        for page in range(self.n_pages):
            self.assertEqual(vma.read(page * BLOCK, BLOCK).get_data(), pattern(page))
        self.assertLessEqual(ram.get_used_bytes(), 4 * BLOCK)
        self.assertEqual(vma.read(0, 4).get_data(), pattern(0)[:4])
        self.assertEqual([b for b, _ in file.loads], list(range(self.n_pages)) + [0])

    def test_block_size_rejected(self):
        with self.assertRaises(GLib.Error) as caught:
            Bigfile.Handle.new(ComputedFile(block_size=1000), Bigfile.Ram.new(1 << 20))
        self.assertGError(caught.exception, Bigfile.handle_error_quark(),
                          Bigfile.HandleError.INVALID_BLOCK_SIZE)

    def test_out_of_range(self):
        file, ram, handle, vma = self.open()
        with self.assertRaises(GLib.Error) as caught:
            vma.read(self.n_pages * BLOCK - 2, 4)
        self.assertGError(caught.exception, Bigfile.vma_error_quark(),
                          Bigfile.VmaError.OUT_OF_RANGE)
        self.assertEqual(file.loads, [])


class TestWriteoutAsync(BigfileTestCase):
    """writeout_async of a file implemented in Python: stores run in slices
    on the main thread, from the main loop."""

    n_dirty = 8

    def open_dirty(self, store_delay=0.006):
        file, ram, handle, vma = self.open(ComputedFile(store_delay=store_delay))
        written = self.dirty(vma, range(self.n_dirty))
        self.assertEqual(handle.get_n_dirty_pages(), self.n_dirty)
        return file, ram, handle, vma, written

    def assertStored(self, file, page, marker):
        self.assertEqual(file.stored[page], marker + pattern(page)[len(marker):])

    def test_progress_and_thread(self):
        file, ram, handle, vma, written = self.open_dirty()
        progress = []

        def on_progress(done, total, data):
            progress.append((done, total, threading.get_ident(), len(file.stores)))
            datas.add(data)

        datas = set()
        ok, error, thread = self.run_writeout_async(handle, progress=on_progress,
                                                    progress_data=('my data',))
        self.assertIsNone(error)
        self.assertTrue(ok)
        self.assertEqual(thread, MAIN_THREAD)

        # Every dirty page stored once, in order, on the main thread: the
        # file is not thread-safe, so no worker thread may call it.
        self.assertEqual(file.stores, [(page, MAIN_THREAD) for page in range(self.n_dirty)])
        for page, marker in written.items():
            self.assertStored(file, page, marker)
            self.assertEqual(handle.get_page_state(page), Bigfile.PageState.LOADED)
        self.assertEqual(handle.get_n_dirty_pages(), 0)

        total = self.n_dirty * BLOCK
        self.assertGreater(len(progress), 0)
        self.assertTrue(all(p[1] == total for p in progress), progress)
        self.assertTrue(all(p[2] == MAIN_THREAD for p in progress), progress)
        done = [p[0] for p in progress]
        self.assertEqual(done, sorted(done), 'bytes_done went backwards')
        self.assertTrue(all(0 <= d <= total for d in done), progress)
        self.assertEqual(done[-1], total)
        # Progress tells no more than was stored when it was called.
        self.assertTrue(all(p[0] <= p[3] * BLOCK for p in progress), progress)
        # With stores slower than a slice, progress came along the way,
        # not only at the end.
        self.assertGreater(len(set(done)), 1, progress)
        self.assertEqual(datas, {'my data'})

    def test_no_progress_callback(self):
        file, ram, handle, vma, written = self.open_dirty(store_delay=0)
        ok, error, thread = self.run_writeout_async(handle)
        self.assertIsNone(error)
        self.assertTrue(ok)
        self.assertEqual(file.stored_blocks(), list(range(self.n_dirty)))
        self.assertEqual(handle.get_n_dirty_pages(), 0)

    def test_nothing_dirty(self):
        file, ram, handle, vma = self.open()
        vma.read(0, 10)
        progress = []
        ok, error, thread = self.run_writeout_async(
            handle, progress=lambda done, total, data: progress.append((done, total)))
        self.assertIsNone(error)
        self.assertTrue(ok)
        self.assertEqual(file.stores, [])
        self.assertTrue(all(p == (0, 0) for p in progress), progress)

    def test_main_loop_keeps_running(self):
        # The stores take 6 ms each; a timeout of higher priority keeps
        # firing in between, since the writeout runs in slices.
        file, ram, handle, vma, written = self.open_dirty()
        ticks = []

        def on_tick():
            ticks.append(len(file.stores))
            return GLib.SOURCE_CONTINUE

        tick_id = GLib.timeout_add(1, on_tick)
        try:
            ok, error, thread = self.run_writeout_async(handle)
        finally:
            GLib.source_remove(tick_id)
        self.assertIsNone(error)
        self.assertTrue(any(0 < n < self.n_dirty for n in ticks),
                        'the main loop did not run between slices: %r' % ticks)

    def test_cancel_from_progress(self):
        file, ram, handle, vma, written = self.open_dirty()
        cancellable = Gio.Cancellable()
        progress = []

        def on_progress(done, total, data):
            progress.append(done)
            if done >= BLOCK and not cancellable.is_cancelled():
                cancellable.cancel()

        ok, error, thread = self.run_writeout_async(handle, cancellable, on_progress)
        self.assertIsNone(ok)
        self.assertGError(error, Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
        self.assertTrue(cancellable.is_cancelled())

        # The blocks stored before the cancellation stay stored and clean;
        # the others stay dirty and unstored.
        stored = file.stored_blocks()
        self.assertGreaterEqual(len(stored), 1)
        self.assertLess(len(stored), self.n_dirty, 'the cancellation stopped nothing')
        self.assertEqual(stored, list(range(len(stored))))
        self.assertEqual(handle.get_n_dirty_pages(), self.n_dirty - len(stored))
        for page in range(self.n_dirty):
            if page in stored:
                self.assertStored(file, page, written[page])
                self.assertEqual(handle.get_page_state(page), Bigfile.PageState.LOADED)
            else:
                self.assertNotIn(page, file.stored)
                self.assertEqual(handle.get_page_state(page), Bigfile.PageState.DIRTY)

        # A second writeout stores the rest, and nothing twice.
        file.store_delay = 0
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(file.stored_blocks(), list(range(self.n_dirty)))
        for page, marker in written.items():
            self.assertStored(file, page, marker)
        self.assertEqual(handle.get_n_dirty_pages(), 0)

    def test_cancelled_before_start(self):
        file, ram, handle, vma, written = self.open_dirty(store_delay=0)
        cancellable = Gio.Cancellable()
        cancellable.cancel()
        ok, error, thread = self.run_writeout_async(handle, cancellable)
        self.assertGError(error, Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED)
        self.assertEqual(file.stores, [])
        self.assertEqual(handle.get_n_dirty_pages(), self.n_dirty)

    def test_write_between_slices(self):
        # After the first store, an idle callback (which runs between two
        # slices) writes to page 0, already stored, and to the last page,
        # not yet stored. The writeout stores the dirty pages it found when
        # it began: page 0 was done, so it is dirty again after; the last
        # page is stored with the new bytes.
        file, ram, handle, vma, written = self.open_dirty()
        last = self.n_dirty - 1
        meanwhile = {}

        def write_meanwhile():
            meanwhile['stores_before'] = len(file.stores)
            vma.write(0, GLib.Bytes.new(b'again 0'))
            vma.write(last * BLOCK, GLib.Bytes.new(b'again last'))
            meanwhile['dirty_after'] = handle.get_n_dirty_pages()
            return GLib.SOURCE_REMOVE

        def on_store(block):
            if not meanwhile:
                meanwhile['scheduled'] = True
                GLib.idle_add(write_meanwhile, priority=GLib.PRIORITY_DEFAULT)

        file.on_store = on_store
        ok, error, thread = self.run_writeout_async(handle)
        self.assertIsNone(error)
        self.assertTrue(ok)

        self.assertIn('stores_before', meanwhile, 'the idle callback did not run')
        self.assertGreaterEqual(meanwhile['stores_before'], 1)
        self.assertLess(meanwhile['stores_before'], self.n_dirty,
                        'the idle callback ran only after the writeout')

        self.assertEqual(file.stored_blocks(), list(range(self.n_dirty)))
        # Page 0: stored with its first bytes, then changed: dirty.
        self.assertStored(file, 0, written[0])
        self.assertEqual(handle.get_page_state(0), Bigfile.PageState.DIRTY)
        self.assertEqual(vma.read(0, 7).get_data(), b'again 0')
        # The last page: stored with the bytes written meanwhile.
        self.assertStored(file, last, b'again last')
        self.assertEqual(handle.get_page_state(last), Bigfile.PageState.LOADED)
        self.assertEqual(handle.get_n_dirty_pages(), 1)

        file.on_store = None
        file.store_delay = 0
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertStored(file, 0, b'again 0')
        self.assertEqual(handle.get_n_dirty_pages(), 0)

    def test_busy(self):
        # A second writeout while one runs fails with BUSY, and the running
        # one is not disturbed.
        file, ram, handle, vma, written = self.open_dirty()
        busy = []

        def on_progress(done, total, data):
            if not busy and done < total:
                try:
                    handle.writeout(Bigfile.WriteoutFlags.DEFAULT)
                    busy.append(None)
                except GLib.Error as error:
                    busy.append(error)

        ok, error, thread = self.run_writeout_async(handle, progress=on_progress)
        self.assertIsNone(error)
        self.assertTrue(ok)
        self.assertEqual(len(busy), 1, 'no progress came before the end')
        self.assertGError(busy[0], Bigfile.handle_error_quark(), Bigfile.HandleError.BUSY)
        self.assertEqual(file.stored_blocks(), list(range(self.n_dirty)))

    def test_store_error(self):
        file, ram, handle, vma, written = self.open_dirty(store_delay=0)
        file.store_exception = GLib.Error.new_literal(
            Gio.io_error_quark(), 'disk on fire', Gio.IOErrorEnum.NO_SPACE)
        ok, error, thread = self.run_writeout_async(handle)
        self.assertGError(error, Gio.io_error_quark(), Gio.IOErrorEnum.NO_SPACE, 'disk on fire')
        self.assertEqual(handle.get_n_dirty_pages(), self.n_dirty)

        file.store_exception = None
        ok, error, thread = self.run_writeout_async(handle)
        self.assertIsNone(error)
        self.assertEqual(file.stored_blocks(), list(range(self.n_dirty)))
        self.assertEqual(handle.get_n_dirty_pages(), 0)


class TestSignals(BigfileTestCase):
    """Signals reach Python handlers, on the main thread."""

    def test_page_invalidated(self):
        file, ram, handle, vma = self.open()
        seen = []
        handle.connect('page-invalidated',
                       lambda h, page: seen.append((h, page, threading.get_ident())))
        self.dirty(vma, [5])
        handle.invalidate_page(5)
        self.assertTrue(spin(lambda: seen), 'page-invalidated was not emitted')
        drain()
        self.assertEqual(seen, [(handle, 5, MAIN_THREAD)])
        # The change is gone: the page loads from the file again.
        self.assertEqual(handle.get_page_state(5), Bigfile.PageState.EMPTY)
        self.assertEqual(handle.get_n_dirty_pages(), 0)
        self.assertEqual(vma.read(5 * BLOCK, 8).get_data(), pattern(5)[:8])

        # A large page index survives the trip (guint64).
        far = (1 << 40) + 3
        handle.invalidate_page(far)
        self.assertTrue(spin(lambda: len(seen) == 2))
        self.assertEqual(seen[1][1], far)

    def test_page_invalidated_from_thread(self):
        # Invalidations on another thread are coalesced: each page once, in
        # increasing order, on the main thread.  Too many separate ones
        # collapse into one emission for any page, GLib.MAXUINT64, which a
        # handler can recognize.
        file, ram, handle, vma = self.open()
        seen = []
        handle.connect('page-invalidated',
                       lambda h, page: seen.append((page, threading.get_ident())))

        def invalidate(pages):
            worker = threading.Thread(target=lambda: [handle.invalidate_page(p) for p in pages])
            worker.start()
            worker.join(LOOP_TIMEOUT)
            self.assertFalse(worker.is_alive())

        invalidate([7, 3, 3, 5, 4, 6, 5])
        self.assertEqual(seen, [])
        self.assertTrue(spin(lambda: len(seen) >= 5))
        drain()
        self.assertEqual(seen, [(page, MAIN_THREAD) for page in range(3, 8)])

        del seen[:]
        invalidate(range(0, 2 * 4097, 2))
        self.assertTrue(spin(lambda: seen))
        drain()
        self.assertEqual(seen, [(GLib.MAXUINT64, MAIN_THREAD)])

    def test_notify_n_dirty_pages(self):
        file, ram, handle, vma = self.open()
        seen = []
        handle.connect('notify::n-dirty-pages',
                       lambda h, pspec: seen.append((h.props.n_dirty_pages, pspec.name,
                                                     threading.get_ident())))
        self.dirty(vma, [1, 2, 3])
        self.assertTrue(spin(lambda: seen and seen[-1][0] == 3), seen)
        self.assertTrue(all(s[1] == 'n-dirty-pages' and s[2] == MAIN_THREAD for s in seen))

        count = len(seen)
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertTrue(spin(lambda: len(seen) > count and seen[-1][0] == 0), seen)

        # Reading changes no dirty count: no notification.
        count = len(seen)
        vma.read(10 * BLOCK, 10)
        drain()
        self.assertEqual(len(seen), count)

    def test_ram_reclaimed_explicit(self):
        file, ram, handle, vma = self.open()
        seen = []
        ram.connect('reclaimed', lambda r, n: seen.append((r, n, threading.get_ident())))
        for page in range(4):
            vma.read(page * BLOCK, 1)
        self.dirty(vma, [6])
        self.assertEqual(ram.get_n_pages(), 5)

        # On the RAM's own thread the signal comes at once.
        self.assertEqual(ram.reclaim(), 4)
        self.assertEqual(seen, [(ram, 4, MAIN_THREAD)])
        self.assertEqual(ram.get_n_pages(), 1)
        self.assertEqual(handle.get_page_state(6), Bigfile.PageState.DIRTY)

        # Nothing to reclaim: nothing reported as reclaimed.
        self.assertEqual(ram.reclaim(), 0)
        drain()
        self.assertTrue(all(n > 0 for _, n, _ in seen), seen)

    def test_ram_reclaimed_by_budget(self):
        file, ram, handle, vma = self.open(budget=4 * BLOCK)
        counts = []
        ram.connect('reclaimed', lambda r, n: counts.append(n))
        for page in range(12):
            vma.read(page * BLOCK, 1)
        # Twelve pages loaded, at most four kept: the rest were reclaimed,
        # and the signal tells them all (possibly in fewer emissions).
        reclaimed = 12 - ram.get_n_pages()
        self.assertGreaterEqual(reclaimed, 8)
        self.assertTrue(spin(lambda: sum(counts) == reclaimed),
                        'reclaimed counts %r, expected a sum of %d' % (counts, reclaimed))
        drain()
        self.assertEqual(sum(counts), reclaimed)


class TestLowMemory(BigfileTestCase):
    """The GMemoryMonitor hook. The low-memory-monitor daemon is not needed:
    the test emits the monitor's signal itself."""

    def setUp(self):
        self.monitor = Gio.MemoryMonitor.dup_default()

    def warn(self):
        self.monitor.emit('low-memory-warning', Gio.MemoryMonitorWarningLevel.LOW)

    def load_some(self, vma):
        for page in range(5):
            vma.read(page * BLOCK, 1)
        self.dirty(vma, [8, 9])

    def test_reclaims_clean_pages(self):
        file, ram, handle, vma = self.open()
        self.assertTrue(ram.get_reclaim_on_low_memory())
        self.assertTrue(ram.props.reclaim_on_low_memory)
        seen = []
        ram.connect('reclaimed', lambda r, n: seen.append(n))
        self.load_some(vma)
        self.assertEqual(ram.get_n_pages(), 7)

        self.warn()
        self.assertTrue(spin(lambda: sum(seen) == 5), 'reclaimed: %r' % seen)
        # The five clean pages went; the two dirty ones stay.
        self.assertEqual(ram.get_n_pages(), 2)
        self.assertEqual(ram.get_n_dirty_pages(), 2)
        self.assertEqual(handle.get_page_state(0), Bigfile.PageState.EMPTY)
        self.assertEqual(handle.get_page_state(8), Bigfile.PageState.DIRTY)
        self.assertEqual(vma.read(8 * BLOCK, 1).get_data(), b'\xee')

    def test_disabled(self):
        file, ram, handle, vma = self.open()
        notified = []
        ram.connect('notify::reclaim-on-low-memory', lambda r, p: notified.append(p.name))
        ram.set_reclaim_on_low_memory(False)
        self.assertFalse(ram.get_reclaim_on_low_memory())
        self.assertEqual(notified, ['reclaim-on-low-memory'])
        ram.props.reclaim_on_low_memory = False  # no change, no notification
        self.assertEqual(notified, ['reclaim-on-low-memory'])

        seen = []
        ram.connect('reclaimed', lambda r, n: seen.append(n))
        self.load_some(vma)
        self.warn()
        drain(0.2)
        self.assertEqual(seen, [])
        self.assertEqual(ram.get_n_pages(), 7)
        self.assertEqual(handle.get_page_state(0), Bigfile.PageState.LOADED)

        # And back on.
        ram.props.reclaim_on_low_memory = True
        self.warn()
        self.assertTrue(spin(lambda: sum(seen) == 5), 'reclaimed: %r' % seen)

    def test_ram_gone(self):
        # A RAM that was dropped must have left the monitor: a warning after
        # that is harmless.
        ram = Bigfile.Ram.new(1 << 20)
        del ram
        self.warn()
        drain()


class TestErrors(BigfileTestCase):
    """Exceptions in Python vfuncs come back to the caller as GLib.Error."""

    def test_glib_error_from_load(self):
        file, ram, handle, vma = self.open()
        file.load_exception = GLib.Error.new_literal(
            Gio.io_error_quark(), 'boom', Gio.IOErrorEnum.FAILED)
        with self.assertRaises(GLib.Error) as caught:
            vma.read(3 * BLOCK, 10)
        self.assertGError(caught.exception, Gio.io_error_quark(), Gio.IOErrorEnum.FAILED, 'boom')
        self.assertEqual(handle.get_page_state(3), Bigfile.PageState.EMPTY)
        with self.assertRaises(GLib.Error):
            vma.write(3 * BLOCK, GLib.Bytes.new(b'x'))
        self.assertEqual(handle.get_n_dirty_pages(), 0)

        # Not a lasting failure: the next access loads the page.
        file.load_exception = None
        self.assertEqual(vma.read(3 * BLOCK, 10).get_data(), pattern(3)[:10])

    def test_other_domain(self):
        file, ram, handle, vma = self.open()
        file.load_exception = GLib.Error.new_literal(
            Bigfile.file_error_quark(), 'no such block here', Bigfile.FileError.INVALID_DATA)
        with self.assertRaises(GLib.Error) as caught:
            vma.read(0, 1)
        self.assertGError(caught.exception, Bigfile.file_error_quark(),
                          Bigfile.FileError.INVALID_DATA, 'no such block here')

    def test_python_exception_from_load(self):
        # Not a GLib.Error: PyGObject prints it and returns failure without
        # an error; the library makes a generic one.  No crash.
        file, ram, handle, vma = self.open()
        file.load_exception = ZeroDivisionError('not a GLib.Error')
        with self.assertRaises(GLib.Error) as caught:
            vma.read(2 * BLOCK, 10)
        self.assertGError(caught.exception, Bigfile.file_error_quark(), Bigfile.FileError.FAILED)
        self.assertIn('2', caught.exception.message)  # names the block
        file.load_exception = None
        self.assertEqual(vma.read(2 * BLOCK, 10).get_data(), pattern(2)[:10])

    def test_python_exception_from_store(self):
        file, ram, handle, vma = self.open()
        self.dirty(vma, [1, 2])
        file.store_exception = KeyError('not a GLib.Error either')
        with self.assertRaises(GLib.Error) as caught:
            handle.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.assertGError(caught.exception, Bigfile.file_error_quark(), Bigfile.FileError.FAILED)
        self.assertEqual(handle.get_n_dirty_pages(), 2)
        file.store_exception = None
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(file.stored_blocks(), [1, 2])

    def test_load_too_long(self):
        file, ram, handle, vma = self.open(FixedFile(b'\x00' * (BLOCK + 1)))
        with self.assertRaises(GLib.Error) as caught:
            vma.read(0, 1)
        self.assertGError(caught.exception, Bigfile.file_error_quark(),
                          Bigfile.FileError.INVALID_DATA)

    def test_load_short(self):
        # Shorter data is padded with zeros, as past the end of a file.
        file, ram, handle, vma = self.open(FixedFile(b'short'))
        self.assertEqual(vma.read(BLOCK, BLOCK).get_data(),
                         b'short' + b'\x00' * (BLOCK - 5))


class TestThreads(BigfileTestCase):
    """A file implemented in Python is not thread-safe: the library calls it
    only on the thread that opened the handle."""

    def in_thread(self, function):
        """Runs function() in a new thread; returns (result, exception,
        thread ident)."""
        outcome = {}

        def run():
            outcome['thread'] = threading.get_ident()
            try:
                outcome['result'] = function()
            except Exception as error:  # noqa: BLE001 - reported to the test
                outcome['error'] = error

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(LOOP_TIMEOUT)
        self.assertFalse(thread.is_alive(), 'the thread hangs')
        return outcome.get('result'), outcome.get('error'), outcome['thread']

    def test_wrong_thread(self):
        file, ram, handle, vma = self.open()
        vma.read(0, 1)  # page 0 is in memory; page 1 is not

        # A page in memory needs no load: any thread may read it.
        result, error, thread = self.in_thread(lambda: vma.read(0, 4).get_data())
        self.assertIsNone(error)
        self.assertEqual(result, pattern(0)[:4])

        # A page that must be loaded cannot be, from another thread.
        result, error, thread = self.in_thread(lambda: vma.read(BLOCK, 4))
        self.assertGError(error, Bigfile.file_error_quark(), Bigfile.FileError.WRONG_THREAD)
        self.assertNotIn(thread, [t for _, t in file.loads], 'the Python load ran on a thread')
        self.assertEqual(file.loads, [(0, MAIN_THREAD)])
        self.assertEqual(handle.get_page_state(1), Bigfile.PageState.EMPTY)

        # The same for writes; then the main thread loads the page fine.
        result, error, thread = self.in_thread(
            lambda: vma.write(2 * BLOCK, GLib.Bytes.new(b'x')))
        self.assertGError(error, Bigfile.file_error_quark(), Bigfile.FileError.WRONG_THREAD)
        self.assertEqual(handle.get_n_dirty_pages(), 0)
        self.assertEqual(vma.read(BLOCK, 4).get_data(), pattern(1)[:4])

    def test_writeout_from_thread(self):
        file, ram, handle, vma = self.open()
        self.dirty(vma, [3])
        result, error, thread = self.in_thread(
            lambda: handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertGError(error, Bigfile.file_error_quark(), Bigfile.FileError.WRONG_THREAD)
        self.assertEqual(file.stores, [])
        self.assertEqual(handle.get_n_dirty_pages(), 1)
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(file.stores, [(3, MAIN_THREAD)])


class TestSize(BigfileTestCase):
    """A file keeps its size: a Python file with one, and files without."""

    def contents(self, size=5000):
        return b''.join(pattern(block) for block in range(size // BLOCK + 1))[:size]

    def open_sized(self, size=5000):
        file = SizedFile(self.contents(size))
        return self.open(file, n_pages=4)

    def test_interface(self):
        file = SizedFile(b'x' * 10)
        self.assertEqual(file.get_size(), (True, 10))
        self.assertTrue(file.set_size(3))
        self.assertEqual(bytes(file.data), b'xxx')
        self.assertEqual(ComputedFile().get_size(), (False, 0))
        with self.assertRaises(GLib.Error) as caught:
            ComputedFile().set_size(3)
        self.assertGError(caught.exception, Bigfile.file_error_quark(),
                          Bigfile.FileError.NOT_SUPPORTED)

    def test_keeps_size(self):
        file, ram, handle, vma = self.open_sized()
        self.assertTrue(handle.has_size())
        self.assertEqual(handle.get_size(), 5000)
        self.assertEqual(handle.props.size, 5000)
        # Zeros past the size, though the file's load gives junk there.
        self.assertEqual(vma.read(4990, 20).get_data(), self.contents()[4990:] + bytes(10))
        self.assertEqual(vma.read(2 * BLOCK, BLOCK).get_data(), bytes(BLOCK))

        vma.write(4500, GLib.Bytes.new(b'\x01'))
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(file.stores, [(1, 5000 - BLOCK)])
        self.assertEqual(file.past_size, [])
        self.assertEqual(file.set_sizes, [])
        self.assertEqual(len(file.data), 5000)
        self.assertEqual(file.data[4500], 1)

        # Zeros written past the size change nothing.
        vma.write(6000, GLib.Bytes.new(bytes(100)))
        vma.write(3 * BLOCK, GLib.Bytes.new(bytes(10)))
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(len(file.data), 5000)
        self.assertEqual(file.set_sizes, [])
        self.assertEqual(handle.get_size(), 5000)

    def test_grows_and_notifies(self):
        file, ram, handle, vma = self.open_sized()
        seen = []
        handle.connect('notify::size',
                       lambda h, pspec: seen.append((h.props.size, threading.get_ident())))
        vma.write(6000, GLib.Bytes.new(b'\x07'))
        self.assertEqual(handle.get_size(), 5000)
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertTrue(spin(lambda: seen), 'notify::size was not emitted')
        self.assertEqual(seen, [(6001, MAIN_THREAD)])
        self.assertEqual(file.set_sizes, [6001])
        self.assertEqual(file.past_size, [])
        self.assertEqual(bytes(file.data), self.contents() + bytes(1000) + b'\x07')

        # In slices of an asynchronous writeout (a Python file is not
        # thread-safe), the same.
        vma.write(3 * BLOCK + 9, GLib.Bytes.new(b'\x08'))
        ok, error, thread = self.run_writeout_async(handle)
        self.assertIsNone(error)
        self.assertEqual(file.set_sizes, [6001, 3 * BLOCK + 10])
        self.assertTrue(spin(lambda: len(seen) == 2))
        self.assertEqual(seen[1], (3 * BLOCK + 10, MAIN_THREAD))
        self.assertEqual(len(file.data), 3 * BLOCK + 10)

    def test_set_size_and_discard(self):
        file, ram, handle, vma = self.open_sized()
        seen = []
        handle.connect('notify::size', lambda h, pspec: seen.append(h.props.size))

        self.assertTrue(handle.set_size(3000))
        self.assertEqual(seen, [3000])
        self.assertEqual(vma.read(2990, 20).get_data(), self.contents()[2990:3000] + bytes(10))
        self.assertEqual(handle.discard(), 0)
        self.assertEqual(handle.get_size(), 5000)
        self.assertEqual(seen, [3000, 5000])
        self.assertEqual(vma.read(0, 5000).get_data(), self.contents())

        self.assertTrue(handle.set_size(3000))
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(file.set_sizes, [3000])
        self.assertEqual(bytes(file.data), self.contents()[:3000])

        self.assertTrue(handle.set_size(9000))
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(file.set_sizes, [3000, 9000])
        self.assertEqual(bytes(file.data), self.contents()[:3000] + bytes(6000))
        self.assertEqual(vma.read(0, 4 * BLOCK).get_data(),
                         self.contents()[:3000] + bytes(4 * BLOCK - 3000))
        self.assertEqual(file.past_size, [])

    def test_no_size(self):
        for file in (ComputedFile(), NoSizeFile(), NoSizeFile(fail=True)):
            file, ram, handle, vma = self.open(file)
            self.assertFalse(handle.has_size())
            self.assertEqual(handle.get_size(), GLib.MAXUINT64)
            self.assertEqual(handle.props.size, GLib.MAXUINT64)
            with self.assertRaises(GLib.Error) as caught:
                handle.set_size(10)
            self.assertGError(caught.exception, Bigfile.file_error_quark(),
                              Bigfile.FileError.NOT_SUPPORTED)
            # The file's own bytes, everywhere.
            self.assertEqual(vma.read(5 * BLOCK, BLOCK).get_data(), pattern(5))

        # As before: whole blocks stored.
        file, ram, handle, vma = self.open()
        vma.write(6000, GLib.Bytes.new(b'\x01'))
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(len(file.stored[1]), BLOCK)

    def test_get_size_error(self):
        # A GLib.Error from do_get_size fails the open. (A class of its own:
        # see FixedFile for why not a subclass.)
        class FailingFile(GObject.Object, Bigfile.File):
            __gtype_name__ = 'TestPyFailingSizeFile'

            def do_get_block_size(self):
                return BLOCK

            def do_get_size(self):
                raise GLib.Error('the size is unknown')

        with self.assertRaises(GLib.Error) as caught:
            Bigfile.Handle.new(FailingFile(), Bigfile.Ram.new(0))
        self.assertIn('the size is unknown', caught.exception.message)


class TestLocalFile(BigfileTestCase):
    """BigfileLocalFile, a C file, from Python."""

    def setUp(self):
        fd, self.path = tempfile.mkstemp(prefix='bigfile-py-', suffix='.data')
        self.addCleanup(os.unlink, self.path)
        self.contents = b''.join(pattern(block) for block in range(6)) + b'tail'
        with os.fdopen(fd, 'wb') as f:
            f.write(self.contents)

    def read_file(self):
        with open(self.path, 'rb') as f:
            return f.read()

    def open_local(self, flags=Bigfile.LocalFileFlags.NONE):
        file = Bigfile.LocalFile.new(self.path, BLOCK, flags)
        self.assertEqual(file.get_path(), self.path)
        self.assertEqual(file.get_block_size(), BLOCK)
        return self.open(file, n_pages=8)

    def test_round_trip(self):
        file, ram, handle, vma = self.open_local()
        self.assertEqual(vma.read(0, len(self.contents)).get_data(), self.contents)
        # Past the end of the file: zeros.
        self.assertEqual(vma.read(6 * BLOCK + 4, 8).get_data(), b'\x00' * 8)

        vma.write(BLOCK + 17, GLib.Bytes.new(b'changed'))
        vma.write(7 * BLOCK, GLib.Bytes.new(b'grown'))
        self.assertEqual(self.read_file(), self.contents)  # not yet saved
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))

        on_disk = self.read_file()
        self.assertEqual(on_disk[BLOCK + 17:BLOCK + 24], b'changed')
        self.assertEqual(on_disk[:BLOCK + 17], self.contents[:BLOCK + 17])
        self.assertEqual(on_disk[7 * BLOCK:7 * BLOCK + 5], b'grown')
        # The file grew to the last byte written, not to the end of its block.
        self.assertEqual(len(on_disk), 7 * BLOCK + 5)

        # A fresh handle of a fresh file object reads what was saved.
        file2, ram2, handle2, vma2 = self.open_local(Bigfile.LocalFileFlags.READ_ONLY)
        self.assertEqual(vma2.read(BLOCK + 17, 7).get_data(), b'changed')

    def test_async_and_threads(self):
        file, ram, handle, vma = self.open_local()
        self.dirty(vma, range(6))
        progress = []
        ok, error, thread = self.run_writeout_async(
            handle, progress=lambda done, total, data: progress.append(
                (done, total, threading.get_ident())))
        self.assertIsNone(error)
        self.assertTrue(ok)
        self.assertEqual(thread, MAIN_THREAD)
        self.assertEqual(progress[-1][:2], (6 * BLOCK, 6 * BLOCK))
        # Stored in a worker thread maybe, but reported on the main one.
        self.assertTrue(all(p[2] == MAIN_THREAD for p in progress))
        on_disk = self.read_file()
        for page in range(6):
            marker = b'\xeepage %d' % page
            self.assertEqual(on_disk[page * BLOCK:page * BLOCK + len(marker)], marker)

        # A C file that is thread-safe loads from any thread.
        self.assertTrue(file.is_thread_safe())
        handle.invalidate_page(2)
        result = {}
        worker = threading.Thread(target=lambda: result.update(data=vma.read(2 * BLOCK, 7)))
        worker.start()
        worker.join(LOOP_TIMEOUT)
        self.assertEqual(result['data'].get_data(), b'\xeepage 2')

    def test_signals_from_other_threads(self):
        # Pages of a thread-safe file fault in, get reclaimed, dirtied and
        # invalidated on another thread: the signals still reach the
        # handlers on the thread that owns the handle and the RAM, from its
        # main context, never on the worker (where a gjs handler breaks).
        file = Bigfile.LocalFile.new(self.path, BLOCK, Bigfile.LocalFileFlags.NONE)
        file, ram, handle, vma = self.open(file, budget=4 * BLOCK, n_pages=8)
        invalidated, dirty, reclaimed = [], [], []
        handle.connect('page-invalidated',
                       lambda h, page: invalidated.append((page, threading.get_ident())))
        handle.connect('notify::n-dirty-pages',
                       lambda h, p: dirty.append((h.props.n_dirty_pages, threading.get_ident())))
        ram.connect('reclaimed', lambda r, n: reclaimed.append((n, threading.get_ident())))

        def work():
            for page in range(7):
                vma.read(page * BLOCK, 1)
            vma.write(5 * BLOCK, GLib.Bytes.new(b'worker'))
            handle.invalidate_page(2)

        worker = threading.Thread(target=work)
        worker.start()
        worker.join(LOOP_TIMEOUT)
        self.assertFalse(worker.is_alive())
        # Nothing may have been emitted on the worker.
        self.assertTrue(all(t == MAIN_THREAD for _, t in invalidated + dirty + reclaimed))

        self.assertTrue(spin(lambda: invalidated and dirty and sum(n for n, _ in reclaimed) >= 3),
                        'invalidated %r, dirty %r, reclaimed %r' % (invalidated, dirty, reclaimed))
        drain()
        self.assertEqual(invalidated, [(2, MAIN_THREAD)])
        self.assertEqual(dirty[-1], (1, MAIN_THREAD))
        self.assertTrue(all(t == MAIN_THREAD for _, t in dirty + reclaimed))

    def test_size(self):
        file, ram, handle, vma = self.open_local()
        self.assertEqual(file.get_size(), (True, len(self.contents)))
        self.assertEqual(handle.get_size(), len(self.contents))
        vma.write(len(self.contents) - 1, GLib.Bytes.new(b'!'))
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(self.read_file(), self.contents[:-1] + b'!')
        self.assertTrue(handle.set_size(10))
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.assertEqual(self.read_file(), self.contents[:10])

    def test_read_only(self):
        file, ram, handle, vma = self.open_local(Bigfile.LocalFileFlags.READ_ONLY)
        vma.write(0, GLib.Bytes.new(b'nope'))
        with self.assertRaises(GLib.Error) as caught:
            handle.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.assertGError(caught.exception, Bigfile.file_error_quark(),
                          Bigfile.FileError.READ_ONLY)
        self.assertEqual(self.read_file(), self.contents)

    def test_missing(self):
        with self.assertRaises(GLib.Error) as caught:
            Bigfile.LocalFile.new(self.path + '.missing', BLOCK, Bigfile.LocalFileFlags.NONE)
        self.assertGError(caught.exception, Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND)


def fork_worker_read(vma, go, results):
    """In a child made by multiprocessing's fork start method: reads pages
    of the parent's mapping, one never loaded first, and reports what came
    back through @results."""
    go.wait(LOOP_TIMEOUT)
    outcome = []
    for page in (10, 4, 0):
        try:
            outcome.append(('data', page, vma.read(page * BLOCK, BLOCK).get_data()))
        except GLib.Error as error:
            outcome.append(('error', page, error.domain, error.code, error.message))
    results.put(outcome)


class TestFork(BigfileTestCase):
    """A child made by fork() cannot use the parent's mappings: it gets a
    GLib.Error, and the parent's data, allocator and file stay its own."""

    def setUp(self):
        fd, self.path = tempfile.mkstemp(prefix='bigfile-py-fork-', suffix='.data')
        self.addCleanup(os.unlink, self.path)
        self.expect = bytearray(b''.join(pattern(block) for block in range(16)))
        with os.fdopen(fd, 'wb') as f:
            f.write(self.expect)

    def test_multiprocessing_read(self):
        import multiprocessing

        file = Bigfile.LocalFile.new(self.path, BLOCK, Bigfile.LocalFileFlags.NONE)
        file, ram, handle, vma = self.open(file, n_pages=16)
        for page, marker in self.dirty(vma, range(4)).items():
            self.expect[page * BLOCK:page * BLOCK + len(marker)] = marker
        for page in range(4, 8):
            vma.read(page * BLOCK, 1)

        context = multiprocessing.get_context('fork')
        go = context.Event()
        results = context.Queue()
        worker = context.Process(target=fork_worker_read, args=(vma, go, results))
        worker.start()
        # A page the parent loads now takes the next free slot: the
        # worker's read must not take it too.
        self.assertEqual(vma.read(9 * BLOCK, BLOCK).get_data(), self.expect[9 * BLOCK:10 * BLOCK])
        n_pages = ram.get_n_pages()
        go.set()
        outcome = results.get(timeout=LOOP_TIMEOUT)
        worker.join(LOOP_TIMEOUT)
        self.assertEqual(worker.exitcode, 0)

        # The parent's data, states, statistics and file first.
        for page in range(16):
            self.assertEqual(vma.read(page * BLOCK, BLOCK).get_data(),
                             bytes(self.expect[page * BLOCK:(page + 1) * BLOCK]),
                             'page %d' % page)
        self.assertEqual(handle.get_page_state(0), Bigfile.PageState.DIRTY)
        self.assertEqual(handle.get_page_state(4), Bigfile.PageState.LOADED)
        self.assertEqual(n_pages, 9)
        self.assertEqual(handle.get_n_dirty_pages(), 4)
        self.assertTrue(handle.writeout(Bigfile.WriteoutFlags.DEFAULT))
        with open(self.path, 'rb') as f:
            self.assertEqual(f.read(), bytes(self.expect))

        # The worker got the FORKED error for every read.
        self.assertEqual([entry[:2] for entry in outcome], [('error', 10), ('error', 4),
                                                            ('error', 0)], outcome)
        for _, page, domain, code, message in outcome:
            self.assertEqual(domain, GLib.quark_to_string(Bigfile.handle_error_quark()))
            self.assertEqual(code, Bigfile.HandleError.FORKED)
            self.assertIn('fork()', message)
            self.assertIn('(pid %d)' % os.getpid(), message)


# Run by TestFaultHandler in a fresh interpreter: faulthandler and the
# SIGSEGV handler are process-wide. argv[1] says when faulthandler is
# enabled. Prints a line for each step that worked, then crashes on purpose.
FAULT_HANDLER_SCRIPT = r"""
import ctypes
import faulthandler
import sys

import gi
gi.require_version('GLib', '2.0')
gi.require_version('GObject', '2.0')
gi.require_version('Bigfile', '1.0')
from gi.repository import GLib, GObject, Bigfile

BLOCK = 4096


def deep(n):
    # Each level goes through C (sum(), map()), so it takes C stack: more
    # than faulthandler's alternate signal stack holds.
    return 0 if n == 0 else 1 + sum(map(deep, [n - 1]))


class DeepFile(GObject.Object, Bigfile.File):
    __gtype_name__ = 'TestPyDeepFile'

    def do_get_block_size(self):
        return BLOCK

    def do_load_block(self, block):
        return GLib.Bytes.new(bytes([(block + deep(100)) % 256]) * BLOCK)

    def do_store_block(self, block, data):
        return True


def touch(vma, page):
    # A first touch of raw memory: the load runs inside the page fault.
    value = ctypes.string_at(vma.get_address() + page * BLOCK + 7, 1)[0]
    assert value == (page + 100) % 256, value
    print('touched page %d' % page, flush=True)


def crash():
    ctypes.string_at(0)


mode = sys.argv[1]
if mode == 'before':
    faulthandler.enable()
handle = Bigfile.Handle.new(DeepFile(), Bigfile.Ram.new(1 << 20))
vma = handle.map(0, 8)
touch(vma, 0)
if mode != 'before':
    faulthandler.enable()
if mode == 'after-install':
    Bigfile.install_fault_handler()
elif mode == 'after-map':
    handle.map(4, 4)
touch(vma, 1)
touch(vma, 2)
crash()
"""


class TestFaultHandler(unittest.TestCase):
    """Python's faulthandler installs a SIGSEGV handler that takes every
    signal for a crash. Enabled before the first map, the library's handler
    goes in front of it; enabled after, the library's must be put in front
    again (Bigfile.install_fault_handler(), or another map). Either way
    first touches load pages, Python loads get the stack they need although
    faulthandler gives the thread a small alternate signal stack, and a real
    crash still gets faulthandler's report."""

    def run_script(self, mode):
        def no_core():
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return subprocess.run([sys.executable, '-c', FAULT_HANDLER_SCRIPT, mode],
                              capture_output=True, text=True, timeout=60,
                              preexec_fn=no_core)

    def assertTouchedThenReported(self, mode):
        result = self.run_script(mode)
        self.assertEqual(result.stdout.split('\n'),
                         ['touched page 0', 'touched page 1', 'touched page 2', ''],
                         result.stderr)
        # One report, of the real crash, then death by SIGSEGV.
        self.assertEqual(result.stderr.count('Fatal Python error: Segmentation fault'), 1,
                         result.stderr)
        self.assertIn('in crash', result.stderr)
        self.assertNotIn('in touch', result.stderr)
        self.assertEqual(result.returncode, -signal.SIGSEGV, result.stderr)

    def test_enabled_before_first_map(self):
        self.assertTouchedThenReported('before')

    def test_enabled_after_map_then_install(self):
        self.assertTouchedThenReported('after-install')

    def test_enabled_after_map_then_map(self):
        self.assertTouchedThenReported('after-map')

    def test_enabled_after_map_alone(self):
        # What the documentation warns of: faulthandler gets the next first
        # touch and reports it as a crash.
        result = self.run_script('after')
        self.assertEqual(result.stdout, 'touched page 0\n', result.stderr)
        self.assertIn('Fatal Python error: Segmentation fault', result.stderr)
        self.assertIn('in touch', result.stderr)
        self.assertEqual(result.returncode, -signal.SIGSEGV, result.stderr)


if __name__ == '__main__':
    unittest.main(verbosity=2)
