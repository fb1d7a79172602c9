"""What the edges check before linking or killing versions of a story. Pure.

The fold (`ChannelState`, `Stories`) takes any `translation_of` it is given, as given, so
that every node folds the same thing whatever it reads first. The HTTP API, the desk and the
CLI refuse the links an editor cannot have meant, against what this process has folded
(docs/editions.md): an unknown or killed item, the same edition, an edition that is not
configured, a translation rather than the original, or a story that already has a version
in the edition.
"""

from __future__ import annotations

from collections.abc import Mapping

from ticker.core.errors import HTTPError, ValidationError
from ticker.core.hub import ChannelHub
from ticker.core.items import check_translation_of, split_story
from ticker.core.state import Item
from ticker.core.stories import Story, story_key


def check_link(channels: Mapping[str, ChannelHub], channel: str, value: str) -> str:
    """The checked `translation_of` (`"en:<id>"`) for a publish in `channel`.

    Raises ValidationError (422) or HTTPError 409, naming `translation_of`.
    """
    linked, item_id = split_story(check_translation_of(value))
    field = "translation_of"
    if linked == channel:
        raise ValidationError(f"translation_of names an item of {channel} itself; a version "
                              "is in another edition", field=field)
    target_hub = channels.get(linked)
    if target_hub is None:
        raise ValidationError(f"translation_of: {linked!r} is not an edition here (one of "
                              f"{', '.join(channels)})", field=field)
    target = target_hub.state.items.get(item_id)
    if target is None:
        raise ValidationError(f"translation_of: no item {item_id} in {linked}", field=field)
    if target.killed:
        raise ValidationError(f"translation_of: {linked}:{item_id} was killed", field=field)
    key = story_key(linked, item_id)
    if target.story != key:
        raise ValidationError(f"translation_of: {key} is itself a version of {target.story}; "
                              f"link to {target.story}", field=field)
    story = target.story_ref
    if story is not None and channel in story.members:
        have = story.versions()[channel]
        raise HTTPError(409, "conflict", f"this story already has a {channel} version "
                        f"({have}); correct that one instead", field=field)
    return key


def versions_of(channels: Mapping[str, ChannelHub], channel: str, item: Item
                ) -> list[tuple[str, Item]]:
    """Every version of `item`'s story that is still standing (not killed), as
    (edition, item), `item` itself first, then by edition name."""
    out: list[tuple[str, Item]] = [(channel, item)]
    if item.story_ref is None:
        return out
    for name, item_id in item.story_ref.versions().items():
        hub = channels.get(name)
        other = hub.state.items.get(item_id) if hub is not None else None
        if other is not None and other is not item and not other.killed:
            out.append((name, other))
    return out


def needs_update(channels: Mapping[str, ChannelHub], item: Item) -> str | None:
    """The edition whose correction this item has not caught up with, or None.

    Every correction and confirmation of the story's standing versions is replayed in
    time order (stream-ID times, so every node agrees). A correction *marks* the other
    versions unless its own version was trailing then (it is catching up, not news); a
    version trails a mark made after its own last publish, correction or confirmation.
    """
    if item.story_ref is None:
        return None
    versions = _standing(channels, item.story_ref)
    if all(other is not item for _, other in versions):
        versions.append(("", item))
    if len(versions) < 2:
        return None
    revised = {id(v): v.ts for _, v in versions}
    marked = {id(v): 0 for _, v in versions}
    moves = sorted(((at, name, kind, v) for name, v in versions for at, kind in v.revisions),
                   key=lambda move: move[:3])
    for at, _, kind, v in moves:
        trailing = any(marked[k] > revised[id(v)] for k in marked if k != id(v))
        if kind == "correct" and not trailing:
            marked[id(v)] = at
        revised[id(v)] = at
    latest, where = revised[id(item)], None
    for name, other in versions:
        if other is not item and marked[id(other)] > latest:
            latest, where = marked[id(other)], name
    return where


def _standing(channels: Mapping[str, ChannelHub], story: Story) -> list[tuple[str, Item]]:
    out = []
    for name, item_id in story.versions().items():
        hub = channels.get(name)
        other = hub.state.items.get(item_id) if hub is not None else None
        if other is not None and not other.killed:
            out.append((name, other))
    return out


def original_of(item: Item) -> tuple[str, str]:
    """(edition, id) of the story's original (the item itself for an original)."""
    return split_story(item.story)
