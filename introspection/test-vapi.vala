/* bigfile-glib - the Vala binding, compiled and run against this build
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Checks what Bigfile-1.0.metadata adds to the generated bigfile-glib-1.0.vapi
 * (Vma.get_data () as a raw uint8* that can be indexed, although the GIR
 * skips it), and that the rest of the binding (constructors that throw,
 * GBytes I/O, flags, the async writeout) compiles to working C.
 */

/* A fresh file under a temporary directory, removed by the caller. */
static string make_temp_path (out string dir)
{
  try {
    dir = GLib.DirUtils.make_tmp ("bigfile-vala-XXXXXX");
  } catch (GLib.FileError e) {
    GLib.error ("could not make a temporary directory: %s", e.message);
  }
  return GLib.Path.build_filename (dir, "data.bin");
}

static void remove_temp (string path, string dir)
{
  GLib.FileUtils.remove (path);
  GLib.DirUtils.remove (dir);
}

/* Raw memory through the pointer of Vma.get_data (): a write faults the
 * page in and makes it dirty; writeout stores it to the file. */
static void test_get_data ()
{
  string dir;
  var path = make_temp_path (out dir);

  try {
    var file = new Bigfile.LocalFile (path, 4096, Bigfile.LocalFileFlags.CREATE);
    var ram = new Bigfile.Ram (1024 * 1024);
    var handle = new Bigfile.Handle (file, ram);
    var vma = handle.map (0, 4);

    uint8* data = vma.get_data ();
    assert (data != null);
    assert ((uintptr) data == vma.get_address ());
    assert (vma.get_length () == 4 * 4096);

    /* Page 1: a read loads it clean, a write makes it dirty. */
    assert (data[5000] == 0);
    assert (handle.get_page_state (1) == Bigfile.PageState.LOADED);
    data[5000] = 42;
    data[5001] = data[5000] + 1;
    assert (handle.get_page_state (1) == Bigfile.PageState.DIRTY);
    assert (handle.get_page_state (0) == Bigfile.PageState.EMPTY);
    assert (handle.get_n_dirty_pages () == 1);

    /* The same bytes through the checked GBytes API. */
    var bytes = vma.read (5000, 2);
    assert (bytes.get_size () == 2);
    assert (bytes.get (0) == 42 && bytes.get (1) == 43);

    assert (handle.writeout (Bigfile.WriteoutFlags.DEFAULT));
    assert (handle.get_page_state (1) == Bigfile.PageState.LOADED);

    uint8[] contents;
    GLib.FileUtils.get_data (path, out contents);
    assert (contents.length == 5002); /* the file grew to what was written */
    assert (contents[5000] == 42 && contents[5001] == 43);

    vma.unmap ();
    assert (vma.get_data () == null);
    assert (handle.close ());
  } catch (GLib.Error e) {
    GLib.error ("%s", e.message);
  }

  remove_temp (path, dir);
}

/* The async writeout, driven by a main loop, with its progress callback. */
static void test_writeout_async ()
{
  string dir;
  var path = make_temp_path (out dir);

  try {
    var file = new Bigfile.LocalFile (path, 4096, Bigfile.LocalFileFlags.CREATE);
    var ram = new Bigfile.Ram (1024 * 1024);
    var handle = new Bigfile.Handle (file, ram);
    var vma = handle.map (0, 8);
    uint8* data = vma.get_data ();

    for (var i = 0; i < 8; i++)
      data[i * 4096 + 7] = (uint8) (i + 1);
    assert (handle.get_n_dirty_pages () == 8);

    var loop = new GLib.MainLoop ();
    uint64 last_done = 0, last_total = 0;
    bool ok = false;
    GLib.Error? error = null;

    handle.writeout_async.begin (Bigfile.WriteoutFlags.DEFAULT, GLib.Priority.DEFAULT, null,
                                 (done, total) => {
                                   assert (done >= last_done);
                                   last_done = done;
                                   last_total = total;
                                 },
                                 (obj, res) => {
                                   try {
                                     ok = handle.writeout_async.end (res);
                                   } catch (GLib.Error e) {
                                     error = e;
                                   }
                                   loop.quit ();
                                 });
    loop.run ();

    assert (error == null);
    assert (ok);
    assert (handle.get_n_dirty_pages () == 0);
    assert (last_total == 8 * 4096);
    assert (last_done == last_total);

    uint8[] contents;
    GLib.FileUtils.get_data (path, out contents);
    for (var i = 0; i < 8; i++)
      assert (contents[i * 4096 + 7] == i + 1);

    vma.unmap ();
  } catch (GLib.Error e) {
    GLib.error ("%s", e.message);
  }

  remove_temp (path, dir);
}

int main (string[] args)
{
  GLib.Test.init (ref args);
  GLib.Test.add_func ("/vala/vma/get-data", test_get_data);
  GLib.Test.add_func ("/vala/handle/writeout-async", test_writeout_async);
  return GLib.Test.run ();
}
