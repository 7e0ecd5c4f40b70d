"""``cc-keygen``: CURVE key pairs for cc links; :data:`DESCRIPTION` says what it writes."""

import argparse
import os
import sys
from typing import List, Optional

import zmq
import zmq.auth

__all__ = ["main"]

#: what --help says (plain text: it is read on a terminal, and survives python -OO)
DESCRIPTION = (
    "cc-keygen DIR NAME... writes DIR/NAME.key (public, give it to the other side) and"
    " DIR/NAME.key_secret (keep it; readable by the owner only) for each NAME, in pyzmq's"
    " certificate format. A server's curve-clients-dir holds the .key files of the clients"
    " it lets in."
)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="cc-keygen", description=DESCRIPTION)
    parser.add_argument("directory", help="where to write the key files (created)")
    parser.add_argument(
        "names", nargs="+", metavar="name", help="key pair names, e.g. server host1"
    )
    args = parser.parse_args(argv)
    if not zmq.has("curve"):
        print("cc-keygen: libzmq was built without CURVE", file=sys.stderr)
        sys.exit(1)
    os.makedirs(args.directory, exist_ok=True)
    for name in args.names:
        if os.path.exists(os.path.join(args.directory, name + ".key_secret")):
            print("cc-keygen: %s exists, not overwritten" % name, file=sys.stderr)
            sys.exit(1)
        public, secret = zmq.auth.create_certificates(args.directory, name)
        os.chmod(secret, 0o600)
        print(public)
        print(secret)


if __name__ == "__main__":
    main()
