"""Backups of every table the pipeline owns, verified before any restore: ``task=backup``,
``task=restore``, ``task=backups`` (:mod:`pipeline.backup.task`).

- :mod:`~pipeline.backup.manifest`: what a backup is (folder name, manifest) and the checks a
  restore makes before it writes; no I/O.
- :mod:`~pipeline.backup.folder`: a local folder or ``gs://`` prefix through fsspec.
- :mod:`~pipeline.backup.export`: a warehouse into a new backup folder, manifest last.
- :mod:`~pipeline.backup.restore`: verify a backup whole, then restore it table by table.
- :mod:`~pipeline.backup.retention`: list the backups of a folder; prune the expired ones.
"""
