#!/usr/bin/python3
# computed-file: a BigfileFile written in Python, used as memory
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The "file" here is a table that is computed, not read: block N holds the
# text lines "block N line 0", "block N line 1", ... padded to the block
# size. Blocks that were stored are kept in a dict and win over the computed
# ones. The program
#
#   1. maps the table through a BigfileHandle and reads from it: each first
#      read of a block calls do_load_block;
#   2. changes two blocks through vma.write: they become dirty pages, and
#      nothing is stored yet;
#   3. writes them out (synchronously): do_store_block is called once per
#      dirty page, on this thread;
#   4. opens a fresh handle on the same file and reads the stored data back.
#
# It prints each step and exits 0 when everything read back is as expected,
# 1 otherwise. Run it against a build tree with
#   meson devenv -C BUILD /usr/bin/python3 examples/computed-file.py

import sys

import gi

gi.require_version('GLib', '2.0')
gi.require_version('GObject', '2.0')
gi.require_version('Bigfile', '1.0')
from gi.repository import GLib, GObject, Bigfile  # noqa: E402

BLOCK_SIZE = 64 * 1024  # 64 KiB: a block is one page of the handle
N_BLOCKS = 1024         # 64 MiB of address space; only what is touched is loaded


class TableFile(GObject.Object, Bigfile.File):
    """Blocks computed on the fly, except those stored, kept in a dict."""

    __gtype_name__ = 'ExampleTableFile'

    def __init__(self):
        super().__init__()
        self.stored = {}  # block -> bytes
        self.n_loads = 0
        self.n_stores = 0

    @staticmethod
    def compute(block):
        lines = []
        size = 0
        line = 0
        while True:
            text = b'block %d line %d\n' % (block, line)
            if size + len(text) > BLOCK_SIZE:
                break
            lines.append(text)
            size += len(text)
            line += 1
        return b''.join(lines)  # shorter than a block: the rest loads as zeros

    def do_get_block_size(self):
        return BLOCK_SIZE

    def do_load_block(self, block):
        self.n_loads += 1
        if block in self.stored:
            print('  load  block %4d: from the dict' % block)
            return GLib.Bytes.new(self.stored[block])
        print('  load  block %4d: computed' % block)
        return GLib.Bytes.new(self.compute(block))

    def do_store_block(self, block, data):
        # data is a whole block as GLib.Bytes; get_data() copies it out.
        self.n_stores += 1
        self.stored[block] = data.get_data()
        print('  store block %4d: %d bytes into the dict' % (block, data.get_size()))
        return True


def line_at(vma, offset):
    """The text line at byte offset of the mapping."""
    data = vma.read(offset, 64).get_data()
    return data.split(b'\n', 1)[0].decode()


def main():
    ok = True

    def check(what, condition):
        nonlocal ok
        print('  %s: %s' % (what, 'ok' if condition else 'WRONG'))
        ok = ok and condition

    table = TableFile()
    ram = Bigfile.Ram.new(4 * 1024 * 1024)  # 4 MiB of pages for a 64 MiB table
    handle = Bigfile.Handle.new(table, ram)
    vma = handle.map(0, N_BLOCKS)
    print('1. mapped %d blocks of %d KiB (%d MiB); %d pages in memory'
          % (N_BLOCKS, BLOCK_SIZE // 1024, vma.get_length() >> 20, ram.get_n_pages()))

    first = line_at(vma, 0)
    far = line_at(vma, 700 * BLOCK_SIZE + len(b'block 700 line 0\n'))
    print('  byte 0 holds %r; block 700 holds %r' % (first, far))
    check('computed lines read', first == 'block 0 line 0' and far == 'block 700 line 1')
    print('  %d loads, %d pages in memory' % (table.n_loads, ram.get_n_pages()))

    print('2. upper-casing the first line of blocks 3 and 700 through vma.write')
    vma.write(3 * BLOCK_SIZE, GLib.Bytes.new(b'BLOCK 3 LINE 0\n'))
    vma.write(700 * BLOCK_SIZE, GLib.Bytes.new(b'BLOCK 700 LINE 0\n'))
    print('  %d dirty pages; %d stores so far'
          % (handle.get_n_dirty_pages(), table.n_stores))
    check('two dirty pages, nothing stored',
          handle.get_n_dirty_pages() == 2 and table.n_stores == 0)

    print('3. writing out')
    handle.writeout(Bigfile.WriteoutFlags.DEFAULT)
    print('  %d dirty pages; %d blocks in the dict: %s'
          % (handle.get_n_dirty_pages(), len(table.stored), sorted(table.stored)))
    check('both stored', sorted(table.stored) == [3, 700] and handle.get_n_dirty_pages() == 0)
    vma.unmap()
    handle.close()

    print('4. reading back through a fresh handle')
    handle = Bigfile.Handle.new(table, ram)
    vma = handle.map(0, N_BLOCKS)
    changed = line_at(vma, 700 * BLOCK_SIZE)
    kept = line_at(vma, 700 * BLOCK_SIZE + len(b'BLOCK 700 LINE 0\n'))
    untouched = line_at(vma, 4 * BLOCK_SIZE)
    print('  block 700 starts with %r, then %r; block 4 starts with %r'
          % (changed, kept, untouched))
    check('stored data read back', changed == 'BLOCK 700 LINE 0' and kept == 'block 700 line 1')
    check('untouched block computed', untouched == 'block 4 line 0')
    vma.unmap()
    handle.close()

    print('done: %s' % ('everything as expected' if ok else 'MISMATCH'))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
