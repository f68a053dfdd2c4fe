"""Labels the agent acts on, which clients set: part of the API, spelled once."""

# A container created with this label is unnamed in DNS from its first network setup on, until
# POST /containers/{id}/drain?undo=1: a new replica that joins serving ones (a rolling update)
# must not answer before it is healthy, and a drain requested after the create would leave a
# moment when its names answer while nothing listens yet.
START_DRAINED = "orch.start-drained"
