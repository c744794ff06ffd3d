"""Unit tests of the core: config, artifacts, streams, stores, progress (no servers)."""
