"""Running agents: the executor, the loop, the ``Run`` handle and the host ports."""
