"""The likely cause of a preflight failure, from the step it failed in and the error torch or Ray gave.

Pure string logic, called by `cluster.preflight` for every failure it reports. The advice names the
settings that decide it (network interface, firewall, NCCL/gloo environment), because a multi-node job
that cannot connect usually hangs for minutes in a model load without saying why.
"""

from __future__ import annotations

_FIREWALL = ("a firewall between the nodes drops TCP to ephemeral ports (the rendezvous, gloo and NCCL all "
             "listen on random ports: allow all TCP between the cluster's nodes)")
_INTERFACE = ("rank 0's node may have several addresses and the one used is not reachable from this node "
              "(pass --master-addr with its address on the cluster network)")


def likely_cause(phase: str, message: str, backend: str, same_node: bool) -> str:
    """One or two sentences for the report; `same_node` when both ends of the failure are one node."""
    text = message.lower()
    if phase == "placement":
        return ("the cluster has no room for the replica's placement group: fewer free GPUs (or CPUs) on whole "
                "nodes than the plan needs; other replicas still hold them, or nodes have not joined "
                "(`ray status` lists both)")
    if "duplicate gpu" in text:
        return "two ranks share one GPU; NCCL needs a GPU per rank (give each worker bundle its own GPU)"
    if phase.startswith("actor"):
        return ("the preflight process died or never started on that node (NCCL abort, out of memory, a missing "
                "torch, or the node left the cluster): see the worker log on that node under /tmp/ray")
    if phase == "no answer":
        return (f"the rank was still waiting after the time bound; the peers it waited for are on the other node: "
                f"{_FIREWALL}")
    if phase == "rendezvous":
        if "refused" in text:
            return ("the rendezvous address refused the connection (it is not rank 0's node's, or rank 0 is "
                    "gone): " + _INTERFACE)
        if "unreachable" in text or "no route" in text:
            return "no route to the rendezvous address from this node: " + _INTERFACE
        return f"the rendezvous address did not answer in time: {_INTERFACE}, or {_FIREWALL}"
    if phase.startswith("init"):
        if "wait timeout" in text or "keys" in text:
            return ("this rank waited at the rendezvous for ranks that never registered: see their own "
                    "failure (usually the rendezvous address or a firewall)")
        if backend == "nccl":
            return ("NCCL could not build its communicator: set NCCL_SOCKET_IFNAME to the cluster network's "
                    "interface on every node, NCCL_IB_DISABLE=1 where InfiniBand/RoCE is absent or broken; "
                    "NCCL_DEBUG=INFO shows the transport it tried")
        if same_node:
            return ("gloo could not connect ranks on one node: the interface it picked (the hostname's address) "
                    "does not accept local connections; set GLOO_SOCKET_IFNAME (e.g. lo for a one-node test)")
        return ("the ranks met at the rendezvous but gloo could not open its own connections between them: set "
                f"GLOO_SOCKET_IFNAME to the cluster network's interface on every node, or {_FIREWALL}")
    if "corrupted" in text:
        return "an all-reduce returned wrong values: a faulty transport or device; rerun with NCCL_DEBUG=INFO"
    if "timeout" in text or "timed out" in text:
        where = "inside one node" if same_node else "between the nodes"
        tips = ("try NCCL_P2P_DISABLE=1 (inside a node) or NCCL_IB_DISABLE=1 (between nodes) to isolate the "
                "transport" if backend == "nccl" else "check the MTU and that no firewall cuts established flows")
        return f"the link {where} connected but stalled during data transfer: {tips}"
    if backend == "nccl":
        return "NCCL failed during the transfer: NCCL_DEBUG=INFO on the nodes names the transport and the error"
    return "gloo failed during the transfer: check the interface (GLOO_SOCKET_IFNAME) and the firewall"
