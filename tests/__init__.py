"""The test suite. A package (as are its folders) so that test files in different
folders may share a base name; shared helpers import as ``tests.support.<module>``."""
