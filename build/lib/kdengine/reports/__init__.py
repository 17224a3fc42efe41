"""Tables and exports derived from the run store (pandas; no torch)."""
