#!/bin/sh
# Init of a meshtwin UML node: hand over to the stdlib-only guest agent (see guest.py).
PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH
exec /usr/bin/python3 -S "$(dirname "$0")/guest.py"
