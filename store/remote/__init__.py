"""Remotes: where blobs come from, behind one small interface (base.Source)."""
