"""Who published a received message: its publisher's id, named by its node for people; and
each message handled once where two subscriptions of one topic both receive it.

rclpy hands a subscription callback that takes two arguments the message's MessageInfo, whose
``publisher_gid`` tells one publisher from another; the ROS graph maps that id to its node, looked
up only when a text needs the name (discovery may lag the first messages, and most messages are
never named).
"""
from __future__ import annotations

import collections
from typing import Callable, Optional

MESSAGES_KEPT = 256
"""Messages a ``Once`` remembers: far more than the deliveries that can lie between a message's two."""
NAMES_KEPT = 256
"""Publishers whose names are kept (a peer that makes publishers without end gets them looked up again)."""


class Source:
    """One publisher: equal by its id; its text, "<node> (id ...)", looked up when first asked."""

    __slots__ = ("key", "_names", "_topic")

    def __init__(self, key: bytes, names: "PublisherNames", topic: str):
        self.key, self._names, self._topic = key, names, topic

    def __eq__(self, other) -> bool:
        return isinstance(other, Source) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self._names.name(self.key, self._topic)


class PublisherNames:
    """``source(info, topic)``: a message's publisher (``Source``), None where the middleware
    gives no id."""

    def __init__(self, node):
        self._node = node
        self._names: dict[bytes, str] = {}

    def source(self, info: Optional[dict], topic: str) -> Optional[Source]:
        gid = (info or {}).get("publisher_gid")
        data = None if not gid else gid.get("data")
        return Source(bytes(data), self, topic) if data else None

    def name(self, key: bytes, topic: str) -> str:
        """The publisher's node from the graph, kept once known."""
        if key in self._names:
            return self._names[key]
        nodes = [f"{e.node_namespace.rstrip('/')}/{e.node_name}"
                 for e in self._node.get_publishers_info_by_topic(topic) if bytes(e.endpoint_gid) == key]
        name = f"{nodes[0] if nodes else 'a publisher'} (id {key.hex()[-8:]})"
        if nodes:
            if len(self._names) >= NAMES_KEPT:
                self._names.clear()
            self._names[key] = name
        return name


class Once:
    """Callbacks for several subscriptions of one topic (a goal topic read at two durabilities)
    that handle each message once: a message is its publisher's id and sequence number, so
    the same message received by the other subscription, later, is not handled again (not even
    after a newer one: a goal must never go back to an older one)."""

    def __init__(self):
        self._seen: collections.deque = collections.deque(maxlen=MESSAGES_KEPT)

    def __call__(self, callback: Callable) -> Callable:
        """``callback(message)`` as a subscription callback that takes (message, MessageInfo)."""
        def handle(message, info: dict) -> None:
            gid, number = (info or {}).get("publisher_gid"), (info or {}).get("publication_sequence_number")
            if gid and gid.get("data") and number is not None:
                key = (bytes(gid["data"]), number)
                if key in self._seen:
                    return
                self._seen.append(key)
            callback(message)
        return handle
