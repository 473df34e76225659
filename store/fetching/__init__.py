"""Fetching: what every verb that brings models into the store shares (fetch, sync, and lock's resolving).

session.py holds one command's context, remotes and deadline; plan.py
resolves what is wanted and lists what the store lacks, before the first
byte; execute.py downloads it and publishes each model (spec/fetching.md).
"""
