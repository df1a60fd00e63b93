"""Running one arm: the lifecycle, its eval, and its record."""
