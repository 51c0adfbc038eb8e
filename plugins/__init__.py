"""Built-in plugins: the four domains and the LLM backends, registered through entry points like any third-party plugin."""
