"""Protocol v1 codec: round trips, strict decoding, and nothing but ProtocolError escaping."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import Code, ProtocolError
from protocol.codec import MAX_FRAME, decode_client, decode_server, encode, encode_text, parse_nonce
from protocol.messages import (
    BLOCK_BROADCAST,
    Accepted,
    Block,
    Bye,
    ClientMessage,
    Difficulty,
    Error,
    Hello,
    Job,
    More,
    Rejected,
    Report,
    ServerMessage,
    Share,
    Slot,
    Stats,
    StatsRequest,
    Welcome,
    slot_job,
)
from protocol.work import MAX_NONCE

ADDRESS = "GBQHTQ7NTSKHVTSVM6EHUO3TU4P4BK2TAAII25V2TT2Q6OWXUJWEKALE"

text = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=64
).filter(str.isprintable)
ids = st.text("abcdef0123456789-", min_size=1, max_size=64)
nonces = st.integers(0, MAX_NONCE)
hashes = st.binary(min_size=32, max_size=32)
zeros = st.integers(0, 64)
ms = st.integers(0, 2**53 - 1)
codes = st.sampled_from(list(Code))
features = st.lists(
    st.sampled_from([BLOCK_BROADCAST, "x-later", "future-feature"]) | text, max_size=4, unique=True
).map(tuple)
messages_text = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")), max_size=200).filter(
    str.isprintable
)

client_messages: st.SearchStrategy[ClientMessage] = st.one_of(
    st.builds(
        Hello,
        token=text,
        worker=text,
        agent=st.none() | text,
        protocol=st.just(1),
        hashrate=st.none() | st.floats(0, 1e21),
        features=features,
    ),
    st.builds(Report, hashrate=st.floats(0, 1e21)),
    st.builds(Share, job=ids, nonce=nonces, hash=st.none() | hashes),
    st.builds(More, job=st.none() | ids),
    st.just(StatsRequest()),
    st.just(Bye()),
)


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    start = draw(st.integers(0, MAX_NONCE - 1))
    return Job(
        job=draw(ids),
        block=draw(st.integers(0, 2**32 - 1)),
        entropy=draw(hashes),
        farmer=ADDRESS,
        nonce_start=start,
        nonce_end=draw(st.integers(start + 1, MAX_NONCE)),
        share_zeros=draw(zeros),
        clean=draw(st.booleans()),
        work_at=draw(ms),
        block_ends_at=draw(ms),
    )


@st.composite
def slots(draw: st.DrawFn) -> Slot:
    start = draw(st.integers(0, MAX_NONCE - 1))
    return Slot(
        slot=draw(st.text("abcdef0123456789.s", min_size=1, max_size=53)),
        farmer=ADDRESS,
        nonce_start=start,
        nonce_end=draw(st.integers(start + 1, MAX_NONCE)),
        share_zeros=draw(zeros),
    )


server_messages: st.SearchStrategy[ServerMessage] = st.one_of(
    st.builds(
        Welcome,
        miner_id=ids,
        worker=text,
        farmer_id=ids,
        farmer=st.just(ADDRESS),
        protocol=st.just(1),
        features=features,
    ),
    jobs(),
    slots(),
    st.builds(Block, block=st.integers(0, 2**32 - 1), entropy=hashes, work_at=ms, block_ends_at=ms),
    st.builds(Difficulty, share_zeros=zeros),
    st.builds(Accepted, job=ids, nonce=nonces, zeros=zeros, best=st.booleans()),
    st.builds(Rejected, job=st.none() | ids, nonce=st.none() | nonces, code=codes, message=messages_text),
    st.builds(
        Stats,
        miner_id=ids,
        farmer_id=ids,
        block=st.none() | st.integers(0, 2**32 - 1),
        workers=st.integers(0, 1000),
        hashrate=st.floats(0, 1e15),
        accepted=st.integers(0, 2**40),
        rejected=st.integers(0, 2**40),
        stale=st.integers(0, 2**40),
        best_zeros=st.none() | zeros,
        share_zeros=st.none() | zeros,
        rewards=st.integers(0, 10**30),
        reported_hashrate=st.none() | st.floats(0, 1e21),
    ),
    st.builds(Error, code=codes, message=messages_text),
)


@given(client_messages)
def test_client_round_trip(msg: ClientMessage) -> None:
    assert decode_client(encode(msg)) == msg


@given(server_messages)
def test_server_round_trip(msg: ServerMessage) -> None:
    assert decode_server(encode(msg)) == msg


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    for decode in (decode_client, decode_server):
        with contextlib.suppress(ProtocolError):
            decode(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "type",
        "token",
        "worker",
        "agent",
        "protocol",
        "job",
        "nonce",
        "hash",
        "block",
        "entropy",
        "farmer",
        "nonceStart",
        "nonceEnd",
        "shareZeros",
        "clean",
        "workAt",
        "blockEndsAt",
        "code",
        "message",
        "zeros",
        "best",
        "minerId",
        "farmerId",
        "workers",
        "hashrate",
        "accepted",
        "rejected",
        "stale",
        "bestZeros",
        "rewards",
    ]
)
types = st.sampled_from(
    [
        "hello",
        "share",
        "more",
        "stats",
        "report",
        "bye",
        "welcome",
        "job",
        "slot",
        "block",
        "difficulty",
        "accepted",
        "rejected",
        "error",
        "x",
    ]
)


@settings(max_examples=500)
@given(types, st.dictionaries(field_names, json_values, max_size=12))
def test_arbitrary_json_objects_raise_only_protocol_error(kind: str, fields: dict[str, object]) -> None:
    data = orjson.dumps({**fields, "type": kind})
    for decode in (decode_client, decode_server):
        with contextlib.suppress(ProtocolError):
            decode(data)


# ------------------------------------------------------------ specific rejections


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        (b"not json", Code.MALFORMED, "not valid JSON"),
        (b"[1,2]", Code.MALFORMED, "JSON object"),
        (b'"hello"', Code.MALFORMED, "JSON object"),
        (b'{"token": "t"}', Code.MALFORMED, "'type'"),
        (b'{"type": "mine"}', Code.MALFORMED, "unknown message type"),
        (b'{"type": "hello", "token": "t"}', Code.MALFORMED, "protocol"),
        (b'{"type": "hello", "token": "t", "protocol": 2}', Code.MALFORMED, "not supported"),
        (b'{"type": "hello", "token": 5, "protocol": 1}', Code.MALFORMED, "must be a string"),
        (b'{"type": "hello", "token": "t", "protocol": 1, "worker": ""}', Code.MALFORMED, "1 to 64"),
        (b'{"type": "hello", "token": "t", "protocol": 1, "worker": "a\\u0000b"}', Code.MALFORMED, "control"),
        (b'{"type": "hello", "token": "t", "protocol": 1, "worker": "a\\u202eb"}', Code.MALFORMED, "control"),
        (b'{"type": "share", "job": "j"}', Code.MALFORMED, "'nonce'"),
        (b'{"type": "share", "job": "j", "nonce": -1}', Code.MALFORMED, "outside the u64"),
        (b'{"type": "share", "job": "j", "nonce": "-1"}', Code.MALFORMED, "not a decimal"),
        (b'{"type": "share", "job": "j", "nonce": 1.5}', Code.MALFORMED, "float"),
        (b'{"type": "share", "job": "j", "nonce": 1.0}', Code.MALFORMED, "float"),
        (b'{"type": "share", "job": "j", "nonce": true}', Code.MALFORMED, "boolean"),
        (
            b'{"type": "share", "job": "j", "nonce": "18446744073709551616"}',
            Code.MALFORMED,
            "outside the u64",
        ),
        (
            b'{"type": "share", "job": "j", "nonce": 99999999999999999999999}',
            Code.MALFORMED,
            "decimal strings",
        ),
        (b'{"type": "share", "job": "j", "nonce": "\xef\xbc\x91"}', Code.MALFORMED, "not a decimal"),
        (b'{"type": "share", "job": "j", "nonce": " 1"}', Code.MALFORMED, "not a decimal"),
        (b'{"type": "share", "job": "j", "nonce": "1", "hash": "00"}', Code.MALFORMED, "64 hexadecimal"),
        (
            b'{"type": "share", "job": "j", "nonce": "1", "hash": "' + b"g" * 64 + b'"}',
            Code.MALFORMED,
            "64 hex",
        ),
        (b'{"type": "share", "job": 7, "nonce": "1"}', Code.MALFORMED, "must be a string"),
        (b'{"type": "more", "job": []}', Code.MALFORMED, "must be a string"),
        (b'{"type": "hello", "token": "t", "protocol": 1, "hashrate": "1e6"}', Code.MALFORMED, "hashes per"),
        (b'{"type": "hello", "token": "t", "protocol": 1, "hashrate": -1}', Code.MALFORMED, "finite number"),
        (b'{"type": "hello", "token": "t", "protocol": 1, "hashrate": true}', Code.MALFORMED, "hashes per"),
        (b'{"type": "report"}', Code.MALFORMED, "'hashrate'"),
        (b'{"type": "report", "hashrate": 1e400}', Code.MALFORMED, "infinity"),
        (b'{"type": "report", "hashrate": 1e22}', Code.MALFORMED, "finite number from 0"),
        (b'{"type": "report", "hashrate": null}', Code.MALFORMED, "hashes per"),
        (
            b'{"type": "hello", "token": "t", "protocol": 1, "features": "block-broadcast"}',
            Code.MALFORMED,
            "list",
        ),
        (b'{"type": "hello", "token": "t", "protocol": 1, "features": [7]}', Code.MALFORMED, "printable"),
        (b'{"type": "hello", "token": "t", "protocol": 1, "features": [""]}', Code.MALFORMED, "1 to 64"),
        (
            b'{"type": "hello", "token": "t", "protocol": 1, "features": [' + b'"a",' * 16 + b'"b"]}',
            Code.MALFORMED,
            "at most 16",
        ),
    ],
)
def test_client_rejections(frame: bytes, code: Code, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_client(frame)
    assert info.value.code == code
    assert words in info.value.message


_SLOT = b'"type": "slot", "slot": "s1", "farmer": "G", "shareZeros": 5'
_BLOCK = b'"type": "block", "block": 7, "entropy": "' + b"0" * 64 + b'"'


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (b"{" + _SLOT + b', "nonceStart": "5", "nonceEnd": "5"}', "range is empty"),
        (b"{" + _SLOT + b', "nonceStart": "5"}', "'nonceEnd'"),
        (b"{" + _SLOT + b', "nonceStart": "0", "nonceEnd": "-1"}', "not a decimal"),
        (
            b'{"type": "slot", "slot": "'
            + b"s" * 54
            + b'", "farmer": "G", "nonceStart": "0", "nonceEnd": "9",'
            b' "shareZeros": 1}',
            "1 to 53",
        ),
        (
            b'{"type": "slot", "slot": "s", "farmer": "G", "nonceStart": "0", "nonceEnd": "9",'
            b' "shareZeros": 65}',
            "between 0 and 64",
        ),
        (b"{" + _BLOCK + b', "workAt": 1}', "'blockEndsAt'"),
        (b"{" + _BLOCK + b', "workAt": -1, "blockEndsAt": 2}', "between 0"),
        (b'{"type": "block", "block": 7, "entropy": "00", "workAt": 1, "blockEndsAt": 2}', "64 hexadecimal"),
        (
            b'{"type": "block", "block": 4294967296, "entropy": "'
            + b"0" * 64
            + b'", "workAt": 1, "blockEndsAt": 2}',
            "between 0 and 4294967295",
        ),
        (
            b'{"type": "welcome", "minerId": "m", "worker": "w", "farmerId": "f", "farmer": "G",'
            b' "protocol": 1, "features": {"block-broadcast": true}}',
            "list of strings",
        ),
    ],
)
def test_server_rejections(frame: bytes, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_server(frame)
    assert info.value.code == Code.MALFORMED
    assert words in info.value.message


def test_features_are_left_out_when_none_so_v1_bytes_stay_as_they_were() -> None:
    assert "features" not in orjson.loads(encode(Hello(token="t")))
    wire = orjson.loads(encode(Welcome("m", "w", "f", ADDRESS)))
    assert wire == {
        "type": "welcome",
        "minerId": "m",
        "worker": "w",
        "farmerId": "f",
        "farmer": ADDRESS,
        "protocol": 1,
    }
    asked = decode_client(
        b'{"type":"hello","token":"t","protocol":1,"features":["block-broadcast","block-broadcast"]}'
    )
    assert isinstance(asked, Hello) and asked.features == (BLOCK_BROADCAST,)  # each name once
    assert orjson.loads(encode(Welcome("m", "w", "f", ADDRESS, features=(BLOCK_BROADCAST,))))["features"] == [
        BLOCK_BROADCAST
    ]


def test_a_block_frame_means_the_slots_job() -> None:
    slot = Slot("ab.s7", ADDRESS, 10, 20, 6)
    block = Block(123, b"\x01" * 32, 1_000, 2_000)
    assert orjson.loads(encode(block)) == {
        "type": "block",
        "block": 123,
        "entropy": "01" * 32,
        "workAt": 1_000,
        "blockEndsAt": 2_000,
    }
    assert slot_job(slot, block, 7) == Job(
        "ab.s7.123", 123, b"\x01" * 32, ADDRESS, 10, 20, 7, True, 1_000, 2_000
    )


def test_oversized_frame_is_too_large() -> None:
    frame = b'{"type":"bye","pad":"' + b"x" * MAX_FRAME + b'"}'
    with pytest.raises(ProtocolError) as info:
        decode_client(frame)
    assert info.value.code == Code.TOO_LARGE
    assert "limit is 4096" in info.value.message


@pytest.mark.parametrize("spelling", [31, "31", "0031", "0x1f", "0x1F", "0X001F"])
def test_every_spelling_of_a_nonce_is_one_integer(spelling: object) -> None:
    assert parse_nonce(spelling) == 31


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert decode_client(b'{"type": "bye", "future": 1}') == Bye()


def test_nonce_travels_as_decimal_string() -> None:
    wire = orjson.loads(encode(Accepted(job="j", nonce=MAX_NONCE, zeros=9, best=True)))
    assert wire == {"type": "accepted", "job": "j", "nonce": str(MAX_NONCE), "zeros": 9, "best": True}


def test_rejected_carries_code_and_reason() -> None:
    wire = orjson.loads(encode(Rejected(job="j", nonce=5, code=Code.LOW_ZEROS, message="3 < 4")))
    assert wire["code"] == 23 and wire["reason"] == "low-zeros" and wire["nonce"] == "5"


def test_reported_hashrate_in_hello_and_report() -> None:
    hello = decode_client(b'{"type":"hello","token":"t","protocol":1,"hashrate":1250000}')
    assert isinstance(hello, Hello) and hello.hashrate == 1_250_000.0
    assert decode_client(b'{"type":"report","hashrate":0}') == Report(0.0)
    assert orjson.loads(encode(Report(2.5))) == {"type": "report", "hashrate": 2.5}


def test_hello_defaults() -> None:
    assert decode_client(b'{"type":"hello","token":"t","protocol":1}') == Hello(token="t")


@settings(max_examples=300)
@given(
    job=st.text(max_size=80),
    nonce=st.integers(0, MAX_NONCE),
    zeros=st.integers(0, 64),
    best=st.booleans(),
)
def test_the_accepted_frame_without_a_dict_is_the_same_json(
    job: str, nonce: int, zeros: int, best: bool
) -> None:
    # the share path formats `accepted` itself: the same object as encode() makes, any job string
    msg = Accepted(job, nonce, zeros, best)
    text = encode_text(msg)
    assert orjson.loads(text) == orjson.loads(encode(msg))


def test_the_accepted_frame_round_trips_with_quotes_and_backslashes_in_the_job() -> None:
    for job in ('j"1', "a\\b", "ünï", "p.s7.12"):
        msg = Accepted(job, 2**64 - 1, 9, True)
        assert decode_server(encode_text(msg)) == msg


def test_encode_text_is_encode_for_every_other_message() -> None:
    for msg in (
        Rejected("j", 5, Code.DUPLICATE, "this nonce was already accepted"),
        Error(Code.NO_HELLO, "x"),
    ):
        assert encode_text(msg) == encode(msg).decode()
