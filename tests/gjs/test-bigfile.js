// bigfile-glib binding tests: the library as gjs users see it
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Run with `gjs -m` against the freshly built typelib: meson sets
// GI_TYPELIB_PATH and LD_LIBRARY_PATH (bigfile_gi_env). By hand:
//
//   meson devenv -C BUILD gjs -m tests/gjs/test-bigfile.js [NAME-SUBSTRING]
//
// It covers a BigfileFile written in JavaScript (vfunc_get_block_size,
// vfunc_load_block returning GLib.Bytes, vfunc_store_block) behind a handle;
// vma.read/vma.write; writeout, synchronous and asynchronous (promisified,
// awaited on a GLib.MainLoop) with progress and cancellation; signals to JS
// handlers (page-invalidated, notify::n-dirty-pages, reclaimed); errors
// thrown in JS vfuncs; the GMemoryMonitor hook; sizes (a JS file with one,
// vfunc_get_size returning [true, size], and files without); BigfileLocalFile;
// a transactional JS file (vfunc_begin/commit/abort_transaction, vfunc_refresh
// returning an array, the changed signal): commits, conflicts, invalidation.
//
// gjs runs JS only on the main thread, so there is no thread test here: the
// Python suite checks that a file that is not thread-safe is never called
// from another thread.
//
// Output is TAP-like for people; meson only looks at the exit status.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import GObject from 'gi://GObject';
import Bigfile from 'gi://Bigfile';
import System from 'system';

Gio._promisify(Bigfile.Handle.prototype, 'writeout_async', 'writeout_finish');

const BLOCK = 4096;
const LOOP_TIMEOUT_S = 30;

// -- a small test harness ------------------------------------------------------

class AssertionError extends Error {
    constructor(message) {
        super(message);
        this.name = 'AssertionError';
    }
}

// A short description of @value for failure messages.
function show(value) {
    if (ArrayBuffer.isView(value)) {
        const head = Array.from(value.slice(0, 16)).join(',');
        const more = value.length > 16 ? ',…' : '';
        return `${value.constructor.name}[${head}${more}] (${value.length} bytes)`;
    }
    if (value instanceof GLib.Error) {
        const domain = GLib.quark_to_string(value.domain);
        return `GLib.Error(${domain}, ${value.code}, ${JSON.stringify(value.message)})`;
    }
    try {
        return JSON.stringify(value);
    } catch (e) {
        return String(value);
    }
}

function same(a, b) {
    const arrayLike = x => Array.isArray(x) || ArrayBuffer.isView(x);
    if (arrayLike(a) && arrayLike(b)) {
        if (a.length !== b.length)
            return false;
        for (let i = 0; i < a.length; i++) {
            if (!same(a[i], b[i]))
                return false;
        }
        return true;
    }
    return Object.is(a, b);
}

function assert(condition, message = 'assertion failed') {
    if (!condition)
        throw new AssertionError(message);
}

function assertEqual(actual, expected, what = 'value') {
    if (!same(actual, expected))
        throw new AssertionError(`${what}: expected ${show(expected)}, got ${show(actual)}`);
}

function assertGError(error, domain, code, message = undefined) {
    assert(error instanceof GLib.Error, `expected a GLib.Error, got ${show(error)}: ${error}`);
    assert(error.matches(domain, code),
        `expected error ${GLib.quark_to_string(domain)} ${code}, got ${show(error)}`);
    if (message !== undefined)
        assertEqual(error.message, message, 'error message');
}

function assertThrows(func) {
    try {
        func();
    } catch (error) {
        return error;
    }
    throw new AssertionError(`${func} did not throw`);
}

async function assertRejects(promise) {
    try {
        await promise;
    } catch (error) {
        return error;
    }
    throw new AssertionError('the promise did not reject');
}

const tests = [];

function test(name, func) {
    tests.push({name, func});
}

// Cleanups of the running test, run after it in reverse order.
let cleanups = [];

function addCleanup(func) {
    cleanups.push(func);
}

// A promise resolved by the main loop, after the sources of higher priority.
function idle(priority = GLib.PRIORITY_DEFAULT_IDLE) {
    return new Promise(resolve => {
        GLib.idle_add(priority, () => {
            resolve();
            return GLib.SOURCE_REMOVE;
        });
    });
}

function sleep(ms) {
    return new Promise(resolve => {
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, ms, () => {
            resolve();
            return GLib.SOURCE_REMOVE;
        });
    });
}

// Lets the main loop run until predicate() holds, or fails after a while.
async function waitFor(predicate, what, timeoutMs = 5000) {
    const deadline = GLib.get_monotonic_time() + timeoutMs * 1000;
    while (!predicate()) {
        if (GLib.get_monotonic_time() > deadline)
            throw new AssertionError(`timed out waiting for ${what}`);
        await sleep(1);
    }
}

// -- files implemented in JavaScript ---------------------------------------------

// The computed contents of a block never stored: each block differs from the
// others, so a page loaded from the wrong block shows.
function pattern(block, size = BLOCK) {
    const data = new Uint8Array(size);
    const start = (block * 7 + 1) & 0xff;
    for (let i = 0; i < size; i++)
        data[i] = (start + i) & 0xff;
    return data;
}

function bytes(array) {
    return new GLib.Bytes(array);
}

function ascii(string) {
    return new TextEncoder().encode(string);
}

function concat(...arrays) {
    const result = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
    let offset = 0;
    for (const a of arrays) {
        result.set(a, offset);
        offset += a.length;
    }
    return result;
}

