"""A job's own data, apart from running it: its options (job.toml), the stages it runs, its folders,
its records, its log, and how long its work folder is kept."""
