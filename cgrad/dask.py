"""Hyperparameter sweeps on a Dask cluster, with each epoch's metrics streamed to the client.

    from distributed import Client, LocalCluster
    import cgrad.dask

    def fit(config, callbacks=()):
        X, y, _, _ = cgrad.data.digits()
        return cgrad.MLPClassifier(**config, random_state=0).fit(X, y, callbacks=callbacks)

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        models = cgrad.dask.sweep(client, fit, configs,
                                  on_epoch=lambda i, epoch, logs: print(i, epoch, logs["loss"]))

The metrics travel as Dask events: `Worker.log_event` in the task, the scheduler, then
`Client.subscribe_topic` in the client. That is distributed's channel for small messages
from tasks to clients (its Pub/Sub was deprecated for it, then removed): sending does not
wait for the scheduler (it goes on the worker's batched stream), so a fit is not slowed
by the client, and the events of one task arrive in the order it sent them. A Queue or a
Variable would cost the task a round trip to the scheduler per message and the client a
poll. The engine is optional: `pip install cgrad[dask]`.
"""
from __future__ import annotations

import numbers
import queue
import time
import uuid
from typing import Any, Callable, Iterable

from ._optional import require
from .trainer import Callback


def _distributed():
    return require("distributed", "dask", "cgrad.dask")


def _numbers(logs: dict) -> dict:
    """The numeric entries of an epoch's logs as Python floats: an event must be msgpack data."""
    return {str(k): float(v) for k, v in logs.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}


class StreamMetrics(Callback):
    """A Trainer callback that sends each epoch's logs to the Dask client as they happen.

    Each epoch becomes the event {"tag": tag, "epoch": epoch, "logs": {name: float}} under
    `topic`; receive them in the client with `client.subscribe_topic(topic, handler)`
    (the handler gets `(timestamp, event)`), or let `sweep` do it. `tag` says which fit
    sent it (default: the key of the Dask task running the fit). In a hand-written loop,
    call `on_epoch_end(epoch, logs)` yourself. Outside a Dask task it sends through the
    current client; with neither, it raises RuntimeError.
    """

    def __init__(self, topic: str = "cgrad", tag: Any = None):
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"StreamMetrics: topic must be a non-empty str, got {topic!r}")
        self.topic, self.tag = topic, tag

    def on_epoch_end(self, epoch: int, logs: dict):
        self._send({"epoch": int(epoch), "logs": _numbers(logs)})

    def _send(self, event: dict) -> None:
        distributed = _distributed()
        try:
            worker = distributed.get_worker()
        except ValueError:  # not in a task: through the client, if there is one
            worker = None
        tag = self.tag
        if tag is None and worker is not None:
            tag = worker.get_current_task()
        event = {"tag": tag, **event}
        if worker is not None:
            worker.log_event(self.topic, event)
            return
        try:
            client = distributed.get_client()
        except ValueError:
            raise RuntimeError("StreamMetrics: neither in a Dask task nor with a Dask Client "
                               "to send the metrics to") from None
        client.log_event(self.topic, event)


def _sweep_task(index: int, config, fit: Callable, topic: str | None):
    """One fit of a sweep, run on a worker. The end marker is sent last, after every
    epoch's event from this thread, so the client knows when it has them all."""
    if topic is None:
        return fit(config)
    monitor = StreamMetrics(topic, tag=index)
    try:
        return fit(config, callbacks=[monitor])
    finally:
        monitor._send({"end": True})


def sweep(client, fit: Callable, configs: Iterable, *,
          on_epoch: Callable[[int, int, dict], Any] | None = None, end_timeout: float = 10.0) -> list:
    """Run `fit(config)` for every config as a task on `client`'s cluster; return the
    results (fitted models, scores, ...) in config order.

    With `on_epoch`, `fit` is called as `fit(config, callbacks=[monitor])`: pass the
    callbacks on to `Trainer.fit` or to an estimator's `fit`, or call
    `monitor.on_epoch_end(epoch, logs)` in a hand-written loop. Each epoch's logs then
    reach `on_epoch(index, epoch, logs)` in this thread while the fits run (`index` is
    the config's position). The first fit that raises cancels the others, and its
    exception is raised here, as Dask raises a task's. A fit that Dask reruns (its worker
    died) reports its epochs again. After the last fit, up to `end_timeout` seconds are
    given to events still in flight.
    """
    distributed = _distributed()
    if not isinstance(client, distributed.Client):
        raise TypeError(f"sweep: client must be a distributed.Client, got {type(client).__name__}")
    if not callable(fit):
        raise TypeError(f"sweep: fit must be callable, got {type(fit).__name__}")
    if on_epoch is not None and not callable(on_epoch):
        raise TypeError(f"sweep: on_epoch must be callable or None, got {type(on_epoch).__name__}")
    configs = list(configs)
    if not configs:
        return []
    topic = None
    events: queue.SimpleQueue = queue.SimpleQueue()
    if on_epoch is not None:
        topic = f"cgrad-sweep-{uuid.uuid4().hex}"  # one topic per sweep: concurrent sweeps do not mix
        client.subscribe_topic(topic, events.put)  # runs in the client's event loop: only enqueue
    futures = client.map(_sweep_task, range(len(configs)), configs, fit=fit, topic=topic, pure=False)
    finished = False
    try:
        if on_epoch is not None:
            _relay(futures, events, on_epoch, end_timeout)
        results = client.gather(futures)  # raises the first failed fit's exception
        finished = True
        return results
    finally:
        if not finished:
            client.cancel(futures)
        if topic is not None:
            client.unsubscribe_topic(topic)


def _relay(futures, events: queue.SimpleQueue, on_epoch: Callable, end_timeout: float) -> None:
    """Hand the events to on_epoch in this thread until every fit has ended and sent its
    end marker; return early when a fit fails (gather raises its exception)."""
    ended: set[int] = set()
    deadline = None
    while len(ended) < len(futures):
        try:
            _, event = events.get(timeout=0.05)
        except queue.Empty:
            if any(f.status in ("error", "cancelled", "lost") for f in futures):
                return
            if deadline is None and all(f.done() for f in futures):
                deadline = time.monotonic() + end_timeout
            if deadline is not None and time.monotonic() > deadline:
                return
            continue
        if event.get("end"):
            ended.add(event["tag"])
        else:
            on_epoch(event["tag"], event["epoch"], event["logs"])
