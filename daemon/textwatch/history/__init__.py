"""The history of every text read: the SQLite store (written by processes/history.py) and its queries."""
