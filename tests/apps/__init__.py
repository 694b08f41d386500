"""Small applications used by process tests (imported by `python -m honker worker`)."""
