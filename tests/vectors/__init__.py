"""Wire test vectors of the hotline-node protocol and the script that generates them."""
