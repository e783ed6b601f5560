"""Running a host's agents: the per-child supervision state machine, the launcher, process groups."""
