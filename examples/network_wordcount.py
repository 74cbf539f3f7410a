r"""
Counts words in UTF8 encoded, '\n' delimited text received from the network every second.
Usage: network_wordcount.py <hostname> <port>
  <hostname> and <port> describe the TCP server that the job connects to to receive data.

To run this on your local machine, you need to first run a Netcat server
   `$ nc -lk 9999`
and then run the example
   `$ python -m service run examples/network_wordcount.py localhost 9999`

The PySpark original builds ``StreamingContext(sc, 1)`` from a SparkContext; here the batch
interval is given directly, and nothing else changes.
"""

import sys

from service.streaming import StreamingContext

if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("Usage: network_wordcount.py <hostname> <port>", file=sys.stderr)
        sys.exit(-1)
    ssc = StreamingContext(1)

    lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))
    counts = (
        lines.flatMap(lambda line: line.split(" "))
        .map(lambda word: (word, 1))
        .reduceByKey(lambda a, b: a + b)
    )
    counts.pprint()

    ssc.start()
    ssc.awaitTermination()
