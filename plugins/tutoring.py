"""Built-in plugin: tutoring (being written)."""
