"""Labelling chart windows: the annotation log, stores and blacklist, extraction, commit,
review, stats, and the local web app (FastAPI)."""
