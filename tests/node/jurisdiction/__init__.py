"""Tests of node.jurisdiction: DNS, geo chain, CDN detection, RDAP and the Tracer."""
