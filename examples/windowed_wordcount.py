r"""
 Counts words in UTF8 encoded, '\n' delimited text received from the network over the last
 30 seconds, every 10 seconds (the windowed word count of the Spark Streaming guide).
 Usage: windowed_wordcount.py <hostname> <port> [<window seconds> <slide seconds>]

 To run this on your local machine, you need to first run a Netcat server
    `$ nc -lk 9999`
 and then run the example
    `$ REDIS_URL=redis://localhost:6379/0 python -m service run \
        examples/windowed_wordcount.py localhost 9999`

 The window is maintained incrementally: each slide adds the new batches' counts and subtracts
 the counts of the batches that left the window (the inverse function), with the window's
 batches kept in Redis as PySpark keeps them in its checkpoint.
"""

import sys

from service.config import settings
from service.streaming import StreamingContext

if __name__ == "__main__":
    if len(sys.argv) not in (3, 5):
        print(
            "Usage: windowed_wordcount.py <hostname> <port> [<window seconds> <slide seconds>]",
            file=sys.stderr,
        )
        sys.exit(-1)
    window, slide = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) == 5 else (30, 10)
    conf = settings()
    ssc = StreamingContext(1, jobName=conf.job_name or "windowed_wordcount")
    ssc.checkpoint(conf.redis_url)

    lines = ssc.socketTextStream(sys.argv[1], int(sys.argv[2]))
    pairs = lines.flatMap(lambda line: line.split(" ")).map(lambda word: (word, 1))
    # Reduce last `window` seconds of data, every `slide` seconds
    windowedWordCounts = pairs.reduceByKeyAndWindow(
        lambda x, y: x + y, lambda x, y: x - y, window, slide
    )
    windowedWordCounts.pprint()

    ssc.start()
    ssc.awaitTermination()