// A file whose unstored blocks are computed and whose stored blocks live in
// a Map; it logs its calls, and fails on demand.
const ComputedFile = GObject.registerClass({
    GTypeName: 'TestJsComputedFile',
    Implements: [Bigfile.File],
}, class ComputedFile extends GObject.Object {
    constructor(storeDelayMs = 0) {
        super();
        this.storeDelayMs = storeDelayMs;
        this.stored = new Map(); // block -> Uint8Array, our own copy
        this.loads = [];
        this.stores = [];
        this.loadError = null; // thrown by the load when set
        this.storeError = null; // thrown by the store when set
        this.onStore = null; // called after each store with the block
    }

    vfunc_get_block_size() {
        return BLOCK;
    }

    vfunc_load_block(block) {
        this.loads.push(block);
        if (this.loadError !== null)
            throw this.loadError;
        return bytes(this.stored.get(block) ?? pattern(block));
    }

    vfunc_store_block(block, data) {
        if (this.storeError !== null)
            throw this.storeError;
        if (this.storeDelayMs > 0)
            GLib.usleep(this.storeDelayMs * 1000); // longer than a slice
        // toArray() may share the GBytes' memory: keep a copy of our own.
        this.stored.set(block, data.toArray().slice());
        this.stores.push(block);
        this.onStore?.(block);
        return true;
    }
});

// A read-only file whose every block loads as the same bytes.
const FixedFile = GObject.registerClass({
    GTypeName: 'TestJsFixedFile',
    Implements: [Bigfile.File],
}, class FixedFile extends GObject.Object {
    constructor(data) {
        super();
        this.data = data;
    }

    vfunc_get_block_size() {
        return BLOCK;
    }

    vfunc_load_block(_block) {
        return bytes(this.data);
    }
});

// A file with a size (vfunc_get_size returns [true, size], vfunc_set_size),
// its bytes in a Uint8Array. Its loads give junk (0xa5) past the size, which
// a handle must not show; it records stores that reach past the size, which
// a handle must never make.
const SizedFile = GObject.registerClass({
    GTypeName: 'TestJsSizedFile',
    Implements: [Bigfile.File],
}, class SizedFile extends GObject.Object {
    constructor(data) {
        super();
        this.data = data.slice();
        this.setSizes = [];
        this.stores = []; // [block, length]
        this.pastSize = [];
    }

    vfunc_get_block_size() {
        return BLOCK;
    }

    vfunc_get_size() {
        return [true, this.data.length];
    }

    vfunc_set_size(size) {
        this.setSizes.push(size);
        const data = new Uint8Array(size);
        data.set(this.data.subarray(0, size));
        this.data = data;
        return true;
    }

    vfunc_load_block(block) {
        const data = new Uint8Array(BLOCK).fill(0xa5);
        data.set(this.data.subarray(block * BLOCK, (block + 1) * BLOCK));
        return bytes(data);
    }

    vfunc_store_block(block, data) {
        const array = data.toArray();
        this.stores.push([block, array.length]);
        if (block * BLOCK + array.length > this.data.length)
            this.pastSize.push([block, array.length, this.data.length]);
        else
            this.data.set(array, block * BLOCK);
        return true;
    }
});

// A file whose get_size says it has none.
const NoSizeFile = GObject.registerClass({
    GTypeName: 'TestJsNoSizeFile',
    Implements: [Bigfile.File],
}, class NoSizeFile extends GObject.Object {
    vfunc_get_block_size() {
        return BLOCK;
    }

    vfunc_get_size() {
        return [false, 0];
    }

    vfunc_load_block(block) {
        return bytes(pattern(block));
    }
});

function open({file = new ComputedFile(), budget = 1 << 20, nPages = 16} = {}) {
    const ram = Bigfile.Ram.new(budget);
    const handle = Bigfile.Handle.new(file, ram);
    const vma = handle.map(0, nPages);
    addCleanup(() => handle.close());
    addCleanup(() => vma.unmap());
    return {file, ram, handle, vma};
}

// Writes a marker at the start of each page of @pages; returns them.
function dirty(vma, pages) {
    const written = new Map();
    for (const page of pages) {
        const marker = concat(Uint8Array.of(0xee), ascii(`page ${page}`));
        vma.write(page * BLOCK, bytes(marker));
        written.set(page, marker);
    }
    return written;
}

function withMarker(page, marker) {
    return concat(marker, pattern(page).subarray(marker.length));
}

function read(vma, offset, length) {
    return vma.read(offset, length).toArray();
}

// -- reads, writes, synchronous writeout ---------------------------------------------

test('interface', () => {
    const file = new ComputedFile();
    assert(file instanceof Bigfile.File);
    assertEqual(file.get_block_size(), BLOCK, 'block size');
    assertEqual(file.is_thread_safe(), false, 'is_thread_safe');
    assertEqual(file.load_block(5).toArray(), pattern(5), 'block 5');
    assert(file.store_block(5, bytes(new Uint8Array(BLOCK).fill(1))));
    assertEqual(file.load_block(5).toArray(), new Uint8Array(BLOCK).fill(1), 'stored block 5');
});

test('read loads lazily', () => {
    const {file, ram, handle, vma} = open();
    assertEqual(handle.get_page_size(), BLOCK, 'page size');
    assertEqual(vma.get_length(), 16 * BLOCK, 'mapping length');
    assertEqual(file.loads, [], 'loads');
    assertEqual(read(vma, 3 * BLOCK + 10, 100), pattern(3).subarray(10, 110), 'read');
    assertEqual(file.loads, [3], 'loads');
    assertEqual(handle.get_page_state(3), Bigfile.PageState.LOADED, 'page state');
    assertEqual(ram.get_n_pages(), 1, 'pages in RAM');
    assertEqual(read(vma, 4 * BLOCK - 2, 4),
        concat(pattern(3).subarray(-2), pattern(4).subarray(0, 2)), 'read across pages');
    assertEqual(file.loads, [3, 4], 'loads');
});

