"""Filled by later work."""
