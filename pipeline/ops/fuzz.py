"""Hostile input for the parse stage: what broken crawlers, truncated downloads and attackers publish.

``hostile_inputs`` is deterministic for a seed, so a failure found by ``newsevents soak`` or the fuzz test
can be reproduced from the kind and index in its key. Some inputs are still articles (a truncated page can
keep its title): the contract is only that each one comes out as a document or as a dead letter with a
reason, and that none crashes or stalls a worker.
"""

from __future__ import annotations

import gzip
import random
import re
from dataclasses import dataclass, field
from typing import Iterator

from pipeline.flow.sources import FORMAT_DOCUMENT_JSON, FORMAT_HTML


@dataclass(frozen=True)
class HostileInput:
    key: str
    value: bytes
    kind: str
    headers: list[tuple[str, bytes]] = field(default_factory=list)


ARTICLE = (
    '<!DOCTYPE html><html><head><meta charset="{charset}"/>'
    '<meta property="og:title" content="{title}"/><meta property="og:url" content="https://example.org/{n}"/>'
    '<meta property="article:published_time" content="2019-11-08T10:00:00+00:00"/></head>'
    "<body><article><h1>{title}</h1><p>{body}</p></article></body></html>"
)
WORDS = ("новости сообщает министр заявил news reported minister said україна bank oil market price "
         "президент выборы election court суд weather погода").split()
BLOCK_TAGS = ["div", "ul", "section", "blockquote", "table", "ol", "dl", "span", "b", "a", "font", "em"]
# Over the 2 MiB document limit and under the 4 MiB broker limit: the parse stage must refuse them itself.
HUGE_BYTES = 3 * 1024 * 1024


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _article(rng: random.Random, n: int, charset: str = "utf-8", body: str | None = None) -> str:
    return ARTICLE.format(charset=charset, title=_words(rng, 6), n=n, body=body if body is not None else _words(rng, 80))


def _random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(rng.randint(1, 4096))


def _random_text(rng: random.Random, n: int) -> bytes:
    return "".join(chr(rng.choice([rng.randint(32, 0x2FF), rng.randint(0x400, 0x4FF), rng.randint(0x4E00, 0x9FFF),
                                   rng.randint(0x1F300, 0x1F6FF)])) for _ in range(rng.randint(1, 2000))).encode()


def _truncated(rng: random.Random, n: int, real: list[bytes]) -> bytes:
    page = rng.choice(real) if real else _article(rng, n).encode()
    return page[: rng.randint(0, len(page))]


def _mutated(rng: random.Random, n: int, real: list[bytes]) -> bytes:
    page = bytearray(rng.choice(real) if real else _article(rng, n).encode())
    for _ in range(rng.randint(1, 50)):
        spot = rng.randrange(max(1, len(page)))
        action = rng.random()
        if action < 0.4:
            page[spot:spot + 1] = bytes([rng.randrange(256)])
        elif action < 0.7:
            del page[spot:spot + rng.randint(1, 200)]
        else:
            page[spot:spot] = rng.choice([b"<", b">", b"<div>", b"</article>", b"<!--", b"<script>", b"\x00", b"&#"])
    return bytes(page)


def _deep(rng: random.Random, n: int) -> bytes:
    tag = rng.choice(BLOCK_TAGS)
    depth = rng.choices([500, 1_000, 5_000, 20_000, 100_000], [4, 4, 3, 2, 1])[0]
    filler = rng.choice(["", "x", " "])
    closes = rng.random() < 0.3
    opened = f"<{tag}>{filler}" * depth
    return ("<html><body><article><h1>deep</h1>" + opened + "text" + (f"</{tag}>" * depth if closes else "")
            + "</article></body></html>").encode()


