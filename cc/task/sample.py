"""Sample task. Params: cmd - crash-launch / crash-run / other

``cmd = crash-run`` raises (the task ends ``failed``); anything else sends
three feedbacks ``delay`` seconds apart (default 1) and finishes.
``crash-launch`` behaves like a normal run, as in the original.

::

    [cc.task.sample]
    #sudo = postgres
"""

import time
from typing import Any, Dict

from cc.task import CCTask, run_task


class SampleTask(CCTask):
    def process_task(self, task: Dict[str, Any]) -> None:
        if task.get("cmd") == "crash-run":
            raise RuntimeError("crash-run requested")
        delay = float(task.get("delay", 1))
        for i in range(1, 4):
            time.sleep(delay)
            self.send_feedback(i=i)
        self.log.info("task %s done", self.task_id)
        self.send_finished()


if __name__ == "__main__":
    run_task(SampleTask)
