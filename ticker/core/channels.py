"""A channel: one edition of the ticker (its stream, language, direction and title). Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Channel:
    """An edition: its stream, its language and reading direction, and its title."""

    name: str
    lang: str
    dir: str
    title: str

    def info(self) -> dict[str, str]:
        return {"name": self.name, "lang": self.lang, "dir": self.dir, "title": self.title}
