"""Transfer: turns a descriptor into verified bytes in ingest; knows nothing of names or views."""
