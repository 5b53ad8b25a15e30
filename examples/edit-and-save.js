// edit-and-save: edit a file bigger than the memory allowed for it, from gjs
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
//   gjs -m edit-and-save.js [FILE]
//
// An event-loop program, as a GNOME application would be. It
//
//   1. makes a 64 MiB temporary file with a pattern, unless FILE is given
//      (FILE is then edited in place: use a copy);
//   2. reads the file once with plain I/O to compute what its SHA-256 must
//      be after the edits;
//   3. opens it as a BigfileLocalFile of 2 MiB blocks, in a BigfileRam of
//      16 MiB (a quarter of the file), and maps it whole;
//   4. edits it: one 4 KiB record in each 2 MiB page, written with
//      vma.write() from idle callbacks, one edit per turn of the main loop.
//      Dirty pages cannot be dropped to make room, so whenever they fill
//      half of the budget it saves them with writeout_async(), awaited, and
//      prints the progress ("saved 12/64 MiB"); the main loop keeps running
//      during the save (the stores of a BigfileLocalFile run in a worker
//      thread);
//   5. saves what is left, closes, and checks the SHA-256 of the file.
//
// Exit status: 0 when the file is as expected, 1 otherwise.
// Against a build tree: meson devenv -C BUILD gjs -m examples/edit-and-save.js

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Bigfile from 'gi://Bigfile';
import System from 'system';

Gio._promisify(Bigfile.Handle.prototype, 'writeout_async', 'writeout_finish');

const MiB = 1024 * 1024;
const BLOCK_SIZE = 2 * MiB;
const BUDGET = 16 * MiB;
const DEFAULT_SIZE = 64 * MiB;
const RECORD_SIZE = 4096;
const RECORD_OFFSET = 1 * MiB + 123; // where in its page a record goes
const IO_CHUNK = BLOCK_SIZE;

const mib = bytes => (bytes / MiB).toFixed(bytes % MiB === 0 ? 0 : 1);

// The record written into page @page: its text, repeated.
function record(page) {
    const text = new TextEncoder().encode(`[edited page ${page}] `);
    const data = new Uint8Array(RECORD_SIZE);
    for (let i = 0; i < RECORD_SIZE; i++)
        data[i] = text[i % text.length];
    return data;
}

// Resolves on a later turn of the main loop, after pending events.
//
// It first finishes any garbage collection in progress, for gjs 1.74 (the one
// in Debian 12): from the start of a collection's sweeping to its end, gjs
// refuses to run any JS callback ("Attempting to run a JS callback during
// garbage collection"), also between two slices of an incremental
// collection, while the main loop runs.  Nothing resumes such a collection
// while the main loop only waits, so a program that allocated a lot (reading
// the file above makes 64 MiB of arrays) and then waits for a GLib callback
// may wait forever: the callback is dropped.  System.gc() is a full
// collection, a millisecond or two here, and between two waits this program
// allocates too little to start another one.  (Current gjs sources no longer
// have that flag.)
function idle() {
    System.gc();
    return new Promise(resolve => {
        GLib.idle_add(GLib.PRIORITY_DEFAULT_IDLE, () => {
            resolve();
            return GLib.SOURCE_REMOVE;
        });
    });
}

// Step 1: a temporary file of @size bytes with a pattern in which every
// 2 MiB differs from the others.
function makeTempFile(size) {
    const [file, iostream] = Gio.File.new_tmp('bigfile-edit-XXXXXX.data');
    const out = iostream.get_output_stream();
    const chunk = new Uint8Array(IO_CHUNK);
    for (let i = 0; i < chunk.length; i++)
        chunk[i] = (i * 7 + (i >> 12)) & 0xff;
    for (let offset = 0; offset < size; offset += IO_CHUNK) {
        const label = new TextEncoder().encode(`chunk at ${offset}`);
        chunk.set(label);
        out.write_all(chunk.subarray(0, Math.min(IO_CHUNK, size - offset)), null);
    }
    iostream.close(null);
    return file;
}

// Reads @file with plain I/O in pieces of IO_CHUNK bytes (the last may be
// shorter), calling @func (piece, offset) for each.
function readChunks(file, func) {
    const stream = file.read(null);
    try {
        for (let offset = 0; ; ) {
            const chunk = new Uint8Array(IO_CHUNK);
            let filled = 0;
            while (filled < IO_CHUNK) {
                const piece = stream.read_bytes(IO_CHUNK - filled, null).toArray();
                if (piece.length === 0)
                    break;
                chunk.set(piece, filled);
                filled += piece.length;
            }
            if (filled > 0)
                func(chunk.subarray(0, filled), offset);
            if (filled < IO_CHUNK)
                break;
            offset += filled;
        }
    } finally {
        stream.close(null);
    }
}

