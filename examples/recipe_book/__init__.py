"""The recipe book: the example cloud. Each service is a settings module in its own package."""
