"""Studies: an experiment grid from one TOML file, expanded into runs of the run store."""
