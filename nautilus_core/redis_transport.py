"""The Redis bus: kombu's Redis transport, with two of its habits brought in line with RabbitMQ.

kombu keeps each queue as a Redis list, each exchange's bindings as a set
(``_kombu.binding.<exchange>``), and a message taken but not yet acknowledged in a hash
(``unacked``) from which any consumer puts it back once its visibility timeout has passed.
Two things differ from RabbitMQ in a way the nautilus bus would notice:

- A message put back (its worker died, or it was requeued) was routed again through its
  exchange. On the topic exchange that hands a second copy to every other queue bound to its
  action type: other services, recorders. Here it goes back to the queue it was taken from,
  as RabbitMQ requeues it.
- A queue's ``x-expires`` is applied only by the process that declared it, when it
  publishes or polls; the asker declares its reply queue but the replies are pushed by
  workers, so replies to an asker that is gone stayed in Redis forever. Here a message
  published with an ``expiration`` (a reply: see ``Bus.reply``) makes its queue's key expire
  that long after the last such message; an asker that consumes its replies empties the
  list long before.

And a passive declaration (does this queue exist?) sees the key prefix that isolates a cloud.

Selected in ``nautilus_core.brokers`` for ``redis://`` and ``rediss://`` URLs.
"""
from time import time

from kombu.transport import redis, virtual
from kombu.utils.json import dumps

__all__ = ["Transport"]

# delivery_info key: the queue a message was taken from, so that it is put back there
TAKEN_FROM = "nautilus_queue"


class QoS(redis.QoS):
    def append(self, message, delivery_tag):
        queue = message.delivery_info.get(TAKEN_FROM)
        if queue is None:
            return super().append(message, delivery_tag)
        # kombu keeps [message, exchange, routing key] to route it again; the default exchange
        # with the queue's name as routing key puts it back on that queue only
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()}) \
                .hset(self.unacked_key, delivery_tag, dumps([message._raw, "", queue])) \
                .execute()
        virtual.QoS.append(self, message, delivery_tag)


class Channel(redis.Channel):
    QoS = QoS

    def basic_consume(self, queue, *args, **kwargs):
        result = super().basic_consume(queue, *args, **kwargs)
        deliver = self.connection._callbacks[queue]

        def taken_from_queue(raw_message):
            raw_message["properties"]["delivery_info"][TAKEN_FROM] = queue
            return deliver(raw_message)

        self.connection._callbacks[queue] = taken_from_queue
        return result

    def _get(self, queue):
        raw_message = super()._get(queue)
        raw_message["properties"]["delivery_info"][TAKEN_FROM] = queue
        return raw_message

    def _has_queue(self, queue, **kwargs):
        # kombu asks with EXISTS, which its key prefix (NAUTILUS_REDIS_KEY_PREFIX) does not cover;
        # LLEN is covered, and an empty list does not exist in Redis either
        with self.conn_or_acquire() as client:
            with client.pipeline() as pipe:
                for priority in self.priority_steps:
                    pipe.llen(self._q_for_pri(queue, priority))
                return any(pipe.execute())

    def _put(self, queue, message, **kwargs):
        expiration = message["properties"].get("expiration")
        if expiration is None or queue in self._expires:
            return super()._put(queue, message, **kwargs)
        # kombu pushes and sets the key's expiry in one pipeline for queues it knows an
        # x-expires of: the message's expiration stands in for it during this push
        self._expires[queue] = int(expiration)
        try:
            return super()._put(queue, message, **kwargs)
        finally:
            del self._expires[queue]


class Transport(redis.Transport):
    Channel = Channel
