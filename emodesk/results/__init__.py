"""What users take away from records and sessions: emotion summaries (tables and reports next)."""
