"""Reporting: tables and figures built from result files (never from training code)."""
