"""The files connector: a folder tree, `.access.json` per folder, `.groups.json` at the root."""
