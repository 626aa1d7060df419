"""The `clearance` command line."""
