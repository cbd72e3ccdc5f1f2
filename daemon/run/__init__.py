"""Running jobs: the worker thread, the runner that walks a job through its stages, the supervisor of
each stage's child process, the lease that says which daemon holds a job, and the disk-space guard."""
