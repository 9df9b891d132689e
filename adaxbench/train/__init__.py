"""Training runner, config validation and sweep bookkeeping (the run-file contract: adaxbench.rundir)."""
