"""The raw input: a folder of box-score files, a folder of slates (tonight's listed players) and a
folder of prop lines, read as the ``source.*`` inputs of Phase 2. A folder is local or in Cloud
Storage (``gs://``, where the scrapers put the files): both are read the same way
(:mod:`pipeline.warehouse.storage`), by the driver when it checks them and by a Ray worker on any
machine when it reads a shard.

Every row keeps the file it came from and its 1-based row number, so a bad row can be named.
A file missing a column fails every shard that needs its dates (naming the file and the
column), and leaves the other files' dates to load.

Every file is checked once, when a run starts (:class:`RawSource`); after that a shard reads
only its own dates from the files (:class:`RawFiles`, small enough to send to a Ray worker that
reads them itself), so no process holds the whole input.

Where to look: :mod:`.specs` declares each input (its files, columns and types), :mod:`.raw`
checks the files and reads a shard's dates, :mod:`.files` finds and opens them (local or
``gs://``), :mod:`.columns` reads a file's values as their declared types.
"""

from pipeline.warehouse.source.columns import first_uncastable, read_as
from pipeline.warehouse.source.files import list_files, scan_file, scan_source_file
from pipeline.warehouse.source.raw import BrokenFile, GoodFile, RawFiles, RawSource
from pipeline.warehouse.source.specs import PLAYER_BOXSCORES, PROP_LINES, SLATES, SOURCES, TEAM_GAME_LOGS, SourceSpec

__all__ = [
    "BrokenFile", "GoodFile", "PLAYER_BOXSCORES", "PROP_LINES", "RawFiles", "RawSource", "SLATES", "SOURCES",
    "SourceSpec", "TEAM_GAME_LOGS", "first_uncastable", "list_files", "read_as", "scan_file", "scan_source_file",
]  # fmt: skip
