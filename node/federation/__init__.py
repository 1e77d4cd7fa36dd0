"""Federation inside the node: the peer registry, the inbox, delivery, pull, and key refresh."""
