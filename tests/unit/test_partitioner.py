"""Our producers' partitioner sends every key where aiokafka's default (Kafka's murmur2) does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from libs.messaging.partitioner import KeyPartitioner, murmur2


@given(st.binary(max_size=200))
def test_murmur2_is_kafkas_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.text(min_size=1, max_size=60), st.integers(min_value=1, max_value=64))
def test_a_key_lands_on_the_partition_the_default_partitioner_picks(key: str, partitions: int) -> None:
    raw = key.encode()
    all_partitions = list(range(partitions))
    assert KeyPartitioner()(raw, all_partitions, all_partitions) == DefaultPartitioner()(raw, all_partitions, all_partitions)


def test_known_values_of_the_java_client() -> None:
    # org.apache.kafka.common.utils.UtilsTest.testMurmur2 (as signed 32-bit ints there)
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             b"abc": 479470107}
    for data, signed in cases.items():
        assert murmur2(data) == signed & 0xFFFFFFFF


def test_no_key_goes_to_an_available_partition() -> None:
    assert KeyPartitioner()(None, [0, 1, 2], [2]) == 2
