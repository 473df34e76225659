"""The store on disk: an OCI image layout plus ingest, locks, leases, views and records."""
