"""Bridge networks for containers: IPAM, veths, embedded DNS, published ports (see README.md).

Entry point: `orch.net.manager.Networks`. Pure deciders: ipam, ports, names, files, model.
"""
