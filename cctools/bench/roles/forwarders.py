"""The forwarders cc-server is measured against: libzmq's own proxy, and a stock pyzmq one."""

import zmq


def zmqproxy(upstream: str) -> None:
    """``zmq.proxy`` in C from a ROUTER to a DEALER connected to ``upstream``: the bar."""
    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    back = ctx.socket(zmq.DEALER)
    back.connect(upstream)
    print(front.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    zmq.proxy(front, back)


def stock(upstream: str) -> None:
    """What a plain pyzmq/tornado forwarder looks like: one message per callback."""
    from tornado.ioloop import IOLoop
    from zmq.eventloop.zmqstream import ZMQStream

    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    back = ctx.socket(zmq.DEALER)
    back.connect(upstream)
    back_stream = ZMQStream(back)
    ZMQStream(front).on_recv(back_stream.send_multipart)
    print(front.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    IOLoop.current().start()
