"""Tables and exports derived from the run store (no torch)."""
