"""raw HTML bytes → Document. Pure: no Kafka, no model.

``parse_html`` either returns a Document or raises ``ParseError`` with a short machine-readable
``reason`` (what the dead-letter record carries) and a human ``detail``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import orjson
from selectolax.lexbor import LexborHTMLParser

from pipeline.records import Document

MAX_HTML_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 400  # deeper than any real article; deeper is tag soup (and Python recursion would choke)
# Checked on the raw markup before lexbor sees it: lexbor's tree building is quadratic in the depth of open
# block elements (60,000 unclosed <div>s take 6 s, 400,000 minutes), so a hostile page could stall a worker.
MAX_MARKUP_DEPTH = 2 * MAX_DEPTH
MAX_ATTRIBUTES = 1000  # on one element; 50,000 take lexbor 5 s
# Elements that never nest (void) or that the next sibling closes implicitly: they add no depth.
_FLAT_TAGS = frozenset(
    "area base br col embed hr img input link meta source track wbr param keygen "
    "p li dt dd option optgroup tr td th tbody thead tfoot colgroup caption rb rt rp".split()
)
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]{0,30})[^<>]*?(/?)>")

# Elements that start a new line of text; everything else is inline and keeps its surrounding spaces.
BLOCK_TAGS = frozenset(
    "p div section article header footer li ul ol dl dt dd blockquote pre h2 h3 h4 h5 h6 table tr td th "
    "figure figcaption br hr main nav details summary".split()
)
# Not body text: the title is read from <h1>/og:title, the date from <address><time>.
SKIP_TAGS = frozenset("script style noscript template h1 address aside svg iframe button form select head".split())
_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-]+)""", re.IGNORECASE)
_SPACES_RE = re.compile(r"[ \t\r\f\v\u00a0\u2009\u200b\u202f]+")


class ParseError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_html(raw: bytes, max_bytes: int = MAX_HTML_BYTES) -> str:
    """Bytes → str, honouring a declared non-UTF-8 charset; rejects what is not text."""
    if not raw or not raw.strip():
        raise ParseError("empty", "the record value is empty")
    if len(raw) > max_bytes:
        raise ParseError("too-large", f"{len(raw)} bytes is over the {max_bytes}-byte limit")
    head = raw[:8192]
    if b"\x00" in head:
        raise ParseError("binary", "NUL bytes in the first 8 KiB: not a text document")
    try:
        # UTF-8 first: a valid UTF-8 byte string is practically never legacy-encoded text by accident, while
        # a wrong single-byte charset declaration would decode "successfully" into mojibake.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        declared = _CHARSET_RE.search(head)
        text = None
        if declared:
            try:
                text = raw.decode(declared.group(1).decode("ascii"))
            except (LookupError, UnicodeError):  # unknown or non-text codec ("base64"), or wrong charset
                text = None
        if text is None:
            raise ParseError("not-utf8", f"not valid UTF-8 at byte {err.start} and no working charset declared") from None
    control = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if control > 0.05 * min(len(text), 4096):
        raise ParseError("binary", f"{control} control characters in the first 4 KiB")
    return text


def check_markup(html: str) -> None:
    """Refuse tag soup in one linear pass over the tags, before the tree builder sees it.

    Depth is an upper bound that ignores implied end tags only for the elements in ``_FLAT_TAGS``: enough to
    refuse 60,000 unclosed ``<div>``s, never enough to reject a real article (the deepest in the contest
    sample is 15). Lexbor is also quadratic in one element's attribute count.
    """
    depth = 0
    for match in _TAG_RE.finditer(html):
        closing, tag, self_closing = match.groups()
        if match.end() - match.start() > 8 * MAX_ATTRIBUTES and match.group(0).count("=") > MAX_ATTRIBUTES:
            raise ParseError("tag-soup", f"a <{tag}> element with more than {MAX_ATTRIBUTES} attributes")
        if tag.lower() in _FLAT_TAGS or self_closing:
            continue
        depth = max(0, depth - 1) if closing else depth + 1
        if depth > MAX_MARKUP_DEPTH:
            raise ParseError("tag-soup", f"elements nested more than {MAX_MARKUP_DEPTH} deep in the markup")


