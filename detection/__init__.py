"""detection task: see README.md in this folder."""
