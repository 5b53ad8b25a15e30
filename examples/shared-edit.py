#!/usr/bin/python3
# shared-edit: two clients of one SQLite database, in Python
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# As examples/shared-edit.c: client A saves page 3 and client B hears of it
# as page-invalidated in a GLib.MainLoop; then both change page 5, B saves
# first, and A's writeout fails with Bigfile.HandleError.CONFLICT, keeping
# A's change, which A discards to read B's.  Exits 0 when all went so.
#   meson devenv -C BUILD /usr/bin/python3 examples/shared-edit.py [DB]

import os
import sys
import tempfile

import gi

gi.require_version('GLib', '2.0')
gi.require_version('Bigfile', '1.0')
from gi.repository import GLib, Bigfile  # noqa: E402

BLOCK_SIZE = 64 * 1024


def open_client(path, ram):
    # Bigfile.PgFile.new('dbname=...', 'notes', ...) for PostgreSQL instead.
    file = Bigfile.SqliteFile.new(path, 'notes', BLOCK_SIZE, Bigfile.SqliteFileFlags.CREATE)
    handle = Bigfile.Handle.new(file, ram)
    return handle, handle.map(0, 16)


def main():
    tmp = None
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        tmp = tempfile.TemporaryDirectory()
        path = os.path.join(tmp.name, 'notes.db')
    ram = Bigfile.Ram.new(4 << 20)
    a, vma_a = open_client(path, ram)
    b, vma_b = open_client(path, ram)

    loop = GLib.MainLoop()
    seen = []

    def on_invalidated(handle, page):
        print('B: page %d changed in the storage' % page)
        seen.append(page)
        loop.quit()

    b.connect('page-invalidated', on_invalidated)
    vma_b.read(3 * BLOCK_SIZE, 1)  # B has a copy of page 3

    vma_a.write(3 * BLOCK_SIZE, GLib.Bytes.new(b'hello from A'))
    a.writeout(Bigfile.WriteoutFlags.DEFAULT)
    print('A: saved page 3')
    GLib.timeout_add_seconds(10, loop.quit)
    loop.run()
    text = bytes(vma_b.read(3 * BLOCK_SIZE, 12).get_data())
    print('B: page 3 says %r' % text)
    ok = 3 in seen and text == b'hello from A'

    vma_a.write(5 * BLOCK_SIZE, GLib.Bytes.new(b"A's line"))
    vma_b.write(5 * BLOCK_SIZE, GLib.Bytes.new(b"B's line"))
    b.writeout(Bigfile.WriteoutFlags.DEFAULT)
    try:
        a.writeout(Bigfile.WriteoutFlags.DEFAULT)
        ok = False
    except GLib.Error as e:
        print('A:', e.message)
        ok = ok and e.matches(Bigfile.handle_error_quark(), Bigfile.HandleError.CONFLICT)
        ok = ok and list(a.get_conflicts()) == [5]
    a.discard()
    text = bytes(vma_a.read(5 * BLOCK_SIZE, 8).get_data())
    print('A: discarded, page 5 says %r' % text)
    ok = ok and text == b"B's line"

    vma_a.unmap()
    vma_b.unmap()
    a.close()
    b.close()
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
