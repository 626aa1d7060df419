"""Identity: who is asking, and which principals they hold."""
