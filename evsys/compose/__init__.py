"""Hydra composition for evsys: registry-fed config groups, lenient composition with sources."""
