"""Thin surfaces over the product: cli (now); web, slack, teams (later issues)."""
