"""Feature networks of the metrics, written to load the released weight files key for key."""
