"""Markdown to safe HTML for exercise prompts.

An exercise file is written by an instructor, but the lab treats it as untrusted all the
same (a shared lab has many instructors, and a file may come from anywhere): the HTML
Markdown produces is cleaned by ``nh3`` (the Rust ``ammonia`` sanitiser) to an allow-list
of tags and attributes. Script and style elements go with their content, ``on…``
attributes are dropped, and only http(s) and mailto links survive, so ``javascript:``
links become plain text. The page's Content-Security-Policy would refuse inline script
anyway; this makes the markup itself inert.
"""

from __future__ import annotations

import markdown
import nh3

TAGS = {"p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
        "a", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "sub", "sup"}
ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


def render_markdown(text: str) -> str:
    """``text`` (Markdown) as sanitised HTML, safe to mark safe in a template."""
    html = markdown.markdown(text or "", extensions=["fenced_code", "tables"],
                             output_format="html")
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes={"http", "https",
                                                                           "mailto"},
                     link_rel="noopener noreferrer nofollow",
                     clean_content_tags={"script", "style"})
