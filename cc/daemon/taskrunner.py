"""The original's name of taskexec: ``module = cc.daemon.taskrunner`` keeps working."""

from cc.daemon import run_daemon
from cc.daemon.taskexec import TaskExec

CC_DAEMON = "TaskExec"

if __name__ == "__main__":
    run_daemon(TaskExec)
