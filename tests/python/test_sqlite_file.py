#!/usr/bin/python3
# bigfile-glib binding tests: BigfileSqliteFile from Python
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A database made from the script; two handles of one bigfile (each with a
# file object of its own, as two clients): a writeout of one arrives in the
# other as page-invalidated in a GLib.MainLoop, also when the writer is
# another process (this script run with --writer); conflicts; errors as
# GLib.Error; listing and deleting bigfiles.
#
#   meson devenv -C BUILD /usr/bin/python3 tests/python/test_sqlite_file.py -v

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import gi

gi.require_version('GLib', '2.0')
gi.require_version('Gio', '2.0')
gi.require_version('Bigfile', '1.0')
from gi.repository import GLib, Gio, Bigfile  # noqa: E402

BLOCK = 4096
N_PAGES = 8
LOOP_TIMEOUT = 30


def writer_main(db, page, text):
    """Another process: one writeout of @text at the start of @page."""
    file = Bigfile.SqliteFile.new(db, 'matrix', 0, Bigfile.SqliteFileFlags.NONE)
    handle = Bigfile.Handle.new(file, Bigfile.Ram.new(1 << 20))
    vma = handle.map(0, N_PAGES)
    vma.write(page * BLOCK, GLib.Bytes.new(text.encode()))
    handle.writeout(Bigfile.WriteoutFlags.DEFAULT)
    vma.unmap()
    handle.close()
    return 0


class SqliteTestCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='bigfile-py-sqlite-')
        self.addCleanup(shutil.rmtree, self.dir)
        self.db = os.path.join(self.dir, 'data.db')

    def open(self, flags=Bigfile.SqliteFileFlags.CREATE, block_size=BLOCK):
        file = Bigfile.SqliteFile.new(self.db, 'matrix', block_size, flags)
        handle = Bigfile.Handle.new(file, Bigfile.Ram.new(1 << 20))
        vma = handle.map(0, N_PAGES)

        def close():
            vma.unmap()
            handle.close()
        self.addCleanup(close)
        return file, handle, vma

    def run_loop_until(self, predicate):
        loop = GLib.MainLoop()

        def check():
            if predicate():
                loop.quit()
                return GLib.SOURCE_REMOVE
            return GLib.SOURCE_CONTINUE
        GLib.timeout_add(1, check)
        timeout = GLib.timeout_add_seconds(LOOP_TIMEOUT, loop.quit)
        loop.run()
        GLib.source_remove(timeout)
        self.assertTrue(predicate(), 'the main loop timed out')


