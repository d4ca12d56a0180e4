"""What changes the host or the disk: atomic file writes, sysctl apply/rollback, malloc
settings of the long-running commands."""
