"""Test helpers with no I/O."""
