// bigfile-glib binding tests: BigfilePgFile from gjs
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Against $BIGFILE_TEST_PG_CONNINFO, or a throwaway cluster of its own
// (tools/pg-test-cluster.sh, named by $BIGFILE_PG_TEST_CLUSTER). Two
// clients of one file (a file object each, as on two hosts): a writeout of
// one arrives in the other as page-invalidated in the GLib.MainLoop; a
// conflict; errors as GLib.Error.
//
//   meson devenv -C BUILD gjs -m tests/gjs/test-pg-file.js

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Bigfile from 'gi://Bigfile';
import System from 'system';

const BLOCK = 4096;
const N_PAGES = 8;
const TIMEOUT_MS = 30000;

class AssertionError extends Error {}

function assert(condition, message = 'assertion failed') {
    if (!condition)
        throw new AssertionError(message);
}

function assertGError(func, domain, code) {
    try {
        func();
    } catch (e) {
        assert(e instanceof GLib.Error, `not a GLib.Error: ${e}`);
        assert(e.matches(domain, code), `wrong error: ${e.message}`);
        return;
    }
    throw new AssertionError('no error');
}

function ascii(string) {
    return new TextEncoder().encode(string);
}

function text(bytes) {
    return new TextDecoder().decode(bytes.toArray());
}

function runUntil(predicate) {
    const loop = new GLib.MainLoop(null, false);
    const check = GLib.timeout_add(GLib.PRIORITY_DEFAULT, 1, () => {
        if (!predicate())
            return GLib.SOURCE_CONTINUE;
        loop.quit();
        return GLib.SOURCE_REMOVE;
    });
    const timeout = GLib.timeout_add(GLib.PRIORITY_DEFAULT, TIMEOUT_MS, () => {
        loop.quit();
        return GLib.SOURCE_REMOVE;
    });
    loop.run();
    GLib.source_remove(timeout);
    if (!predicate())
        GLib.source_remove(check);
    assert(predicate(), 'the main loop timed out');
}

let conninfo = GLib.getenv('BIGFILE_TEST_PG_CONNINFO');
let clusterDir = null;
const script = GLib.getenv('BIGFILE_PG_TEST_CLUSTER');
if (!conninfo) {
    clusterDir = GLib.dir_make_tmp('bigfile-gjs-pg-XXXXXX');
    const [, out] = GLib.spawn_sync(null,
        [script, 'start', clusterDir, '--owner-pid', String(new Gio.Credentials().get_unix_pid())],
        null, GLib.SpawnFlags.DEFAULT, null);
    conninfo = new TextDecoder().decode(out).trim();
}

let counter = 0;
function open(name, flags, blockSize) {
    const file = Bigfile.PgFile.new(conninfo, name, blockSize, flags);
    const handle = Bigfile.Handle.new(file, Bigfile.Ram.new(1 << 20));
    const vma = handle.map(0, N_PAGES);
    const invalidated = [];
    handle.connect('page-invalidated', (h, page) => invalidated.push(page));
    return {file, handle, vma, invalidated};
}

function close(c) {
    c.vma.unmap();
    c.handle.close();
}

const tests = {
    invalidationInMainLoop() {
        const name = `gjs-${new Gio.Credentials().get_unix_pid()}-${counter++}`;
        const a = open(name, Bigfile.PgFileFlags.CREATE, BLOCK);
        const b = open(name, Bigfile.PgFileFlags.NONE, 0);
        assert(text(b.vma.read(BLOCK, 2)) === '\0\0');
        a.vma.write(BLOCK, ascii('hi'));
        a.handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
        runUntil(() => b.invalidated.includes(1));
        assert(text(b.vma.read(BLOCK, 2)) === 'hi', 'b reads a\'s commit');
        assert(a.invalidated.length === 0, 'no signal for the writer');

        // A conflict: both change page 3, a saves first.
        b.handle.set_auto_refresh(false);
        b.vma.write(3 * BLOCK, ascii('b'));
        a.vma.write(3 * BLOCK, ascii('a'));
        a.handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
        assertGError(() => b.handle.writeout(Bigfile.WriteoutFlags.DEFAULT),
            Bigfile.handle_error_quark(), Bigfile.HandleError.CONFLICT);
        assert(text(b.vma.read(3 * BLOCK, 1)) === 'b', 'nothing of b is lost');
        close(a);
        close(b);
    },

    errors() {
        assertGError(() => Bigfile.PgFile.new(conninfo, 'gjs-missing', BLOCK,
            Bigfile.PgFileFlags.NONE), Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND);
        assertGError(() => Bigfile.PgFile.new('host=/nonexistent-bigfile port=1', 'x', BLOCK,
            Bigfile.PgFileFlags.CREATE), Bigfile.file_error_quark(),
        Bigfile.FileError.DISCONNECTED);
    },
};

let failed = 0;
for (const [name, func] of Object.entries(tests)) {
    try {
        func();
        print(`ok ${name}`);
    } catch (e) {
        failed++;
        printerr(`FAIL ${name}: ${e}\n${e.stack}`);
    }
}
if (clusterDir !== null)
    GLib.spawn_sync(null, [script, 'stop', clusterDir], null, GLib.SpawnFlags.DEFAULT, null);
System.exit(failed ? 1 : 0);
