// shared-edit: two clients of one SQLite database, in gjs
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// As examples/shared-edit.c: client A saves page 3 and client B hears of it
// as page-invalidated in a GLib.MainLoop; then both change page 5, B saves
// first, and A's writeout fails with Bigfile.HandleError.CONFLICT; A keeps
// its change by writing out with OVERWRITE.  Exits 0 when all went so.
//   meson devenv -C BUILD gjs -m examples/shared-edit.js [DB]

import GLib from 'gi://GLib';
import Bigfile from 'gi://Bigfile';
import System from 'system';

const BLOCK_SIZE = 64 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function openClient(path, ram) {
    // Bigfile.PgFile.new('dbname=...', 'notes', ...) for PostgreSQL instead.
    const file = Bigfile.SqliteFile.new(path, 'notes', BLOCK_SIZE, Bigfile.SqliteFileFlags.CREATE);
    const handle = Bigfile.Handle.new(file, ram);
    return {handle, vma: handle.map(0, 16)};
}

function text(vma, offset, length) {
    return decoder.decode(vma.read(offset, length).toArray());
}

let dir = null;
let path = ARGV[0];
if (!path) {
    dir = GLib.dir_make_tmp('shared-edit-XXXXXX');
    path = GLib.build_filenamev([dir, 'notes.db']);
}
const ram = Bigfile.Ram.new(4 << 20);
const a = openClient(path, ram);
const b = openClient(path, ram);
let ok = true;

const loop = new GLib.MainLoop(null, false);
const seen = [];
b.handle.connect('page-invalidated', (handle, page) => {
    print(`B: page ${page} changed in the storage`);
    seen.push(page);
    loop.quit();
});
b.vma.read(3 * BLOCK_SIZE, 1); // B has a copy of page 3

a.vma.write(3 * BLOCK_SIZE, new GLib.Bytes(encoder.encode('hello from A')));
a.handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
print('A: saved page 3');
GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, 10, () => {
    loop.quit();
    return GLib.SOURCE_REMOVE;
});
loop.run();
print(`B: page 3 says "${text(b.vma, 3 * BLOCK_SIZE, 12)}"`);
ok &&= seen.includes(3) && text(b.vma, 3 * BLOCK_SIZE, 12) === 'hello from A';

a.vma.write(5 * BLOCK_SIZE, new GLib.Bytes(encoder.encode("A's line")));
b.vma.write(5 * BLOCK_SIZE, new GLib.Bytes(encoder.encode("B's line")));
b.handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
try {
    a.handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
    ok = false;
} catch (e) {
    print(`A: ${e.message}`);
    ok &&= e.matches(Bigfile.HandleError, Bigfile.HandleError.CONFLICT);
}
a.handle.writeout(Bigfile.WriteoutFlags.DEFAULT | Bigfile.WriteoutFlags.OVERWRITE);
print(`A: overwrote page 5 with "${text(a.vma, 5 * BLOCK_SIZE, 8)}"`);

// A fresh client sees A's line.
const c = openClient(path, ram);
ok &&= text(c.vma, 5 * BLOCK_SIZE, 8) === "A's line";

for (const client of [a, b, c]) {
    client.vma.unmap();
    client.handle.close();
}
if (dir !== null) {
    for (const name of ['notes.db', 'notes.db-wal', 'notes.db-shm'])
        GLib.unlink(GLib.build_filenamev([dir, name]));
    GLib.rmdir(dir);
}
System.exit(ok ? 0 : 1);
