"""The baseline: a bare Celery app with a no-op task, on the same broker as nautilus."""
import os

from celery import Celery

app = Celery("bench.baseline", broker=os.environ["NAUTILUS_BROKER_URL"], backend="rpc://")
app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                task_default_queue="bench.baseline", worker_hijack_root_logger=False)


@app.task(name="bench.noop")
def noop():
    return None
