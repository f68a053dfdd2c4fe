"""What each node is told of the cluster's overlay networks: entries of its assignments.

The leader's dispatcher sends a worker its tasks and, beside them, these entries (each with an
`id`, so the session sends only those that changed, as for tasks); the worker hands them to
its node's networking (orch.net.overlay.compute_view), so workers never read etcd. A node
gets:

- `network`: each overlay network it needs: those of the tasks assigned to it that have not
  ended, and the ingress network on every node once a service publishes a port in ingress
  mode (the routing mesh answers on every node);
- `endpoint`: every task's address on those networks, with the underlay address of its node
  (so the node programs forwarding to it) and whether it serves: running, healthy or without
  a healthcheck, told to run, on a node that is up. Only serving tasks are in a balancer or
  answered by DNS; the others stay reachable (their connections finish);
- `service`: each service on those networks: its name and aliases per network, its VIPs, its
  endpoint mode, and its ports published in ingress mode;
- `node`: the underlay address of every node that is up, where the ingress network is (the
  routing mesh's return paths).

Pure over the records; `NetIndex` is built once per cache revision and serves every node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orch.cluster import records as r


def serving(task: r.Task, node: r.Node | None) -> bool:
    """In the balancer and the DNS: told to run, running, healthy or without a healthcheck."""
    s = task.status
    return (task.desired_state == r.TaskState.RUNNING and s.state == r.TaskState.RUNNING
            and s.health in ("none", "healthy") and node is not None and node.status.state == "ready")


def present(task: r.Task) -> bool:
    """The task's container may exist on its node (placed, not reported ended)."""
    return bool(task.node_id) and task.status.state >= r.TaskState.ASSIGNED and not task.status.state.terminal


def on_overlay(service: r.Service) -> bool:
    """The service has entries to tell of: it is on an overlay network or publishes a port."""
    return bool(service.spec.task_template.networks or service.spec.endpoint_spec.ports or service.endpoint.ports)


def holds_address(task: r.Task) -> bool:
    """The task has overlay addresses and its container may exist: its node needs entries."""
    return bool(task.networks) and present(task)


@dataclass
class NetIndex:
    """Every network's entries, computed once; `entries(node_id)` picks a node's."""

    networks: dict[str, dict] = field(default_factory=dict)  # network id -> its entry
    endpoints: dict[str, list[dict]] = field(default_factory=dict)  # network id -> entries
    services: dict[str, list[dict]] = field(default_factory=dict)  # network id -> service entries
    needs: dict[str, set[str]] = field(default_factory=dict)  # node id -> network ids of its tasks
    nodes: list[dict] = field(default_factory=list)
    ingress: str = ""  # the ingress network's id, when the routing mesh is in use

    @classmethod
    def build(cls, networks: Mapping[str, r.Network], services: Mapping[str, r.Service], tasks: Mapping[str, r.Task],
              nodes: Mapping[str, r.Node]) -> "NetIndex":
        index = cls()
        if not any(on_overlay(s) for s in services.values()) and not any(holds_address(t) for t in tasks.values()):
            # No service on an overlay network, none published, no address in use: every node's
            # entries are empty (the manager relies on it to push nothing then).
            return index
        for net in networks.values():
            if not net.allocated:
                continue
            sub = net.subnets[0]
            index.networks[net.id] = {"id": f"net/{net.id}", "kind": "network", "network_id": net.id, "name": net.spec.name,
                                      "vni": net.vni, "subnet": sub.subnet, "gateway": sub.gateway,
                                      "internal": net.spec.internal, "ingress": net.spec.ingress}
        for task in tasks.values():
            if not holds_address(task):
                continue
            node = nodes.get(task.node_id)
            vtep = node.status.addr if node is not None else ""
            on = serving(task, node)
            for att in task.networks:
                if att.network_id not in index.networks or not att.addresses:
                    continue
                index.endpoints.setdefault(att.network_id, []).append({
                    "id": f"ep/{att.network_id}/{task.id}", "kind": "endpoint", "network_id": att.network_id,
                    "task_id": task.id, "service_id": task.service_id, "address": att.addresses[0].split("/")[0],
                    "vtep": vtep, "serving": on})
                index.needs.setdefault(task.node_id, set()).add(att.network_id)
        for svc in services.values():
            vips = {v.network_id: v.addr.split("/")[0] for v in svc.endpoint.virtual_ips}
            attached = {}
            for att in svc.spec.task_template.networks:
                net = _resolve(networks, att.target)
                if net is not None and net.id in index.networks:
                    attached.setdefault(net.id, list(dict.fromkeys(att.aliases)))
            ports = [{"protocol": p.protocol, "published_port": p.published_port, "target_port": p.target_port}
                     for p in svc.endpoint.ports if p.publish_mode == "ingress" and p.published_port]
            on_ingress = []
            if ports:
                ingress = next((n for n in networks.values() if n.spec.ingress and n.id in index.networks), None)
                if ingress is not None:
                    index.ingress = ingress.id
                    on_ingress = [ingress.id]
            entry = {"id": f"svc/{svc.id}", "kind": "service", "service_id": svc.id, "name": svc.spec.name,
                     "mode": svc.spec.endpoint_spec.mode,
                     "networks": [{"network_id": nid, "vip": vips.get(nid, ""), "names": aliases}
                                  for nid, aliases in sorted(attached.items())] + [{"network_id": nid} for nid in on_ingress],
                     "ports": ports}
            for nid in list(attached) + on_ingress:
                index.services.setdefault(nid, []).append(entry)
        if index.ingress:
            index.nodes = [{"id": f"node/{n.id}", "kind": "node", "vtep": n.status.addr}
                           for n in sorted(nodes.values(), key=lambda n: n.id) if n.status.state == "ready" and n.status.addr]
        return index

    def entries(self, node_id: str) -> list[dict]:
        nets = set(self.needs.get(node_id, ()))
        if self.ingress:
            nets.add(self.ingress)
        out: list[dict] = []
        seen: set[str] = set()
        for nid in sorted(nets):
            if nid not in self.networks:
                continue
            out.append(self.networks[nid])
            out += self.endpoints.get(nid, ())
            for svc in self.services.get(nid, ()):
                if svc["id"] not in seen:
                    seen.add(svc["id"])
                    out.append(svc)
        if self.ingress:
            out += self.nodes
        return out


def _resolve(networks: Mapping[str, r.Network], target: str) -> r.Network | None:
    if target in networks:
        return networks[target]
    return next((n for n in networks.values() if n.spec.name == target), None)
