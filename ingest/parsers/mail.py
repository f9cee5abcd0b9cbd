"""E-mail (.eml, RFC 822) with the standard library: headers as metadata and a header paragraph, the HTML body
through the HTML walker (tables survive) or else the plain-text body. Attachments are listed, not parsed."""

from __future__ import annotations

import email
import email.policy
import email.utils

from ingest.elements import ParsedDocument
from ingest.parsers.builder import DocBuilder, Source
from ingest.parsers.htmlwalk import HtmlWalker, make_soup
from ingest.parsers.text import add_paragraphs


def parse_eml(src: Source) -> ParsedDocument:
    msg = email.message_from_bytes(src.data, policy=email.policy.default)
    b = DocBuilder()
    subject = " ".join(str(msg.get("Subject", "")).split())
    if subject:
        b.metadata["title"] = subject
    if msg.get("From"):
        b.metadata["author"] = str(msg["From"])
    if msg.get("Date"):
        try:
            b.metadata["created"] = email.utils.parsedate_to_datetime(str(msg["Date"])).isoformat()
        except (TypeError, ValueError):
            b.metadata["created"] = str(msg["Date"])
    header = [
        f"{k}: {' '.join(str(msg[k]).split())}" for k in ("From", "To", "Cc", "Date", "Subject") if msg.get(k)
    ]
    if subject:
        b.heading(subject, 1)
    b.add("paragraph", "\n".join(header))
    body = msg.get_body(preferencelist=("html", "plain")) if msg.is_multipart() else msg
    if body is not None:
        content = body.get_content()
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        if body.get_content_type() == "text/html":
            HtmlWalker(b, base_dir=None, ocr=False).walk_document(make_soup(content))
        else:
            add_paragraphs(b, str(content))
    names = [part.get_filename() for part in msg.iter_attachments()] if msg.is_multipart() else []
    if names := [n for n in names if n]:
        b.warnings.append(f"attachments not parsed: {', '.join(names)[:200]}")
    return b.build(src.stem)