test('install_fault_handler', () => {
    // Callable from JavaScript: puts the library's SIGSEGV handler in front
    // (it is already, so it only checks); pages still load afterwards.
    const {file, vma} = open();
    assertEqual(Bigfile.install_fault_handler(), true, 'install_fault_handler()');
    assertEqual(read(vma, 5 * BLOCK, 3), pattern(5).subarray(0, 3), 'read');
    assertEqual(file.loads, [5], 'loads');
});

test('write and writeout', () => {
    const {file, ram, handle, vma} = open();
    vma.write(2 * BLOCK + 100, bytes(ascii('hello')));
    vma.write(9 * BLOCK, bytes(ascii('world')));
    assertEqual(handle.get_n_dirty_pages(), 2, 'dirty pages');
    assertEqual(handle.n_dirty_pages, 2, 'n-dirty-pages');
    assertEqual(ram.get_n_dirty_pages(), 2, 'dirty pages of the RAM');
    assertEqual(handle.get_page_state(2), Bigfile.PageState.DIRTY, 'page state');
    const page2 = pattern(2);
    page2.set(ascii('hello'), 100);
    assertEqual(read(vma, 2 * BLOCK, BLOCK), page2, 'page 2');

    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    assertEqual(file.stores, [2, 9], 'stores');
    assertEqual(file.stored.get(2), page2, 'stored block 2');
    assertEqual(file.stored.get(9), withMarker(9, ascii('world')), 'stored block 9');
    assertEqual(handle.get_n_dirty_pages(), 0, 'dirty pages');
    assertEqual(handle.get_page_state(2), Bigfile.PageState.LOADED, 'page state');

    // A fresh handle of the same file sees what was stored.
    const other = open({file});
    assertEqual(read(other.vma, 9 * BLOCK, 5), ascii('world'), 'read back');
});

test('discard', () => {
    const {file, handle, vma} = open();
    dirty(vma, [1, 5]);
    assertEqual(handle.discard(), 2, 'discarded');
    assertEqual(read(vma, BLOCK, 8), pattern(1).subarray(0, 8), 'page 1');
    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    assertEqual(file.stores, [], 'stores');
});

test('budget reclaims clean pages', () => {
    const {file, ram, vma} = open({budget: 4 * BLOCK});
    for (let page = 0; page < 16; page++)
        assertEqual(read(vma, page * BLOCK, BLOCK), pattern(page), `page ${page}`);
    assert(ram.get_used_bytes() <= 4 * BLOCK, 'over budget');
    read(vma, 0, 1);
    assertEqual(file.loads, [...Array(16).keys(), 0], 'loads');
});

test('short and long loads', () => {
    const short = open({file: new FixedFile(ascii('short'))});
    assertEqual(read(short.vma, BLOCK, BLOCK),
        concat(ascii('short'), new Uint8Array(BLOCK - 5)), 'short block');
    const long = open({file: new FixedFile(new Uint8Array(BLOCK + 1))});
    assertGError(assertThrows(() => read(long.vma, 0, 1)),
        Bigfile.FileError, Bigfile.FileError.INVALID_DATA);
});

// -- errors thrown in JS vfuncs ---------------------------------------------------

test('GLib.Error thrown by a load', () => {
    const {file, handle, vma} = open();
    file.loadError = new GLib.Error(Gio.IOErrorEnum, Gio.IOErrorEnum.FAILED, 'boom');
    assertGError(assertThrows(() => read(vma, 3 * BLOCK, 10)),
        Gio.IOErrorEnum, Gio.IOErrorEnum.FAILED, 'boom');
    assertEqual(handle.get_page_state(3), Bigfile.PageState.EMPTY, 'page state');
    assertGError(assertThrows(() => vma.write(3 * BLOCK, bytes(ascii('x')))),
        Gio.IOErrorEnum, Gio.IOErrorEnum.FAILED, 'boom');
    assertEqual(handle.get_n_dirty_pages(), 0, 'dirty pages');
    file.loadError = null;
    assertEqual(read(vma, 3 * BLOCK, 10), pattern(3).subarray(0, 10), 'read after');
});

test('other exceptions thrown by a load', () => {
    // A JS exception that is not a GLib.Error fails the load too; gjs hands
    // the exception itself back to the JS caller. No crash, no load.
    const {file, handle, vma} = open();
    file.loadError = new TypeError('not a GLib.Error');
    const error = assertThrows(() => read(vma, 2 * BLOCK, 10));
    assert(String(error.message).includes('not a GLib.Error'), `got ${error}`);
    assertEqual(handle.get_page_state(2), Bigfile.PageState.EMPTY, 'page state');
    file.loadError = null;
    assertEqual(read(vma, 2 * BLOCK, 10), pattern(2).subarray(0, 10), 'read after');
});

test('a load returning null', () => {
    const NullFile = GObject.registerClass({
        GTypeName: 'TestJsNullFile',
        Implements: [Bigfile.File],
    }, class NullFile extends GObject.Object {
        vfunc_get_block_size() {
            return BLOCK;
        }

        vfunc_load_block(_block) {
            return null;
        }
    });
    const {vma} = open({file: new NullFile()});
    // Failure without a GError: the library makes a generic error.
    assertGError(assertThrows(() => read(vma, 0, 1)),
        Bigfile.FileError, Bigfile.FileError.FAILED);
});

