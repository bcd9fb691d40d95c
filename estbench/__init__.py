"""estbench: the command line that ties the layers together (see estbench.cli)."""
