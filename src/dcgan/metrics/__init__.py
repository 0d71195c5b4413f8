"""Image-set statistics and distances. `frechet` holds the shared Fréchet-distance helper."""
