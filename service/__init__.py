"""Spark Streaming's DStream model on Kafka, with state in Redis and no Spark cluster.

The path of a record is the package layout: ``sources`` (Kafka, sockets, queues) feed
``runtime`` (the batch clock and executor), which runs the job's ``streaming`` operators,
persists ``state`` and ``sinks``, and then ``commit``s the source offsets.
"""

__version__ = "0.1.0"
