"""Other nodes: the peer model and policy, backoff, and the client that talks to a peer."""
