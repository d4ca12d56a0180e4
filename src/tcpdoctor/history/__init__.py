"""Sockets over time: sampling for `watch` and `record`, the SQLite history, its reports."""
