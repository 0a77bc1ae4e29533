"""Checks and tooling: the suite of checks `verify` and the tests share, the benchmark, the throwaway PostgreSQL."""
