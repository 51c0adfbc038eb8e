"""Small cases we wrote ourselves for each domain, so the embedded default runs without downloads."""
