"""The data tier: users' own data read, imported once into checksummed shards, and streamed.

- readers (``images``, ``audio_folder``, ``tables``, ``text``): folders and files as arrays;
- ``manifest``: what an imported dataset holds (classes, counts, shapes, shards and their hashes);
- ``shards``: one shard file, written and read back with its checksum checked;
- ``catalog``: where datasets live (``<root>/<owner>/<name>/v<N>``) and how a spec names one;
- ``importer``: a source converted into shards, in parallel on Ray tasks;
- ``stream``: the rows of each training step read from shards, in a seeded order that resumes
  exactly mid-epoch, within a bounded memory.
"""
