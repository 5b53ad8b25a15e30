// bigfile-glib binding tests: BigfileSqliteFile from gjs
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A database made from the script; two handles of one bigfile (a file
// object each: two clients): a writeout of one arrives in the other as
// page-invalidated in the GLib.MainLoop, also from another process (this
// module run with --writer); conflicts; errors as GLib.Error.
//
//   meson devenv -C BUILD gjs -m tests/gjs/test-sqlite-file.js [NAME-SUBSTRING]

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Bigfile from 'gi://Bigfile';
import System from 'system';

const BLOCK = 4096;
const N_PAGES = 8;
const TIMEOUT_MS = 30000;

function ascii(string) {
    return new TextEncoder().encode(string);
}

function text(bytes) {
    return new TextDecoder().decode(bytes.toArray());
}

// Another process: one writeout of @str at the start of @page.
if (ARGV[0] === '--writer') {
    const [, db, page, str] = ARGV;
    const file = Bigfile.SqliteFile.new(db, 'matrix', 0, Bigfile.SqliteFileFlags.NONE);
    const handle = Bigfile.Handle.new(file, Bigfile.Ram.new(1 << 20));
    const vma = handle.map(0, N_PAGES);
    vma.write(Number(page) * BLOCK, ascii(str));
    handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
    vma.unmap();
    handle.close();
    System.exit(0);
}

class AssertionError extends Error {}

function assert(condition, message = 'assertion failed') {
    if (!condition)
        throw new AssertionError(message);
}

function assertEqual(actual, expected, what = 'value') {
    assert(actual === expected, `${what}: got ${actual}, expected ${expected}`);
}

function assertGError(func, domain, code) {
    try {
        func();
    } catch (e) {
        assert(e instanceof GLib.Error, `not a GLib.Error: ${e}`);
        assert(e.matches(domain, code), `wrong error: ${e.message}`);
        return e;
    }
    throw new AssertionError('did not throw');
}

function sleep(ms) {
    return new Promise(resolve => {
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, ms, () => {
            resolve();
            return GLib.SOURCE_REMOVE;
        });
    });
}

async function waitFor(predicate, what) {
    const deadline = GLib.get_monotonic_time() + TIMEOUT_MS * 1000;
    while (!predicate()) {
        if (GLib.get_monotonic_time() > deadline)
            throw new AssertionError(`timed out waiting for ${what}`);
        await sleep(1);
    }
}

const dir = GLib.dir_make_tmp('bigfile-gjs-sqlite-XXXXXX');
let nDb = 0;
let db;
const opened = [];

function open(flags = Bigfile.SqliteFileFlags.CREATE) {
    const file = Bigfile.SqliteFile.new(db, 'matrix', BLOCK, flags);
    const handle = Bigfile.Handle.new(file, Bigfile.Ram.new(1 << 20));
    const vma = handle.map(0, N_PAGES);
    opened.push([handle, vma]);
    return {file, handle, vma};
}

const tests = [];

function test(name, func) {
    tests.push({name, func});
}

test('properties', () => {
    const {file} = open();
    assertEqual(file.get_path(), db, 'path');
    assertEqual(file.get_name(), 'matrix', 'name');
    assertEqual(file.get_block_size(), BLOCK, 'block size');
    assert(file.get_durable(), 'durable by default');
    assert(file.is_transactional(), 'transactional');
    assertEqual(Bigfile.SqliteFile.list(db).join(), 'matrix', 'list');
});

test('writeout and read back', () => {
    const {handle, vma} = open();
    vma.write(BLOCK + 5, ascii('saved'));
    handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
    assertEqual(handle.get_n_dirty_pages(), 0, 'dirty pages');
    const other = Bigfile.SqliteFile.new(db, 'matrix', 0, Bigfile.SqliteFileFlags.READ_ONLY);
    assertEqual(text(other.load_block(1)).slice(5, 10), 'saved', 'stored data');
});