def _clean(text: str) -> str:
    lines = (_SPACES_RE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def extract_text(node) -> str:
    """Text of a subtree with a newline at block boundaries and inline tags kept apart by their own spaces.

    An explicit stack instead of recursion: tag soup can nest thousands deep.
    """
    parts: list[str] = []
    stack: list[tuple[object, int, bool]] = [(node, 0, False)]
    while stack:
        current, depth, leaving = stack.pop()
        if leaving:
            parts.append("\n")
            continue
        if depth > MAX_DEPTH:
            raise ParseError("tag-soup", f"elements nested more than {MAX_DEPTH} deep")
        tag = current.tag
        if tag == "-text":
            parts.append(current.text_content or "")
            continue
        if (tag in SKIP_TAGS and depth > 0) or tag == "-comment":
            continue
        if tag in BLOCK_TAGS:
            parts.append("\n")
            stack.append((current, depth, True))
        children = list(current.iter(include_text=True))
        stack.extend((child, depth + 1, False) for child in reversed(children))
    return _clean("".join(parts))


def _meta(tree: LexborHTMLParser, prop: str) -> str | None:
    node = tree.css_first(f'meta[property="{prop}"]') or tree.css_first(f'meta[name="{prop}"]')
    if node is None:
        return None
    value = (node.attributes.get("content") or "").strip()
    return value or None


def parse_time(value: object) -> str | None:
    """ISO 8601 (or Unix seconds) → ISO 8601 with an offset (naive times are taken as UTC); None when unparseable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()


def detect_language(text: str) -> str:
    """py3langid (model inside the wheel); 'und' for text too short to tell."""
    import py3langid

    sample = text[:1500]
    if sum(ch.isalpha() for ch in sample) < 10:
        return "und"
    lang, _score = py3langid.classify(sample)
    return lang


def parse_html(raw: bytes, doc_id: str, *, source: str | None = None, ingested_at_ms: int | None = None,
               max_bytes: int = MAX_HTML_BYTES) -> Document:
    html = decode_html(raw, max_bytes)
    if "<" not in html or not re.search(r"<\s*(html|head|body|article|meta|p|div)\b", html, re.IGNORECASE):
        raise ParseError("not-html", "no HTML elements found")
    check_markup(html)
    tree = LexborHTMLParser(html)
    article = tree.css_first("article")
    title = _meta(tree, "og:title")
    if article is None and title is None:
        raise ParseError("not-an-article", "neither an <article> element nor og:title metadata")
    h1 = article.css_first("h1") if article is not None else None
    if not title and h1 is not None:
        title = extract_text(h1).replace("\n", " ")
    if not title:
        title_node = tree.css_first("title")
        title = extract_text(title_node).replace("\n", " ") if title_node is not None else ""
    body = extract_text(article) if article is not None else ""
    description = _meta(tree, "og:description") or ""
    if not title.strip() and not body:
        raise ParseError("no-content", "no title and no body text")
    time_node = article.css_first("time[datetime]") if article is not None else None
    published = parse_time(_meta(tree, "article:published_time")) or parse_time(
        time_node.attributes.get("datetime") if time_node is not None else None)
    title = _clean(title)
    first_line, _, rest = body.partition("\n")
    if first_line == title:  # a subtitle heading repeating the title adds nothing
        body = rest
    return Document(
        doc_id=doc_id, title=title, text=body, url=_meta(tree, "og:url"), site_name=_meta(tree, "og:site_name"),
        published_time=published, description=_clean(description),
        lang=detect_language(f"{title}\n{description}\n{body}"), source=source, ingested_at_ms=ingested_at_ms,
    )

def document_from_json(value: bytes, key: str, ingested_at_ms: int | None, source: str | None) -> Document:
    """A JSONL-published document (fields of shared/data/corpus: id, url, site_name, published_time, lang, title, text)."""
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        raise ParseError("bad-json", str(err)) from None
    if not isinstance(raw, dict):
        raise ParseError("bad-json", "a document must be a JSON object")

    def text_field(name: str) -> str | None:  # crawlers put numbers, lists and nulls where strings belong
        value = raw.get(name)
        return value.strip() or None if isinstance(value, str) else None

    title, text = text_field("title") or "", text_field("text") or ""
    if not title and not text:
        raise ParseError("no-content", "no title and no text (as strings)")
    lang = text_field("lang")
    lang = lang if lang not in (None, "other") else detect_language(f"{title}\n{text}")
    return Document(doc_id=key, title=title, text=text, url=text_field("url"), site_name=text_field("site_name"),
                    published_time=parse_time(raw.get("published_time")), description=text_field("description") or "",
                    lang=lang, source=source, ingested_at_ms=ingested_at_ms)
