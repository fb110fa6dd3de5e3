"""One file per hosted provider; each registers itself with ``register_provider``."""
