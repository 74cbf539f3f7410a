"""The benchmark's plumbing: services, workload, observation of a run, the report."""
