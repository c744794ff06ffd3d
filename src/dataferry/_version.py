"""The version of dataferry, in a module of its own that imports nothing (the manifest and the CLI
read it without loading the public API)."""

__version__ = "0.1.0"
