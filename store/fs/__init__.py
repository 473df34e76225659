"""Files that others may read or replace: crash-safe writes (atomic.py), bounded reads of untrusted files (bounded.py), and
the locks of files that several processes change (locks.py).

Below both the local store and the remotes, since a file remote written to
(a Sink) follows the same rules as the store: a private temporary, fsync,
rename, fsync of the directory; and a file someone else may have put there
is read only if it is small and regular.
"""