test('GLib.Error thrown by a store', () => {
    const {file, handle, vma} = open();
    dirty(vma, [1, 2]);
    file.storeError = new GLib.Error(Gio.IOErrorEnum, Gio.IOErrorEnum.NO_SPACE, 'disk on fire');
    assertGError(assertThrows(() => handle.writeout(Bigfile.WriteoutFlags.DEFAULT)),
        Gio.IOErrorEnum, Gio.IOErrorEnum.NO_SPACE, 'disk on fire');
    assertEqual(handle.get_n_dirty_pages(), 2, 'dirty pages');
    file.storeError = null;
    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    assertEqual(file.stores, [1, 2], 'stores');
});

// -- asynchronous writeout ------------------------------------------------------------

const N_DIRTY = 8;

function openDirty(storeDelayMs = 6) {
    const opened = open({file: new ComputedFile(storeDelayMs)});
    opened.written = dirty(opened.vma, [...Array(N_DIRTY).keys()]);
    assertEqual(opened.handle.get_n_dirty_pages(), N_DIRTY, 'dirty pages');
    return opened;
}

function writeoutAsync(handle, cancellable = null, progress = null) {
    return handle.writeout_async(Bigfile.WriteoutFlags.DEFAULT, GLib.PRIORITY_DEFAULT,
        cancellable, progress);
}

test('writeout_async with progress', async () => {
    const {file, handle, written} = openDirty();
    const progress = [];
    const ok = await writeoutAsync(handle, null,
        (done, total) => progress.push([done, total, file.stores.length]));
    assertEqual(ok, true, 'result');
    assertEqual(file.stores, [...Array(N_DIRTY).keys()], 'stores');
    for (const [page, marker] of written) {
        assertEqual(file.stored.get(page), withMarker(page, marker), `stored block ${page}`);
        assertEqual(handle.get_page_state(page), Bigfile.PageState.LOADED, 'page state');
    }
    assertEqual(handle.get_n_dirty_pages(), 0, 'dirty pages');

    const total = N_DIRTY * BLOCK;
    assert(progress.length > 0, 'no progress');
    assert(progress.every(p => p[1] === total), `totals: ${show(progress)}`);
    const done = progress.map(p => p[0]);
    assert(done.every((d, i) => i === 0 || d >= done[i - 1]), `went backwards: ${done}`);
    assert(progress.every(p => p[0] <= p[2] * BLOCK), `ahead of the stores: ${show(progress)}`);
    assertEqual(done[done.length - 1], total, 'final bytes_done');
    assert(new Set(done).size > 1, `progress only at the end: ${done}`);
});

test('writeout_async without progress callback', async () => {
    const {file, handle} = openDirty(0);
    assertEqual(await writeoutAsync(handle), true, 'result');
    assertEqual(file.stores, [...Array(N_DIRTY).keys()], 'stores');
    assertEqual(handle.get_n_dirty_pages(), 0, 'dirty pages');
});

test('writeout_async with a callback instead of a promise', async () => {
    const {file, handle} = openDirty(0);
    const result = await new Promise((resolve, reject) => {
        handle.writeout_async(Bigfile.WriteoutFlags.DEFAULT, GLib.PRIORITY_DEFAULT, null, null,
            (source, res) => {
                try {
                    resolve([source, source.writeout_finish(res)]);
                } catch (e) {
                    reject(e);
                }
            });
    });
    assert(result[0] === handle, 'source object');
    assertEqual(result[1], true, 'result');
    assertEqual(file.stores.length, N_DIRTY, 'stores');
});

test('main loop runs between slices', async () => {
    const {file, handle} = openDirty();
    const ticks = [];
    const id = GLib.timeout_add(GLib.PRIORITY_DEFAULT, 1, () => {
        ticks.push(file.stores.length);
        return GLib.SOURCE_CONTINUE;
    });
    try {
        await writeoutAsync(handle);
    } finally {
        GLib.source_remove(id);
    }
    assert(ticks.some(n => n > 0 && n < N_DIRTY), `no tick between slices: ${ticks}`);
});

test('writeout_async cancelled from progress', async () => {
    const {file, handle, written} = openDirty();
    const cancellable = new Gio.Cancellable();
    const error = await assertRejects(writeoutAsync(handle, cancellable, done => {
        if (done >= BLOCK && !cancellable.is_cancelled())
            cancellable.cancel();
    }));
    assertGError(error, Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED);

    const stored = file.stores.slice();
    assert(stored.length >= 1, 'nothing stored');
    assert(stored.length < N_DIRTY, 'the cancellation stopped nothing');
    assertEqual(stored, [...Array(stored.length).keys()], 'stored blocks');
    assertEqual(handle.get_n_dirty_pages(), N_DIRTY - stored.length, 'dirty pages');
    for (let page = 0; page < N_DIRTY; page++) {
        if (stored.includes(page)) {
            assertEqual(file.stored.get(page), withMarker(page, written.get(page)), 'stored');
            assertEqual(handle.get_page_state(page), Bigfile.PageState.LOADED, 'page state');
        } else {
            assert(!file.stored.has(page), `page ${page} was stored`);
            assertEqual(handle.get_page_state(page), Bigfile.PageState.DIRTY, 'page state');
        }
    }

    // Again, to the end: the rest is stored, nothing twice.
    file.storeDelayMs = 0;
    assertEqual(await writeoutAsync(handle), true, 'second writeout');
    assertEqual(file.stores, [...Array(N_DIRTY).keys()], 'stores');
    assertEqual(handle.get_n_dirty_pages(), 0, 'dirty pages');
});

