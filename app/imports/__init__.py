"""Imports of existing preference data (TRL pairs, Anthropic HH-RLHF, rankings) as labeled rankings."""
