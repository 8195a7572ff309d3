"""p2pdoc-node: the daemon agencies run beside their document-management software."""