test('writeout_async cancelled before it starts', async () => {
    const {file, handle} = openDirty(0);
    const cancellable = new Gio.Cancellable();
    cancellable.cancel();
    assertGError(await assertRejects(writeoutAsync(handle, cancellable)),
        Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED);
    assertEqual(file.stores, [], 'stores');
    assertEqual(handle.get_n_dirty_pages(), N_DIRTY, 'dirty pages');
});

test('writes between slices', async () => {
    // After the first store an idle callback writes to page 0 (stored
    // already) and to the last page (not yet): the writeout stores what was
    // dirty when it began, so page 0 is dirty again after it, and the last
    // page is stored with the new bytes.
    const {file, handle, vma, written} = openDirty();
    const last = N_DIRTY - 1;
    let storesBefore = null;
    file.onStore = () => {
        file.onStore = null;
        GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
            storesBefore = file.stores.length;
            vma.write(0, bytes(ascii('again 0')));
            vma.write(last * BLOCK, bytes(ascii('again last')));
            return GLib.SOURCE_REMOVE;
        });
    };
    assertEqual(await writeoutAsync(handle), true, 'result');
    assert(storesBefore !== null, 'the idle callback did not run');
    assert(storesBefore >= 1 && storesBefore < N_DIRTY,
        `the idle ran after ${storesBefore} stores, not during the writeout`);
    assertEqual(file.stores, [...Array(N_DIRTY).keys()], 'stores');
    assertEqual(file.stored.get(0), withMarker(0, written.get(0)), 'stored block 0');
    assertEqual(handle.get_page_state(0), Bigfile.PageState.DIRTY, 'page 0');
    assertEqual(file.stored.get(last), withMarker(last, ascii('again last')), 'last block');
    assertEqual(handle.get_page_state(last), Bigfile.PageState.LOADED, 'last page');
    assertEqual(handle.get_n_dirty_pages(), 1, 'dirty pages');

    file.storeDelayMs = 0;
    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    assertEqual(file.stored.get(0), withMarker(0, ascii('again 0')), 'stored block 0');
});

test('a second writeout while one runs is BUSY', async () => {
    const {file, handle} = openDirty();
    let busy;
    await writeoutAsync(handle, null, (done, total) => {
        if (busy === undefined && done < total) {
            try {
                handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
                busy = null;
            } catch (e) {
                busy = e;
            }
        }
    });
    assert(busy !== undefined, 'no progress before the end');
    assertGError(busy, Bigfile.HandleError, Bigfile.HandleError.BUSY);
    assertEqual(file.stores, [...Array(N_DIRTY).keys()], 'stores');
});

test('writeout_async store error', async () => {
    const {file, handle} = openDirty(0);
    file.storeError = new GLib.Error(Gio.IOErrorEnum, Gio.IOErrorEnum.NO_SPACE, 'disk on fire');
    assertGError(await assertRejects(writeoutAsync(handle)),
        Gio.IOErrorEnum, Gio.IOErrorEnum.NO_SPACE, 'disk on fire');
    assertEqual(handle.get_n_dirty_pages(), N_DIRTY, 'dirty pages');
    file.storeError = null;
    assertEqual(await writeoutAsync(handle), true, 'retry');
    assertEqual(file.stores, [...Array(N_DIRTY).keys()], 'stores');
});

// -- signals --------------------------------------------------------------------------

test('page-invalidated', async () => {
    const {handle, vma} = open();
    const seen = [];
    handle.connect('page-invalidated', (h, page) => seen.push([h, page]));
    dirty(vma, [5]);
    handle.invalidate_page(5);
    await waitFor(() => seen.length > 0, 'page-invalidated');
    await sleep(50);
    assertEqual(seen.length, 1, 'emissions');
    assert(seen[0][0] === handle, 'emitter');
    assertEqual(seen[0][1], 5, 'page');
    assertEqual(handle.get_page_state(5), Bigfile.PageState.EMPTY, 'page state');
    assertEqual(handle.get_n_dirty_pages(), 0, 'dirty pages');
    assertEqual(read(vma, 5 * BLOCK, 8), pattern(5).subarray(0, 8), 'page 5');
});

test('notify::n-dirty-pages', async () => {
    const {handle, vma} = open();
    const seen = [];
    handle.connect('notify::n-dirty-pages',
        (h, pspec) => seen.push([h.n_dirty_pages, pspec.name]));
    dirty(vma, [1, 2, 3]);
    await waitFor(() => seen.length > 0 && seen[seen.length - 1][0] === 3, 'a notification of 3');
    assert(seen.every(s => s[1] === 'n-dirty-pages'), show(seen));

    let count = seen.length;
    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    await waitFor(() => seen.length > count && seen[seen.length - 1][0] === 0,
        'a notification of 0');

    count = seen.length;
    read(vma, 10 * BLOCK, 10);
    await sleep(50);
    assertEqual(seen.length, count, 'notifications after a read');
});

test('reclaimed', () => {
    const {ram, handle, vma} = open();
    const seen = [];
    ram.connect('reclaimed', (r, n) => seen.push([r, n]));
    for (let page = 0; page < 4; page++)
        read(vma, page * BLOCK, 1);
    dirty(vma, [6]);
    assertEqual(ram.reclaim(), 4, 'reclaimed');
    // On the RAM's thread, at once.
    assertEqual(seen.length, 1, 'emissions');
    assert(seen[0][0] === ram, 'emitter');
    assertEqual(seen[0][1], 4, 'count');
    assertEqual(ram.get_n_pages(), 1, 'pages');
    assertEqual(handle.get_page_state(6), Bigfile.PageState.DIRTY, 'page 6');
});

