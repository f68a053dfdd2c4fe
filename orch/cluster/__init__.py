"""The cluster: records kept in etcd, the stack translation, and (later) the control plane.

Importing the package imports nothing: `orch.cluster.records` (pydantic and the standard
library only) is what the pure deciders of orch.scheduler may use.
"""
