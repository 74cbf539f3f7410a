"""pyspark.streaming's API (StreamingContext, DStream, StreamingListener) without Spark."""

from service.streaming.context import StreamingContext
from service.streaming.dstream import DStream
from service.streaming.listener import StreamingListener
from service.streaming.rdd import BatchRDD, ResultIterable
from service.streaming.shared import Accumulator, AccumulatorParam, Broadcast
from service.streaming.spark_context import SparkConf, SparkContext

# pyspark's name for an RDD (``from pyspark import RDD``)
RDD = BatchRDD

__all__ = [
    "RDD",
    "Accumulator",
    "AccumulatorParam",
    "BatchRDD",
    "Broadcast",
    "DStream",
    "ResultIterable",
    "SparkConf",
    "SparkContext",
    "StreamingContext",
    "StreamingListener",
]
