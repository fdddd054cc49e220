"""Knobs: module-level constants found and rewritten in source, the classical scope of a
change, and the ratchet.toml that `ratchet init` writes."""
