"""One round of publisher confirms for many envelopes (``nautilus_core.batch``).

Publishing one envelope at a time with RabbitMQ's publisher confirms waits a round trip for
each. A batch publishes the answers and outboxes of all its actions on a connection of its own,
then waits once, until the broker has confirmed every one of them (a ``basic.ack`` may confirm
several: ``multiple``). Only then are the actions' messages acknowledged.

On a broker without confirms (Redis, the embedded bus) a publish is done when it returns, and
the round waits for nothing. Anything that goes wrong (a lost connection, a ``basic.nack``, no
confirm within ``CONFIRM_TIMEOUT``) closes the connection and raises: the batch then hands its
actions to Celery's task, which publishes them again from their records.
"""
import contextlib
import logging

from amqp import spec
from kombu import Producer

__all__ = ["Confirms", "CONFIRM_TIMEOUT"]

logger = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 10.0  # seconds the broker has to confirm a round


class Unconfirmed(ConnectionError):
    """The broker refused (``basic.nack``) or did not confirm what a round published."""


class Confirms:
    """A worker's connection for publishing in rounds (``round``), opened at first use."""

    def __init__(self, app):
        self.app = app
        self._connection = self._producer = None
        self._published = self._confirmed = 0  # delivery tags: the broker numbers the channel's publishes from 1
        self._singles = set()

    @contextlib.contextmanager
    def round(self):
        """Yield a producer for the bus's ``publish`` and ``reply``; on leaving, wait until all is confirmed."""
        producer = self._open()
        try:
            yield producer
            self._wait_for_all()
        except BaseException:
            self.close()
            raise

    def close(self):
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # already broken: nothing to close cleanly
                logger.debug("closing the confirms connection failed", exc_info=True)
        self._connection = self._producer = None

    def _open(self):
        if self._producer is None:
            # no confirm per publish (kombu's confirm_publish): the round waits once
            # no heartbeats: nothing reads this connection between rounds to answer them
            connection = self.app.connection_for_write(transport_options={"confirm_publish": False}, heartbeat=0)
            channel = connection.channel()
            self._amqp = connection.transport.driver_type == "amqp"
            if self._amqp:
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
                self._count(channel)
            self._published = self._confirmed = 0
            self._singles.clear()
            self._connection, self._producer = connection, Producer(channel)
        return self._producer

    def _count(self, channel):
        """Count the channel's publishes: the broker's delivery tags, which its confirms name."""
        publish = channel.basic_publish

        def counted(*args, **kwargs):
            result = publish(*args, **kwargs)
            self._published += 1
            return result

        channel.basic_publish = counted

    def _on_ack(self, delivery_tag, multiple):
        if multiple:
            self._confirmed = max(self._confirmed, delivery_tag)
        else:
            self._singles.add(delivery_tag)
        while self._confirmed + 1 in self._singles:
            self._confirmed += 1
            self._singles.discard(self._confirmed)

    def _on_nack(self, delivery_tag, multiple, requeue=False):
        raise Unconfirmed(f"the broker refused publish {delivery_tag} (basic.nack)")

    def _wait_for_all(self):
        if not self._amqp:
            return
        channel = self._producer.channel
        while self._confirmed < self._published:
            channel.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=CONFIRM_TIMEOUT)
