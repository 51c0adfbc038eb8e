"""Built-in plugin: roleplay (being written)."""
