r"""
 Counts words in UTF8 encoded, '\n' delimited text received from the network every second,
 keeping a running count per word across batches.
 Usage: stateful_network_wordcount.py <hostname> <port>
   <hostname> and <port> describe the TCP server that the job connects to to receive data.

 To run this on your local machine, you need to first run a Netcat server
    `$ nc -lk 9999`
 and then run the example
    `$ REDIS_URL=redis://localhost:6379/0 python -m service run \
        examples/stateful_network_wordcount.py localhost 9999`

 Where PySpark checkpoints to a directory, the running counts are kept in Redis (``REDIS_URL``).
 As in PySpark, a context built directly starts afresh; kafka_wordcount.py shows a job that
 carries on after a restart (StreamingContext.getOrCreate).
"""

import sys
from collections.abc import Iterable

from service.config import settings
from service.streaming import StreamingContext

if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("Usage: stateful_network_wordcount.py <hostname> <port>", file=sys.stderr)
        sys.exit(-1)
    conf = settings()
    ssc = StreamingContext(1, jobName=conf.job_name or "stateful_network_wordcount")
    ssc.checkpoint(conf.redis_url)

    # RDD with initial state (key, value) pairs
    initialStateRDD = ssc.sparkContext.parallelize([("hello", 1), ("world", 1)])

    def updateFunc(new_values: Iterable[int], last_sum: int | None) -> int:
        return sum(new_values) + (last_sum or 0)

    lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))
    running_counts = (
        lines.flatMap(lambda line: line.split(" "))
        .map(lambda word: (word, 1))
        .updateStateByKey(updateFunc, initialRDD=initialStateRDD)
    )

    running_counts.pprint()

    ssc.start()
    ssc.awaitTermination()