// The SHA-256 of @file, with the records of @edits (page -> record) in
// place when @patch is true.
function sha256(file, edits, patch) {
    const checksum = new GLib.Checksum(GLib.ChecksumType.SHA256);
    readChunks(file, (chunk, offset) => {
        const page = offset / BLOCK_SIZE; // chunks are pages
        if (patch && edits.has(page))
            chunk.set(edits.get(page), RECORD_OFFSET); // our own copy
        checksum.update(chunk);
    });
    return checksum.get_string();
}

async function main(argv) {
    let gfile, temporary = false;
    if (argv.length > 0) {
        gfile = Gio.File.new_for_commandline_arg(argv[0]);
    } else {
        gfile = makeTempFile(DEFAULT_SIZE);
        temporary = true;
    }
    const path = gfile.get_path();

    try {
        const size = gfile.query_info('standard::size', Gio.FileQueryInfoFlags.NONE, null)
            .get_size();
        // Only pages that lie wholly inside the file are edited: a store
        // writes a whole block, and would make the file longer.
        const nEdits = Math.floor(size / BLOCK_SIZE);
        const nPages = Math.ceil(size / BLOCK_SIZE);
        if (nEdits === 0) {
            printerr(`${path}: too small, needs at least ${mib(BLOCK_SIZE)} MiB`);
            return 1;
        }
        print(`file: ${path}, ${mib(size)} MiB${temporary ? ' (temporary)' : ''}`);

        const edits = new Map();
        for (let page = 0; page < nEdits; page++)
            edits.set(page, record(page));
        const expected = sha256(gfile, edits, true);
        print(`expected SHA-256 after the edits: ${expected}`);

        const file = Bigfile.LocalFile.new(path, BLOCK_SIZE, Bigfile.LocalFileFlags.NONE);
        const ram = Bigfile.Ram.new(BUDGET);
        const handle = Bigfile.Handle.new(file, ram);
        const vma = handle.map(0, nPages);
        print(`mapped ${nPages} pages of ${mib(BLOCK_SIZE)} MiB with a budget of ` +
              `${mib(BUDGET)} MiB`);

        const maxDirty = BUDGET / BLOCK_SIZE / 2;
        const totalBytes = nEdits * BLOCK_SIZE;
        let savedBytes = 0, saves = 0, maxUsed = 0;

        const save = async () => {
            let turns = 0;
            const ticker = GLib.timeout_add(GLib.PRIORITY_DEFAULT, 1, () => {
                turns++;
                return GLib.SOURCE_CONTINUE;
            });
            let thisSave = 0;
            try {
                await handle.writeout_async(Bigfile.WriteoutFlags.DEFAULT,
                    GLib.PRIORITY_DEFAULT, null, (done, total) => {
                        thisSave = total;
                        print(`saved ${mib(savedBytes + done)}/${mib(totalBytes)} MiB`);
                    });
            } finally {
                GLib.source_remove(ticker);
            }
            savedBytes += thisSave;
            saves++;
            print(`  (save ${saves} done; meanwhile a 1 ms timer ran ${turns} times)`);
        };

        for (const [page, data] of edits) {
            await idle(); // one edit per turn of the main loop
            vma.write(page * BLOCK_SIZE + RECORD_OFFSET, new GLib.Bytes(data));
            maxUsed = Math.max(maxUsed, ram.get_used_bytes());
            if (handle.get_n_dirty_pages() >= maxDirty)
                await save();
        }
        if (handle.get_n_dirty_pages() > 0)
            await save();

        print(`${nEdits} pages edited, ${saves} saves; at most ${mib(maxUsed)} MiB of pages ` +
              `in memory (budget ${mib(BUDGET)} MiB)`);
        vma.unmap();
        handle.close();

        const actual = sha256(gfile, edits, false);
        print(`SHA-256 of the file now:          ${actual}`);
        if (savedBytes !== totalBytes || actual !== expected || maxUsed > BUDGET) {
            printerr(`MISMATCH: saved ${savedBytes} of ${totalBytes} bytes`);
            return 1;
        }
        print('ok: every edit is in the file, and nothing else changed');
        return 0;
    } finally {
        if (temporary)
            gfile.delete(null);
    }
}

const loop = new GLib.MainLoop(null, false);
let status = 1;
main(ARGV).then(result => {
    status = result;
}).catch(error => {
    logError(error, 'edit-and-save failed');
}).finally(() => loop.quit());
loop.run();
System.exit(status);
