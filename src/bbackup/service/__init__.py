"""Job configuration, scheduler and reports (see DESIGN §8)."""
