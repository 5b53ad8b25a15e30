/* checksum: read a file through a bigfile-glib mapping, as plain memory, from Vala
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   checksum [FILE]
 *
 * Maps FILE (or, without an argument, a temporary file of a few MiB with a
 * pattern) through a Bigfile.LocalFile, a Bigfile.Ram with a budget of
 * 1 MiB and a Bigfile.Handle, and computes the FNV-1a 64-bit hash of its
 * bytes by reading the memory at Bigfile.Vma.get_data () like an array:
 * each first touch of a page faults, and the library loads the block,
 * dropping clean pages to stay within the budget. Then it computes the same
 * hash by reading the file with plain I/O, prints both, and exits 1 if they
 * differ (0 if they are the same, 2 on an error).
 */

const size_t BLOCK_SIZE = 64 * 1024;
const uint64 BUDGET = 1024 * 1024;
/* Not a whole number of blocks: the last page is partly past the end. */
const size_t DEFAULT_SIZE = 6 * 1024 * 1024 + 12345;
const size_t IO_CHUNK = 1024 * 1024;

const uint64 FNV_OFFSET_BASIS = 0xcbf29ce484222325;
const uint64 FNV_PRIME = 0x100000001b3;

/* FNV-1a over @length bytes at @data, going on from @hash. */
uint64 fnv1a (uint64 hash, uint8* data, size_t length) {
    for (size_t i = 0; i < length; i++) {
        hash ^= data[i];
        hash *= FNV_PRIME;
    }
    return hash;
}

/* A temporary file of @size bytes of a pseudo-random pattern (xorshift32),
 * so that a page loaded from the wrong place changes the hash. */
string make_temp_file (size_t size) throws Error {
    string path;
    int fd = FileUtils.open_tmp ("bigfile-checksum-XXXXXX.data", out path);
    var stream = FileStream.fdopen (fd, "wb");
    if (stream == null) {
        throw new FileError.FAILED ("Could not open %s: %s", path, strerror (errno));
    }

    var chunk = new uint8[IO_CHUNK];
    uint32 state = 0x9e3779b9U;
    for (size_t done = 0; done < size; done += chunk.length) {
        for (int i = 0; i < chunk.length; i++) {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            chunk[i] = (uint8) (state >> 24);
        }
        size_t n = size_t.min (chunk.length, size - done);
        if (stream.write (chunk[0:n]) != n) {
            throw new FileError.FAILED ("Could not write %s: %s", path, strerror (errno));
        }
    }
    stream.flush ();
    return path;
}

/* The hash of the file at @path, read with plain fread(); its size in @size. */
uint64 hash_by_reading (string path, out uint64 size) throws Error {
    var stream = FileStream.open (path, "rb");
    if (stream == null) {
        throw new FileError.FAILED ("Could not open %s: %s", path, strerror (errno));
    }

    var chunk = new uint8[IO_CHUNK];
    uint64 hash = FNV_OFFSET_BASIS;
    size = 0;
    size_t n;
    while ((n = stream.read (chunk)) > 0) {
        hash = fnv1a (hash, chunk, n);
        size += n;
    }
    if (stream.error () != 0) {
        throw new FileError.FAILED ("Could not read %s", path);
    }
    return hash;
}

/* The hash of the first @size bytes of the file at @path, read as memory
 * through a mapping. */
uint64 hash_through_mapping (string path, uint64 size) throws Error {
    var file = new Bigfile.LocalFile (path, BLOCK_SIZE, Bigfile.LocalFileFlags.READ_ONLY);
    var ram = new Bigfile.Ram (BUDGET);
    var handle = new Bigfile.Handle (file, ram);
    uint64 n_pages = (size + BLOCK_SIZE - 1) / BLOCK_SIZE;
    var vma = handle.map (0, n_pages);

    /* Plain memory from here on: no call per byte, no copy. A page that
     * could not be loaded would raise SIGBUS (see
     * Bigfile.Vma.take_fault_error); vma.read () reports it as an error. */
    uint8* data = vma.get_data ();
    uint64 hash = fnv1a (FNV_OFFSET_BASIS, data, (size_t) size);

    print ("mapping: %" + uint64.FORMAT + " pages of %" + size_t.FORMAT + " KiB, "
           + "%" + uint64.FORMAT + " of them in memory at the end (budget %"
           + uint64.FORMAT + " KiB, %" + uint64.FORMAT + " KiB used)\n",
           n_pages, BLOCK_SIZE / 1024, ram.get_n_pages (), ram.get_budget () / 1024,
           ram.get_used_bytes () / 1024);
    if (ram.get_used_bytes () > BUDGET) {
        throw new FileError.FAILED ("The mapping used more memory than its budget");
    }

    vma.unmap ();
    handle.close ();
    return hash;
}

int main (string[] args) {
    string path;
    bool temporary = args.length < 2;

    try {
        path = temporary ? make_temp_file (DEFAULT_SIZE) : args[1];
    } catch (Error e) {
        printerr ("checksum: %s\n", e.message);
        return 2;
    }

    int status;
    try {
        uint64 size;
        uint64 by_reading = hash_by_reading (path, out size);
        print ("file: %s, %" + uint64.FORMAT + " bytes%s\n",
               path, size, temporary ? " (temporary)" : "");
        if (size == 0) {
            /* Nothing to map: a mapping has at least one page. */
            print ("empty file: nothing to compare\n");
            status = 0;
        } else {
            uint64 by_mapping = hash_through_mapping (path, size);
            print ("FNV-1a 64 by plain read:       %016" + uint64.FORMAT_MODIFIER + "x\n",
                   by_reading);
            print ("FNV-1a 64 through the mapping: %016" + uint64.FORMAT_MODIFIER + "x\n",
                   by_mapping);
            status = by_mapping == by_reading ? 0 : 1;
            print (status == 0 ? "same\n" : "MISMATCH\n");
        }
    } catch (Error e) {
        printerr ("checksum: %s\n", e.message);
        status = 2;
    }

    if (temporary) {
        FileUtils.unlink (path);
    }
    return status;
}
