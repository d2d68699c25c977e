"""Durable stores: the metrics append log and the SQLite agent memory."""
