"""Baselines measured in the same run as nautilus: a bare Celery app and kombu RPC.

- ``app`` / ``noop``: a Celery app with a no-op task on the same broker (``rpc://`` results), with
  kombu's own transport for it (on Redis, under the bench's key prefix).
- ``python -m bench.baseline kombu-server URL``: a kombu RPC server answering on
  ``bench.kombu`` to the request's ``reply_to`` (RabbitMQ direct reply-to).
"""
import os
import sys

from celery import Celery
from kombu import Connection, Consumer, Exchange, Producer, Queue

app = Celery("bench.baseline", broker=os.environ.get("NAUTILUS_BROKER_URL"), backend="rpc://")
app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                task_default_queue="bench.baseline", worker_hijack_root_logger=False,
                worker_prefetch_multiplier=16)
if (app.conf.broker_url or "").startswith("redis"):  # kombu's own Redis transport, under the bench's key prefix
    app.conf.broker_transport_options = {"global_keyprefix": os.environ.get("NAUTILUS_REDIS_KEY_PREFIX", "")}

KOMBU_QUEUE = "bench.kombu"


@app.task(name="bench.noop")
def noop():
    return None


def kombu_server(url):
    """Answer every request on ``bench.kombu`` with an empty JSON object, until killed."""
    with Connection(url) as connection:
        channel = connection.channel()
        producer = Producer(channel, exchange=Exchange(""))

        def answer(body, message):
            producer.publish({}, routing_key=message.properties["reply_to"], serializer="json",
                             correlation_id=message.properties.get("correlation_id"))
            message.ack()

        with Consumer(channel, queues=[Queue(KOMBU_QUEUE, auto_delete=True)], callbacks=[answer], accept=["json"]):
            print("kombu server ready", flush=True)
            while True:
                connection.drain_events()


class KombuClient:
    """RPC with direct reply-to: the request goes out on the channel that consumes the replies."""

    def __init__(self, url):
        self.connection = Connection(url)
        self.channel = self.connection.channel()
        self.reply = None
        self.consumer = Consumer(self.channel, queues=[Queue("amq.rabbitmq.reply-to", no_ack=True)],
                                 callbacks=[self._on_reply], no_ack=True, accept=["json"])
        self.consumer.consume()
        self.producer = Producer(self.channel, exchange=Exchange(""))

    def _on_reply(self, body, message):
        self.reply = body

    def call(self):
        self.reply = None
        self.producer.publish({}, routing_key=KOMBU_QUEUE, serializer="json", reply_to="amq.rabbitmq.reply-to",
                              correlation_id="1")
        while self.reply is None:
            self.connection.drain_events(timeout=10)
        return self.reply

    def close(self):
        self.connection.release()


if __name__ == "__main__" and sys.argv[1:2] == ["kombu-server"]:
    kombu_server(sys.argv[2])
