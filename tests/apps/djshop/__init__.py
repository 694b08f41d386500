"""A minimal Django app for the honker Django recipe test (docs/orm.md)."""
