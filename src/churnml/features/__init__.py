"""Point-in-time features, the observation grid and labels."""
