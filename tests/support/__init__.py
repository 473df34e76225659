"""Helpers shared by the tests: the CLI runner, model trees, hypothesis strategies."""
