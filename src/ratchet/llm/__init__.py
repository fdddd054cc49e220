"""LLM clients, prices and token accounting, for the agent proposers."""
