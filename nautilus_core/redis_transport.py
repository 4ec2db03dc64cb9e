"""The Redis bus: kombu's Redis transport, with two of its habits brought in line with RabbitMQ.

kombu keeps each queue as a Redis list, each exchange's bindings as a set
(``_kombu.binding.<exchange>``), and a message taken but not yet acknowledged in a hash
(``unacked``) from which any consumer puts it back once its visibility timeout has passed.
Three things differ from RabbitMQ in a way the nautilus bus would notice:

- kombu takes a message with ``BRPOP`` and records it as unacknowledged in a second step: a
  worker killed between the two (the reply already in its socket) loses the message for good
  (celery/celery#4354, #7950). Here a consumer of one queue takes it with ``BLMOVE`` into a
  list of its own ("taking"), and the record of the unacknowledged message removes it from
  that list in one transaction. A consumer refreshes its entry in ``_nautilus.takers`` every
  second; the lists of one silent for a visibility timeout go back to their queue, marked
  redelivered, when the unacknowledged messages are restored.

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
import uuid
from time import monotonic, time

from kombu.transport import redis, virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

__all__ = ["Transport"]

# delivery_info key: the queue a message was taken from, so that it is put back there
TAKEN_FROM = "nautilus_queue"
# every consumer taking with BLMOVE: member json [queue, taking list], score when last seen
TAKERS = "_nautilus.takers"
TAKERS_REFRESH = 1.0  # seconds; far below any visibility timeout


# Put a taken message back on its queue if it is still in the taking list (atomically: a consumer
# that was only slow may record it as unacknowledged meanwhile, which removes it from the list).
RESTORE_TAKEN = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
end
"""


def as_given(client, *args):
    """Run a Redis command with its keys as given (prefixed already), past kombu's own prefixing,
    which covers only the commands kombu sends itself."""
    if isinstance(client, redis.GlobalKeyPrefixMixin):
        return super(redis.GlobalKeyPrefixMixin, client).execute_command(*args)
    return client.execute_command(*args)


class QoS(redis.QoS):
    def append(self, message, delivery_tag):
        queue = message.delivery_info.get(TAKEN_FROM)
        if queue is None:
            return super().append(message, delivery_tag)
        taking = self.channel._taking.pop(delivery_tag, None)
        # kombu keeps [message, exchange, routing key] to route it again; the default exchange
        # with the queue's name as routing key puts it back on that queue only
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()}) \
                .hset(self.unacked_key, delivery_tag, dumps([message._raw, "", queue]))
            if taking is not None:  # recorded, in the same transaction: no longer only in the taking list
                taking_list, raw = taking
                as_given(pipe, "LREM", taking_list, 1, raw)
            pipe.execute()
        virtual.QoS.append(self, message, delivery_tag)

    def restore_visible(self, *args, **kwargs):
        super().restore_visible(*args, **kwargs)
        self.channel.restore_silent_takers()


class Channel(redis.Channel):
    QoS = QoS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._taker = uuid.uuid4().hex
        self._taking = {}  # delivery tag -> (taking list, raw message), until recorded as unacknowledged
        self._taking_from = None  # the queue of the BLMOVE in flight
        self._takers_seen = 0.0
        self._acknowledged_queues = set()  # consumed with acks: only these need the taking list

    def _prefixed(self, key):
        return f"{self.global_keyprefix}{key}"

    def _taking_list(self, queue):
        return self._prefixed(f"_nautilus.taking.{self._taker}.{queue}")

    def basic_consume(self, queue, no_ack, *args, **kwargs):
        result = super().basic_consume(queue, no_ack, *args, **kwargs)
        (self._acknowledged_queues.discard if no_ack else self._acknowledged_queues.add)(queue)
        deliver = self.connection._callbacks[queue]

        def taken_from_queue(raw_message):
            raw_message["properties"]["delivery_info"][TAKEN_FROM] = queue
            return deliver(raw_message)

        self.connection._callbacks[queue] = taken_from_queue
        return result

    def _brpop_start(self, timeout=None):
        queues = self._queue_cycle.consume(len(self.active_queues))
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        # BLMOVE takes from one list: a consumer of several lists, or one without acks, takes as kombu does
        if len(keys) != 1 or queues[0] not in self._acknowledged_queues:
            return super()._brpop_start(timeout)
        queue = self._taking_from = queues[0]
        self._seen_taking(queue)
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self.client.connection.send_command("BLMOVE", self._prefixed(keys[0]), self._taking_list(queue),
                                            "RIGHT", "LEFT", self.brpop_timeout if timeout is None else timeout)

    def _brpop_read(self, **options):
        queue = self._taking_from
        if queue is None:
            return super()._brpop_read(**options)
        try:
            try:
                raw = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if raw is None:
                raise redis.Empty()
            raw = bytes_to_str(raw)
            message = loads(raw)
            self._taking[message["properties"]["delivery_tag"]] = (self._taking_list(queue), raw)
            self._queue_cycle.rotate(queue)
            self.connection._deliver(message, queue)
            return True
        finally:
            self._in_poll = None
            self._taking_from = None
            self._flush_brpop_reauth()

    def _seen_taking(self, queue):
        """Say this consumer is alive, at most once a second."""
        if monotonic() - self._takers_seen < TAKERS_REFRESH:
            return
        with self.conn_or_acquire() as client:
            as_given(client, "ZADD", self._prefixed(TAKERS), time(), dumps([queue, self._taking_list(queue)]))
        self._takers_seen = monotonic()

    def restore_silent_takers(self):
        """Put back what consumers silent for a visibility timeout had taken and not yet recorded."""
        with self.conn_or_acquire() as client:
            silent = as_given(client, "ZRANGEBYSCORE", self._prefixed(TAKERS), "-inf",
                              time() - self.visibility_timeout)
            for member in silent or ():
                queue, taking_list = loads(bytes_to_str(member))
                for raw in as_given(client, "LRANGE", taking_list, 0, -1) or ():
                    message = loads(bytes_to_str(raw))
                    message["headers"]["redelivered"] = True
                    message["properties"]["delivery_info"]["redelivered"] = True
                    as_given(client, "EVAL", RESTORE_TAKEN, 2, taking_list,
                             self._prefixed(self._q_for_pri(queue, 0)), raw, dumps(message))
                as_given(client, "ZREM", self._prefixed(TAKERS), member)
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
