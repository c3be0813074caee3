"""The daemon's OS processes: one module each, one shape (child.py), started by the supervisor."""
