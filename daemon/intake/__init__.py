"""Intake: the inbox watched (events and rescans), each set's settle clock, and the decision that
turns a complete set into a queued job, a cancel, a retry or a refusal."""
