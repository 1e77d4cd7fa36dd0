"""Known content: hash values, the matching index, hash lists and what they match."""
