"""Self-play: the dialogue environment, the rollout runner, RL and interactive evaluation."""
