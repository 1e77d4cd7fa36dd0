"""National channels: police webhook, host notices by e-mail, the fallback, and their outbox."""
