"""One process of a forwarding run, started by cc-bench: a sender, a sink, a forwarder, ..."""

import argparse
from typing import Callable, Dict, Optional, Sequence

from cctools.bench.roles import echo, forwarders, load

#: role name -> its function, called with the parsed arguments
ROLES: Dict[str, Callable[[argparse.Namespace], None]] = {
    "sink": lambda args: load.sink(args.messages, idle=3.0),
    "send": lambda args: load.send(args.url, args.messages, args.type, args.size),
    "echo-client": lambda args: echo.client(args.url, args.messages, args.size),
    "echo-responder": lambda args: echo.responder(),
    "zmqproxy": lambda args: forwarders.zmqproxy(args.upstream),
    "stock": lambda args: forwarders.stock(args.upstream),
}


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m cctools.bench.roles", description=__doc__)
    p.add_argument("role", choices=ROLES)
    p.add_argument("--url", help="where to connect (send, echo-client)")
    p.add_argument("--upstream", help="where to forward (zmqproxy, stock)")
    p.add_argument("--messages", type=int, help="to send, or to wait for")
    p.add_argument("--size", type=int, default=212, help="body bytes")
    p.add_argument("--type", default="log.info", help="message type to send")
    args = p.parse_args(argv)
    ROLES[args.role](args)


if __name__ == "__main__":
    main()
