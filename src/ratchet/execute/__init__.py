"""Running evaluations: executors (local slots, a Ray cluster), sandboxed processes, the
phases of one evaluation, and code states as git commits."""
