"""A connection between a service and itself: who follows whom among ``user`` rows."""
