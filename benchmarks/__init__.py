"""Side-by-side benchmarks of the course's preprocessing recipe and ours (issue 6); see ``benchmarks.run``."""
