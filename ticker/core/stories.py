"""Stories: the versions of one piece of news across editions (docs/editions.md). Pure.

An item published with `translation_of = "en:<id>"` is a version of that story; an item
published without it starts a story of its own, `"<channel>:<id>"`. The link is taken as
given and never chased: a story is exactly the key its items name, so the index below is a
function of the set of publish entries folded, not of the order they were read in. Two
nodes that read the editions' streams in different orders fold the same `versions`.

`versions` of a story is `{channel: item id}`, one per edition: when several items of one
edition name the same story (only possible by writing to Redis directly; every edge refuses
it), the lowest stream ID is the version, everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ticker.core.items import parse_stream_id


def story_key(channel: str, item_id: str) -> str:
    """The story an original item starts: `"en:1732662000000-0"`."""
    return f"{channel}:{item_id}"


@dataclass(slots=True)
class Story:
    """Every item that names one story, by channel; `versions()` picks one per channel."""

    key: str
    members: dict[str, set[str]] = field(default_factory=dict)
    _versions: dict[str, str] | None = None

    def versions(self) -> dict[str, str]:
        """`{channel: id}`: the lowest stream ID of each channel, channels in name order."""
        if self._versions is None:
            self._versions = {
                ch: min(ids, key=_order) for ch, ids in sorted(self.members.items())}
        return self._versions


def _order(item_id: str) -> tuple[int, int]:
    return parse_stream_id(item_id) or (0, 0)


class Stories:
    """The cross-edition index every channel of a process shares: story key -> Story."""

    def __init__(self) -> None:
        self.stories: dict[str, Story] = {}

    def get(self, key: str) -> Story | None:
        return self.stories.get(key)

    def add(self, key: str, channel: str, item_id: str) -> tuple[Story, bool]:
        """Record that `channel:item_id` is a version of `key`; (the story, whether its
        `versions` changed)."""
        story = self.stories.get(key)
        if story is None:
            story = self.stories[key] = Story(key)
        before = story.versions()
        story.members.setdefault(channel, set()).add(item_id)
        story._versions = None
        return story, story.versions() != before

    def remove(self, key: str, channel: str, item_id: str) -> tuple[Story | None, bool]:
        """Forget a version (its item left the folded state); (the story if it still has
        members, whether its `versions` changed)."""
        story = self.stories.get(key)
        if story is None:
            return None, False
        ids = story.members.get(channel)
        if ids is None or item_id not in ids:
            return story, False
        before = story.versions()
        ids.discard(item_id)
        if not ids:
            del story.members[channel]
        story._versions = None
        if not story.members:
            del self.stories[key]
            return None, True
        return story, story.versions() != before
