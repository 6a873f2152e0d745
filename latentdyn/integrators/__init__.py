"""Placeholder; the public API is curated in latentdyn/__init__.py."""
