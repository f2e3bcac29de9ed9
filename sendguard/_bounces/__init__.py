"""Bounce intelligence: classifying replies, reading DSNs and provider events, one verdict."""