test('reclaimed by the budget', async () => {
    const {ram, vma} = open({budget: 4 * BLOCK});
    const counts = [];
    ram.connect('reclaimed', (r, n) => counts.push(n));
    for (let page = 0; page < 12; page++)
        read(vma, page * BLOCK, 1);
    const reclaimed = 12 - ram.get_n_pages();
    assert(reclaimed >= 8, `reclaimed ${reclaimed}`);
    const sum = () => counts.reduce((a, b) => a + b, 0);
    await waitFor(() => sum() === reclaimed, `reclaimed counts adding up to ${reclaimed}`);
    await sleep(50);
    assertEqual(sum(), reclaimed, 'reclaimed in all');
});

// -- the low-memory hook ----------------------------------------------------------------

function lowMemoryWarning() {
    Gio.MemoryMonitor.dup_default().emit('low-memory-warning', Gio.MemoryMonitorWarningLevel.LOW);
}

function loadSome(vma) {
    for (let page = 0; page < 5; page++)
        read(vma, page * BLOCK, 1);
    dirty(vma, [8, 9]);
}

test('low memory reclaims clean pages', async () => {
    const {ram, handle, vma} = open();
    assertEqual(ram.reclaim_on_low_memory, true, 'reclaim-on-low-memory');
    const seen = [];
    ram.connect('reclaimed', (r, n) => seen.push(n));
    loadSome(vma);
    assertEqual(ram.get_n_pages(), 7, 'pages');
    lowMemoryWarning();
    await waitFor(() => seen.reduce((a, b) => a + b, 0) === 5, 'five pages reclaimed');
    assertEqual(ram.get_n_pages(), 2, 'pages');
    assertEqual(ram.get_n_dirty_pages(), 2, 'dirty pages');
    assertEqual(handle.get_page_state(0), Bigfile.PageState.EMPTY, 'page 0');
    assertEqual(handle.get_page_state(8), Bigfile.PageState.DIRTY, 'page 8');
});

test('low memory with reclaim-on-low-memory off', async () => {
    const {ram, handle, vma} = open();
    const notified = [];
    ram.connect('notify::reclaim-on-low-memory', () => notified.push(ram.reclaim_on_low_memory));
    ram.reclaim_on_low_memory = false;
    assertEqual(notified, [false], 'notifications');
    assertEqual(ram.get_reclaim_on_low_memory(), false, 'getter');
    const seen = [];
    ram.connect('reclaimed', (r, n) => seen.push(n));
    loadSome(vma);
    lowMemoryWarning();
    await sleep(200);
    assertEqual(seen, [], 'reclaimed');
    assertEqual(ram.get_n_pages(), 7, 'pages');
    assertEqual(handle.get_page_state(0), Bigfile.PageState.LOADED, 'page 0');

    ram.set_reclaim_on_low_memory(true);
    lowMemoryWarning();
    await waitFor(() => seen.reduce((a, b) => a + b, 0) === 5, 'five pages reclaimed');
});

// -- sizes ------------------------------------------------------------------------------------

function sizedContents(size = 5000) {
    return concat(pattern(0), pattern(1)).slice(0, size);
}

test('sized file keeps its size', () => {
    const file = new SizedFile(sizedContents());
    assertEqual(file.get_size(), [true, 5000], 'get_size');
    const {handle, vma} = open({file, nPages: 4});
    assert(handle.has_size(), 'has_size');
    assertEqual(handle.get_size(), 5000, 'size');
    assertEqual(handle.size, 5000, 'size property');
    // Zeros past the size, though the file's load gives junk there.
    assertEqual(read(vma, 4990, 20), concat(sizedContents().subarray(4990), new Uint8Array(10)),
        'past the size');
    assertEqual(read(vma, 2 * BLOCK, 16), new Uint8Array(16), 'a page past the size');

    vma.write(4500, bytes(Uint8Array.of(1)));
    vma.write(6000, bytes(new Uint8Array(100))); // zeros change nothing
    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    assertEqual(file.stores, [[1, 5000 - BLOCK]], 'stores');
    assertEqual(file.pastSize, [], 'stores past the size');
    assertEqual(file.setSizes, [], 'set_size calls');
    assertEqual(file.data.length, 5000, 'file size');
    assertEqual(file.data[4500], 1, 'byte 4500');
});

test('sized file grows over a write, notify::size', async () => {
    const file = new SizedFile(sizedContents());
    const {handle, vma} = open({file, nPages: 4});
    const seen = [];
    handle.connect('notify::size', () => seen.push(handle.size));
    vma.write(6000, bytes(Uint8Array.of(7)));
    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    await waitFor(() => seen.length > 0, 'notify::size');
    assertEqual(seen, [6001], 'notified sizes');
    assertEqual(file.setSizes, [6001], 'set_size calls');
    assertEqual(file.data, concat(sizedContents(), new Uint8Array(1000), Uint8Array.of(7)),
        'file');

    // Asynchronously too (in slices: a JS file is not thread-safe).
    vma.write(3 * BLOCK + 9, bytes(Uint8Array.of(8)));
    assertEqual(await writeoutAsync(handle), true, 'writeout');
    await waitFor(() => seen.length === 2, 'a second notify::size');
    assertEqual(seen[1], 3 * BLOCK + 10, 'grown size');
    assertEqual(file.data.length, 3 * BLOCK + 10, 'file size');
    assertEqual(file.pastSize, [], 'stores past the size');
});

