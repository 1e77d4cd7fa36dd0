"""Cases: intake, the lifecycle table, routing, the action log, views and the wire form."""

from node.cases.intake import IMPORT_FIELDS, ImportItem, Submitted
from node.cases.lifecycle import CaseStatus
from node.cases.service import CaseService

__all__ = ["IMPORT_FIELDS", "CaseService", "CaseStatus", "ImportItem", "Submitted"]
