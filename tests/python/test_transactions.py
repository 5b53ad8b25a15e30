#!/usr/bin/python3
# bigfile-glib binding tests: transactions and snapshots of a BigfileFile
# written in Python
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A Python storage that several clients share (SharedStore: a list of
# commits), and a BigfileFile per client (TxnFile) that implements the
# transaction methods (do_begin_transaction, do_commit_transaction,
# do_abort_transaction) and snapshots (do_refresh returning a list of
# blocks, the ::changed signal).  Through a handle: a writeout is one
# commit, a failing commit leaves every page dirty, STORE then MARK_STORED,
# another client's commit arrives as page-invalidated in a GLib.MainLoop,
# and a conflict gives BIGFILE_HANDLE_ERROR_CONFLICT until discarded or
# overwritten.
#
#   meson devenv -C BUILD /usr/bin/python3 tests/python/test_transactions.py -v

import unittest

import gi

gi.require_version('GLib', '2.0')
gi.require_version('GObject', '2.0')
gi.require_version('Bigfile', '1.0')
from gi.repository import GLib, GObject, Bigfile  # noqa: E402

BLOCK = 4096
LOOP_TIMEOUT = 30


class SharedStore:
    """Commits of whole blocks: commits[i] = (writer, {block: bytes})."""

    def __init__(self):
        self.commits = []
        self.clients = []

    def read(self, version, block):
        for writer, blocks in reversed(self.commits[:version]):
            if block in blocks:
                return blocks[block]
        return b''

    def commit(self, writer, blocks):
        self.commits.append((writer, dict(blocks)))
        for client in self.clients:
            if client is not writer:
                GLib.idle_add(lambda c=client: c.emit('changed') and False)
        return len(self.commits)


class TxnFile(GObject.Object, Bigfile.File):
    def __init__(self, store):
        super().__init__()
        self.store = store
        self.snapshot = self.reported = len(store.commits)
        self.txn = None
        self.fail_commit = False
        self.log = []
        store.clients.append(self)

    def do_get_block_size(self):
        return BLOCK

    def do_load_block(self, block):
        return GLib.Bytes.new(self.store.read(self.snapshot, block))

    def do_store_block(self, block, data):
        self.txn[block] = data.get_data()
        return True

    def do_begin_transaction(self):
        self.log.append('begin')
        self.txn = {}
        return True

    def do_commit_transaction(self, flags):
        self.log.append('commit durable' if flags & Bigfile.CommitFlags.DURABLE else 'commit')
        txn, self.txn = self.txn, None
        if self.fail_commit:
            self.fail_commit = False
            raise GLib.Error.new_literal(GLib.file_error_quark(), 'disk full (test)',
                                         GLib.FileError.NOSPC)
        self.snapshot = self.store.commit(self, txn)
        return True

    def do_abort_transaction(self):
        self.log.append('abort')
        self.txn = None

    def do_refresh(self):
        self.log.append('refresh')
        changed = []
        for writer, blocks in self.store.commits[self.reported:]:
            if writer is not self:
                changed.extend(blocks)
        self.snapshot = self.reported = len(self.store.commits)
        return changed


class TransactionTestCase(unittest.TestCase):
    def open(self, store):
        file = TxnFile(store)
        handle = Bigfile.Handle.new(file, Bigfile.Ram.new(1 << 20))
        vma = handle.map(0, 8)
        self.addCleanup(handle.close)
        self.addCleanup(vma.unmap)
        return file, handle, vma

    def write(self, vma, page, data):
        vma.write(page * BLOCK, GLib.Bytes.new(data))

    def read(self, vma, page, n=1):
        return bytes(vma.read(page * BLOCK, n).get_data())

    def run_loop_until(self, predicate):
        loop = GLib.MainLoop()
        timed_out = []

        def check():
            if predicate():
                loop.quit()
                return GLib.SOURCE_REMOVE
            return GLib.SOURCE_CONTINUE

        def on_timeout():
            timed_out.append(True)
            loop.quit()
            return GLib.SOURCE_REMOVE

        GLib.timeout_add(5, check)
        timeout_id = GLib.timeout_add_seconds(LOOP_TIMEOUT, on_timeout)
        loop.run()
        if timed_out:
            self.fail('the main loop did not get there within %d s' % LOOP_TIMEOUT)
        GLib.source_remove(timeout_id)


class TestTransactions(TransactionTestCase):
    def test_is_transactional(self):
        file = TxnFile(SharedStore())
        self.assertTrue(file.is_transactional())
        self.assertEqual(list(file.refresh()), [])

    def test_writeout_is_one_commit(self):
        store = SharedStore()
        file, handle, vma = self.open(store)
        self.write(vma, 1, b'one')
        self.write(vma, 5, b'five')
        handle.writeout(Bigfile.WriteoutFlags.DEFAULT | Bigfile.WriteoutFlags.DURABLE)
        self.assertEqual(file.log, ['begin', 'refresh', 'commit durable'])
        self.assertEqual(len(store.commits), 1)
        self.assertEqual(store.read(1, 1)[:3], b'one')
        self.assertEqual(store.read(1, 5)[:4], b'five')
        self.assertEqual(handle.get_n_dirty_pages(), 0)

    def test_failed_commit_keeps_every_page(self):
        store = SharedStore()
        file, handle, vma = self.open(store)
        self.write(vma, 2, b'two')
        self.write(vma, 3, b'three')
        file.fail_commit = True
        with self.assertRaises(GLib.Error) as raised:
            handle.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.assertTrue(raised.exception.matches(GLib.file_error_quark(), GLib.FileError.NOSPC))
        self.assertEqual(store.commits, [])
        self.assertEqual(handle.get_n_dirty_pages(), 2)
        self.assertEqual(self.read(vma, 3, 5), b'three')
        handle.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.assertEqual(store.read(1, 3)[:5], b'three')
        self.assertEqual(handle.get_n_dirty_pages(), 0)

    def test_store_then_mark_stored(self):
        store = SharedStore()
        file, handle, vma = self.open(store)
        self.write(vma, 0, b'zero')
        handle.writeout(Bigfile.WriteoutFlags.STORE)
        self.assertEqual(store.commits, [])
        self.assertEqual(handle.get_n_dirty_pages(), 1)
        handle.writeout(Bigfile.WriteoutFlags.MARK_STORED)
        self.assertEqual(store.read(1, 0)[:4], b'zero')
        self.assertEqual(handle.get_n_dirty_pages(), 0)
        # Aborted: nothing committed, the page stays dirty.
        self.write(vma, 0, b'ZERO')
        handle.writeout(Bigfile.WriteoutFlags.STORE)
        handle.abort_writeout()
        self.assertEqual(file.log[-1], 'abort')
        self.assertEqual(len(store.commits), 1)
        self.assertEqual(handle.get_n_dirty_pages(), 1)


class TestSnapshots(TransactionTestCase):
    def test_other_clients_commit_arrives_as_signal(self):
        store = SharedStore()
        file_a, handle_a, vma_a = self.open(store)
        file_b, handle_b, vma_b = self.open(store)
        self.assertEqual(self.read(vma_a, 4), b'\0')
        invalidated = []
        handle_a.connect('page-invalidated', lambda h, page: invalidated.append(page))

        self.write(vma_b, 4, b'B')
        handle_b.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.assertEqual(invalidated, [])
        self.run_loop_until(lambda: invalidated)
        self.assertEqual(invalidated, [4])
        self.assertEqual(self.read(vma_a, 4), b'B')

    def test_conflict(self):
        store = SharedStore()
        file_a, handle_a, vma_a = self.open(store)
        file_b, handle_b, vma_b = self.open(store)
        handle_a.set_property('auto-refresh', False)
        self.write(vma_a, 6, b'A')
        self.write(vma_b, 6, b'B')
        handle_b.writeout(Bigfile.WriteoutFlags.DEFAULT)

        with self.assertRaises(GLib.Error) as raised:
            handle_a.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.assertTrue(raised.exception.matches(Bigfile.handle_error_quark(),
                                                 Bigfile.HandleError.CONFLICT))
        self.assertIn('page 6', raised.exception.message)
        self.assertEqual(list(handle_a.get_conflicts()), [6])
        self.assertEqual(store.read(len(store.commits), 6), b'B' + b'\0' * (BLOCK - 1))
        self.assertEqual(self.read(vma_a, 6), b'A')

        handle_a.writeout(Bigfile.WriteoutFlags.DEFAULT | Bigfile.WriteoutFlags.OVERWRITE)
        self.assertEqual(store.read(len(store.commits), 6)[:1], b'A')
        self.assertEqual(list(handle_a.get_conflicts()), [])

    def test_conflict_discard(self):
        store = SharedStore()
        file_a, handle_a, vma_a = self.open(store)
        file_b, handle_b, vma_b = self.open(store)
        self.write(vma_a, 2, b'A')
        self.write(vma_b, 2, b'B')
        handle_b.writeout(Bigfile.WriteoutFlags.DEFAULT)
        handle_a.refresh()
        self.assertEqual(list(handle_a.get_conflicts()), [2])
        self.assertEqual(handle_a.discard(), 1)
        self.assertEqual(self.read(vma_a, 2), b'B')


if __name__ == '__main__':
    unittest.main()
