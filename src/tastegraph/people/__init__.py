"""What belongs to a person: their data exported whole, or erased everywhere it lives."""
