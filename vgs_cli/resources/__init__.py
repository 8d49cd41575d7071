"""Package resources: vendored split lists and official file lists."""
