"""The data tier: users' own data read, imported once into checksummed shards, and streamed.

- ``dataset``: the Dataset type and ``load`` (by name or by path and format, split reproducibly
  by ``splits``); ``xsharp.algos.datasets`` is its long-standing import path;
- ``arrays``: what every reader returns; ``source_files``: a file opened through the guard,
  decompressed within its cap, text a bounded line at a time;
- ``formats``: the formats a path is read in, each a reader: ``npz``, ``idx``, ``wav``,
  ``csv_text``, ``images``, ``audio_folder`` (class folders: ``folders``), ``tables``, ``text``;
  ``named``: the bundled datasets;
- ``manifest``: what an imported dataset holds (classes, counts, shapes, shards and their hashes);
- ``shards``: one shard file, written and read back with its checksum checked;
- ``catalog``: where datasets live (``<root>/<owner>/<name>/v<N>``) and how a spec names one;
- ``importer``: a source converted into shards (``import_plan``: options, splits, hashes): folders
  in parallel on Ray tasks (``folder_shard``), tables and text in one pass (``row_import``),
  anything else loaded whole (``array_import``);
- ``stream``: the rows of each training step read from shards, in a seeded order that resumes
  exactly mid-epoch, within a bounded memory; ``imported``: a job's data from an imported dataset;
- ``rows``: raw rows to predict on or to check an export with.
"""
