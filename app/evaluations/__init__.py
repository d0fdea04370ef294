"""Blind side-by-side evaluation rounds: a candidate policy against a baseline, ranked by labelers."""
