"""Training runner, run records and sweep bookkeeping."""