class TestSqliteFile(SqliteTestCase):
    def test_properties(self):
        file, handle, vma = self.open()
        self.assertEqual(file.get_path(), self.db)
        self.assertEqual(file.get_name(), 'matrix')
        self.assertEqual(file.get_block_size(), BLOCK)
        self.assertEqual(file.props.block_size, BLOCK)
        self.assertTrue(file.get_durable())
        self.assertTrue(file.is_transactional())
        self.assertEqual(Bigfile.SqliteFile.list(self.db), ['matrix'])
        # 0: the stored block size.
        again = Bigfile.SqliteFile.new(self.db, 'matrix', 0, Bigfile.SqliteFileFlags.NONE)
        self.assertEqual(again.get_block_size(), BLOCK)

    def test_writeout_and_read_back(self):
        file, handle, vma = self.open()
        vma.write(BLOCK + 5, GLib.Bytes.new(b'saved'))
        handle.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.assertEqual(handle.get_n_dirty_pages(), 0)
        # A fresh client reads what was committed.
        file2 = Bigfile.SqliteFile.new(self.db, 'matrix', 0, Bigfile.SqliteFileFlags.READ_ONLY)
        self.assertEqual(file2.load_block(1).get_data()[5:10], b'saved')
        self.assertEqual(file2.load_block(0).get_data(), b'\0' * BLOCK)

    def test_invalidation_in_main_loop(self):
        file_a, handle_a, vma_a = self.open()
        file_b, handle_b, vma_b = self.open()
        self.assertEqual(vma_a.read(3 * BLOCK, 1).get_data(), b'\0')
        invalidated = []
        handle_a.connect('page-invalidated', lambda h, page: invalidated.append(page))

        vma_b.write(3 * BLOCK, GLib.Bytes.new(b'B'))
        handle_b.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.run_loop_until(lambda: 3 in invalidated)
        self.assertEqual(vma_a.read(3 * BLOCK, 1).get_data(), b'B')

    def test_invalidation_from_another_process(self):
        file, handle, vma = self.open()
        self.assertEqual(vma.read(6 * BLOCK, 5).get_data(), b'\0' * 5)
        invalidated = []
        handle.connect('page-invalidated', lambda h, page: invalidated.append(page))
        writer = Gio.Subprocess.new([sys.executable, __file__, '--writer', self.db, '6', 'other'],
                                    Gio.SubprocessFlags.NONE)
        self.run_loop_until(lambda: 6 in invalidated)
        self.assertTrue(writer.wait_check())
        self.assertEqual(vma.read(6 * BLOCK, 5).get_data(), b'other')

    def test_conflict(self):
        file_a, handle_a, vma_a = self.open()
        file_b, handle_b, vma_b = self.open()
        handle_a.set_auto_refresh(False)
        vma_a.write(2 * BLOCK, GLib.Bytes.new(b'A'))
        vma_b.write(2 * BLOCK, GLib.Bytes.new(b'B'))
        handle_b.writeout(Bigfile.WriteoutFlags.DEFAULT)
        with self.assertRaises(GLib.Error) as raised:
            handle_a.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.assertTrue(raised.exception.matches(Bigfile.handle_error_quark(),
                                                 Bigfile.HandleError.CONFLICT))
        self.assertEqual(list(handle_a.get_conflicts()), [2])
        handle_a.writeout(Bigfile.WriteoutFlags.DEFAULT | Bigfile.WriteoutFlags.OVERWRITE)
        handle_b.refresh()
        self.assertEqual(vma_b.read(2 * BLOCK, 1).get_data(), b'A')

    def test_errors(self):
        with self.assertRaises(GLib.Error) as raised:
            Bigfile.SqliteFile.new(self.db, 'matrix', BLOCK, Bigfile.SqliteFileFlags.NONE)
        self.assertTrue(raised.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND))
        self.open()
        with self.assertRaises(GLib.Error) as raised:
            Bigfile.SqliteFile.new(self.db, 'matrix', 2 * BLOCK, Bigfile.SqliteFileFlags.NONE)
        self.assertTrue(raised.exception.matches(Bigfile.file_error_quark(),
                                                 Bigfile.FileError.INVALID_ARGUMENT))
        with open(os.path.join(self.dir, 'text.db'), 'w') as f:
            f.write('not a database, but long enough to look like a header of one. ' * 4)
        with self.assertRaises(GLib.Error) as raised:
            Bigfile.SqliteFile.new(os.path.join(self.dir, 'text.db'), 'x', BLOCK,
                                   Bigfile.SqliteFileFlags.CREATE)
        self.assertTrue(raised.exception.matches(Bigfile.file_error_quark(),
                                                 Bigfile.FileError.CORRUPT))
        ro = Bigfile.SqliteFile.new(self.db, 'matrix', 0, Bigfile.SqliteFileFlags.READ_ONLY)
        with self.assertRaises(GLib.Error) as raised:
            ro.store_block(0, GLib.Bytes.new(b'x'))
        self.assertTrue(raised.exception.matches(Bigfile.file_error_quark(),
                                                 Bigfile.FileError.READ_ONLY))

    def test_list_and_delete(self):
        Bigfile.SqliteFile.new(self.db, 'b', BLOCK, Bigfile.SqliteFileFlags.CREATE)
        Bigfile.SqliteFile.new(self.db, 'a', BLOCK, Bigfile.SqliteFileFlags.CREATE)
        self.assertEqual(Bigfile.SqliteFile.list(self.db), ['a', 'b'])
        self.assertTrue(Bigfile.SqliteFile.delete(self.db, 'a'))
        self.assertEqual(Bigfile.SqliteFile.list(self.db), ['b'])


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--writer':
        sys.exit(writer_main(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    unittest.main()
