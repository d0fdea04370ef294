"""Keep the server's access log readable: a worker's routine polling is not news.

An idle worker asks for a job every 2 s and a busy one renews its lease and reports progress every few
seconds; at INFO those lines were a third of a normal log. They are dropped when they succeed; a failed
one (4xx, 5xx) is still logged, like every other request.
"""

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
ROUTINE_WORKER_CALLS = re.compile(r"^/api/v1/(worker/claim|jobs/\d+/(heartbeat|events))(\?|$)")


class QuietWorkerPolling(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client address, method, path with query, HTTP version, status)
        if not isinstance(args, tuple) or len(args) != 5:
            return True
        _client, _method, path, _version, status = args
        return not (isinstance(status, int) and status < 400 and ROUTINE_WORKER_CALLS.match(str(path)))


def quiet_worker_polling() -> None:
    """Install the filter once per process (each web worker process builds its own app)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, QuietWorkerPolling) for f in logger.filters):
        logger.addFilter(QuietWorkerPolling())
