"""The built-in research agent: its tools, its program, its lab notebook, one episode."""
