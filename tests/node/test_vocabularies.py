"""Each vocabulary is defined once, and every place that takes one of its words agrees."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from keys.document import NodeId, node_id_problem
from node.errors import InvalidInput
from node.federation.registry import check_node_id

NODE_IDS = [
    ("fr-pointdecontact", True),
    ("de.eco", True),
    ("9node", True),
    ("a" * 63, True),
    ("-x.", False),  # the registry took it and the wire refused it
    (".fr", False),
    ("a" * 64, False),
    ("FR-pdc", False),
    ("", False),
    ("fr pdc", False),
]


@pytest.mark.parametrize(("node_id", "valid"), NODE_IDS)
def test_every_place_agrees_on_what_a_node_id_is(node_id: str, valid: bool) -> None:
    assert (node_id_problem(node_id) is None) is valid
    try:
        TypeAdapter(NodeId).validate_python(node_id)
        wire = True
    except ValidationError:
        wire = False
    assert wire is valid
    if valid:
        assert check_node_id(node_id) == node_id
    else:
        with pytest.raises(InvalidInput, match="node id must be 1-63"):
            check_node_id(node_id)
