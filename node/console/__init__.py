"""The web console for analysts and operators, served by the node under /console/."""
