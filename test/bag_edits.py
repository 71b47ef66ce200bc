"""Edited copies of rosbag2 files for the importer's tests (rosbags only, no ROS install)."""
from __future__ import annotations


def edit_messages(src, dst, topic: str, change) -> None:
    """A copy of the bag ``src`` as ``dst`` in which each message on ``topic`` is replaced by the
    messages ``change(msg, types)`` returns (``msg`` deserialised by rosbags, ``types`` its
    typestore's message classes): the edited message itself, its parts (received 1 ns apart),
    or none. Other topics are copied as they are."""
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    with Reader(src) as reader, Writer(dst, version=9) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections}
        for conn, t, raw in reader.messages():
            if conn.topic != topic:
                writer.write(conns[conn.id], t, raw)
                continue
            msg = store.deserialize_cdr(raw, conn.msgtype)
            for k, part in enumerate(change(msg, store.types)):
                writer.write(conns[conn.id], t + k, store.serialize_cdr(part, conn.msgtype))
