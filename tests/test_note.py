"""log.note, log.note_keys and log.cosignature against independent implementations: signed notes, key strings,
cosignatures.

Vector sources:
- tests/vectors/reference-log/: keys and a checkpoint written by Go's golang.org/x/mod/sumdb/note v0.7.0, with one
  tlog-cosignature/v1 line at timestamp 1790000000 (see its README.md).
- tests/vectors/cosigned-checkpoint.note/.keys: a real checkpoint of the arche2025h1 staging CT log with a real
  cosignature from the public witness remora.n621.de.
- PETER_*: golang.org/x/mod sumdb/note/note_test.go (TestSign, TestOpen).
- SPEC_*: the example in c2sp.org/signed-note ("Verifier keys", "Example").
- TORCHWOOD_*: filippo.io/torchwood cmd/litewitness/testdata/mldsa.txt (commit fac5716bb321b939f69bc706463bcfd5835d13ae,
  made by testdata/gentest/mldsa.go): an ML-DSA-44 (type 0x06) key from the seed in the file's header and a
  checkpoint it signed with SignSubtree (timestamp 0).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from log.cosignature import cosignature_v1_message, subtree_v1_message
from log.errors import InvalidInput, SignatureError
from log.note import (
    COSIGNATURE_ED25519,
    COSIGNATURE_MLDSA44,
    ED25519,
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    format_note,
    key_id,
    open_note,
    parse_note,
    sign_note,
)
from log.note_keys import (
    CosignatureSigner,
    CosignatureVerifier,
    Signer,
    generate_signer_key,
    parse_signer_key,
    parse_verifier_key,
)

VECTORS = Path(__file__).resolve().parent / "vectors"
REF = VECTORS / "reference-log"


def _read(path: Path) -> str:
    return path.read_text().strip()


LOG_SKEY = _read(REF / "log.skey")
LOG_VKEY = _read(REF / "log.vkey")
WIT_SKEY = _read(REF / "wit.skey")
WIT_VKEY = _read(REF / "wit.vkey")
REF_NOTE = (REF / "log" / "checkpoint").read_bytes()
REF_TEXT = REF_NOTE.decode().split("\n\n")[0] + "\n"
REF_LOG_LINE, REF_WIT_LINE = REF_NOTE.decode().split("\n\n")[1].splitlines(keepends=True)
REF_COSIGN_TIME = 1790000000

ARCHE_NOTE = (VECTORS / "cosigned-checkpoint.note").read_bytes()
ARCHE_KEYS = dict(
    line.split(" ", 1) for line in (VECTORS / "cosigned-checkpoint.keys").read_text().splitlines()
    if line and not line.startswith("#")
)
REMORA_TIME = 1779573024

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)

SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()

TORCHWOOD_SEED = bytes.fromhex("2886adc2b0eabfce67c0472939127998bf886cf256bfee8ba76a253fce1146e0")
TORCHWOOD_VKEY = (
    "example.com/mldsa-log+b5df45c5+BuhtcL97l3dcitjZ8Y9J54gmQ1TWn/BMF0yePKpTzhlFCkN6ouJDf+9kT9wve4/Y+JGXBUjlRvktAyn"
    "Z6XOQSO+fOaxyPOQAwrtbZKYXnZWSQj9gHPz18q6brnckUv87Rsk/m5GIBvH8J3ymxZjUQS+DnAUIbctLsG2DD6I/ou0JtXpPLvfGhPDTkwc9QeF"
    "yBLBa02Pr9uuWCMohciLqRiFUo5+leUUDKba1g5TYjOjK/VKfntpdbEwoqhTJTG4armjUeXdrYDHeaaMaCAnW5F0lMWYsHjqzRpKjeTjgItseaWK"
    "Sm+ga/mzTAgqsbo5Ob/AwaXf4Av7/mN+ZM6vHON/NE7Ip5vpXpCiNb9YbEQavn+fjNucFxffCacvzXghvaaQ+3C/5h5lpR8jeajBFsFIOvdkYKiz"
    "t29lCjqZDkYQgVfB9nWeH6rbayMkBdDpmRH03cI+urD0Eb5zvRuGJn3PgfwdyQJ3WcDH5Gqn5dkKs5NIVMBC+FfKeD47ruAIruda4JiiYCAxZbWg"
    "wzTI80N5lZFHEndmxKWaw6z/QyphuYkNyvZVZ0R3kH3JN4jdy9KKpNtFoQqnoBTGeEE/fXEEs5ByPlKnrrefRgWTqxssE4nPzHHr5GGgv/NKNTXN"
    "KI4LvNPH5yO3Vv/gIiDZxPPc1Jen8uKkmc0s3kT7XtcuWTlb+zdQeSme9ODj0IoVu29Eav2OsGJpReX7vZx9i2fVfHEMHY5nFew8L5RxcWmZFFiY"
    "hMFZnLvk/SWmHcwr3DhzZchrODhabHQ+S6S49Ws+5aoBBPM3mOrSSKHgobdI7BJrdzdT07kjzyiyS9Gyv8iylUHHMuuh1O05RNRcX5SXmenwGDPc"
    "T9HuLS+hoesO0FQgEt+jAR7vVyUUU2C6g6FC6QNfHL/EUsulvYIAS5fOK7acOeVnoJlpI57Bq+uzLZm6g7IZD0xxQwZPYyT4ek99l9HxDSrVnU0r"
    "Ar+Tq5vVh5YxvDkQVWroYIWek/AI5awjmhgpW4LPapBhLk2ipkF5CmU3T0cm3ET5f14gYQZfz23nCsmZ7qyqiQilgOxJzVYacVoGAStGzJNY1wEf"
    "26MADW5McyQzYI/3Fpaa4Ay6p2yFmcJMfpqZnu4flgWMqN1UpMbbJ6I7hOrCFWryExK/nvSbRrErHTkPz2wvVfI+enbFz86c0iNb7naQKv6LoIZY"
    "EHFOCEsWGL/sCChn6BR4nk1qAakyXEQwi96CkIa3AX562F8lhw6CU4x7T+NWqi2AWfEXImJenORhMP69hGIFsiLAVIjHtsWtJOi8cu+Brg1bFERk"
    "B4ryUTrLf/jFeb6KifZ+s8PZWclDaOLMINZ3E78a5u6AzgXpigJsAJ1A4BY89muedrW2O8kFyh3TTTKyY4kedCW6L+8bFHV2Gce25ZulNC1mZs41"
    "XAI9CteeYaWaiL7uGMXgyQ73wr4ftwAEMdsoQVQsQriutS1AhpBGvjzPCwD5LC5p1fa0WXBQ1puuaNqr3IJodmDLhEIAsZcv1gdXMg8EQg9QLqgL"
    "LrBijU3GxFUQllS8lpQ4TLwFYUJ41+qt28JEeky/VzSEeQd/qob8cbyNM44o7INB+lbhEXEGWvVO8Ak+uWMY+PRKeY9OQcE6E27Nf3eUoHQXkwmX"
    "kjGgj0NKeXBIJc1k/Ws6WDbsU4graVKk5FQjwULcRngOpyiJQ/n8sObkAPXr+1rImK3lQJnxif/B6p5/tsh4rrcUht4yVIvFAaqsgAAE="
)
TORCHWOOD_TEXT = "example.com/mldsa-log\n1\n+zoErtsZtGO6sfiSV/v4UJSIyowisE8hvjw0q5+bD38=\n"
TORCHWOOD_SIG_B64 = (
    "td9FxQAAAAAAAAAAkjFvCxC6244QGemHL0hurmk5M3Hj6noQQtBM1TiwnC1lFmT+t+cUG9W0ENlRQtV20lJFLKCzoJ08ulQEkfiVueKHeMyURh97"
    "Iup0R9d41Monv472jkyfDoX3ILyX/kEOuSV4Ed2tU4VmtDSbP0rofMWAbKJRMnzCpNIT5xMe3tRbWLVTvAtnX9OB4UMKL1dvGS/uuhqW9Ddjik2D"
    "8veitBvk3TbQcT8fanSyZqCbDZ5zzw5JS3Gu5oD1zK7z+KiyqbzKUhglESs7YXFbeU0E03FrXdAPYS6GAuZtBWTJp4DEm4rL+NqU6Xp0n2ehhqd1"
    "rFAJUAcsE5CFakQdlmKkkzVMy3VZYll5ptS0amlYfGqX6/N9bJAYdAoWWpdgCep5eXCutQcTQXc69UocKT99/vholeAP1097GfS+hNL2ndNS2ieM"
    "nj8XLD1LCHVoBjKZUIObB0lx3leGRe9VjYgTRAY2WlE+K32b6Iz1rKzzDD8YBNQdkHgdx44uPOU3I+8szYS6NzQ2Z0QlqAtz0j9vZu9yEUUxCEOR"
    "AiMAHLtV5oWZ/RvSE7qq5B0b8WrHGPGoR/qUNK4ECmlIe/SRo6M7yRrPs3das3ox1bkC3f92c98ewHLeQtLwwsqQJny6rlYaiaiPMxgdT2CVcJEc"
    "KOfaK8pdy2fucBDxHrQitpGkeLJLmWk6LLxR/Ut6s6xNyyKSuZlVslS40n9MJ837uMmJFyecKPliwAj8HzTWQywSkMpEQfJyr4i2Kfa2paOZ4izm"
    "otRTfdvbFWlWFwuGLWOQ0X/pKaExpdNDwqahAwbfGkw/iHbsV7ZIlNIuSNs2ccQvnjM8xqkT6sYYVxYiHpmk5sOwGsdeiMdwQqn7Q/Lz+uc3F6k/"
    "r0Ox7MJTX6fPhFdhe8RJg/77USR/MIGiT4YZHV+XgrtbV0jvMEgB4yEOircsScaBmLv18tTn1GiGlzFjK/s7gOzjk70jf1qCZ1MNgDAPstd/5sXd"
    "wYON0FnA5zPUp9yMkq1/wZq+DuePQDT6nj8zgFrkrvl8s7nibKKaL2bKcje5YP3CFcXLZoESZnC3BJkV85VqXlAKl+dctM3vNfMVrqk3/boBARw2"
    "7mdKLsysIREkWR4caByW0csjL3Js9tn1hB0yf6hIGo8mvPIUjPIXn1rFSSKWkQlq15wu2gwEo9FdVF5beMdF4LVwuO9PZ1Y4oXuRE2pIzMWq/jEz"
    "HAZ7GucP7yzU78X767ucrwO/AXjMlLUsLLFZaQcHHBsrQJLpy5w1Jn/L7XFyR2g0lBOdT+lSOhx7j33oIlzxmqdR47ovtkg+LJpbAJG7n/JiQ/h/"
    "xffe3VdqSsrB8S4ltKz+rq51swoZ59zmRzWaoNkyWX0eu0E7y6EfpfrKEmr0H+fYtVnJvCznWFKzbv7oDXKC0pOyKZsNctvFwhSGEEURCs1G+4Ir"
    "AEWG2Y231thQ8HdMvaMcm+ocvBGhZjmE7bXFkdiJ7S09csFjljFDGCiGRiU+flxkyiqpa1DDgeFRWOEyNAdMeY2iQMTJU9ApqNVrPpjGbg7kL0Hr"
    "fKCQM236d16DKfXIiUmZw/NONKnrliAIs6/WSzKdW/JUyTLiKfPV1ItODmw5eNz7lV36dR8g3us/bpWp4OaDIInrLxYZRfkLHLvXGGg5ogY2k/FM"
    "no/3UBbS0QfstK+ByB/pFVYCHWgDjctwpOHaqAAXAiWHAUh1KOpXBMv8qndpzhsYhvKbrL371aBST0e3iPW/K4x+kFfgdeClsftS9RnE8KDCf4Uz"
    "+9QMP9sxj4+ZACztE19eBVaSvCqv54wO6n5248UzbqPXzA1dweKQziw/FnPWC7qMrcs3jDi6PBPhpruk1xBy08MQg58l4YzuXrPm5gAyiUAyfNsz"
    "vhTotaU02oljhvg24CycDo/2PvQY7sBmisIsVVeHssiRxg23CMgWHaPMDn6OM+IhF2xaAqJOjfnsFBWlvMg8LxsrBnOQ1YABVLLtMvCSaIvgBjPt"
    "8XtLn9gZ0HL9OvGsR3efWHTR5p4nZyuHH2Nm8F3nWKVkEI4p4H6Yo5O0hkzCi1ZB7QT3uEIeR0Hq3g/bLTzmm6XzsjWSmQ8CtPapmXX476QT44wU"
    "0CWJ096SqUGUq2ZCDg3kFkV0BuKPIfLCt4sYK9bjj8UZCqkhyHbVm2x+HQwk8mNnDbUd7PK89riPjA33KX0Sw32RE0uKtB0sC8m7t028aEupsRx5"
    "6/M0jBgeYmEHuRrXpW9nuOkQPTBaHdmYBHNkzTF2arPzZK3diFuhKPvmSQh2CN6g8r0p3EN+dmps1fIUfHM6emkEuaod+ZG83vyJsyd5B2oPMTVP"
    "12z8VJtDRAYfA5bRj+HEw2aD4f23u/Zq3PHk2C9T5LTAu28WCuO/EpXGSIkq1/hRpyE0qhJSnPN9/iE74PoU1OgjGBv6uSUsNhNZJeMe2W23s8EA"
    "yStB5+u83IBgUctrGwXzNdoC9LY1p+kNFSAZXIggNB3alVzoS+D9rcCYTUAafpkdwLaYq5/w0wRchljkG61rl+gZCiwtqZv3SHVxO7kRTAzfHsGD"
    "B1yc/9Sz++IMGyFHYvuqtclhpHPPToFByaVl687b1P4t2i/U4fWPZ4BBhN5Q7HGTxubspw1GY2MjBYU5OXvEJu9aWeibkM/fg6QrxPRYNsJBNJQR"
    "ywMjYHj6AefrZeGXGxSNgS50kCNBvV7XTli/17y3MFgR4WfNmBK3BqKb87v3DBMVnLHcqvw1ZVjFPv91q0XYaDdVFHqOnS4Fh5nfwh1qfuvKrUZl"
    "wFPcwW+pG4YDyjx90MTFugpQ6KfEusmUhB5Dqr79nYWbOhW3e0PCEZtxmVrH9EtCHEgO6wnkWjPke6XULARu0ECF1gZvQczEjKfzxCt6Rknz+27l"
    "XyzgzRyHWxr0kB/pFty+8IebrDfIW9757d+1QLonDTmkLQiirF0ygsgQALmk1KljcHD/qiAZPHh5YX+Q2VdDfIfGeMXmCg3nX5r5DINcx47fNHtg"
    "WeGn8MjF8Hnff6x+ZU/7YqcBrDOvGqn46FBvuRY0+mWkRo576207vQR/023owl7pXZ5p/75V5yDkTZWDtXsfKjpypcxrWIBsg5GC25nZdjQQGBtF"
    "UF1pfn+xvunq9AEIFidYY2Vyc3mYw8TW7PkVKis5PENhdbfJHDtIdIiQsLe+1Nr+/wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA4eKDU="
)
TORCHWOOD_NOTE = (TORCHWOOD_TEXT + "\n\u2014 example.com/mldsa-log " + TORCHWOOD_SIG_B64 + "\n").encode()


def _sig_line(data: bytes, index: int) -> str:
    return data.decode().split("\n\n")[-1].splitlines(keepends=True)[index]


# --- key strings and key IDs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skey", "vkey"),
    [(LOG_SKEY, LOG_VKEY), (WIT_SKEY, WIT_VKEY), (PETER_SKEY, PETER_VKEY)],
    ids=["reference-log", "reference-witness", "x/mod-PeterNeumann"],
)
def test_signer_key_derives_the_independent_verifier_key(skey: str, vkey: str) -> None:
    signer = parse_signer_key(skey)
    assert signer.verifier_key == vkey
    assert signer.key_id == int(vkey.split("+")[1], 16)
    assert signer.signer_key == skey  # formatter round trip
    verifier = parse_verifier_key(vkey)
    assert (verifier.name, verifier.key_id, verifier.verifier_key) == (signer.name, signer.key_id, vkey)


@pytest.mark.parametrize(
    "vkey", [LOG_VKEY, WIT_VKEY, PETER_VKEY, ENOCH_VKEY, SPEC_VKEY, TORCHWOOD_VKEY, *ARCHE_KEYS.values()]
)
def test_verifier_key_round_trip_and_key_id(vkey: str) -> None:
    verifier = parse_verifier_key(vkey)
    assert verifier.verifier_key == vkey
    name, hex_id, b64 = vkey.split("+", 2)
    material = base64.b64decode(b64)
    expected = int.from_bytes(hashlib.sha256(name.encode() + b"\n" + material).digest()[:4], "big")
    assert verifier.key_id == expected == int(hex_id, 16)
    assert key_id(name, material[0], material[1:]) == expected
    assert verifier.key_type == material[0]


def test_reference_key_ids() -> None:
    assert parse_signer_key(LOG_SKEY).key_id == 0x94F22EDB
    assert CosignatureSigner(WIT_SKEY).key_id == 0x511184FF
    assert CosignatureVerifier(WIT_VKEY).key_type == COSIGNATURE_ED25519


def test_mldsa_key_from_seed_matches_torchwood() -> None:
    signer = Signer("example.com/mldsa-log", COSIGNATURE_MLDSA44, TORCHWOOD_SEED)
    assert signer.verifier_key == TORCHWOOD_VKEY
    assert signer.key_id == 0xB5DF45C5
    assert parse_signer_key(signer.signer_key).verifier_key == TORCHWOOD_VKEY


@pytest.mark.parametrize("key_type", [ED25519, COSIGNATURE_ED25519, COSIGNATURE_MLDSA44])
def test_generate_signer_key_round_trips(key_type: int) -> None:
    skey, vkey = generate_signer_key("example.com/gen", key_type)
    assert skey.startswith("PRIVATE+KEY+example.com/gen+")
    signer, verifier = parse_signer_key(skey), parse_verifier_key(vkey)
    assert signer.verifier_key == vkey
    assert signer.key_type == verifier.key_type == key_type
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == key_type


BAD_VERIFIER_KEYS = {
    "empty": "",
    "no key": "name+94f22edb",
    "empty name": LOG_VKEY.replace("reference.example/log", ""),
    "space in name": LOG_VKEY.replace("reference.example/log", "reference example/log"),
    "no-break space in name": LOG_VKEY.replace("reference.example/log", "reference\u00a0example/log"),
    "ideographic space in name": LOG_VKEY.replace("reference.example/log", "reference\u3000example/log"),
    "wrong key id": LOG_VKEY.replace("94f22edb", "94f22edc"),
    "uppercase key id": LOG_VKEY.replace("94f22edb", "94F22EDB"),
    "short key id": LOG_VKEY.replace("94f22edb", "94f22ed"),
    "other name, same key": LOG_VKEY.replace("reference.example/log", "reference.example/other"),
    "bad base64": LOG_VKEY[:-1] + "!",
    "unpadded base64": PETER_VKEY[:-1] if PETER_VKEY.endswith("=") else LOG_VKEY + "=",
    "short public key": "name+00000000+" + base64.b64encode(b"\x01" + bytes(31)).decode(),
    "type 0x05 (RFC 6962)": "name+00000000+" + base64.b64encode(b"\x05" + bytes(32)).decode(),
    "type 0x02 (ECDSA)": "name+00000000+" + base64.b64encode(b"\x02" + bytes(32)).decode(),
    "ML-DSA key cut short": TORCHWOOD_VKEY[:-8],
}


@pytest.mark.parametrize("vkey", BAD_VERIFIER_KEYS.values(), ids=BAD_VERIFIER_KEYS.keys())
def test_parse_verifier_key_rejects(vkey: str) -> None:
    with pytest.raises(InvalidInput):
        parse_verifier_key(vkey)


BAD_SIGNER_KEYS = {
    "verifier key": LOG_VKEY,
    "lowercase prefix": LOG_SKEY.replace("PRIVATE+KEY", "private+key"),
    "wrong key id": LOG_SKEY.replace("94f22edb", "00000000"),
    "other name": LOG_SKEY.replace("reference.example/log", "reference.example/other"),
    "plus in name": LOG_SKEY.replace("reference.example/log", "reference.example+log"),
    "short seed": "PRIVATE+KEY+name+00000000+" + base64.b64encode(b"\x01" + bytes(31)).decode(),
    "bad base64": LOG_SKEY[:-2] + "*x",
}


@pytest.mark.parametrize("skey", BAD_SIGNER_KEYS.values(), ids=BAD_SIGNER_KEYS.keys())
def test_parse_signer_key_rejects(skey: str) -> None:
    with pytest.raises(InvalidInput):
        parse_signer_key(skey)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\nb", "a\u2028b", "a\x00b", "a\ud800b"])
def test_generate_signer_key_rejects_bad_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        generate_signer_key(name)


def test_signer_repr_hides_the_seed() -> None:
    signer = parse_signer_key(LOG_SKEY)
    assert LOG_SKEY.rsplit("+", 1)[1] not in repr(signer)


# --- notes: format, parse, sign, open ------------------------------------------------------------------------


def test_sign_note_matches_x_mod_note_byte_for_byte() -> None:
    signed = sign_note(PETER_TEXT, [parse_signer_key(PETER_SKEY)])
    assert signed == (PETER_TEXT + "\n" + PETER_SIG).encode()


def test_reference_checkpoint_signature_is_byte_identical() -> None:
    signed = sign_note(REF_TEXT, [parse_signer_key(LOG_SKEY)])
    assert _sig_line(signed, 0) == REF_LOG_LINE


def test_reference_cosignature_is_byte_identical() -> None:
    cosig = CosignatureSigner(WIT_SKEY).cosign(REF_TEXT, REF_COSIGN_TIME)
    assert cosig.to_line() == REF_WIT_LINE
    assert cosig.timestamp == REF_COSIGN_TIME
    log_sig = parse_note(sign_note(REF_TEXT, [parse_signer_key(LOG_SKEY)])).signatures[0]
    assert format_note(REF_TEXT, [log_sig, cosig]) == REF_NOTE


@pytest.mark.parametrize(
    "data",
    [REF_NOTE, ARCHE_NOTE, SPEC_NOTE, TORCHWOOD_NOTE, (PETER_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()],
    ids=["reference", "arche", "signed-note-spec", "torchwood-mldsa", "x/mod"],
)
def test_parse_format_round_trip_on_vectors(data: bytes) -> None:
    note = parse_note(data)
    assert format_note(note.text, note.signatures) == data
    assert note.to_bytes() == data
    for sig in note.signatures:
        assert NoteSignature.from_line(sig.to_line()[:-1]) == sig


def test_open_note_spec_example() -> None:
    note, verified = open_note(SPEC_NOTE, [parse_verifier_key(SPEC_VKEY)])
    assert note.text == "This is an example message.\n"
    assert [(s.name, s.key_id) for s in verified] == [("example.com/foo", 0x530D903A)]


def test_open_note_x_mod_vectors() -> None:
    peter, enoch = parse_verifier_key(PETER_VKEY), parse_verifier_key(ENOCH_VKEY)
    data = (PETER_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    note, verified = open_note(data, [peter])
    assert note.text == PETER_TEXT and [s.name for s in verified] == ["PeterNeumann"]
    _, verified = open_note(data, [peter, enoch])
    assert [s.name for s in verified] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(SignatureError):
        open_note(data, [])
    with pytest.raises(InvalidInput):
        open_note(data, [peter, peter])


def test_open_note_reference_with_log_and_witness() -> None:
    log, wit = parse_verifier_key(LOG_VKEY), parse_verifier_key(WIT_VKEY)
    note, verified = open_note(REF_NOTE, [log, wit])
    assert note.text == REF_TEXT
    assert [(s.name, s.key_id) for s in verified] == [(log.name, log.key_id), (wit.name, wit.key_id)]
    # The witness alone is also a known key that signed (a cosignature verifies through the generic interface).
    assert [s.name for s in open_note(REF_NOTE, [wit])[1]] == [wit.name]


def test_open_note_ignores_keys_matching_only_name_or_only_id() -> None:
    # signed-note: ignore signatures from unknown keys even if they share a name or an ID (but not both).
    log = parse_signer_key(LOG_SKEY)
    _, other_vkey = generate_signer_key(log.name)
    other = parse_verifier_key(other_vkey)  # same name, other ID
    data = sign_note(REF_TEXT, [log])
    with pytest.raises(SignatureError, match="no signature"):
        open_note(data, [other])
    same_id = NoteSignature("someone.else/log", log.key_id, bytes(64))  # same ID, other name
    mixed = format_note(REF_TEXT, [same_id, *parse_note(data).signatures])
    _, verified = open_note(mixed, [parse_verifier_key(LOG_VKEY)])
    assert [s.name for s in verified] == [log.name]


def test_open_note_rejects_a_bad_second_signature_from_a_known_key() -> None:
    good = parse_note(REF_NOTE).signatures[0]
    bad = NoteSignature(good.name, good.key_id, bytes(64))
    with pytest.raises(SignatureError, match="does not verify"):
        open_note(format_note(REF_TEXT, [good, bad]), [parse_verifier_key(LOG_VKEY)])


def test_open_note_reports_each_key_once() -> None:
    good = parse_note(REF_NOTE).signatures[0]
    _, verified = open_note(format_note(REF_TEXT, [good, good]), [parse_verifier_key(LOG_VKEY)])
    assert verified == [good]


def test_note_text_may_contain_blank_lines() -> None:
    signer = parse_signer_key(LOG_SKEY)
    text = "first\n\nthird\n\n"
    note, _ = open_note(sign_note(text, [signer]), [signer.verifier])
    assert note.text == text


def test_signature_limit() -> None:
    data = (PETER_TEXT + "\n" + PETER_SIG * MAX_SIGNATURES).encode()
    assert len(parse_note(data).signatures) == MAX_SIGNATURES
    with pytest.raises(SignatureError, match="at most"):
        parse_note((PETER_TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1)).encode())


# Every mutation of the reference checkpoint that open_note (with the log's key) must reject.
def _replace_sig_byte(data: bytes, line: int, flip: int) -> bytes:
    text, block = data.decode().split("\n\n")
    lines = block.splitlines()
    prefix, b64 = lines[line].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[flip // 8] ^= 1 << (flip % 8)
    lines[line] = prefix + " " + base64.b64encode(bytes(raw)).decode()
    return (text + "\n\n" + "\n".join(lines) + "\n").encode()


_DASH = "\u2014".encode()
NOTE_MUTATIONS = {
    "flipped bit in signature": lambda d: _replace_sig_byte(d, 0, 8 * 4 + 3),
    "flipped last bit of signature": lambda d: _replace_sig_byte(d, 0, 8 * 68 - 1),
    "wrong key id": lambda d: _replace_sig_byte(d, 0, 0),
    "wrong name": lambda d: d.replace(_DASH + b" reference.example/log ", _DASH + b" reference.example/lug "),
    "changed body": lambda d: d.replace(b"\n70000\n", b"\n70001\n"),
    "changed root": lambda d: d.replace(b"ZnbNk5", b"ZnbNk6"),
    "missing trailing newline": lambda d: d[:-1],
    "bad base64 character": lambda d: d.replace(b"lPIu21", b"lPIu2!"),
    "unpadded base64": lambda d: d.replace(b"0gw=\n", b"0gw\n"),
    "non-canonical pad bits": lambda d: d.replace(b"0gw=\n", b"0gx=\n"),
    "extra blank line": lambda d: d.replace(b"=\n\n", b"=\n\n\n", 1),
    "no blank line": lambda d: d.replace(b"=\n\n", b"=\n", 1),
    "no signatures": lambda d: d.split(b"\n\n")[0] + b"\n\n",
    "hyphen instead of em dash": lambda d: d.replace(_DASH + b" reference.example/log ", b"- reference.example/log "),
    "missing space after dash": lambda d: d.replace(_DASH + b" reference", _DASH + b"reference", 1),
    "two spaces before signature": lambda d: d.replace(b"example/log lPIu", b"example/log  lPIu"),
    "CRLF line endings": lambda d: d.replace(b"\n", b"\r\n"),
    "tab in text": lambda d: d.replace(b"reference.example/log\n70000", b"reference.example/log\t\n70000"),
    "NUL byte": lambda d: d.replace(b"70000", b"700\x0000"),
    "invalid UTF-8": lambda d: b"\xff" + d,
    "truncated em dash": lambda d: d.replace(_DASH + b" reference.example/log", _DASH[:2] + b" reference.example/log"),
    "garbage after signatures": lambda d: d + b"Unexpected line.\n",
    "signature of 4 bytes": lambda d: d.replace(_sig_line(d, 0).split(" ")[-1].encode(), b"lPIu2w==\n"),
    "truncated signature": lambda d: d.replace(b"lPIu21FCTvLA", b"lPIu21FC"),
    "log line dropped": lambda d: d.replace(REF_LOG_LINE.encode(), b""),
    "oversize note": lambda d: d.split(b"\n\n")[0] + b"\n" + b"x" * MAX_NOTE_SIZE + b"\n\n" + d.split(b"\n\n")[1],
}


@pytest.mark.parametrize("mutate", NOTE_MUTATIONS.values(), ids=NOTE_MUTATIONS.keys())
def test_open_note_rejects_mutation(mutate) -> None:
    mutated = mutate(REF_NOTE)
    assert mutated != REF_NOTE
    with pytest.raises(SignatureError):
        open_note(mutated, [parse_verifier_key(LOG_VKEY)])


BAD_TEXTS = {
    "empty": "",
    "no final newline": "a",
    "carriage return": "a\r\n",
    "NUL": "a\x00\n",
    "surrogate": "\ud800\n",
}


@pytest.mark.parametrize("text", BAD_TEXTS.values(), ids=BAD_TEXTS.keys())
def test_sign_and_format_reject_bad_text(text: str) -> None:
    sig = NoteSignature("a", 1, b"x")
    with pytest.raises(InvalidInput):
        format_note(text, [sig])
    with pytest.raises(InvalidInput):
        sign_note(text, [parse_signer_key(LOG_SKEY)])


def test_format_note_rejects_bad_signatures() -> None:
    with pytest.raises(InvalidInput):
        format_note("a\n", [])
    for sig in (NoteSignature("a b", 1, b"x"), NoteSignature("a", 2**32, b"x"), NoteSignature("a", 1, b"")):
        with pytest.raises(InvalidInput):
            format_note("a\n", [sig])


_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="+\x85"),
    min_size=1,
    max_size=20,
)
_lines = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(_lines, min_size=1, max_size=5),
    sigs=st.lists(
        st.tuples(_names, st.integers(0, 2**32 - 1), st.binary(min_size=1, max_size=80)), min_size=1, max_size=5
    ),
)
def test_format_parse_round_trip_property(lines: list[str], sigs: list[tuple[str, int, bytes]]) -> None:
    text = "".join(line + "\n" for line in lines)
    signatures = tuple(NoteSignature(*s) for s in sigs)
    data = format_note(text, signatures)
    assert parse_note(data) == Note(text, signatures)


# --- cosignatures -------------------------------------------------------------------------------------------


def test_reference_cosignature_verifies() -> None:
    note = parse_note(REF_NOTE)
    assert CosignatureVerifier(WIT_VKEY).verify(note.text, note.signatures[1]) == REF_COSIGN_TIME


def test_arche_checkpoint_remora_cosignature() -> None:
    note = parse_note(ARCHE_NOTE)
    assert note.text.splitlines()[1] == "1432088532"
    remora = CosignatureVerifier(ARCHE_KEYS["witness"])
    [line] = [s for s in note.signatures if s.name == "remora.n621.de"]
    assert remora.verify(note.text, line) == REMORA_TIME == 0x6A122120
    # open_note with only the witness: the log's lines (one RFC 6962 type 0x05, one Ed25519) and the other
    # witnesses' lines are from unknown keys and are ignored.
    _, verified = open_note(ARCHE_NOTE, [remora.verifier])
    assert verified == [line]
    assert open_note(ARCHE_NOTE, [remora])[1] == [line]  # a CosignatureVerifier is accepted as it is


def test_arche_checkpoint_log_signature() -> None:
    # The note carries two lines from the log: an RFC 6962 TreeHeadSignature (type 0x05, key ID cd333cb1, which we
    # do not support and ignore) and an Ed25519 line under the published key ba2f06c0, which verifies.
    log = parse_verifier_key(ARCHE_KEYS["log"])
    _, verified = open_note(ARCHE_NOTE, [log])
    assert [(s.name, s.key_id) for s in verified] == [(log.name, 0xBA2F06C0)]


def test_cosignature_v1_message_layout() -> None:
    # tlog-cosignature, "Ed25519 signed message": header line, time line, then the checkpoint body.
    assert cosignature_v1_message(REF_TEXT, 1679315147) == b"cosignature/v1\ntime 1679315147\n" + REF_TEXT.encode()
    assert cosignature_v1_message(REF_TEXT, 0).startswith(b"cosignature/v1\ntime 0\n")


def test_subtree_v1_message_layout() -> None:
    # tlog-cosignature, "ML-DSA-44 signed message", built field by field from the struct definition.
    root = bytes(range(32))
    expected = (
        b"subtree/v1\n\x00"
        + b"\x0e" + b"example.com/pq"
        + (1679315147).to_bytes(8, "big")
        + b"\x0f" + b"example.com/log"
        + bytes(8)
        + (20852163).to_bytes(8, "big")
        + root
    )
    assert subtree_v1_message("example.com/pq", 1679315147, "example.com/log", 0, 20852163, root) == expected
    assert len(b"subtree/v1\n\x00") == 12


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("", 1, "o", 0, 1, bytes(32)), "cosigner name"),
        (("n" * 256, 1, "o", 0, 1, bytes(32)), "cosigner name"),
        (("n", 1, "o" * 256, 0, 1, bytes(32)), "origin"),
        (("n", 2**63, "o", 0, 1, bytes(32)), "timestamp"),
        (("n", 1, "o", 1, 2, bytes(32)), "timestamp"),
        (("n", 0, "o", 2, 1, bytes(32)), "subtree"),
        (("n", 0, "o", 0, 1, bytes(31)), "32"),
        (("n", 0, "o", 0, 0, bytes(32)), "empty subtree"),
    ],
)
def test_subtree_v1_message_bounds(args: tuple, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        subtree_v1_message(*args)


def test_torchwood_mldsa_signature_verifies() -> None:
    note = parse_note(TORCHWOOD_NOTE)
    verifier = CosignatureVerifier(TORCHWOOD_VKEY)
    assert verifier.verify(note.text, note.signatures[0]) == 0
    assert open_note(TORCHWOOD_NOTE, [verifier.verifier])[1] == list(note.signatures)


def test_mldsa_cosign_and_verify() -> None:
    skey, vkey = generate_signer_key("example.com/pq-witness", COSIGNATURE_MLDSA44)
    cosig = CosignatureSigner(skey).cosign(REF_TEXT, REF_COSIGN_TIME)
    assert len(cosig.signature) == 8 + 2420
    assert CosignatureVerifier(vkey).verify(REF_TEXT, cosig) == REF_COSIGN_TIME
    with pytest.raises(InvalidInput, match="extension"):
        CosignatureSigner(skey).cosign(REF_TEXT + "extension\n", REF_COSIGN_TIME)


def test_cosigner_signer_through_sign_note() -> None:
    # A cosigner key used as a plain note signer cosigns at the current time.
    signer = parse_signer_key(WIT_SKEY)
    _, verified = open_note(sign_note(REF_TEXT, [signer]), [parse_verifier_key(WIT_VKEY)])
    assert verified[0].timestamp > REF_COSIGN_TIME - 10**9


def test_cosignature_keys_must_have_cosignature_types() -> None:
    with pytest.raises(InvalidInput):
        CosignatureSigner(LOG_SKEY)
    with pytest.raises(InvalidInput):
        CosignatureVerifier(LOG_VKEY)
    with pytest.raises(InvalidInput):
        parse_signer_key(LOG_SKEY).cosign_bytes(REF_TEXT, 1)


def test_cosign_rejects_bad_arguments() -> None:
    cosigner = CosignatureSigner(WIT_SKEY)
    for timestamp in (-1, 2**63, True, 1.5):
        with pytest.raises(InvalidInput):
            cosigner.cosign(REF_TEXT, timestamp)
    with pytest.raises(InvalidInput, match="not a checkpoint"):
        cosigner.cosign("not a checkpoint\n", 1)


def _ed25519_cosig_with(timestamp: int) -> NoteSignature:
    """A line whose timestamp field is changed but whose signature is the reference one."""
    ref = parse_note(REF_NOTE).signatures[1]
    return NoteSignature(ref.name, ref.key_id, struct.pack(">Q", timestamp) + ref.signature[8:])


def _flip(sig: NoteSignature, bit: int) -> NoteSignature:
    raw = bytearray(sig.signature)
    raw[bit // 8] ^= 1 << (bit % 8)
    return NoteSignature(sig.name, sig.key_id, bytes(raw))


_REF_COSIG = parse_note(REF_NOTE).signatures[1]
_REF_LOGSIG = parse_note(REF_NOTE).signatures[0]
COSIGNATURE_MUTATIONS = {
    "flipped bit in signature": (REF_TEXT, _flip(_REF_COSIG, 8 * 20)),
    "flipped bit in timestamp": (REF_TEXT, _flip(_REF_COSIG, 7 * 8)),
    "changed timestamp": (REF_TEXT, _ed25519_cosig_with(REF_COSIGN_TIME + 1)),
    "timestamp above 2^63 - 1": (REF_TEXT, _ed25519_cosig_with(2**63 + REF_COSIGN_TIME)),
    "changed size": (REF_TEXT.replace("70000", "70001"), _REF_COSIG),
    "changed origin": (REF_TEXT.replace("reference.example/log", "reference.example/lug"), _REF_COSIG),
    "extension line added": (REF_TEXT + "ext\n", _REF_COSIG),
    "body without final newline": (REF_TEXT[:-1], _REF_COSIG),
    "body is not a checkpoint": ("hello\n", _REF_COSIG),
    "wrong key id": (REF_TEXT, NoteSignature(_REF_COSIG.name, _REF_COSIG.key_id ^ 1, _REF_COSIG.signature)),
    "wrong name": (REF_TEXT, NoteSignature("reference.example/other", _REF_COSIG.key_id, _REF_COSIG.signature)),
    "truncated": (REF_TEXT, NoteSignature(_REF_COSIG.name, _REF_COSIG.key_id, _REF_COSIG.signature[:-1])),
    "no timestamp": (REF_TEXT, NoteSignature(_REF_COSIG.name, _REF_COSIG.key_id, _REF_COSIG.signature[8:])),
    "log's plain signature": (
        REF_TEXT,
        NoteSignature(_REF_COSIG.name, _REF_COSIG.key_id, _REF_LOGSIG.signature + bytes(8)),
    ),
}


@pytest.mark.parametrize(("text", "sig"), COSIGNATURE_MUTATIONS.values(), ids=COSIGNATURE_MUTATIONS.keys())
def test_cosignature_verifier_rejects_mutation(text: str, sig: NoteSignature) -> None:
    with pytest.raises(SignatureError):
        CosignatureVerifier(WIT_VKEY).verify(text, sig)


_TW_SIG = parse_note(TORCHWOOD_NOTE).signatures[0]
MLDSA_MUTATIONS = {
    "flipped bit in signature": (TORCHWOOD_TEXT, _flip(_TW_SIG, 8 * 100)),
    "changed timestamp": (
        TORCHWOOD_TEXT,
        NoteSignature(_TW_SIG.name, _TW_SIG.key_id, (1).to_bytes(8, "big") + _TW_SIG.signature[8:]),
    ),
    "changed size": (TORCHWOOD_TEXT.replace("\n1\n", "\n2\n"), _TW_SIG),
    "extension line added": (TORCHWOOD_TEXT + "ext\n", _TW_SIG),
    "truncated": (TORCHWOOD_TEXT, NoteSignature(_TW_SIG.name, _TW_SIG.key_id, _TW_SIG.signature[:-1])),
    "Ed25519-sized signature": (TORCHWOOD_TEXT, NoteSignature(_TW_SIG.name, _TW_SIG.key_id, _TW_SIG.signature[:72])),
}


@pytest.mark.parametrize(("text", "sig"), MLDSA_MUTATIONS.values(), ids=MLDSA_MUTATIONS.keys())
def test_mldsa_cosignature_verifier_rejects_mutation(text: str, sig: NoteSignature) -> None:
    with pytest.raises(SignatureError):
        CosignatureVerifier(TORCHWOOD_VKEY).verify(text, sig)


def test_mldsa_signature_is_not_valid_for_another_cosigner_name() -> None:
    # The ML-DSA-44 message commits to the cosigner name: the same key under another name does not verify.
    renamed = Signer("example.com/other", COSIGNATURE_MLDSA44, TORCHWOOD_SEED).verifier
    assert not renamed.verify(TORCHWOOD_TEXT.encode(), _TW_SIG.signature)
