#!/bin/sh
# A job that starts, runs a moment and dies: jobmgr restarts it for ever (it does start).
sleep 0.3
exit 1
