"""A character radix tree shared by several tenants (replicas): the approximate prefix tree that text
routers (Ray Serve's PrefixCacheAffinityRouter, SGLang's cache-aware router) keep of what they sent where.

It records routing history only: it never learns of an engine's evictions.
"""

from __future__ import annotations


class _Node:
    __slots__ = ("children", "text", "tenants")

    def __init__(self, text: str, tenants: dict[int, float]) -> None:
        self.children: dict[str, _Node] = {}
        self.text = text  # the edge label from the parent
        self.tenants = tenants  # tenant -> last time it was routed text through this node


def _common_length(text: str, pos: int, edge: str) -> int:
    """Length of the common prefix of text[pos:] and edge, with C-speed comparisons (binary search)."""
    if text.startswith(edge, pos):
        return len(edge)
    low, high = 0, min(len(edge), len(text) - pos)  # text[pos:pos+low] == edge[:low] holds
    while low < high:
        mid = (low + high + 1) // 2
        if text.startswith(edge[:mid], pos):
            low = mid
        else:
            high = mid - 1
    return low


class TextPrefixTree:
    """Who calls: the text baselines. Tenants are replica indexes."""

    def __init__(self) -> None:
        self._root = _Node("", {})
        self.tenant_chars: dict[int, int] = {}  # characters of the tree each tenant holds

    def insert(self, text: str, tenant: int, now: float) -> None:
        node = self._root
        pos = 0
        chars = self.tenant_chars.get(tenant, 0)
        while pos < len(text):
            first = text[pos]
            child = node.children.get(first)
            if child is None:
                node.children[first] = _Node(text[pos:], {tenant: now})
                chars += len(text) - pos
                break
            common = _common_length(text, pos, child.text)
            if common < len(child.text):
                middle = _Node(child.text[:common], dict(child.tenants))
                child.text = child.text[common:]
                middle.children[child.text[0]] = child
                node.children[first] = middle
                child = middle
            if tenant not in child.tenants:
                chars += len(child.text)
            child.tenants[tenant] = now
            node = child
            pos += common
        self.tenant_chars[tenant] = chars

    def match(self, text: str) -> tuple[int, dict[int, float]]:
        """(matched characters, tenants holding that whole match) for the longest match of `text`."""
        node = self._root
        pos = 0
        tenants: dict[int, float] = {}
        while pos < len(text):
            child = node.children.get(text[pos])
            if child is None:
                break
            common = _common_length(text, pos, child.text)
            pos += common
            tenants = child.tenants
            if common < len(child.text):
                break
            node = child
        return pos, tenants
