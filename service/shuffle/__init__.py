"""Keyed shuffles across instances through Kafka repartition topics (issue 10; being built).

An upstream task (an input partition) writes each ``(key, value)`` pair to the repartition
partition its key hashes to (murmur2, as the Java client), inside the batch's transaction, and
marks every repartition partition "done through batch t". A downstream task (a repartition
partition) computes batch t once every upstream task is through t, so the records of input
batch t meet in downstream batch t, as in Spark (``alignment``).
"""
