"""Model access through litellm: model specs, the offline ``sim/`` provider, calls and cost."""
