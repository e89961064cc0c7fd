"""Read a written page back as a browser's parser sees it: every start tag with its attributes,
the <title>, and the text nodes (the browser tests of reports and pages share it)."""

from __future__ import annotations

from html.parser import HTMLParser


class PageParts(HTMLParser):
    """``tags``: (tag, attributes) in document order; ``title``; ``text``: every text node."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._in_title = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        self.text.append(data)

    def attribute(self, tag: str, name: str) -> list[str]:
        """The `name` attribute of every `tag` element that has one (``src`` of each img, ...)."""
        return [attrs[name] for t, attrs in self.tags if t == tag and attrs.get(name) is not None]

    @property
    def images(self) -> list[str]:
        return self.attribute("img", "src")

    @property
    def links(self) -> list[str]:
        return self.attribute("a", "href")


def parse_html(html: str) -> PageParts:
    parts = PageParts()
    parts.feed(html)
    return parts
