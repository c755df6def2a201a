"""Reading a finished run's return value where its flow persisted it."""