test('set_size and discard', () => {
    const file = new SizedFile(sizedContents());
    const {handle, vma} = open({file, nPages: 4});
    const seen = [];
    handle.connect('notify::size', () => seen.push(handle.size));

    assert(handle.set_size(3000));
    assertEqual(seen, [3000], 'notified at once');
    assertEqual(read(vma, 2990, 20), concat(sizedContents().subarray(2990, 3000),
        new Uint8Array(10)), 'zeros past the new size');
    assertEqual(handle.discard(), 0, 'discarded');
    assertEqual(handle.size, 5000, 'size after discard');
    assertEqual(read(vma, 0, 5000), sizedContents(), 'contents after discard');

    assert(handle.set_size(3000));
    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    assertEqual(file.data, sizedContents().slice(0, 3000), 'truncated');
    assert(handle.set_size(9000));
    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    assertEqual(file.setSizes, [3000, 9000], 'set_size calls');
    assertEqual(file.data, concat(sizedContents().slice(0, 3000), new Uint8Array(6000)),
        'extended with zeros');
});

test('files without a size', () => {
    for (const file of [new ComputedFile(), new NoSizeFile()]) {
        const {handle, vma} = open({file});
        assertEqual(handle.has_size(), false, 'has_size');
        assertGError(assertThrows(() => handle.set_size(10)), Bigfile.FileError,
            Bigfile.FileError.NOT_SUPPORTED);
        assertEqual(read(vma, 5 * BLOCK, 16), pattern(5).subarray(0, 16), 'the file as it is');
    }
    const {file, handle, vma} = open();
    vma.write(6000, bytes(Uint8Array.of(1)));
    assert(handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    assertEqual(file.stored.get(1).length, BLOCK, 'a whole block stored');
});

// -- BigfileLocalFile ---------------------------------------------------------------------

test('LocalFile round trip', async () => {
    const [gfile, stream] = Gio.File.new_tmp('bigfile-gjs-XXXXXX.data');
    addCleanup(() => gfile.delete(null));
    const contents = concat(...[...Array(6).keys()].map(b => pattern(b)), ascii('tail'));
    stream.output_stream.write_bytes(bytes(contents), null);
    stream.close(null);

    const path = gfile.get_path();
    const file = Bigfile.LocalFile.new(path, BLOCK, Bigfile.LocalFileFlags.NONE);
    assertEqual(file.get_path(), path, 'path');
    assert(file.is_thread_safe(), 'a LocalFile is thread-safe');
    const {handle, vma} = open({file, nPages: 8});
    assertEqual(read(vma, 0, contents.length), contents, 'contents');
    assertEqual(read(vma, 6 * BLOCK + 4, 8), new Uint8Array(8), 'past the end');

    const written = dirty(vma, [0, 1, 2, 3, 4, 5]);
    const progress = [];
    assertEqual(await writeoutAsync(handle, null, (done, total) => progress.push([done, total])),
        true, 'writeout');
    assertEqual(progress[progress.length - 1], [6 * BLOCK, 6 * BLOCK], 'final progress');

    const [, onDisk] = GLib.file_get_contents(path);
    for (const [page, marker] of written) {
        assertEqual(onDisk.subarray(page * BLOCK, page * BLOCK + marker.length), marker,
            `page ${page} on disk`);
    }
    assertEqual(onDisk.length, contents.length, 'file length');

    const again = open({file: Bigfile.LocalFile.new(path, BLOCK,
        Bigfile.LocalFileFlags.READ_ONLY), nPages: 8});
    assertEqual(read(again.vma, 3 * BLOCK, written.get(3).length), written.get(3), 'reread');
});

test('LocalFile errors', () => {
    assertGError(assertThrows(() => Bigfile.LocalFile.new('/nonexistent/bigfile-test', BLOCK,
        Bigfile.LocalFileFlags.NONE)), Gio.IOErrorEnum, Gio.IOErrorEnum.NOT_FOUND);
});

// -- transactions and snapshots of a file implemented in JavaScript ----------------

// Commits of whole blocks that several clients share: [writer, Map(block -> Uint8Array)].
class SharedStore {
    constructor() {
        this.commits = [];
        this.clients = [];
    }

    read(version, block) {
        for (let v = version; v > 0; v--) {
            const blocks = this.commits[v - 1][1];
            if (blocks.has(block))
                return blocks.get(block);
        }
        return new Uint8Array(0);
    }

    commit(writer, blocks) {
        this.commits.push([writer, new Map(blocks)]);
        for (const client of this.clients) {
            if (client !== writer) {
                GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
                    client.emit('changed');
                    return GLib.SOURCE_REMOVE;
                });
            }
        }
        return this.commits.length;
    }
}

