"""The feed archive's file format, shared by the archiver agent (writes) and clients (read).

Sans-IO apart from ``sqlite3``: the SQLite schema and its reader, per-field series, and the
downsampling arithmetic. No Twisted.
"""
