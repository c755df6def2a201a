"""Parent runs: the thread-local stack and the pure bodies of placeholder task runs."""