test('invalidation in the main loop', async () => {
    const a = open(), b = open();
    assertEqual(a.vma.read(3 * BLOCK, 1).toArray()[0], 0, 'before');
    const invalidated = [];
    a.handle.connect('page-invalidated', (h, page) => invalidated.push(page));
    b.vma.write(3 * BLOCK, ascii('B'));
    b.handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
    await waitFor(() => invalidated.includes(3), 'page-invalidated');
    assertEqual(text(a.vma.read(3 * BLOCK, 1)), 'B', 'after');
});

test('invalidation from another process', async () => {
    const {handle, vma} = open();
    assertEqual(vma.read(6 * BLOCK, 1).toArray()[0], 0, 'before');
    const invalidated = [];
    handle.connect('page-invalidated', (h, page) => invalidated.push(page));
    const script = GLib.filename_from_uri(import.meta.url)[0];
    const writer = Gio.Subprocess.new(['gjs', '-m', script, '--writer', db, '6', 'other'],
        Gio.SubprocessFlags.NONE);
    await waitFor(() => invalidated.includes(6), 'page-invalidated');
    assert(writer.wait_check(null), 'the writer failed');
    assertEqual(text(vma.read(6 * BLOCK, 5)), 'other', 'after');
});

test('conflict', () => {
    const a = open(), b = open();
    a.handle.set_auto_refresh(false);
    a.vma.write(2 * BLOCK, ascii('A'));
    b.vma.write(2 * BLOCK, ascii('B'));
    b.handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
    assertGError(() => a.handle.writeout(Bigfile.WriteoutFlags.DEFAULT),
        Bigfile.handle_error_quark(), Bigfile.HandleError.CONFLICT);
    a.handle.writeout(Bigfile.WriteoutFlags.DEFAULT | Bigfile.WriteoutFlags.OVERWRITE);
    b.handle.refresh();
    assertEqual(text(b.vma.read(2 * BLOCK, 1)), 'A', 'overwritten');
});

test('errors', () => {
    assertGError(() => Bigfile.SqliteFile.new(db, 'matrix', BLOCK, Bigfile.SqliteFileFlags.NONE),
        Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND);
    open();
    assertGError(() => Bigfile.SqliteFile.new(db, 'matrix', 2 * BLOCK, 0),
        Bigfile.file_error_quark(), Bigfile.FileError.INVALID_ARGUMENT);
    const ro = Bigfile.SqliteFile.new(db, 'matrix', 0, Bigfile.SqliteFileFlags.READ_ONLY);
    assertGError(() => ro.store_block(0, new GLib.Bytes(ascii('x'))),
        Bigfile.file_error_quark(), Bigfile.FileError.READ_ONLY);
});

async function runTests(filter) {
    let failures = 0;
    for (const [i, {name, func}] of tests.entries()) {
        if (filter && !name.includes(filter))
            continue;
        db = GLib.build_filenamev([dir, `test-${nDb++}.db`]);
        let error = null;
        try {
            await func();
        } catch (e) {
            error = e;
        }
        for (const [handle, vma] of opened.splice(0)) {
            vma.unmap();
            handle.close();
        }
        if (error === null) {
            print(`ok ${i + 1} - ${name}`);
        } else {
            failures++;
            print(`not ok ${i + 1} - ${name}`);
            printerr(`# ${name}: ${error}`);
        }
    }
    return failures;
}

function removeDir(path) {
    const d = Gio.File.new_for_path(path);
    const children = d.enumerate_children('standard::name', Gio.FileQueryInfoFlags.NONE, null);
    let info;
    while ((info = children.next_file(null)) !== null)
        d.get_child(info.get_name()).delete(null);
    d.delete(null);
}

const loop = new GLib.MainLoop(null, false);
let exitCode = 1;
runTests(ARGV[0]).then(failures => {
    exitCode = failures > 0 ? 1 : 0;
}).catch(e => {
    logError(e, 'the test runner failed');
}).finally(() => {
    removeDir(dir);
    loop.quit();
});
loop.run();
System.exit(exitCode);
