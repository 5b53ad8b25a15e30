#!/usr/bin/python3
# bigfile-glib binding tests: BigfilePgFile from Python
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Against $BIGFILE_TEST_PG_CONNINFO, or a throwaway cluster of its own
# (tools/pg-test-cluster.sh, named by $BIGFILE_PG_TEST_CLUSTER). Two
# clients of one file, each with its own file object and handle, as on two
# hosts: a writeout of one arrives in the other as page-invalidated in a
# GLib.MainLoop; a conflict; errors as GLib.Error.
#
#   meson devenv -C BUILD /usr/bin/python3 tests/python/test_pg_file.py -v

import os
import shutil
import subprocess
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

conninfo = None
cluster_dir = None
counter = 0


def setUpModule():
    global conninfo, cluster_dir
    conninfo = os.environ.get('BIGFILE_TEST_PG_CONNINFO')
    if conninfo:
        return
    script = os.environ['BIGFILE_PG_TEST_CLUSTER']
    cluster_dir = tempfile.mkdtemp(prefix='bigfile-py-pg-')
    conninfo = subprocess.run(
        [script, 'start', cluster_dir, '--owner-pid', str(os.getpid())],
        check=True, capture_output=True, text=True).stdout.strip()


def tearDownModule():
    if cluster_dir is not None:
        script = os.environ['BIGFILE_PG_TEST_CLUSTER']
        subprocess.run([script, 'stop', cluster_dir], check=False)
        shutil.rmtree(cluster_dir, ignore_errors=True)


def unique_name():
    global counter
    counter += 1
    return 'py-%d-%d' % (os.getpid(), counter)


class TestPgFile(unittest.TestCase):
    def open(self, name, flags=Bigfile.PgFileFlags.NONE, block_size=0):
        file = Bigfile.PgFile.new(conninfo, name, block_size, flags)
        handle = Bigfile.Handle.new(file, Bigfile.Ram.new(1 << 20))
        vma = handle.map(0, N_PAGES)
        invalidated = []
        handle.connect('page-invalidated', lambda h, page: invalidated.append(page))

        def close():
            vma.unmap()
            handle.close()
        self.addCleanup(close)
        return file, handle, vma, invalidated

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

    def read(self, vma, page, n):
        return vma.read(page * BLOCK, n).get_data()

    def test_invalidation_in_main_loop(self):
        name = unique_name()
        a, ha, va, inv_a = self.open(name, Bigfile.PgFileFlags.CREATE, BLOCK)
        b, hb, vb, inv_b = self.open(name)
        self.assertEqual(a.get_name(), name)
        self.assertTrue(a.get_durable())
        self.assertEqual(b.props.block_size, BLOCK)
        self.assertEqual(self.read(vb, 2, 5), b'\0' * 5)

        va.write(2 * BLOCK, GLib.Bytes.new(b'hello'))
        self.assertTrue(ha.writeout(Bigfile.WriteoutFlags.DEFAULT))
        self.run_loop_until(lambda: 2 in inv_b)
        self.assertEqual(self.read(vb, 2, 5), b'hello')
        self.assertEqual(inv_a, [])

    def test_conflict(self):
        name = unique_name()
        a, ha, va, _ = self.open(name, Bigfile.PgFileFlags.CREATE, BLOCK)
        b, hb, vb, inv_b = self.open(name)
        hb.set_auto_refresh(False)
        vb.write(0, GLib.Bytes.new(b'from b'))
        va.write(0, GLib.Bytes.new(b'from a'))
        ha.writeout(Bigfile.WriteoutFlags.DEFAULT)
        with self.assertRaises(GLib.Error) as cm:
            hb.writeout(Bigfile.WriteoutFlags.DEFAULT)
        self.assertTrue(cm.exception.matches(Bigfile.handle_error_quark(),
                                             Bigfile.HandleError.CONFLICT))
        self.assertEqual(list(hb.get_conflicts()), [0])
        self.assertEqual(self.read(vb, 0, 6), b'from b')
        hb.writeout(Bigfile.WriteoutFlags.DEFAULT | Bigfile.WriteoutFlags.OVERWRITE)
        self.run_loop_until(lambda: self.read(va, 0, 6) == b'from b')

    def test_errors(self):
        with self.assertRaises(GLib.Error) as cm:
            Bigfile.PgFile.new(conninfo, unique_name(), BLOCK, Bigfile.PgFileFlags.NONE)
        self.assertTrue(cm.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND))
        with self.assertRaises(GLib.Error) as cm:
            Bigfile.PgFile.new('host=/nonexistent-bigfile port=1', unique_name(), BLOCK,
                               Bigfile.PgFileFlags.CREATE)
        self.assertTrue(cm.exception.matches(Bigfile.file_error_quark(),
                                             Bigfile.FileError.DISCONNECTED))
        name = unique_name()
        self.open(name, Bigfile.PgFileFlags.CREATE, BLOCK)
        with self.assertRaises(GLib.Error) as cm:
            Bigfile.PgFile.new(conninfo, name, 2 * BLOCK, Bigfile.PgFileFlags.NONE)
        self.assertTrue(cm.exception.matches(Bigfile.file_error_quark(),
                                             Bigfile.FileError.INVALID_ARGUMENT))


if __name__ == '__main__':
    unittest.main()
