"""Node state behind one interface: memory and SQLite implementations."""
