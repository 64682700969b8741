"""Background roles of a serving process (catch-up with other processes' changes)."""
