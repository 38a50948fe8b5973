"""Every state change lives in a service function that commits once."""
