"""Built-in plugin: emotional_support (being written)."""
