#!/bin/sh
# A job that ignores TERM and leaves a grandchild: only a group KILL cleans it up.
trap '' TERM
sleep 1000 &
echo "grandchild $!"
while :; do sleep 0.2; done
