"""OCI formats: bytes in, typed values out. No filesystem, no network."""