def _huge(rng: random.Random, n: int) -> bytes:
    if rng.random() < 0.5:  # over the document limit: refused
        return b"<html><body><article><p>" + b"a" * HUGE_BYTES + b"</p></article></body></html>"
    paragraph = "<p>" + _words(rng, 120) + "</p>"  # just under it: a valid, very long article
    return _article(rng, n, body=paragraph * (1_900_000 // len(paragraph.encode()))).encode()


def _charset(rng: random.Random, n: int) -> bytes:
    text = _article(rng, n, charset="utf-8")
    choice = rng.randrange(7)
    if choice == 0:  # UTF-8 bytes declared as windows-1251
        return text.replace('charset="utf-8"', 'charset="windows-1251"').encode("utf-8")
    if choice == 1:  # windows-1251 bytes declared as UTF-8
        return text.encode("cp1251", "replace")
    if choice == 2:  # windows-1251 bytes, properly declared
        return text.replace('charset="utf-8"', 'charset="windows-1251"').encode("cp1251", "replace")
    if choice == 3:  # an unknown charset
        return text.replace('charset="utf-8"', 'charset="x-no-such-charset"').encode("cp1251", "replace")
    if choice == 4:  # a codec that is not a text encoding
        return text.replace('charset="utf-8"', 'charset="base64"').encode("cp1251", "replace")
    if choice == 5:
        return text.encode("utf-16")
    return text.encode("koi8-r", "replace")  # declared UTF-8, is KOI8-R


def _stripped(rng: random.Random, n: int, real: list[bytes]) -> bytes:
    page = (rng.choice(real) if real else _article(rng, n).encode()).decode("utf-8", "replace")
    page = re.sub(r"<meta[^>]*>", "", page)
    if rng.random() < 0.5:
        page = re.sub(r"</?article[^>]*>", "", page)
    return page.encode()


def _empty(rng: random.Random, n: int) -> bytes:
    return rng.choice([b"", b" ", b"\n\n", b"<html></html>", b"<html><body></body></html>",
                       b"<html><body><article></article></body></html>", b"<html><body><article> \n </article></body></html>",
                       b'<html><head><meta property="og:title" content=""/></head><body><article><p></p></article></body></html>'])


def _not_html(rng: random.Random, n: int) -> bytes:
    return rng.choice([
        b'{"title": "json", "text": "not html"}', b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>",
        b"\x89PNG\r\n\x1a\n" + rng.randbytes(512), gzip.compress(_article(rng, n).encode(), mtime=0),
        b"<?xml version='1.0'?><rss><channel><item><title>x</title></item></channel></rss>",
        b"id,title\n1,hello\n", _words(rng, 200).encode(), b"\xff\xfe\x00\x00" + rng.randbytes(64),
        b"<svg xmlns='http://www.w3.org/2000/svg'>" + b"<g>" * 2000 + b"</svg>",
    ])


def _control(rng: random.Random, n: int) -> bytes:
    noise = bytes(rng.choice([0, 1, 2, 7, 8, 11, 27, 127]) for _ in range(rng.randint(1, 3000)))
    return b"<html><body><article><p>" + noise + b"</p></article></body></html>"


def _bombs(rng: random.Random, n: int) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return b'<html><body><article><p title="' + b"x" * 1_000_000 + b'">t</p></article></body></html>'
    if choice == 1:
        return b"<html><body><article><p " + b" ".join(b"a%d=1" % i for i in range(50_000)) + b">t</p></article></body></html>"
    if choice == 2:
        return b"<html><body><article>" + b"<p>x" * 200_000 + b"</article></body></html>"
    if choice == 3:
        return b"<html><body><article><p>open comment <!-- " + b"y" * 100_000
    return b"<html><body><article><script>" + b"var a=1;" * 50_000


def _bad_json(rng: random.Random, n: int) -> bytes:
    return rng.choice([b"{", b"[]", b'"a string"', b"null", b'{"title": "", "text": ""}', b'{"title": 5, "text": null}',
                       b"\xff\xfe", b'{"title": "ok", "text": "body", "published_time": "not a time", "lang": 7}',
                       b'{"title": "' + b"t" * 100_000 + b'"}'])


GENERATORS = {
    "random-bytes": _random_bytes, "random-text": _random_text, "deep-nesting": _deep, "huge": _huge,
    "charset": _charset, "empty": _empty, "not-html": _not_html, "control-chars": _control, "bombs": _bombs,
}
NEEDS_REAL = {"truncated": _truncated, "mutated": _mutated, "no-meta": _stripped}
# How often each kind is drawn. Huge ones are rare: each is ~2-3 MB.
WEIGHTS = {"random-bytes": 14, "random-text": 10, "truncated": 16, "mutated": 16, "no-meta": 8, "deep-nesting": 2,
           "huge": 0.1, "charset": 10, "empty": 5, "not-html": 8, "control-chars": 5, "bombs": 0.5, "bad-json": 4}


def hostile_inputs(count: int, seed: int = 0, real_pages: list[bytes] | None = None,
                   prefix: str = "fuzz") -> Iterator[HostileInput]:
    """``count`` bad inputs; each key is ``<prefix>-<kind>-<index>``. ``real_pages`` (contest HTML) seed the
    truncated, mutated and stripped kinds."""
    rng = random.Random(seed)
    real = list(real_pages or [])
    kinds, weights = zip(*WEIGHTS.items())
    for index in range(count):
        kind = rng.choices(kinds, weights)[0]
        headers = [("format", FORMAT_HTML.encode())]
        if kind == "bad-json":
            value = _bad_json(rng, index)
            headers = [("format", FORMAT_DOCUMENT_JSON.encode())]
        elif kind in NEEDS_REAL:
            value = NEEDS_REAL[kind](rng, index, real)
        else:
            value = GENERATORS[kind](rng, index)
        yield HostileInput(f"{prefix}-{kind}-{index}", value, kind, headers)
