"""Data files govctl ships with (see this folder's README); a package only so they install with it."""
