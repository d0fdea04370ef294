"""Agreement between labelers, the consensus ranking of each prompt, and labeler quality."""
