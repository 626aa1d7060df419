"""The files connector: a folder tree with `.access.json` per folder and `.groups.json` at the root."""
