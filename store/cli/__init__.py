"""The odai-store command line (spec/cli.md)."""
