"""Sources: where socket tables and kernel figures come from (netlink, procfs, files)."""
