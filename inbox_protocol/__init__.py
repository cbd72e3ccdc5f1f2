"""The inbox protocol: what a set is (a folder or a .zip at the top of the inbox), its marker files
(READY, CANCEL, RETRY), job.toml, the names that are litter or still being written, the limits a set
must keep, and how a .zip set is read.

Both the daemon (deciding whether a set is complete and allowed) and the ingest stage (taking its
photos) read sets through this package, so it imports nothing else of the project. A set that
breaks the protocol raises ``SetRefused``; each caller says so in its own way.
"""
