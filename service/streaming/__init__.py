"""pyspark.streaming's API (StreamingContext, DStream, StreamingListener) without Spark."""

from service.streaming.context import StreamingContext
from service.streaming.dstream import DStream
from service.streaming.listener import StreamingListener
from service.streaming.rdd import BatchRDD, ResultIterable
from service.streaming.spark_context import SparkConf, SparkContext

__all__ = [
    "BatchRDD",
    "DStream",
    "ResultIterable",
    "SparkConf",
    "SparkContext",
    "StreamingContext",
    "StreamingListener",
]
