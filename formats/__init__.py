"""Pure wire-format conversions (no I/O): tagtog ann.json and plain.html, corpus rows."""
