"""The source ChatbotMobile files a document under, named by the API when the caller did not.

ChatbotMobile groups documents by `source`, and `DELETE /v1/documents/by-source` names one;
an upload without a source is filed under `text:<title>`, `file:<filename>` or `url:<url>`
(the contract). The API writes that source into the task itself, so that the upload's
ordering key is the one a delete-by-source of it names (a delete accepted after the upload
then waits for it), and ChatbotMobile gets the source it would have chosen anyway. Only a
text without a title has none: ChatbotMobile files it under an id it makes up, which no
earlier request can name.
"""

from __future__ import annotations


def text_source(source: str | None, title: str | None) -> str | None:
    """The source of a text document."""
    return source or (f"text:{title}" if title else None)


def file_source(source: str | None, filename: str) -> str:
    """The source of a file document (`filename` as sent to ChatbotMobile)."""
    return source or f"file:{filename}"


def url_source(source: str | None, url: str) -> str:
    """The source of a document fetched from `url` (as sent to ChatbotMobile)."""
    return source or f"url:{url}"
