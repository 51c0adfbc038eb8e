"""Built-in plugin: negotiation (being written)."""