const TxnFile = GObject.registerClass({
    GTypeName: 'TestJsTxnFile',
    Implements: [Bigfile.File],
}, class TxnFile extends GObject.Object {
    constructor(store) {
        super();
        this.store = store;
        this.snapshot = this.reported = store.commits.length;
        this.txn = null;
        this.failCommit = false;
        this.log = [];
        store.clients.push(this);
    }

    vfunc_get_block_size() {
        return BLOCK;
    }

    vfunc_load_block(block) {
        return bytes(this.store.read(this.snapshot, block));
    }

    vfunc_store_block(block, data) {
        this.txn.set(block, data.toArray().slice());
        return true;
    }

    vfunc_begin_transaction() {
        this.log.push('begin');
        this.txn = new Map();
        return true;
    }

    vfunc_commit_transaction(flags) {
        this.log.push(flags & Bigfile.CommitFlags.DURABLE ? 'commit durable' : 'commit');
        const txn = this.txn;
        this.txn = null;
        if (this.failCommit) {
            this.failCommit = false;
            throw new GLib.Error(GLib.FileError, GLib.FileError.NOSPC, 'disk full (test)');
        }
        this.snapshot = this.store.commit(this, txn);
        return true;
    }

    vfunc_abort_transaction() {
        this.log.push('abort');
        this.txn = null;
    }

    vfunc_refresh() {
        this.log.push('refresh');
        const changed = [];
        for (const [writer, blocks] of this.store.commits.slice(this.reported)) {
            if (writer !== this)
                changed.push(...blocks.keys());
        }
        this.snapshot = this.reported = this.store.commits.length;
        return changed;
    }
});

test('transactions: a writeout is one commit; a failed commit keeps every page', () => {
    const store = new SharedStore();
    const file = new TxnFile(store);
    const {handle, vma} = open({file, nPages: 8});
    assert(file.is_transactional(), 'transactional');
    const written = dirty(vma, [1, 5]);
    file.failCommit = true;
    assertGError(assertThrows(() => handle.writeout(Bigfile.WriteoutFlags.DEFAULT)),
        GLib.FileError, GLib.FileError.NOSPC);
    assertEqual(store.commits.length, 0, 'nothing committed');
    assertEqual(handle.get_n_dirty_pages(), 2, 'pages still dirty');
    assertEqual(read(vma, 5 * BLOCK, written.get(5).length), written.get(5), 'page 5 kept');

    handle.writeout(Bigfile.WriteoutFlags.DEFAULT | Bigfile.WriteoutFlags.DURABLE);
    assertEqual(file.log, ['begin', 'refresh', 'commit', 'begin', 'refresh', 'commit durable'],
        'calls');
    assertEqual(store.commits.length, 1, 'one commit');
    assertEqual(store.read(1, 5).subarray(0, written.get(5).length), written.get(5), 'stored');
    assertEqual(handle.get_n_dirty_pages(), 0, 'clean');
});

test('transactions: another client\'s commit arrives as page-invalidated; conflicts', async () => {
    const store = new SharedStore();
    const a = open({file: new TxnFile(store), nPages: 8});
    const b = open({file: new TxnFile(store), nPages: 8});
    assertEqual(read(a.vma, 4 * BLOCK, 1), Uint8Array.of(0), 'page 4 before');
    const invalidated = [];
    a.handle.connect('page-invalidated', (h, page) => invalidated.push(page));

    b.vma.write(4 * BLOCK, bytes(ascii('B')));
    b.handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
    await waitFor(() => invalidated.length > 0, 'page-invalidated');
    assertEqual(invalidated, [4], 'pages invalidated');
    assertEqual(read(a.vma, 4 * BLOCK, 1), ascii('B'), 'page 4 after');

    // Both change page 6: the second writer is told, and nothing is lost.
    a.vma.write(6 * BLOCK, bytes(ascii('A')));
    b.vma.write(6 * BLOCK, bytes(ascii('B')));
    b.handle.writeout(Bigfile.WriteoutFlags.DEFAULT);
    const error = assertThrows(() => a.handle.writeout(Bigfile.WriteoutFlags.DEFAULT));
    assertGError(error, Bigfile.HandleError, Bigfile.HandleError.CONFLICT);
    assert(error.message.includes('page 6'), `the message names the page: ${error.message}`);
    assertEqual(Array.from(a.handle.get_conflicts()), [6], 'conflicts');
    assertEqual(read(a.vma, 6 * BLOCK, 1), ascii('A'), 'our change kept');
    a.handle.writeout(Bigfile.WriteoutFlags.DEFAULT | Bigfile.WriteoutFlags.OVERWRITE);
    assertEqual(store.read(store.commits.length, 6).subarray(0, 1), ascii('A'), 'overwritten');
});

// -- the runner ------------------------------------------------------------------------------

async function runTests(filter) {
    const selected = tests.filter(t => filter === undefined || t.name.includes(filter));
    let failures = 0;
    print(`1..${selected.length}`);
    for (const [i, {name, func}] of selected.entries()) {
        cleanups = [];
        let error = null;
        try {
            await func();
        } catch (e) {
            error = e;
        }
        for (const cleanup of cleanups.reverse()) {
            try {
                cleanup();
            } catch (e) {
                error ??= e;
            }
        }
        if (error === null) {
            print(`ok ${i + 1} - ${name}`);
        } else {
            failures++;
            print(`not ok ${i + 1} - ${name}`);
            printerr(`# ${name}: ${error instanceof GLib.Error ? show(error) : error}`);
            if (error.stack)
                printerr(error.stack.replace(/^/gm, '#   '));
        }
    }
    return failures;
}

const loop = new GLib.MainLoop(null, false);
let exitCode = 1;
GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, tests.length * LOOP_TIMEOUT_S, () => {
    printerr('# the tests did not finish in time');
    loop.quit();
    return GLib.SOURCE_REMOVE;
});
runTests(ARGV[0]).then(failures => {
    if (failures > 0)
        printerr(`# ${failures} of ${tests.length} tests failed`);
    exitCode = failures > 0 ? 1 : 0;
}).catch(e => {
    logError(e, 'the test runner failed');
}).finally(() => loop.quit());
loop.run();
System.exit(exitCode);
